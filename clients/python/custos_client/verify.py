"""Checking audit events against a signed checkpoint, on the reader's side: trust only the pinned key.

Written from the specifications (C2SP signed-note and tlog-checkpoint for the
checkpoint, RFC 9162 §2.1.1 and §2.1.3.2 for leaf hashes and inclusion
proofs), with no code of the gateway's, so a reader needs only this package.
Ed25519 comes from `cryptography` (the `verify` extra), imported on first use.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class VerifyFailed(ValueError):
    """Why a checkpoint or an event does not verify (the message names no event content)."""


@dataclass(frozen=True)
class SignedTree:
    """A checkpoint whose signature by the pinned key verified: the tree size and root it commits to."""

    origin: str
    size: int
    root: bytes
    note: str


def _key_hash(name: str, public: bytes) -> bytes:
    """signed-note: the first 4 bytes of SHA-256(name || 0x0A || 0x01 || key)."""
    return hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]


def parse_vkey(text: str) -> tuple[str, bytes, bytes]:
    """`name+hexkeyhash+base64(0x01 || key)` -> (name, key hash, raw Ed25519 key)."""
    try:
        name, hexhash, b64 = text.strip().split("+", 2)
        raw = base64.b64decode(b64, validate=True)
        key_hash = bytes.fromhex(hexhash)
    except ValueError:
        raise VerifyFailed("not a verifier key (name+hash+key)") from None
    if raw[:1] != b"\x01" or len(raw) != 33 or len(key_hash) != 4 or key_hash != _key_hash(name, raw[1:]):
        raise VerifyFailed("not an Ed25519 verifier key, or its hash does not match")
    return name, key_hash, raw[1:]


def verify_checkpoint(note: str, vkey: str) -> SignedTree:
    """The checkpoint's tree, if the note carries a valid signature by the pinned key; else VerifyFailed."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    name, key_hash, raw = parse_vkey(vkey)
    body, sep, sigs = note.partition("\n\n")
    if not sep:
        raise VerifyFailed("the checkpoint has no signature block")
    body += "\n"
    lines = body.split("\n")
    if len(lines) < 4 or not lines[1].isdigit():
        raise VerifyFailed("the checkpoint body is malformed")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except ValueError:
        raise VerifyFailed("the checkpoint root is not base64") from None
    if len(root) != 32:
        raise VerifyFailed("the checkpoint root is not a SHA-256 hash")
    key = Ed25519PublicKey.from_public_bytes(raw)
    for line in sigs.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "\u2014" or parts[1] != name:
            continue
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except ValueError:
            continue
        if blob[:4] != key_hash:
            continue
        try:
            key.verify(blob[4:], body.encode())
        except InvalidSignature:
            raise VerifyFailed("the checkpoint signature does not verify") from None
        return SignedTree(lines[0], int(lines[1]), root, note)
    raise VerifyFailed("the checkpoint is not signed by the pinned key")


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def inclusion_root(index: int, size: int, lh: bytes, proof: Sequence[bytes]) -> bytes | None:
    """RFC 9162 §2.1.3.2: the root an inclusion proof leads to, or None if it is malformed for (index, size)."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, lh
    for p in proof:
        if sn == 0 or len(p) != 32:
            return None
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def check_event(seq: int, leaf: bytes, proof: Sequence[bytes], size: int, root: bytes) -> None:
    """Event `seq` is leaf `seq` of the tree (size, root): its bytes hash, through the proof, to that root."""
    if inclusion_root(seq, size, leaf_hash(leaf), proof) != root:
        raise VerifyFailed(f"event {seq} altered: it does not lead to the signed root of {size} events "
                           f"(inclusion proof)")
    try:
        obj: Any = json.loads(leaf)
    except ValueError:
        obj = None
    if not isinstance(obj, dict) or obj.get("seq") != seq:
        raise VerifyFailed(f"event {seq} altered: it does not carry its own sequence number")
