"""An independent check of an exported audit bundle, for the tests only: written from the specifications.

C2SP signed-note (verifier key, signature line), tlog-checkpoint (origin,
size, root), tlog-tiles (tile paths, partial tiles, entry bundles) and
RFC 6962 §2.1 (leaf and node hashes, the Merkle Tree Hash). It imports
nothing from gateway/ or custos_client, so a mistake there is not repeated
here: the test suite checks `custos audit export` with both verifiers.

(aics-tlog, a published verifier of the same formats, needs Python >= 3.12;
the project is locked for 3.11, so it cannot be a dev dependency.)
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

WIDTH = 256


class BadBundle(Exception):
    pass


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(hashes: list[bytes]) -> bytes:
    """RFC 6962 MTH over leaf hashes: split at the largest power of two below n."""
    if not hashes:
        return _h(b"")
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return _h(b"\x01" + mth(hashes[:k]) + mth(hashes[k:]))


def checkpoint(note: str, vkey: str) -> tuple[str, int, bytes]:
    """signed-note: a line `— <name> base64(keyid[4] || signature)` by the key `name+hex(keyid)+base64(0x01||pk)`."""
    name, keyid_hex, key_b64 = vkey.strip().split("+", 2)
    raw = base64.b64decode(key_b64)
    if raw[0] != 1 or len(raw) != 33:
        raise BadBundle("not an Ed25519 verifier key")
    keyid = bytes.fromhex(keyid_hex)
    if _h(name.encode() + b"\n" + raw)[:4] != keyid:
        raise BadBundle("verifier key id does not match the key")
    text, _, signatures = note.partition("\n\n")
    text += "\n"
    good = False
    for line in signatures.split("\n"):
        if not line.startswith("\u2014 " + name + " "):
            continue
        sig = base64.b64decode(line.rsplit(" ", 1)[1])
        if sig[:4] != keyid:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(raw[1:]).verify(sig[4:], text.encode())
        except InvalidSignature:
            raise BadBundle("checkpoint signature is invalid") from None
        good = True
    if not good:
        raise BadBundle("checkpoint carries no signature by the key")
    origin, size, root = text.split("\n")[:3]
    return origin, int(size), base64.b64decode(root)


def tile_name(n: int) -> str:
    """tlog-tiles: N as 3-digit path elements, each but the last prefixed with x."""
    digits = f"{n:03d}"
    digits = "0" * (-len(digits) % 3) + digits
    parts = [digits[i:i + 3] for i in range(0, len(digits), 3)]
    return "/".join(["x" + p for p in parts[:-1]] + [parts[-1]])


def _tile(root: Path, kind: str, n: int, width: int) -> bytes:
    rel = f"tile/{kind}/{tile_name(n)}" + ("" if width == WIDTH else f".p/{width}")
    try:
        return (root / rel).read_bytes()
    except OSError:
        raise BadBundle(f"{rel} missing") from None


def verify(bundle: Path, vkey: str) -> tuple[int, bytes]:
    """(size, root) if every entry hashes to its level-0 tile, every tile to the level above, and the
    leaves to the root the checkpoint signs; BadBundle otherwise."""
    _, size, root = checkpoint((bundle / "checkpoint").read_text(), vkey)
    leaves: list[bytes] = []
    for n in range((size + WIDTH - 1) // WIDTH):
        width = min(WIDTH, size - n * WIDTH)
        data = _tile(bundle, "entries", n, width)
        hashes = _tile(bundle, "0", n, width)
        at = 0
        for i in range(width):
            length = int.from_bytes(data[at:at + 2], "big")
            entry = data[at + 2:at + 2 + length]
            at += 2 + length
            if len(entry) != length or _h(b"\x00" + entry) != hashes[32 * i:32 * i + 32]:
                raise BadBundle(f"entry {n * WIDTH + i} does not match its leaf hash")
        if at != len(data) or len(hashes) != 32 * width:
            raise BadBundle(f"tile {n} has the wrong length")
        leaves += [hashes[i:i + 32] for i in range(0, len(hashes), 32)]
    level, below = 1, leaves
    while len(below) >= WIDTH:  # each hash of level L is the MTH of a full tile of level L-1
        count = len(below) // WIDTH
        above: list[bytes] = []
        for n in range((count + WIDTH - 1) // WIDTH):
            width = min(WIDTH, count - n * WIDTH)
            tile = _tile(bundle, str(level), n, width)
            for i in range(width):
                j = n * WIDTH + i
                if tile[32 * i:32 * i + 32] != mth(below[j * WIDTH:(j + 1) * WIDTH]):
                    raise BadBundle(f"tile {level}/{n} hash {i} is not the root of the tile below")
            above += [tile[i:i + 32] for i in range(0, len(tile), 32)]
        level, below = level + 1, above
    if mth(leaves) != root:
        raise BadBundle("the tiles do not give the root the checkpoint signs")
    return size, root
