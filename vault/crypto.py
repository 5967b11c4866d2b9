"""Field-level envelope encryption and blind indexes.

Each borrower has a data key (DEK, AES-256-GCM) wrapped by a versioned KEK.
Associated data binds every ciphertext to lender, borrower, field and key
version, so a ciphertext moved to another row or field fails to open. Every
failure to open raises the same `DecryptionError` with no detail, as in
pyca/cryptography, so nothing about the cause leaks.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import stat
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE = 12


class DecryptionError(Exception):
    """Generic: a ciphertext did not open. Deliberately says nothing more."""

    def __init__(self) -> None:
        super().__init__("decryption failed")


def _length_prefixed(*parts: str) -> bytes:
    # Length-prefixed so that no two part lists give the same bytes.
    out = bytearray()
    for part in parts:
        raw = part.encode()
        out += len(raw).to_bytes(2, "big") + raw
    return bytes(out)


# Associated data of keys and fields: ids, field names and versions only, which come
# back on every read, so memoised (bounded). Never used for values: see BlindIndex.
_ad = functools.lru_cache(maxsize=1 << 16)(_length_prefixed)


def seal(key: bytes, plaintext: bytes, ad: bytes) -> bytes:
    nonce = os.urandom(NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, ad)


def open_sealed(key: bytes, blob: bytes, ad: bytes) -> bytes:
    if len(blob) < NONCE + 16:
        raise DecryptionError()
    try:
        return AESGCM(key).decrypt(blob[:NONCE], blob[NONCE:], ad)
    except (InvalidTag, ValueError):
        raise DecryptionError() from None


class KekProvider(Protocol):
    """Wraps data keys. The file provider is the default; an HSM or KMS fits here."""

    def primary_version(self) -> int: ...

    def wrap(self, dek: bytes, ad: bytes) -> tuple[int, bytes]: ...

    def unwrap(self, version: int, blob: bytes, ad: bytes) -> bytes: ...

    def versions(self) -> list[int]:
        """Every version that still unwraps (an HSM or KMS lists its key versions)."""


def write_key_file(path: Path, key: bytes) -> None:
    """Create a key file readable by the owner only (0600), never overwriting."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.hex().encode() + b"\n")
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def read_key_file(path: Path) -> bytes:
    key = bytes.fromhex(path.read_text().strip())
    if len(key) != 32:
        raise ValueError("key file does not hold a 256-bit key")
    return key


class FileKekProvider:
    """KEKs in `keys/kek-N.key` files (0600); the highest N is primary.

    Rotation (`custos keys rotate`) adds kek-(N+1).key and the gateway's
    background rewrap moves every data key to it; `keys retire` removes an
    old file once nothing uses it. The directory is re-read when it changed,
    looked at no more than every RECHECK_S (a `stat` costs about 30 µs here,
    too much for every data key opened), so a running gateway wraps with a
    new version, and stops unwrapping with a retired one, within that.
    """

    RECHECK_S = 0.5

    def __init__(self, key_dir: Path) -> None:
        self._dir = key_dir
        self._stamp = -1
        self._checked = -1.0
        self._keys: dict[int, bytes] = {}
        self._load()
        if not self._keys:
            raise FileNotFoundError("no KEK file")

    def _load(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.RECHECK_S:
            return
        self._checked = now
        stamp = self._dir.stat().st_mtime_ns
        if stamp == self._stamp:
            return
        keys: dict[int, bytes] = {}
        for path in self._dir.glob("kek-*.key"):
            try:
                keys[int(path.stem.split("-", 1)[1])] = read_key_file(path)
            except (OSError, ValueError):
                continue  # being written or removed right now: the next change re-reads it
        if keys:
            self._keys, self._stamp = keys, stamp

    def versions(self) -> list[int]:
        self._load()
        return sorted(self._keys)

    def primary_version(self) -> int:
        self._load()
        return max(self._keys)

    def wrap(self, dek: bytes, ad: bytes) -> tuple[int, bytes]:
        version = self.primary_version()
        return version, seal(self._keys[version], dek, _ad("kek", str(version)) + ad)

    def unwrap(self, version: int, blob: bytes, ad: bytes) -> bytes:
        self._load()
        key = self._keys.get(version)
        if key is None:
            raise DecryptionError()
        return open_sealed(key, blob, _ad("kek", str(version)) + ad)


class Opener:
    """Opens one borrower's fields: holds the data key and the AD's fixed parts, not a cipher object.

    A cached grant holds one for as long as its case is read, and an AESGCM
    object (its OpenSSL contexts, outside Python's allocator) is about 2.4 KiB
    of RSS against 1.7 µs to build one per release: at a million cases held,
    2.4 GB (bench/README.md, fourth session).
    """

    __slots__ = ("_dek", "_prefix", "_suffix")

    def __init__(self, dek: bytes, prefix: bytes, suffix: bytes) -> None:
        self._dek = dek
        self._prefix = prefix
        self._suffix = suffix

    def _open(self, aead: AESGCM, field: str, blob: bytes) -> str:
        if len(blob) < NONCE + 16:
            raise DecryptionError()
        try:
            return aead.decrypt(blob[:NONCE], blob[NONCE:], self._prefix + _ad(field) + self._suffix).decode("utf-8")
        except (InvalidTag, ValueError):
            raise DecryptionError() from None

    def __call__(self, field: str, blob: bytes) -> str:
        return self._open(AESGCM(self._dek), field, blob)

    def open_all(self, sealed: Iterable[tuple[str, str, bytes]]) -> dict[str, str]:
        """(name, field of the AD, ciphertext) opened under one key schedule, by name."""
        aead = AESGCM(self._dek)
        return {name: self._open(aead, field, blob) for name, field, blob in sealed}


class FieldCipher:
    """Encrypts a borrower's fields under that borrower's data key."""

    def __init__(self, kek: KekProvider) -> None:
        self._kek = kek

    @staticmethod
    def dek_ad(lender: str, borrower: str) -> bytes:
        return _ad("dek", lender, borrower)

    def new_dek(self, lender: str, borrower: str) -> tuple[bytes, int, bytes]:
        """Returns (dek, kek_version, wrapped_dek)."""
        dek = AESGCM.generate_key(bit_length=256)
        version, wrapped = self._kek.wrap(dek, self.dek_ad(lender, borrower))
        return dek, version, wrapped

    def unwrap_dek(self, lender: str, borrower: str, kek_version: int, wrapped: bytes) -> bytes:
        return self._kek.unwrap(kek_version, wrapped, self.dek_ad(lender, borrower))

    @property
    def kek(self) -> KekProvider:
        return self._kek

    def rewrap_dek(self, lender: str, borrower: str, kek_version: int, wrapped: bytes) -> tuple[int, bytes] | None:
        """The data key wrapped by the primary KEK, or None if it is already; the key itself stays in here."""
        primary = self._kek.primary_version()
        if kek_version == primary:
            return None
        ad = self.dek_ad(lender, borrower)
        return self._kek.wrap(self._kek.unwrap(kek_version, wrapped, ad), ad)

    @staticmethod
    def field_ad(lender: str, borrower: str, field: str, dek_version: int) -> bytes:
        return _ad("field", lender, borrower, field, str(dek_version))

    def opener(self, dek: bytes, lender: str, borrower: str, dek_version: int) -> Opener:
        """Decrypts several fields of one borrower with one AD prefix (and, per call of `open_all`, one key schedule)."""
        return Opener(dek, _ad("field", lender, borrower), _ad(str(dek_version)))

    def sealer(self, dek: bytes, lender: str, borrower: str, dek_version: int) -> Callable[[str, str], bytes]:
        """Encrypts several fields of one borrower with one key schedule and one AD prefix (what `opener` opens).

        The same bytes as `encrypt` field by field; an import seals a dozen values
        per borrower, and building the cipher and the AD for each was a tenth of it.
        """
        aead = AESGCM(dek)
        prefix = _length_prefixed("field", lender, borrower)  # not memoised: an import meets each borrower once
        suffix = _ad(str(dek_version))

        def seal_field(field: str, value: str) -> bytes:
            nonce = os.urandom(NONCE)
            return nonce + aead.encrypt(nonce, value.encode("utf-8"), prefix + _ad(field) + suffix)

        return seal_field

    def encrypt(self, dek: bytes, lender: str, borrower: str, field: str, dek_version: int, value: str) -> bytes:
        return seal(dek, value.encode("utf-8"), self.field_ad(lender, borrower, field, dek_version))

    def decrypt(self, dek: bytes, lender: str, borrower: str, field: str, dek_version: int, blob: bytes) -> str:
        return open_sealed(dek, blob, self.field_ad(lender, borrower, field, dek_version)).decode("utf-8")


class BlindIndex:
    """Keyed hashes for equality lookups without decrypting rows.

    Scoped by lender and field so equal values of two lenders or two fields do
    not collide into a join key.
    """

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __call__(self, lender: str, field: str, value: str) -> bytes:
        normalised = "".join(value.split()).upper()
        msg = _length_prefixed("bidx", lender, field, normalised)  # a value: never memoised
        return hmac.new(self._key, msg, hashlib.sha256).digest()[:16]

    def digest(self, lender: str, label: str, data: bytes) -> bytes:
        """A keyed fingerprint of a whole record (import lines): equal records match, nobody can guess one."""
        return hmac.new(self._key, _length_prefixed("digest", lender, label) + data, hashlib.sha256).digest()[:16]
