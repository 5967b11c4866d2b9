"""RFC 6962 / RFC 9162 §2.1 Merkle tree hashing, canonical leaves and checkpoints.

Leaf hash SHA-256(0x00 || leaf), node hash SHA-256(0x01 || left || right).
A leaf is an audit event serialised as RFC 8785 (JCS) canonical JSON; the
values we put in events are strings, integers, booleans, null and lists, for
which JCS is exactly sorted keys, no whitespace and ES6 string escaping.
Checkpoints are C2SP signed notes signed with Ed25519.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def canonical_json(value: object) -> bytes:
    """RFC 8785 for our value space; floats are refused (JCS here is integers only)."""
    _check_jcs(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _check_jcs(value: object) -> None:
    if isinstance(value, float):
        raise ValueError("audit events carry integers only")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or not k.isascii():
                raise ValueError("audit event keys are ASCII strings")
            _check_jcs(v)
    elif isinstance(value, list):
        for v in value:
            _check_jcs(v)


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()


def root_of(hashes: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, by the RFC's recursive definition (split at the largest power of two < n)."""
    n = len(hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return hashes[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(root_of(hashes[:k]), root_of(hashes[k:]))


class Frontier:
    """The perfect subtrees on the right edge of the tree: appends in O(log n).

    Heights decrease left to right; the root folds them from the right, which
    equals MTH because the leftmost subtree is the largest power of two < n.
    """

    def __init__(self, size: int = 0, nodes: Iterable[tuple[int, bytes]] = ()) -> None:
        self.size = size
        self.nodes: list[tuple[int, bytes]] = list(nodes)

    def append(self, lh: bytes) -> None:
        height, h = 0, lh
        while self.nodes and self.nodes[-1][0] == height:
            _, left = self.nodes.pop()
            h = node_hash(left, h)
            height += 1
        self.nodes.append((height, h))
        self.size += 1

    def root(self) -> bytes:
        if not self.nodes:
            return EMPTY_ROOT
        acc = self.nodes[-1][1]
        for _, h in reversed(self.nodes[:-1]):
            acc = node_hash(h, acc)
        return acc

    def dumps(self) -> str:
        return json.dumps([[height, h.hex()] for height, h in self.nodes])

    @classmethod
    def loads(cls, size: int, text: str) -> Frontier:
        return cls(size, [(int(height), bytes.fromhex(h)) for height, h in json.loads(text)])

    def copy(self) -> Frontier:
        return Frontier(self.size, self.nodes)


# ----------------------------------------------------------------- signed notes


def _key_hash(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + b"\x01" + public).digest()[:4]


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def verifier_key(name: str, key: Ed25519PublicKey) -> str:
    """`name+hexkeyhash+base64(0x01||key)` (the signed-note verifier-key format)."""
    public = _raw_public(key)
    encoded = base64.b64encode(b"\x01" + public).decode()
    return f"{name}+{_key_hash(name, public).hex()}+{encoded}"


@dataclass(frozen=True)
class Verifier:
    name: str
    key_hash: bytes
    key: Ed25519PublicKey


def parse_verifier_key(text: str) -> Verifier:
    try:
        name, hexhash, b64 = text.strip().split("+", 2)
        raw = base64.b64decode(b64, validate=True)
        if raw[:1] != b"\x01" or len(raw) != 33:
            raise ValueError("not an Ed25519 verifier key")
        key = Ed25519PublicKey.from_public_bytes(raw[1:])
        key_hash = bytes.fromhex(hexhash)
        if key_hash != _key_hash(name, raw[1:]):
            raise ValueError("verifier key hash does not match")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"bad verifier key: {exc}") from None
    return Verifier(name, key_hash, key)


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


class CheckpointSigner(Protocol):
    """An Ed25519 key that signs and tells its public key; wherever it lives (a file, an HSM)."""

    def sign(self, data: bytes) -> bytes: ...

    def public_key(self) -> Ed25519PublicKey: ...


def sign_checkpoint(origin: str, size: int, root: bytes, key: CheckpointSigner) -> str:
    body = checkpoint_body(origin, size, root)
    sig = key.sign(body.encode())
    kh = _key_hash(origin, _raw_public(key.public_key()))
    return f"{body}\n\u2014 {origin} {base64.b64encode(kh + sig).decode()}\n"


@dataclass(frozen=True)
class CheckpointData:
    origin: str
    size: int
    root: bytes


def verify_checkpoint(note: str, verifier: Verifier) -> CheckpointData:
    """Checks the note's signature by `verifier`; raises ValueError otherwise."""
    body, sep, sigs = note.partition("\n\n")
    if not sep:
        raise ValueError("checkpoint has no signature block")
    body += "\n"
    lines = body.split("\n")
    if len(lines) < 4:
        raise ValueError("checkpoint body is too short")
    origin, size_text, root_b64 = lines[0], lines[1], lines[2]
    if not size_text.isdigit():
        raise ValueError("checkpoint size is not a number")
    for line in sigs.splitlines():
        if not line.startswith("\u2014 "):
            continue
        parts = line[2:].split(" ")
        if len(parts) != 2 or parts[0] != verifier.name:
            continue
        blob = base64.b64decode(parts[1])
        if blob[:4] != verifier.key_hash:
            continue
        try:
            verifier.key.verify(blob[4:], body.encode())
        except InvalidSignature:
            raise ValueError("checkpoint signature does not verify") from None
        return CheckpointData(origin, int(size_text), base64.b64decode(root_b64))
    raise ValueError("checkpoint is not signed by the pinned key")
