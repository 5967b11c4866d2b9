"""PostgreSQL as the store behind many stateless gateway replicas.

`custos init DATA_DIR --database postgresql://USER@HOST:PORT/DB` records the
URL in DATA_DIR/config.json (never a password: libpq takes it from
PGPASSWORD or ~/.pgpass) and creates the schema; every replica runs
`custos serve` on its own copy of DATA_DIR, whose key files are the same.
Everything PostgreSQL-specific is in this package: the migrations
(`schema.py`), the store (`store.py`), the audit log (`auditlog.py`) and
its reads (`auditstore.py`).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import psycopg_pool

from gateway.core.errors import Code, CustosError
from vault.crypto import BlindIndex, FieldCipher, KekProvider
from vault.datadir import Layout
from vault.rowcache import Change, RowCache

from . import schema
from .auditlog import PgAuditLog
from .store import PgStore

log = logging.getLogger("custos.vault")

POOL_SIZE = 16
CONNECT_TIMEOUT_S = 5  # a statement waits at most this long for a connection, then the call is UNAVAILABLE


def check_url(url: str) -> str:
    """A postgresql:// URL without a password, or INVALID_ARGUMENT saying why."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise CustosError(Code.INVALID_ARGUMENT, "--database is not a URL") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise CustosError(Code.INVALID_ARGUMENT, "--database must be postgresql://USER@HOST:PORT/DB")
    if parts.password is not None:
        raise CustosError(Code.INVALID_ARGUMENT, "--database must not carry a password: libpq reads it from "
                                                 "PGPASSWORD or ~/.pgpass, and the URL is stored in DATA_DIR")
    if not parts.path.strip("/"):
        raise CustosError(Code.INVALID_ARGUMENT, "--database must name a database (postgresql://USER@HOST:PORT/DB)")
    return url


def _connect(url: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.OperationalError:
        raise CustosError(Code.UNAVAILABLE, "the database cannot be reached") from None


def preflight(url: str) -> None:
    """The URL is acceptable, the database reachable and without a Custos store; else a clear refusal."""
    check_url(url)
    with _connect(url) as conn:
        if schema.version(conn) != 0:
            raise CustosError(Code.DATA_DIR_EXISTS, "the database already holds a Custos store: give each replica "
                                                    "a copy of the first replica's data directory instead")


def create_schema(url: str) -> None:
    """The schema in an empty database; `preflight` it first (vault.backends.create does, before writing files)."""
    with _connect(url) as conn:
        schema.migrate(conn)


class PgVault:
    """An open data directory whose store is PostgreSQL: a pool of connections, readers, the audit log."""

    def __init__(self, root: Path, policy_revision: str = "") -> None:
        self.layout = Layout.of(root)
        if self.layout.database is None:
            raise CustosError(Code.DATA_DIR_INVALID, "the data directory names no database")
        url = self.layout.database
        keys = self.layout.key_provider()
        self.bidx_key = keys.secret("bidx")
        self.cipher = FieldCipher(keys.kek())
        self.bidx = BlindIndex(self.bidx_key)
        self.policy_revision = policy_revision
        self.url = check_url(url)
        with _connect(url) as conn:
            applied = schema.migrate(conn)
        if applied:
            log.info("database schema upgraded to version %d", applied[-1], extra={"event": "schema_migrated"})
        self.pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
            url, min_size=1, max_size=POOL_SIZE, open=False, timeout=CONNECT_TIMEOUT_S,
            kwargs={"connect_timeout": CONNECT_TIMEOUT_S}, name="custos")
        try:
            self.pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except psycopg_pool.PoolTimeout:
            self.pool.close()
            raise CustosError(Code.UNAVAILABLE, "the database cannot be reached") from None
        self._rows = RowCache()
        self._local = threading.local()
        self.audit = PgAuditLog(self.pool, self.cipher, self.bidx, lambda: self.policy_revision,
                                lambda seen: self._rows.observe(seen, self._changes))

    def _changes(self, since: int) -> list[Change] | None:
        """After an audit commit: the cases changed since the cache's generation; None (drop all) if unknown."""
        try:
            return PgStore(self.pool.connection, self.cipher, self.bidx)._changes(since)
        except CustosError:  # the database went away meanwhile: forgetting everything is always right
            return None

    @property
    def kek(self) -> KekProvider:
        return self.cipher.kek

    def reader(self) -> PgStore:
        """This thread's view: reads through the pool, one connection per statement, into the shared row cache."""
        store: PgStore | None = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = PgStore(self.pool.connection, self.cipher, self.bidx, self._rows)
        return store

    def forget(self) -> bool:
        """After an erasure: nothing PostgreSQL can be made to do at once (dead tuples, WAL): deploy/README.md."""
        return True

    def close(self) -> None:
        self.pool.close()
