"""Inclusion and consistency proofs (RFC 9162 §2.1.3.1, §2.1.4.1) from stored hashes, never a rebuilt tree.

The stored hashes are C2SP tlog-tiles: a tile at level L holds 256 hashes,
entry j being the root of the complete subtree of 256^L leaves starting at
leaf j * 256^L (level 0: the leaf hashes). Only full tiles are stored; an
entry whose tile is not full yet is the root of a full tile one level down.
Any complete subtree of height h = 8L + r is then the root of 2^r
consecutive level-L entries, all inside one tile, so a proof for a tree of
any size reads O(log n) tiles and hashes at most 255 nodes per tile.

The verifier (`proofcheck.py`) is written separately, from the RFC's
verification algorithms, and shares no code with this prover.
"""

from __future__ import annotations

from collections.abc import Callable

from .merkle import EMPTY_ROOT, node_hash, root_of

TILE = 256
TILE_HEIGHT = 8


class StoredTree:
    """Subtree hashes of a log from `tile(level, index)` (a full tile's bytes, or None) and leaf hashes."""

    def __init__(self, tile: Callable[[int, int], bytes | None], leaves: Callable[[int, int], list[bytes]]) -> None:
        self._tile = tile
        self._leaves = leaves
        self._tiles: dict[tuple[int, int], list[bytes] | None] = {}

    def _stored(self, level: int, index: int) -> list[bytes] | None:
        key = (level, index)
        if key not in self._tiles:
            raw = self._tile(level, index)
            self._tiles[key] = None if raw is None else [raw[i:i + 32] for i in range(0, len(raw), 32)]
        return self._tiles[key]

    def entries(self, level: int, start: int, end: int) -> list[bytes]:
        """Level-`level` entries [start, end), all inside one tile; each a complete subtree's root."""
        tile, first = divmod(start, TILE)
        stored = self._stored(level, tile)
        if stored is not None:
            return stored[first:first + end - start]
        if level == 0:
            return self._leaves(start, end)
        return [root_of(self.entries(level - 1, j * TILE, (j + 1) * TILE)) for j in range(start, end)]

    def complete(self, height: int, index: int) -> bytes:
        """The root of the complete subtree of 2^height leaves starting at leaf index * 2^height."""
        level, rest = divmod(height, TILE_HEIGHT)
        span = 1 << rest
        return root_of(self.entries(level, index * span, (index + 1) * span))

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


def full_tiles(old_size: int, new_size: int, leaves: Callable[[int, int], list[bytes]],
               tile: Callable[[int, int], bytes | None]) -> list[tuple[int, int, bytes]]:
    """The tiles that become full as the log grows from old_size to new_size: (level, index, 256 hashes).

    `leaves` and `tile` read what is stored (the new events included); tiles
    made here are visible to the next level through `made`.
    """
    made: dict[tuple[int, int], bytes] = {}

    def lookup(level: int, index: int) -> bytes | None:
        return made.get((level, index)) or tile(level, index)

    out: list[tuple[int, int, bytes]] = []
    level, span = 0, TILE  # leaves per full tile at this level
    while new_size // span > old_size // span:
        for index in range(old_size // span, new_size // span):
            if level == 0:
                hashes = leaves(index * TILE, (index + 1) * TILE)
            else:
                tree = StoredTree(lookup, leaves)
                hashes = [root_of(tree.entries(level - 1, j * TILE, (j + 1) * TILE))
                          for j in range(index * TILE, (index + 1) * TILE)]
            data = b"".join(hashes)
            made[(level, index)] = data
            out.append((level, index, data))
        level, span = level + 1, span * TILE
    return out
