"""Regulator-side verification of the audit log: trust nothing but the pinned key.

Recomputes every leaf hash from the event bytes, rebuilds the RFC 6962 root,
checks the checkpoint signature and that the log is consistent with the last
checkpoint this verifier saw (its state): the old tree must be a prefix of the
new one. Editing, deleting or reordering any event breaks one of these. A
state with the tree's frontier lets the next run read only the new events,
with a consistency proof (RFC 9162 §2.1.4) standing for the old ones.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .merkle import Frontier, Verifier, canonical_json, leaf_hash, parse_verifier_key, verify_checkpoint
from .proofcheck import verify_consistency


class VerifyError(Exception):
    pass


@dataclass(frozen=True)
class VerifiedLog:
    size: int
    root: bytes
    origin: str
    frontier: Frontier
    checkpoint: str
    read: int  # events read and re-hashed by this run

    def state(self) -> dict[str, object]:
        return {"origin": self.origin, "size": self.size, "root": base64.b64encode(self.root).decode(),
                "frontier": self.frontier.dumps(), "checkpoint": self.checkpoint}


def check_event(leaf: bytes, position: int) -> None:
    """An event's leaf as the log writes it: canonical JSON carrying its own position as `seq`."""
    try:
        obj = json.loads(leaf)
    except ValueError:
        raise VerifyError(f"event {position} altered (not JSON)") from None
    if not isinstance(obj, dict) or obj.get("seq") != position:
        raise VerifyError(f"event {position} altered (it carries the wrong sequence number)")
    if canonical_json(obj) != leaf:
        raise VerifyError(f"event {position} altered (not in canonical form)")


def resume_from(state: dict[str, object] | None) -> int:
    """Where a run with this state starts reading events: after what it verified (0 without a frontier)."""
    return int(state["size"]) if state and "frontier" in state else 0  # type: ignore[call-overload]


def sample_seqs(verified: int, k: int) -> list[int]:
    """min(k, n) of the n events verified on earlier runs, drawn uniformly without replacement.

    From the operating system's random source (secrets.SystemRandom), so an
    operator cannot predict which events a run re-reads. One edited event
    among n is found with probability k/n per run; m edited events with at
    least 1 - (1 - k/n)^m.
    """
    return sorted(secrets.SystemRandom().sample(range(verified), min(k, verified)))


def verify_log(events: Iterable[tuple[int, bytes]], note: str, vkey: str,
               state: dict[str, object] | None = None,
               consistency: Callable[[int, int], Sequence[bytes]] | None = None,
               cosigned: Sequence[str] = ()) -> VerifiedLog:
    """Verify the log up to the signed checkpoint; with a state that has a frontier, only what was added.

    Incremental (the state of an earlier run and `consistency`, which fetches a
    proof between two sizes): the checkpoint's signature, a consistency proof
    from the verified size to the new one against both roots, and the new
    events (`events` must start at the verified size) extending the saved
    frontier to the signed root. Otherwise every event from the first.
    """
    try:
        verifier = parse_verifier_key(vkey)
        cp = verify_checkpoint(note, verifier)
    except ValueError as exc:
        raise VerifyError(str(exc)) from None
    old_size = int(state["size"]) if state else 0  # type: ignore[call-overload]
    old_root = base64.b64decode(str(state["root"])) if state else b""
    if state and state.get("origin") != cp.origin:
        raise VerifyError("checkpoint is for another log than the saved state")
    if old_size > cp.size:
        raise VerifyError(f"log rolled back: the checkpoint covers {cp.size} events, {old_size} were verified before")
    incremental = resume_from(state) > 0 and consistency is not None
    if incremental:
        assert state is not None
        frontier = Frontier.loads(old_size, str(state["frontier"]))
        if frontier.root() != old_root:
            raise VerifyError("the saved state is damaged (its frontier does not give its root)")
    else:
        frontier = Frontier()
    start = frontier.size
    base = frontier.copy()
    hashes: list[bytes] = []  # this run's leaf hashes: to name an altered event if the root does not match
    prefix_differs = False
    for position, (seq, leaf) in enumerate(events, start=start):
        if frontier.size >= cp.size:
            break
        if seq != position:
            raise VerifyError(f"events missing: event at position {position} has sequence {seq}")
        check_event(leaf, position)
        lh = leaf_hash(leaf)
        hashes.append(lh)
        frontier.append(lh)
        if not incremental and old_size and frontier.size == old_size and frontier.root() != old_root:
            prefix_differs = True
    if frontier.size != cp.size:
        raise VerifyError(f"events missing: the checkpoint covers {cp.size} events but {frontier.size} were found")
    _check_cosigned(cosigned, verifier, cp.size, cp.root, consistency)
    if (incremental or prefix_differs) and not _extends(old_size, old_root, cp.size, cp.root, consistency):
        raise VerifyError(f"inconsistent tree: the signed log of {cp.size} events does not extend the {old_size} "
                          f"verified before (history rewritten, or a split view)")
    if frontier.root() != cp.root:
        altered = _locate(base, hashes, cp.size, cp.root, consistency)
        if altered is not None:
            raise VerifyError(f"event {altered} altered: the events do not hash to the signed root")
        raise VerifyError(f"an event between {start} and {cp.size - 1} was altered: the events do not hash to the "
                          f"signed root")
    return VerifiedLog(cp.size, cp.root, cp.origin, frontier, note, frontier.size - start)


def _check_cosigned(cosigned: Sequence[str], verifier: Verifier, size: int, root: bytes,
                    consistency: Callable[[int, int], Sequence[bytes]] | None) -> None:
    """Each checkpoint a regulator cosigned (and this log signed) must be extended by the one verified now.

    A log that signed two checkpoints neither of which extends the other has
    shown two views of its history; the cosignature makes the first one
    evidence. A note this log did not sign proves nothing and is skipped.
    """
    for text in cosigned:
        try:
            cp = verify_checkpoint(text, verifier)
        except ValueError:
            continue
        names = [line[2:].split(" ", 1)[0] for line in text.splitlines() if line.startswith("\u2014 ")]
        by = next((n for n in names if n != cp.origin), "a regulator")
        if cp.size > size:
            raise VerifyError(f"log rolled back: the checkpoint covers {size} events, {by} cosigned {cp.size}")
        if not _extends(cp.size, cp.root, size, root, consistency):
            raise VerifyError(f"split view: the signed log of {size} events does not extend the checkpoint of "
                              f"{cp.size} events that {by} cosigned")


def _extends(old_size: int, old_root: bytes, size: int, root: bytes,
             consistency: Callable[[int, int], Sequence[bytes]] | None) -> bool:
    """Whether the signed tree (size, root) extends the one verified before, by a consistency proof."""
    if old_size == size:
        return old_root == root
    if consistency is None:
        return False
    try:
        return verify_consistency(old_size, size, old_root, root, consistency(old_size, size))
    except Exception:  # noqa: BLE001 - a gateway that cannot give the proof has not shown consistency
        return False


def _locate(base: Frontier, hashes: list[bytes], size: int, root: bytes,
            consistency: Callable[[int, int], Sequence[bytes]] | None) -> int | None:
    """The first altered event: the longest prefix whose root the signed tree is consistent with, plus one.

    Binary search over prefix sizes with consistency proofs against the signed
    root (which the gateway cannot forge without the signing key): the first
    `k` events are intact exactly when their root is consistent with it.
    """
    if consistency is None:
        return None

    def intact(k: int) -> bool:
        prefix = base.copy()
        for lh in hashes[:k - base.size]:
            prefix.append(lh)
        if k == size:
            return prefix.root() == root
        try:
            return verify_consistency(k, size, prefix.root(), root, consistency(k, size))
        except Exception:  # noqa: BLE001 - a proof the gateway cannot give locates nothing
            return False

    lo, hi = max(base.size, 1), size  # the longest intact prefix is searched in [lo, hi]
    if not intact(lo):
        return lo - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if intact(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo if lo < size else None
