"""The data directory: with its keys, the only thing needed to run a gateway.

    DATA_DIR/custos.db          SQLCipher database of case data (raw 256-bit key)
    DATA_DIR/audit.db           SQLCipher database of the audit log (same key; a file of its own, see vault/db.py)
    DATA_DIR/keys/*.key         db key, KEK versions, blind-index key, audit signing key, server TLS key (0600),
                                and the CA key unless the CA is offline (`custos ca`); with `custos init
                                --key-dir DIR` all of these live in DIR instead and DATA_DIR holds no key
    DATA_DIR/tls/ca.crt, server.crt
    DATA_DIR/audit.vkey         checkpoint verifier key (signed-note format)
    DATA_DIR/config.json        log origin, creation time, the key directory if it is elsewhere (no secrets)
    DATA_DIR/serve.lock         held by the one `custos serve` of this directory
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from gateway.core.errors import Code, CustosError
from gateway.core.merkle import CheckpointSigner

from . import db
from .auditlog import AuditLog
from .crypto import BlindIndex, FieldCipher, write_key_file
from .keys import FileKeyProvider, KeyProvider
from .store import Repo, RowCache


@dataclass(frozen=True)
class Layout:
    root: Path
    key_dir: Path | None = None  # keys kept outside DATA_DIR (config.json "key_dir")

    @classmethod
    def of(cls, root: Path) -> Layout:
        """The layout of an existing data directory, with its key directory from config.json."""
        key_dir = None
        try:
            configured = json.loads((root / "config.json").read_text()).get("key_dir")
        except (OSError, ValueError, AttributeError):
            configured = None
        if isinstance(configured, str) and configured:
            key_dir = Path(configured)
        return cls(root, key_dir)

    def key_provider(self) -> KeyProvider:
        if self.key_dir is not None:
            return FileKeyProvider(self.key_dir, missing_code=Code.KEYS_UNAVAILABLE)
        return FileKeyProvider(self.keys)

    @property
    def db(self) -> Path:
        return self.root / "custos.db"

    @property
    def audit_db(self) -> Path:
        return self.root / "audit.db"

    @property
    def keys(self) -> Path:
        return self.key_dir if self.key_dir is not None else self.root / "keys"

    @property
    def tls(self) -> Path:
        return self.root / "tls"

    @property
    def vkey(self) -> Path:
        return self.root / "audit.vkey"

    @property
    def config(self) -> Path:
        return self.root / "config.json"


def create(root: Path, config: dict[str, str] | None = None, key_dir: Path | None = None) -> Layout:
    """Create keys and an empty encrypted database; refuses a non-empty data or key directory."""
    for directory in (root, key_dir):
        if directory is not None and directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
            raise CustosError(Code.DATA_DIR_EXISTS, "the key directory is not empty" if directory == key_dir else "")
    layout = Layout(root, key_dir.resolve() if key_dir is not None else None)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    layout.keys.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(layout.keys, 0o700)
    layout.tls.mkdir()
    config = dict(config or {})
    if layout.key_dir is not None:
        config["key_dir"] = str(layout.key_dir)
    layout.config.write_text(json.dumps(config) + "\n")
    for name in ("db.key", "kek-1.key", "bidx.key", "audit.key"):
        write_key_file(layout.keys / name, os.urandom(32))
    db_key = layout.key_provider().secret("db")
    for path, schema in ((layout.db, db.SCHEMA + db.CASE_UPGRADE), (layout.audit_db, db.AUDIT_SCHEMA)):
        conn = db.connect(path, db_key)
        db.create_schema(conn, schema)
        if path == layout.audit_db:
            db.upgrade_audit(conn)
        conn.close()
    return layout


class ServeLock:
    """At most one `custos serve` per data directory on the embedded store.

    SQLCipher has one writer, and the audit log one sequence: a second server
    on the same directory would fail on sequence collisions at its first
    write. An advisory lock on DATA_DIR/serve.lock, held for the life of the
    process (the kernel drops it when the process dies, even by kill -9),
    refuses it at start-up instead, naming the holder's pid.
    """

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def take(cls, root: Path) -> ServeLock:
        if not root.is_dir():
            raise CustosError(Code.DATA_DIR_INVALID, "run 'custos init' first")
        path = root / "serve.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise CustosError(Code.DATA_DIR_IN_USE, f"held by pid {holder}" if holder.isdigit() else "") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def audit_signing_key(layout: Layout) -> CheckpointSigner:
    return layout.key_provider().signer("audit")


def load_config(layout: Layout) -> dict[str, str]:
    try:
        return dict(json.loads(layout.config.read_text()))
    except (OSError, ValueError):
        raise CustosError(Code.DATA_DIR_INVALID, "config.json missing or unreadable") from None


class Vault:
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
            writer.executescript(db.CASE_UPGRADE)
            db.upgrade_cases(writer)
            db.upgrade_audit(audit_writer)
        except db.DbError:
            raise CustosError(Code.DATA_DIR_INVALID, "database does not open with its key") from None
        self._watch = db.CommitWatch(self.layout.db)  # the writer holds the database open from here on
        self._rows = RowCache(self._watch)
        self.writer = Repo(writer, self.cipher, self.bidx, audit_conn=audit_writer)
        try:
            self.audit = AuditLog(self.writer, lambda: self.policy_revision)
        except BaseException:
            self.close()  # e.g. a log that no longer opens: leave nothing open behind
            raise

    def _open(self, path: Path) -> db.Connection:
        conn = db.connect(path, self._db_key)
        with self._lock:
            self._all.append(conn)
        return conn

    def reader(self) -> Repo:
        """This thread's read-only repository (WAL readers never block the writer)."""
        repo: Repo | None = getattr(self._local, "repo", None)
        if repo is None:
            repo = Repo(self._open(self.layout.db), self.cipher, self.bidx,
                        audit_factory=lambda: self._open(self.layout.audit_db), cache=self._rows)
            self._local.repo = repo
        return repo

    def close(self) -> None:
        self._watch.close()
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except db.DbError:
                    pass
            self._all.clear()
