"""The data directory: with its keys, the only thing needed to run a gateway.

This module knows the directory's layout and files only; which store is
behind it (and opening it) is `vault.backends`'s, so no backend is imported here.

    DATA_DIR/custos.db          SQLCipher database of case data (raw 256-bit key)
    DATA_DIR/audit.db           SQLCipher database of the audit log (same key; a file of its own, see vault/sqlite/db.py)
    DATA_DIR/keys/*.key         db key, KEK versions, blind-index key, audit and packet signing keys, server TLS key (0600),
                                and the CA key unless the CA is offline (`custos ca`); with `custos init
                                --key-dir DIR` all of these live in DIR instead and DATA_DIR holds no key
    DATA_DIR/tls/ca.crt, server.crt
    DATA_DIR/audit.vkey         checkpoint verifier key (signed-note format)
    DATA_DIR/packet.vkey        litigation packets' verifier key (same format, a key of its own)
    DATA_DIR/config.json        log origin, creation time, the key directory if it is elsewhere (no secrets)
    DATA_DIR/serve.lock         held by the one `custos serve` of this directory (and by all its processes)
    DATA_DIR/write.lock         the embedded store's writer: held by one process's audit commit at a time
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.core.errors import Code, CustosError
from gateway.tlog.merkle import CheckpointSigner

from .crypto import write_key_file
from .keys import FileKeyProvider, KeyProvider


@dataclass(frozen=True)
class Layout:
    root: Path
    key_dir: Path | None = None  # keys kept outside DATA_DIR (config.json "key_dir")
    database: str | None = None  # the PostgreSQL URL when the store is there (config.json "database")

    @classmethod
    def of(cls, root: Path) -> Layout:
        """The layout of an existing data directory, with its key directory and database from config.json."""
        try:
            config = json.loads((root / "config.json").read_text())
        except (OSError, ValueError):
            config = {}
        if not isinstance(config, dict):
            config = {}
        key_dir, database = config.get("key_dir"), config.get("database")
        return cls(root, Path(key_dir) if isinstance(key_dir, str) and key_dir else None,
                   database if isinstance(database, str) and database else None)

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
    def packet_vkey(self) -> Path:
        return self.root / "packet.vkey"

    @property
    def config(self) -> Path:
        return self.root / "config.json"


def create(root: Path, config: dict[str, str] | None = None, key_dir: Path | None = None,
           database: str | None = None, preflight: Callable[[], None] = lambda: None) -> Layout:
    """The directory, its config and keys; refuses a non-empty one. No store: `vault.backends.create` makes it.

    `preflight` runs once the directories are known to be empty and before
    anything is written (the backend's check that its store can be made).
    """
    if key_dir is not None and (key_dir.resolve() == root.resolve() or root.resolve() in key_dir.resolve().parents):
        # Keys apart from data is the point of --key-dir: a copy of the data directory must not carry them.
        raise CustosError(Code.INVALID_ARGUMENT, "--key-dir must be outside the data directory")
    for directory in (root, key_dir):
        if directory is not None and directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
            raise CustosError(Code.DATA_DIR_EXISTS, "the key directory is not empty" if directory == key_dir else "")
    preflight()
    layout = Layout(root, key_dir.resolve() if key_dir is not None else None, database)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    layout.keys.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(layout.keys, 0o700)
    layout.tls.mkdir()
    config = dict(config or {})
    if layout.key_dir is not None:
        config["key_dir"] = str(layout.key_dir)
    if database is not None:
        config["database"] = database
    layout.config.write_text(json.dumps(config) + "\n")
    for name in ("db.key", "kek-1.key", "bidx.key", "audit.key", "packet.key"):
        write_key_file(layout.keys / name, os.urandom(32))
    return layout


def audit_signing_key(layout: Layout) -> CheckpointSigner:
    return layout.key_provider().signer("audit")


def packet_key_name(origin: str) -> str:
    return f"{origin}/packets"


def packet_signing_key(layout: Layout, origin: str) -> CheckpointSigner | None:
    """The litigation packets' Ed25519 key (its own, not the log's), with packet.vkey beside it.

    A data directory made before packets existed gets one at start-up, if it
    is the embedded store (one process, its own key files). Replicas on
    PostgreSQL must share one key, so none is made for them here: without
    `packet.key` in the key directory they refuse packets (KEYS_UNAVAILABLE)
    until the operator copies one replica's key to all.
    """
    from gateway.tlog.merkle import verifier_key

    path = layout.keys / "packet.key"
    if not path.exists():
        if layout.database is not None:
            return None
        try:
            write_key_file(path, os.urandom(32))
        except OSError:
            return None
    signer = layout.key_provider().signer("packet")
    text = verifier_key(packet_key_name(origin), signer.public_key()) + "\n"
    if not layout.packet_vkey.exists() or layout.packet_vkey.read_text() != text:
        layout.packet_vkey.write_text(text)
    return signer


def load_config(layout: Layout) -> dict[str, str]:
    try:
        return dict(json.loads(layout.config.read_text()))
    except (OSError, ValueError):
        raise CustosError(Code.DATA_DIR_INVALID, "config.json missing or unreadable") from None



class ServeLock:
    """At most one `custos serve` per data directory (per copy of it, with replicas).

    On the embedded store the audit log has one sequence, whichever process
    appends; with PostgreSQL each replica has its own copy of the directory.
    Either way a second, independent server on one directory is a mistake.
    An advisory lock on DATA_DIR/serve.lock, held for the life of the process
    (the kernel drops it when the process dies, even by kill -9), refuses it
    at start-up, naming the holder's pid. `serve --processes N` takes it once
    in its supervisor and hands the same open file to each process it starts
    (`SERVE_LOCK_FD`): a flock belongs to the open file, so the directory is
    held until the last of them is gone, and `custos stop` waits for that.
    """

    ENV = "CUSTOS_SERVE_LOCK_FD"

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @property
    def fd(self) -> int:
        assert self._fd is not None
        return self._fd

    @classmethod
    def take(cls, root: Path) -> ServeLock:
        if not root.is_dir():
            raise CustosError(Code.DATA_DIR_INVALID, "run 'custos init' first")
        inherited = os.environ.pop(cls.ENV, "")
        if inherited:
            return cls._inherit(root, inherited)
        fd = os.open(root / "serve.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise CustosError(Code.DATA_DIR_IN_USE, f"held by pid {holder}" if holder.isdigit() else "") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd)

    @classmethod
    def _inherit(cls, root: Path, value: str) -> ServeLock:
        """The supervisor's lock, passed down: only if it is this directory's lock file, and held."""
        try:
            fd = int(value)
            mine, theirs = os.fstat(fd), os.stat(root / "serve.lock")
            if (mine.st_dev, mine.st_ino) != (theirs.st_dev, theirs.st_ino):
                raise OSError("not this directory's lock")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the same open file: succeeds only if it holds it
        except (ValueError, OSError):
            raise CustosError(Code.DATA_DIR_IN_USE, "the inherited serve lock is not this directory's") from None
        return cls(fd)

    @staticmethod
    def holder(root: Path) -> int | None:
        """The pid of the server holding the directory, or None if nothing holds it (for `custos stop`)."""
        try:
            fd = os.open(root / "serve.lock", os.O_RDONLY)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                text = os.pread(fd, 32, 0).decode(errors="replace").strip()
                return int(text) if text.isdigit() else 0
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class WriteLock:
    """The embedded store's one writer across processes: a blocking flock around each audit commit.

    SQLite serialises writers itself, but a writer that finds the database
    locked sleeps and polls (1, 2, 5, 10 ms ...); a flock waiter is woken
    the moment the holder lets go, and the waiting releases the GIL. Held
    from before the case database's transaction begins until both files
    have committed, so commits of all processes come one after another, in
    the order of the audit sequence, exactly as one process's do.
    """

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *_exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

