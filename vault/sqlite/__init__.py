"""The embedded store: SQLCipher files in the data directory (the default backend).

Everything SQLite-specific lives in this package: the two-file commit (case
data in custos.db, the audit log in audit.db, see `db.py`), the generation
counter and the WAL-index watch that keep the shared row cache fresh
(`store.py`), the group-committed single writer (`auditlog.py`) and the
log's SQL, its reads and its sorted-run index (`auditstore.py`), the
raw-key connections and `blob()`. One process serves a data directory
(`vault.datadir.ServeLock`), in one process or, with `serve --processes N`,
in several that take turns with the directory's write lock
(`vault.datadir.WriteLock`).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from gateway.core.errors import Code, CustosError
from vault.crypto import BlindIndex, FieldCipher, KekProvider
from vault.datadir import Layout, WriteLock
from vault.rowcache import RowCache

from . import db
from .auditlog import AuditLog
from .auditstore import AuditStore
from .store import MissReader, Repo

log = logging.getLogger("custos.vault")


def create_databases(case_db: Path, audit_db: Path, key: bytes) -> None:
    """Both SQLCipher files with the current schema, under the database key."""
    for path, schema, version in ((case_db, db.SCHEMA + db.CASE_UPGRADE + db.CACHE_SCOPE, db.CASE_VERSION),
                                  (audit_db, db.AUDIT_SCHEMA, db.AUDIT_VERSION)):
        conn = db.connect(path, key)
        db.create_schema(conn, schema, version)
        if path == audit_db:
            db.upgrade_audit(conn)
        conn.close()


class SqliteVault:
    """Open data directory: a writer (the audit log) plus one read connection per thread."""

    def __init__(self, root: Path, policy_revision: str = "") -> None:
        self.layout = Layout.of(root)
        if not self.layout.db.exists() or not self.layout.audit_db.exists():
            raise CustosError(Code.DATA_DIR_INVALID, "run 'custos init' first")
        keys = self.layout.key_provider()
        self._db_key = keys.secret("db")
        kek = keys.kek()
        self.bidx_key = keys.secret("bidx")
        self.cipher = FieldCipher(kek)
        self.bidx = BlindIndex(self.bidx_key)
        self.policy_revision = policy_revision
        self._local = threading.local()
        self._all: list[db.Connection] = []
        self._lock = threading.Lock()
        try:
            writer = self._open(self.layout.db)
            audit_writer = self._open(self.layout.audit_db)
            writer.executescript(db.CASE_UPGRADE)  # idempotent: data directories older than version 1
            db.upgrade_audit(audit_writer)  # idempotent: audit files older than version 1
            for applied in db.migrate(writer, db.CASE_MIGRATIONS):
                log.info("custos.db migrated to schema version %d", applied, extra={"event": "schema_migrated"})
            for applied in db.migrate(audit_writer, db.AUDIT_MIGRATIONS):
                log.info("audit.db migrated to schema version %d", applied, extra={"event": "schema_migrated"})
        except db.DbError:
            raise CustosError(Code.DATA_DIR_INVALID, "database does not open with its key") from None
        self._watch = db.CommitWatch(self.layout.db)  # the writer holds the database open from here on
        self._rows = RowCache(self._watch)
        self._misses = MissReader(self._open(self.layout.db))
        self.writer = Repo(writer, self.cipher, self.bidx)
        self._write_lock = WriteLock(self.layout.root / "write.lock")
        self._audit_watch = db.CommitWatch(self.layout.audit_db)
        try:
            self.audit = AuditLog(self.writer, AuditStore(writer, audit_conn=audit_writer),
                                  lambda: self.policy_revision, write_lock=self._write_lock,
                                  reads=self.audit_reads, watch=self._audit_watch)
        except BaseException:
            self.close()  # e.g. a log that no longer opens: leave nothing open behind
            raise

    @property
    def kek(self) -> KekProvider:
        return self.cipher.kek

    def _open(self, path: Path) -> db.Connection:
        conn = db.connect(path, self._db_key)
        with self._lock:
            self._all.append(conn)
        return conn

    def reader(self) -> Repo:
        """This thread's read-only repository (WAL readers never block the writer)."""
        repo: Repo | None = getattr(self._local, "repo", None)
        if repo is None:
            repo = Repo(self._open(self.layout.db), self.cipher, self.bidx, cache=self._rows, misses=self._misses)
            self._local.repo = repo
        return repo

    def audit_reads(self) -> AuditStore:
        """This thread's reads of the log: its case connection (checkpoints, cosignatures) and its own of audit.db."""
        tables: AuditStore | None = getattr(self._local, "audit", None)
        if tables is None:
            tables = AuditStore(self.reader().conn, audit_factory=lambda: self._open(self.layout.audit_db))
            self._local.audit = tables
        return tables

    def forget(self, attempts: int = 50) -> bool:
        """After an erasure: copy the WAL into the database and truncate it, so no old frame keeps a shredded key.

        The pages themselves were overwritten with secure_delete on. A reader
        still inside an older snapshot holds the checkpoint back: retried for
        up to about 5 s; False (and a warning) if it never completed, in
        which case the next erasure's checkpoint (or SQLite's automatic one)
        overwrites those frames later.
        """
        conn = db.connect(self.layout.db, self._db_key)
        try:
            for _ in range(attempts):
                busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy:
                    return True
                time.sleep(0.1)
        except db.DbError:
            pass
        finally:
            conn.close()
        log.warning("the WAL could not be checkpointed after an erasure; its old frames stay until the next one",
                    extra={"event": "wal_checkpoint_failed"})
        return False

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except db.DbError:
                    pass
            self._all.clear()
        self._watch.close()  # after the connections: closing its descriptor drops the process's locks on the file
        self._audit_watch.close()
        self._write_lock.close()
