"""Inclusion and consistency proofs (RFC 9162 §2.1.3.1, §2.1.4.1) from stored hashes, never a rebuilt tree.

The stored hashes are the entries of C2SP tlog-tiles: at level L, entry j is
the root of the complete subtree of 256^L leaves starting at leaf j * 256^L.
Level 0 is the leaf hashes, stored with the events; entries of the levels
above are stored one row each as they complete (32 bytes per 256 events at
level 1), and a tile is a range of them. Any complete subtree of height
h = 8L + r is then the root of 2^r consecutive level-L entries inside one
tile. A full tile's own interior (its 254 nodes of heights 1..7, 8 KB) is
stored with it as it completes, so a proof reads one row per tile it
crosses and hashes nothing there; only the growing right edge (and a tile
stored before interiors were kept) is hashed from its entries, at most 255
nodes per tile. A proof for a tree of any size so reads O(log n) rows.

The verifier (`proofcheck.py`) is written separately, from the RFC's
verification algorithms, and shares no code with this prover.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .merkle import EMPTY_ROOT, node_hash


def perfect_root(hashes: list[bytes]) -> bytes:
    """MTH of a power-of-two number of hashes, level by level (no recursion: tiles are hashed on every fill)."""
    sha = hashlib.sha256
    level = hashes
    while len(level) > 1:
        level = [sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]
    return level[0]

TILE = 256
TILE_HEIGHT = 8
HASH = 32


def pyramid(hashes: list[bytes]) -> tuple[bytes, bytes]:
    """The root of a full tile's 256 entries and its interior: heights 1..7 in order, each left to right.

    Computed with the same hashes as `perfect_root` (the tile's root is needed
    anyway), so keeping the interior costs its bytes only.
    """
    sha = hashlib.sha256
    level, inner = hashes, []
    while len(level) > 1:
        level = [sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]
        inner.append(b"".join(level))
    return level[0], b"".join(inner[:-1])


def inner_node(inner: bytes, height: int, pos: int) -> bytes:
    """Node `pos` (from the left) at `height` (1..7) of a tile's stored interior."""
    at = (TILE - (TILE >> (height - 1)) + pos) * HASH  # the heights below hold 128 + 64 + ... nodes
    return inner[at:at + HASH]



class StoredTree:
    """Subtree hashes of a log from its stored nodes and leaf hashes.

    `nodes(level, start, end)` returns the stored level-`level` entries
    (level >= 1) from index `start` on, in order, as far as they run without
    a gap (possibly none); `leaves(start, end)` the leaf hashes (level 0);
    `inner(level, index)` the stored interior of the full tile `index` of
    that level, or None (not full yet, or stored before interiors were kept).
    """

    def __init__(self, nodes: Callable[[int, int, int], list[bytes]],
                 leaves: Callable[[int, int], list[bytes]],
                 inner: Callable[[int, int], bytes | None] | None = None,
                 memo: Callable[[int, int, Callable[[], bytes]], bytes] | None = None) -> None:
        self._nodes = nodes
        self._leaves = leaves
        self._inner = inner
        self._memo = memo

    def entries(self, level: int, start: int, end: int) -> list[bytes]:
        """Level-`level` entries [start, end); each the root of a complete subtree of 256^level leaves."""
        if level == 0:
            return self._leaves(start, end)
        stored = self._nodes(level, start, end)
        if len(stored) == end - start:
            return stored
        return [*stored, *(perfect_root(self.entries(level - 1, j * TILE, (j + 1) * TILE))
                           for j in range(start + len(stored), end))]

    def complete(self, height: int, index: int) -> bytes:
        """The root of the complete subtree of 2^height leaves starting at leaf index * 2^height."""
        if self._memo is not None:
            return self._memo(height, index, lambda: self._complete(height, index))
        return self._complete(height, index)

    def _complete(self, height: int, index: int) -> bytes:
        level, rest = divmod(height, TILE_HEIGHT)
        if rest == 0:
            return self.entries(level, index, index + 1)[0]
        per_tile = TILE >> rest  # nodes of this height in one tile
        if self._inner is not None:
            stored = self._inner(level, index // per_tile)
            if stored:
                return inner_node(stored, rest, index % per_tile)
        span = 1 << rest
        entries = self.entries(level, index * span, (index + 1) * span)
        if len(entries) != span:
            raise ValueError("subtree outside the stored log")  # never a root of fewer leaves (it is memoised)
        return perfect_root(entries)

    def subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range the RFC's recursion produces: `start` aligned to the split."""
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and start % n == 0:
            return self.complete(n.bit_length() - 1, start // n)
        k = 1 << ((n - 1).bit_length() - 1)
        return node_hash(self.subtree(start, start + k), self.subtree(start + k, end))

    def root(self, size: int) -> bytes:
        return self.subtree(0, size)

    def inclusion(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[0:size]), bottom-up."""
        if not 0 <= index < size:
            raise ValueError("index outside the tree")
        return self._path(index, 0, size)

    def _path(self, m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = 1 << ((n - 1).bit_length() - 1)
        if m < start + k:
            return [*self._path(m, start, start + k), self.subtree(start + k, end)]
        return [*self._path(m, start + k, end), self.subtree(start, start + k)]

    def consistency(self, first: int, second: int) -> list[bytes]:
        """PROOF(first, D[0:second]) for 0 < first <= second."""
        if not 0 < first <= second:
            raise ValueError("sizes out of order")
        return self._subproof(first, 0, second, True)

    def _subproof(self, m: int, start: int, end: int, whole: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if whole else [self.subtree(start, end)]
        k = 1 << ((n - 1).bit_length() - 1)
        if m <= k:
            return [*self._subproof(m, start, start + k, whole), self.subtree(start + k, end)]
        return [*self._subproof(m - k, start + k, end, False), self.subtree(start, start + k)]


class NodeCache:
    """Complete ranges and subtree roots of the tree, shared by every request: once complete, never changed.

    A proof reads about a dozen ranges (leaf hashes within a tile, entries of
    the levels above, tiles' interiors) and hashes the complete subtrees of
    the growing right edge; most are the same for every proof of a growing
    log (the left subtrees, the right edge of one size). Only complete ranges
    are kept, never the growing tail, and at most `entries` items, least
    recently used first out.
    """

    def __init__(self, entries: int = 4096) -> None:
        self._max = entries
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, int, int, int], Any] = OrderedDict()

    def _get(self, key: tuple[str, int, int, int], read: Callable[[], Any], keep: Callable[[Any], bool]) -> Any:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        value = read()
        if keep(value):
            with self._lock:
                self._items[key] = value
                if len(self._items) > self._max:
                    self._items.popitem(last=False)
        return value

    def tree(self, nodes: Callable[[int, int, int], list[bytes]],
             leaves: Callable[[int, int], list[bytes]],
             inner: Callable[[int, int], bytes | None] | None = None) -> StoredTree:
        def whole(level: int, a: int, b: int) -> Callable[[list[bytes]], bool]:
            return lambda got: len(got) == b - a

        return StoredTree(
            lambda level, a, b: self._get(("range", level, a, b), lambda: nodes(level, a, b), whole(level, a, b)),
            lambda a, b: self._get(("range", 0, a, b), lambda: leaves(a, b), whole(0, a, b)),
            None if inner is None else
            lambda level, i: self._get(("inner", level, i, 0), lambda: inner(level, i), lambda got: bool(got)),
            # A complete subtree's root: computed only from complete ranges, so it never changes.
            lambda height, i, make: self._get(("root", height, i, 0), make, lambda got: True))


def contiguous(start: int, rows: Iterable[Sequence[Any]]) -> list[bytes]:
    """The hashes of (index, hash) rows in index order from `start`, up to the first missing index."""
    out: list[bytes] = []
    for idx, h in rows:
        if int(idx) != start + len(out):
            break
        out.append(bytes(h))
    return out


def new_nodes(old_size: int, new_size: int, leaves: Callable[[int, int], list[bytes]],
              nodes: Callable[[int, int, int], list[bytes]]) -> list[tuple[int, int, bytes, bytes]]:
    """The entries (level >= 1) that become complete as the log grows from old_size to new_size.

    (level, index, hash, inner) each: the root of the 256 entries one level
    down (level 1: of 256 leaf hashes), and the interior of that full tile
    (tile `index` of level - 1, see `pyramid`). Level 0 is the leaf hashes themselves,
    stored with the events. `leaves` and `nodes` read what is stored (this
    commit's events included); entries made here feed the level above.
    """
    made: dict[tuple[int, int], bytes] = {}
    inners: dict[tuple[int, int], bytes] = {}

    def known(level: int, start: int, end: int) -> list[bytes]:
        out = nodes(level, start, end)
        for j in range(start + len(out), end):
            if (level, j) not in made:
                break
            out.append(made[(level, j)])
        return out

    tree = StoredTree(known, leaves)  # computes whatever is not stored (a gap costs time, never correctness)
    level, span = 1, TILE  # leaves under one entry at this level
    while new_size // span > old_size // span:
        for index in range(old_size // span, new_size // span):
            made[(level, index)], inners[(level, index)] = pyramid(
                tree.entries(level - 1, index * TILE, (index + 1) * TILE))
        level, span = level + 1, span * TILE
    return [(lv, idx, h, inners[(lv, idx)]) for (lv, idx), h in sorted(made.items())]
