"""C2SP tlog-cosignature/v1 (Ed25519): a regulator's signed statement that it verified a checkpoint.

Key ID: SHA-256(name || "\\n" || 0x04 || public key)[:4]. Signature line:
"— <name> base64(key ID || u64 big-endian timestamp || Ed25519 signature)",
over "cosignature/v1\\ntime <timestamp>\\n" followed by the checkpoint's note
body (through its final newline, without signature lines). A cosigner's key
is kept as "PRIVATE+KEY+<name>+<key ID hex>+base64(0x04 || 32-byte seed)"
and published as the vkey "<name>+<key ID hex>+base64(0x04 || public key)".
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

ALG = b"\x04"
DASH = "\u2014 "


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ALG + public).digest()[:4]


def _valid_name(name: str) -> bool:
    return bool(name) and all(0x21 <= ord(c) <= 0x7E and c != "+" for c in name)


@dataclass(frozen=True)
class Cosigner:
    name: str
    key: Ed25519PrivateKey

    @classmethod
    def generate(cls, name: str) -> Cosigner:
        if not _valid_name(name):
            raise ValueError("a cosigner name is printable ASCII without spaces or '+'")
        return cls(name, Ed25519PrivateKey.generate())

    def private_text(self) -> str:
        seed = self.key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        kid = key_id(self.name, _raw(self.key.public_key())).hex()
        return f"PRIVATE+KEY+{self.name}+{kid}+{base64.b64encode(ALG + seed).decode()}"

    @classmethod
    def parse(cls, text: str) -> Cosigner:
        try:
            prefix, kind, name, kid, b64 = text.strip().split("+", 4)
            raw = base64.b64decode(b64, validate=True)
            if (prefix, kind) != ("PRIVATE", "KEY") or raw[:1] != ALG or len(raw) != 33:
                raise ValueError
            key = Ed25519PrivateKey.from_private_bytes(raw[1:])
            if bytes.fromhex(kid) != key_id(name, _raw(key.public_key())):
                raise ValueError
        except (ValueError, TypeError):
            raise ValueError("not a cosigner key (PRIVATE+KEY+name+id+key)") from None
        return cls(name, key)

    def vkey(self) -> str:
        public = _raw(self.key.public_key())
        return f"{self.name}+{key_id(self.name, public).hex()}+{base64.b64encode(ALG + public).decode()}"

    def cosign(self, note: str, timestamp: int) -> str:
        """The signature line for `note`'s checkpoint at `timestamp` (POSIX seconds)."""
        body = note_body(note)
        sig = self.key.sign(_message(body, timestamp))
        kid = key_id(self.name, _raw(self.key.public_key()))
        return f"{DASH}{self.name} {base64.b64encode(kid + timestamp.to_bytes(8, 'big') + sig).decode()}"


def note_body(note: str) -> str:
    body, sep, _ = note.partition("\n\n")
    if not sep:
        raise ValueError("a checkpoint note has a body, a blank line and signatures")
    return body + "\n"


def _message(body: str, timestamp: int) -> bytes:
    if not 0 <= timestamp < 2**63:
        raise ValueError("timestamp out of range")
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


def verify_cosignature(note: str, line: str, vkey: str) -> int:
    """The cosignature's timestamp if `line` is a valid cosignature of `note` by `vkey`; ValueError otherwise."""
    try:
        name, kid_hex, b64 = vkey.strip().split("+", 2)
        raw = base64.b64decode(b64, validate=True)
        if raw[:1] != ALG or len(raw) != 33 or bytes.fromhex(kid_hex) != key_id(name, raw[1:]):
            raise ValueError
        public = Ed25519PublicKey.from_public_bytes(raw[1:])
        if not line.startswith(DASH + name + " "):
            raise ValueError
        blob = base64.b64decode(line[len(DASH) + len(name) + 1:], validate=True)
        if len(blob) != 4 + 8 + 64 or blob[:4] != bytes.fromhex(kid_hex):
            raise ValueError
        timestamp = int.from_bytes(blob[4:12], "big")
        public.verify(blob[12:], _message(note_body(note), timestamp))
    except (ValueError, TypeError, InvalidSignature):
        raise ValueError("not a valid cosignature of this checkpoint by this key") from None
    return timestamp
