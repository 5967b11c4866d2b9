"""Regulator-side verification of the audit log: trust nothing but the pinned key.

Recomputes every leaf hash from the event bytes, rebuilds the RFC 6962 root,
checks the checkpoint signature and that the log is consistent with the last
checkpoint this verifier saw (its state): the old tree must be a prefix of the
new one. Editing, deleting or reordering any event breaks one of these.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass

from .merkle import Frontier, canonical_json, leaf_hash, parse_verifier_key, verify_checkpoint


class VerifyError(Exception):
    pass


@dataclass(frozen=True)
class VerifiedLog:
    size: int
    root: bytes
    origin: str

    def state(self) -> dict[str, object]:
        return {"origin": self.origin, "size": self.size, "root": base64.b64encode(self.root).decode()}


def verify_log(events: Iterable[tuple[int, bytes]], note: str, vkey: str,
               state: dict[str, object] | None = None) -> VerifiedLog:
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
        raise VerifyError("the log is smaller than when last verified (events deleted)")
    frontier = Frontier()
    for position, (seq, leaf) in enumerate(events):
        if frontier.size >= cp.size:
            break
        if seq != position:
            raise VerifyError(f"event at position {position} has sequence {seq} (missing or reordered)")
        try:
            obj = json.loads(leaf)
        except ValueError:
            raise VerifyError(f"event {position} is not JSON") from None
        if not isinstance(obj, dict) or obj.get("seq") != position:
            raise VerifyError(f"event {position} carries the wrong sequence number")
        if canonical_json(obj) != leaf:
            raise VerifyError(f"event {position} is not in canonical form")
        frontier.append(leaf_hash(leaf))
        if old_size and frontier.size == old_size and frontier.root() != old_root:
            raise VerifyError(f"the first {old_size} events differ from the last verified checkpoint")
    if frontier.size != cp.size:
        raise VerifyError(f"checkpoint covers {cp.size} events but {frontier.size} were found")
    if frontier.root() != cp.root:
        raise VerifyError("the events do not hash to the signed root")
    return VerifiedLog(cp.size, cp.root, cp.origin)
