"""Verifying inclusion and consistency proofs, written from RFC 9162 §2.1.3.2 and §2.1.4.2 alone.

Deliberately independent of the prover (`proofs.py`): it shares only the
two hash functions of RFC 9162 §2.1.1, so a mistake in one is not repeated
in the other. Used by the CLI and by the tests' known-answer checks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]) -> bytes | None:
    """§2.1.3.2: the root the proof leads to, or None if the proof is malformed for (index, size)."""
    if index >= size or index < 0:
        return None
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    return root_from_inclusion(index, size, leaf_hash, proof) == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """§2.1.4.2, with its edge cases: equal sizes need an empty proof and equal roots."""
    if first <= 0 or first > second:
        return False
    if first == second:
        return len(proof) == 0 and first_root == second_root
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first tree is a node of the second
        path.insert(0, first_root)
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _node(c, fr)
            sr = _node(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0
