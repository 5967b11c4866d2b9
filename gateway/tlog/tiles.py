"""The audit log as a C2SP tlog-tiles bundle on disk: write it from the events, verify it with nothing else.

Layout (https://c2sp.org/tlog-tiles), relative to the bundle directory:

    checkpoint                      the signed note (C2SP tlog-checkpoint) the bundle is cut at
    tile/<L>/<N>[.p/<W>]            hash tiles: 256 hashes (8,192 bytes) when full, W when partial
    tile/entries/<N>[.p/<W>]        entry bundles: each entry a big-endian uint16 length, then the leaf bytes
    events.jsonl                    the same leaf bytes, one per line, in log order
    audit.vkey                      the log's verifier key

<N> is written in 3-digit path elements, all but the last prefixed with x
(1234067 -> x001/x234/067). At level 0 a tile holds leaf hashes; above, each
hash is the Merkle Tree Hash of a full tile one level down. The partial tile
at level l of a tree of size s has floor(s / 256**l) mod 256 entries; empty
tiles are not written. So any tlog-tiles client (Tessera's fsck, for one)
checks a bundle with the verifier key and origin alone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .merkle import CheckpointData, Frontier, leaf_hash, parse_verifier_key, verify_checkpoint
from .proofs import perfect_root
from .verify import VerifyError, check_event

TILE = 256
HASH = 32
MAX_ENTRY = 0xFFFF


class BundleError(Exception):
    """What is wrong with a bundle, in words that name the file or the event."""


def encode_index(n: int) -> str:
    parts = []
    while True:
        parts.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    parts.reverse()
    return "/".join([*("x" + p for p in parts[:-1]), parts[-1]])


def tile_path(level: int | str, index: int, width: int = TILE) -> str:
    suffix = "" if width == TILE else f".p/{width}"
    return f"tile/{level}/{encode_index(index)}{suffix}"


def _write(root: Path, rel: str, data: bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_bundle(out: Path, checkpoint: str, vkey: str, leaves: Iterable[bytes]) -> tuple[int, bytes]:
    """Write the bundle for `checkpoint` from exactly its leaves (streamed); (size, root). Refuses a mismatch.

    Written into a new directory with a random name beside OUT (.OUT.XXXX.part,
    0700) and renamed when complete and checked, so OUT is either a whole
    bundle or absent; whatever already sits at a fixed name such as OUT.part
    (a link elsewhere, someone's files) is neither followed nor removed.
    """
    cp = verify_checkpoint(checkpoint, parse_verifier_key(vkey))
    if out.exists() or out.is_symlink():
        raise BundleError(f"{out} exists: give a new directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    try:
        return _write_into(tmp, out, cp, checkpoint, vkey, leaves)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_into(tmp: Path, out: Path, cp: CheckpointData, checkpoint: str, vkey: str,
                leaves: Iterable[bytes]) -> tuple[int, bytes]:
    frontier = Frontier()
    pending: list[list[bytes]] = [[]]  # per level: hashes of the tile being filled
    bundle = bytearray()
    with open(tmp / "events.jsonl", "wb") as events:
        for leaf in leaves:
            if frontier.size >= cp.size:
                break
            if len(leaf) > MAX_ENTRY:
                raise BundleError(f"event {frontier.size} is longer than an entry bundle can hold (65,535 bytes)")
            if b"\n" in leaf:
                raise BundleError(f"event {frontier.size} is not one line of canonical JSON")
            events.write(leaf + b"\n")
            bundle += len(leaf).to_bytes(2, "big") + leaf
            lh = leaf_hash(leaf)
            frontier.append(lh)
            pending[0].append(lh)
            if len(pending[0]) == TILE:
                index = frontier.size // TILE - 1
                _write(tmp, tile_path("entries", index), bytes(bundle))
                bundle = bytearray()
                _full(tmp, pending, 0, index)
    if frontier.size != cp.size:
        raise BundleError(f"the checkpoint covers {cp.size} events but {frontier.size} were received")
    if frontier.root() != cp.root:
        raise BundleError("the events received do not hash to the checkpoint's root")
    size = cp.size
    if size % TILE:
        _write(tmp, tile_path("entries", size // TILE, size % TILE), bytes(bundle))
    for level, hashes in enumerate(pending):
        width = (size // TILE**level) % TILE
        if width:
            assert len(hashes) == width
            _write(tmp, tile_path(level, size // TILE ** (level + 1), width), b"".join(hashes))
    (tmp / "checkpoint").write_text(checkpoint)
    (tmp / "audit.vkey").write_text(vkey.strip() + "\n")
    os.replace(tmp, out)
    return size, cp.root


def _full(root: Path, pending: list[list[bytes]], level: int, index: int) -> None:
    """A tile at `level` is full: write it and carry its hash one level up (which may fill that one)."""
    hashes = pending[level]
    _write(root, tile_path(level, index), b"".join(hashes))
    pending[level] = []
    if len(pending) == level + 1:
        pending.append([])
    pending[level + 1].append(perfect_root(hashes))
    if len(pending[level + 1]) == TILE:
        _full(root, pending, level + 1, index // TILE)


@dataclass(frozen=True)
class BundleCheck:
    size: int
    root: bytes
    origin: str


def _read(root: Path, rel: str, what: str) -> bytes:
    try:
        return (root / rel).read_bytes()
    except OSError:
        raise BundleError(f"{what} missing: {rel}") from None


def _entries(data: bytes, rel: str, expected: int) -> Iterator[bytes]:
    pos, count = 0, 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise BundleError(f"entry bundle {rel} is truncated")
        n = int.from_bytes(data[pos:pos + 2], "big")
        if pos + 2 + n > len(data):
            raise BundleError(f"entry bundle {rel} is truncated")
        yield data[pos + 2:pos + 2 + n]
        pos += 2 + n
        count += 1
    if count != expected:
        raise BundleError(f"entry bundle {rel} holds {count} entries, the checkpoint needs {expected}")


def verify_bundle(root: Path, vkey: str) -> BundleCheck:
    """Check a bundle offline against the pinned key: the signature, every tile, every entry, events.jsonl."""
    note = _read(root, "checkpoint", "the checkpoint").decode("utf-8", "replace")
    try:
        cp = verify_checkpoint(note, parse_verifier_key(vkey))
    except ValueError as exc:
        raise BundleError(f"the checkpoint does not verify with the key: {exc}") from None
    size = cp.size
    frontier = Frontier()
    above: list[list[bytes]] = []  # per level >= 1: hashes computed from the full tiles below, to compare
    try:
        lines = (root / "events.jsonl").open("rb")
    except OSError:
        raise BundleError("events.jsonl missing") from None
    with lines:
        for index in range(-(-size // TILE)):
            width = min(TILE, size - index * TILE)
            rel = tile_path("entries", index, width)
            tile_rel = tile_path(0, index, width)
            tile = _read(root, tile_rel, "a level-0 tile")
            if len(tile) != width * HASH:
                raise BundleError(f"tile {tile_rel} has {len(tile) // HASH} hashes, the checkpoint needs {width}")
            for i, entry in enumerate(_entries(_read(root, rel, "an entry bundle"), rel, width)):
                seq = index * TILE + i
                lh = leaf_hash(entry)
                if lh != tile[i * HASH:(i + 1) * HASH]:
                    raise BundleError(f"event {seq} altered: entry bundle {rel} does not hash to tile {tile_rel}")
                line = lines.readline()
                if line.rstrip(b"\n") != entry:
                    raise BundleError(f"event {seq} in events.jsonl differs from the entry bundle"
                                      if line else f"events.jsonl ends before event {seq}")
                _check_event(entry, seq)
                frontier.append(lh)
            if width == TILE:
                _carry(root, above, 1, index, perfect_root([tile[i:i + HASH] for i in range(0, len(tile), HASH)]))
        if lines.readline():
            raise BundleError(f"events.jsonl holds more than the {size} events the checkpoint covers")
    for level in range(1, len(above) + 1):
        width = (size // TILE**level) % TILE
        if width:
            rel = tile_path(level, size // TILE ** (level + 1), width)
            if _read(root, rel, f"a level-{level} tile") != b"".join(above[level - 1]):
                raise BundleError(f"tile {rel} does not match the tiles below it")
    if frontier.root() != cp.root:
        raise BundleError("the entries do not hash to the checkpoint's root")
    return BundleCheck(size, cp.root, cp.origin)


def _carry(root: Path, above: list[list[bytes]], level: int, index: int, h: bytes) -> None:
    """Hash `h` of a full tile below joins level `level`; a full tile there is compared with the stored one."""
    while len(above) < level:
        above.append([])
    row = above[level - 1]
    row.append(h)
    if len(row) == TILE:
        rel = tile_path(level, index // TILE)
        if _read(root, rel, f"a level-{level} tile") != b"".join(row):
            raise BundleError(f"tile {rel} does not match the tiles below it")
        above[level - 1] = []
        _carry(root, above, level + 1, index // TILE, perfect_root(row))


def _check_event(entry: bytes, seq: int) -> None:
    try:
        check_event(entry, seq)
    except VerifyError as exc:
        raise BundleError(str(exc)) from None
