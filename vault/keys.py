"""Key providers: where the keys that must not sit beside the data are kept.

Everything secret that the gateway uses goes through one provider: the KEKs
that wrap every borrower's data key, the audit log's checkpoint signing key,
the database key, the blind-index key and the server's TLS key. The default
provider is a directory of 0600 files: `DATA_DIR/keys`, or a directory of the
operator's choice (`custos init --key-dir`: another disk, a tmpfs filled from a
secrets manager at boot, a mount only the gateway's user can read), so that a
copy of DATA_DIR alone holds no key at all. An HSM or a cloud KMS implements
the same protocol: `kek()` wraps and unwraps, `signer()` signs, without the
key ever leaving it (for those two, the file provider is one implementation
among possible ones; the database and blind-index keys are needed in memory).

The CA key is not among them: with `custos ca` it lives in a directory of its
own that never has to be on the gateway host (see `gateway/pki.py`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.core.errors import Code, CustosError
from gateway.tlog.merkle import CheckpointSigner as Signer

from .crypto import FileKekProvider, KekProvider, read_key_file, write_key_file


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class KeyProvider(Protocol):
    def kek(self) -> KekProvider: ...

    def rotate_kek(self) -> int:
        """Create a new KEK version and make it primary; its number."""

    def retire_kek(self, version: int) -> None:
        """Destroy a KEK version (the caller has checked that nothing uses it)."""

    def signer(self, name: str) -> Signer: ...

    def secret(self, name: str) -> bytes: ...

    def tls_key(self) -> bytes: ...


class FileKeyProvider:
    """Key files in one directory, each 0600: kek-N.key, audit.key, db.key, bidx.key, server.key."""

    def __init__(self, directory: Path, *, missing_code: Code = Code.DATA_DIR_INVALID) -> None:
        self.directory = directory
        self._missing = missing_code
        if not directory.is_dir():
            raise CustosError(missing_code, "the key directory is missing or unreadable")

    def _fail(self) -> CustosError:
        return CustosError(self._missing, "key files missing or unreadable")

    def kek(self) -> KekProvider:
        try:
            return FileKekProvider(self.directory)
        except (OSError, ValueError):
            raise self._fail() from None

    def rotate_kek(self) -> int:
        """kek-(N+1).key, 0600, written whole before it appears (a running gateway reads the directory on change)."""
        versions = self.kek().versions()
        version = max(versions) + 1
        tmp = self.directory / f".kek-{version}.tmp"
        write_key_file(tmp, os.urandom(32))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.rename(tmp, self.directory / f"kek-{version}.key")
        _sync_dir(self.directory)
        return version

    def retire_kek(self, version: int) -> None:
        """Overwrite the key file with zeros, then remove it (the bytes are gone, as far as a file system allows)."""
        path = self.directory / f"kek-{version}.key"
        size = path.stat().st_size
        with open(path, "r+b") as fh:
            fh.write(b"\0" * size)
            fh.flush()
            os.fsync(fh.fileno())
        path.unlink()
        _sync_dir(self.directory)

    def signer(self, name: str) -> Signer:
        try:
            return Ed25519PrivateKey.from_private_bytes(read_key_file(self.directory / f"{name}.key"))
        except (OSError, ValueError):
            raise self._fail() from None

    def secret(self, name: str) -> bytes:
        try:
            return read_key_file(self.directory / f"{name}.key")
        except (OSError, ValueError):
            raise self._fail() from None

    def tls_key(self) -> bytes:
        try:
            pem = (self.directory / "server.key").read_bytes()
            serialization.load_pem_private_key(pem, None)
        except (OSError, ValueError, TypeError):
            raise self._fail() from None
        return pem
