"""The storage backends behind a data directory: which one, making its store, opening it as a `Vault`.

The one module that knows both backends (`vault/sqlite`, the embedded
default, and `vault/postgres`); each imports `vault.datadir` for the layout
and nothing here, so there is no import circle. A new backend is a package
implementing the ports of `gateway/core/ports.py` and a branch in each
function below.
"""

from __future__ import annotations

from pathlib import Path

from gateway.core.ports import Vault

from . import datadir
from .datadir import Layout


def create(root: Path, config: dict[str, str] | None = None, key_dir: Path | None = None,
           database: str | None = None) -> Layout:
    """Keys and an empty store (SQLCipher files, or the schema in `database`); refuses a non-empty one."""
    if database is not None:
        from . import postgres

        # Reachable and empty, checked before anything is written; the schema once the files are.
        layout = datadir.create(root, config, key_dir, database, preflight=lambda: postgres.preflight(database))
        postgres.create_schema(database)
        return layout
    from .sqlite import create_databases

    layout = datadir.create(root, config, key_dir)
    create_databases(layout.db, layout.audit_db, layout.key_provider().secret("db"))
    return layout


def open_vault(root: Path, policy_revision: str = "") -> Vault:
    """The storage behind a data directory: PostgreSQL if `custos init --database` named one, else SQLCipher."""
    if Layout.of(root).database:
        from .postgres import PgVault

        return PgVault(root, policy_revision)
    from .sqlite import SqliteVault

    return SqliteVault(root, policy_revision)
