"""Counting audit events per group over a half-open time range: the one definition of `audit stats`.

Pure, and the only one: the store derives from each leaf exactly the values
`group_of` reads (vault `audit_facts`, for SQL to group), the gateway counts
the log's not-yet-derived tail with `count`, and the CLI's `--verify` recounts
the verified events with `count` too. So a figure is what a reader of the
verified events computes, and a difference is a fault, never a definition.

A group key's value is the leaf's string under that key ("" when the leaf has
none, e.g. `channel` on a GetCase event, or `agent` before agents existed);
`day` and `month` are the UTC calendar buckets of the event's time.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import Code
from ..model import parse_time, rfc3339

# The leaf keys a group may be by, then the time buckets: the order the CLI's help lists them.
LEAF_KEYS = ("org", "code", "method", "purpose", "channel", "decision", "lender", "agent")
BUCKETS = {"day": 10, "month": 7}  # a prefix of the stored time (`rfc3339`: YYYY-MM-DDTHH:MM:SS.ffffffZ)
KEYS = (*LEAF_KEYS, *BUCKETS)

Group = tuple[str, ...]


def stats_keys(by: str | Sequence[str]) -> tuple[str, ...] | Code:
    """The group keys asked for ("org,code" or a list), in the order given; a key unknown or named twice is
    INVALID_ARGUMENT."""
    if isinstance(by, str):
        names = [k.strip() for k in by.split(",")] if by.strip() else []
    else:
        names = [str(k).strip() for k in by]
    if any(k not in KEYS for k in names) or len(set(names)) != len(names):
        return Code.INVALID_ARGUMENT
    return tuple(names)


def stats_range(start: str, end: str) -> tuple[str, str] | Code:
    """[start, end) in the stored time form; a time that does not parse is INVALID_TIME, an empty or reversed
    range INVALID_TIME_RANGE (a range must be named: no default that could hide what was counted)."""
    a, b = parse_time(start), parse_time(end)
    if a is None or b is None:
        return Code.INVALID_TIME
    if a >= b:
        return Code.INVALID_TIME_RANGE
    return rfc3339(a), rfc3339(b)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def group_of(event: Mapping[str, Any], by: Sequence[str]) -> Group:
    """The event's group: per key its string value, "" when absent (or not a string)."""
    time = _text(event.get("time"))
    return tuple(time[:BUCKETS[k]] if k in BUCKETS else _text(event.get(k)) for k in by)


def counted(event: Mapping[str, Any], start: str, end: str, lender: str = "") -> bool:
    """Whether the event is in [start, end) (stored time form) and, for a lender's figures, names that lender."""
    time = _text(event.get("time"))
    return start <= time < end and (not lender or event.get("lender") == lender)


def count(events: Iterable[Mapping[str, Any] | bytes], by: Sequence[str], start: str, end: str,
          lender: str = "") -> Counter[Group]:
    """Events per group among those `counted` (leaf bytes are parsed; a leaf that is not an object counts
    nowhere)."""
    out: Counter[Group] = Counter()
    for item in events:
        event = json.loads(item) if isinstance(item, (bytes, bytearray)) else item
        if isinstance(event, Mapping) and counted(event, start, end, lender):
            out[group_of(event, by)] += 1
    return out


def groups(counts: Mapping[Group, int], by: Sequence[str]) -> list[dict[str, Any]]:
    """The answer's groups, sorted by their values in key order (code point order: the same on every side);
    a group with no events is not listed."""
    return [{**dict(zip(by, key, strict=True)), "count": n} for key, n in sorted(counts.items()) if n > 0]


def document(start: str, end: str, by: Sequence[str], size: int, checkpoint: str,
             counts: Mapping[Group, int], lender: str = "") -> dict[str, Any]:
    """The stats as the API and the CLI print them; a lender's carry `lender` (what a recount keeps)."""
    listed = groups(counts, by)
    doc = {"from": start, "to": end, "by": list(by), "size": size, "checkpoint": checkpoint,
           "total": sum(g["count"] for g in listed), "groups": listed}
    return {**doc, "lender": lender} if lender else doc


def differences(claimed: Mapping[str, Any], recounted: Mapping[Group, int]) -> list[str]:
    """Where figures disagree with a recount: each differing group named by its key values (vocabulary and ids
    of organisations, never PI), sorted; [] when they agree, total included."""
    by = [str(k) for k in claimed.get("by", [])]
    theirs: dict[Group, int] = {}
    for g in claimed.get("groups", []):
        key = tuple(_text(g.get(k)) for k in by)
        theirs[key] = theirs.get(key, 0) + int(g.get("count", 0))
    out = [_name(by, key) + f": stated {theirs.get(key, 0)}, recounted {recounted.get(key, 0)}"
           for key in sorted(set(theirs) | set(recounted)) if theirs.get(key, 0) != recounted.get(key, 0)]
    total = sum(recounted.values())
    if int(claimed.get("total", -1)) != total:
        out.append(f"total: stated {claimed.get('total')}, recounted {total}")
    return out


def _name(by: Sequence[str], key: Group) -> str:
    return ",".join(f"{k}={json.dumps(v)}" for k, v in zip(by, key, strict=True)) if by else "all events"
