"""The compliance report's figures (issue 25, "figures that can be recounted"), each one pure function of audit events.

The gateway computes the report from the events it stores; `custos audit
compliance-report --verify` fetches the same events verified by proof and runs
these same functions, so every figure is checked against the signed log, not
trusted. The inputs are leaf dicts (the Merkle leaves, parsed) plus what the
log cannot say and the report therefore states: the kind of each recipient
organisation and the conduct caps it counted against.

Which events mean what (decided here, written down in docs/regulators.md):
- a release is an allowed GetCase or PullCases event with fields, to an organisation other than the case's
  owning lender (`lender` key); its label is `provided` when the rule carries `;label=provided` (reads.py
  writes it for a read through a provided mandate), else `entrusted`;
- a refusal is any event with decision `deny`;
- consent and notice events are the owning lender's `SetConsent` and `RecordNotice` allow events of the case,
  earlier in the log than the case's first release in the period;
- an erasure is an allow event whose rule starts `erasure:`; one made by the retention run (`RetentionPurge`)
  is a purge;
- a contact is an allowed `OpenContact` event; its jurisdiction is its rule's (`<J>.allow`), its local day the
  day of its time in its `zone`; it is connected when its outcome (`RecordOutcome`, rule
  `contact.outcome:<result>`, same `contact_id`) has a result the jurisdiction counts as connected.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..model import stored_time
from .conduct import ConductRules

Event = Mapping[str, Any]

RELEASE_METHODS = ("GetCase", "PullCases")
PROVIDED_MARK = ";label=provided"
CONSENT_METHOD = "SetConsent"
NOTICE_METHOD = "RecordNotice"
ERASURE_RULE = "erasure:"
PURGE_METHOD = "RetentionPurge"
OPEN_METHOD = "OpenContact"
OUTCOME_METHOD = "RecordOutcome"
OUTCOME_RULE = "contact.outcome:"
# Caps the log alone can recount: a `target` cap counts per number dialled, and the log never names a number.
RECOUNTED_SCOPES = ("borrower", "case")
# The figures, in the report's order: what --verify recomputes and compares.
FIGURES = ("releases", "refusals", "coverage", "erasures", "purges", "conduct")


def caps_statement(conduct: Mapping[str, ConductRules]) -> dict[str, Any]:
    """The caps a report counts against, as the report states them (JSON), per jurisdiction."""
    return {j: {"connected_results": sorted(r.connected_results),
                "caps": [{"id": c.id, "scope": c.scope, "count": c.count, "channels": sorted(c.channels),
                          "parties": sorted(c.parties), "limit": c.limit, "days": c.days} for c in r.caps]}
            for j, r in sorted(conduct.items())}


def in_period(events: Iterable[Event], start: str, end: str, size: int, lender: str = "") -> list[Event]:
    """The events of [start, end) below tree size `size`; for a lender's report only those naming it."""
    return [e for e in events if start <= str(e.get("time", "")) < end and int(e.get("seq", size)) < size
            and (not lender or e.get("lender") == lender)]


def released(e: Event) -> bool:
    return (e.get("decision") == "allow" and e.get("method") in RELEASE_METHODS and bool(e.get("fields"))
            and e.get("org") != e.get("lender"))


def releases(period: Sequence[Event], kinds: Mapping[str, str]) -> list[dict[str, Any]]:
    """Releases per route: recipient kind, purpose, label, field set -> count."""
    routes: Counter[tuple[str, str, str, tuple[str, ...]]] = Counter()
    for e in period:
        if released(e):
            label = "provided" if PROVIDED_MARK in str(e.get("rule", "")) else "entrusted"
            routes[kinds.get(str(e.get("org", "")), ""), str(e.get("purpose", "")), label,
                   tuple(sorted(map(str, e.get("fields") or ())))] += 1
    return [{"kind": k, "purpose": p, "label": lb, "fields": list(f), "count": n}
            for (k, p, lb, f), n in sorted(routes.items())]


def release_orgs(period: Sequence[Event]) -> list[str]:
    """The recipients whose kind the report must state."""
    return sorted({str(e.get("org", "")) for e in period if released(e)})


def refusals(period: Sequence[Event]) -> dict[str, Any]:
    """Refusals per code, and per organisation and code."""
    by_code: Counter[str] = Counter()
    by_org: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for e in period:
        if e.get("decision") == "deny":
            by_code[str(e.get("code", ""))] += 1
            by_org[str(e.get("org", ""))][str(e.get("code", ""))] += 1
    return {"by_code": dict(sorted(by_code.items())),
            "by_org": {org: dict(sorted(codes.items())) for org, codes in sorted(by_org.items())}}


def coverage(period: Sequence[Event], history: Iterable[Event]) -> dict[str, int]:
    """Of the cases with a release in the period, how many had a consent / a notice event before the first.

    `history`: events that may precede the period (the cases' consent and notice events); any superset works.
    """
    first: dict[tuple[str, str], int] = {}
    for e in period:
        if released(e):
            key = (str(e.get("lender", "")), str(e.get("case_id", "")))
            first[key] = min(first.get(key, int(e["seq"])), int(e["seq"]))
    had: dict[str, set[tuple[str, str]]] = {CONSENT_METHOD: set(), NOTICE_METHOD: set()}
    for e in history:
        method = e.get("method")
        if method in had and e.get("decision") == "allow" and e.get("org") == e.get("lender"):
            key = (str(e.get("lender", "")), str(e.get("case_id", "")))
            if key in first and int(e["seq"]) < first[key]:
                had[str(method)].add(key)
    return {"released_cases": len(first), "with_consent": len(had[CONSENT_METHOD]),
            "with_notice": len(had[NOTICE_METHOD])}


def _erasure(e: Event) -> dict[str, Any]:
    rule = str(e.get("rule", ""))
    return {"seq": e.get("seq"), "time": e.get("time"), "lender": e.get("lender", ""), "case_id": e.get("case_id"),
            "borrower_id": e.get("borrower_id"), "reason": rule[len(ERASURE_RULE):].removeprefix("reason=")}


def erasures(period: Sequence[Event]) -> list[dict[str, Any]]:
    """Erasures done on request (or as scheduled): their events, pseudonymous ids only."""
    return [_erasure(e) for e in period if e.get("decision") == "allow"
            and str(e.get("rule", "")).startswith(ERASURE_RULE) and e.get("method") != PURGE_METHOD]


def purges(period: Sequence[Event]) -> list[dict[str, Any]]:
    """Erasures the retention run made (purges): their events."""
    return [_erasure(e) for e in period if e.get("decision") == "allow"
            and str(e.get("rule", "")).startswith(ERASURE_RULE) and e.get("method") == PURGE_METHOD]


def _local_day(e: Event) -> date | None:
    """The contact's local day in its zone; None when the event names no zone, or one that is not a zone."""
    zone = e.get("zone")
    if not isinstance(zone, str) or not zone:
        return None
    try:
        return stored_time(str(e.get("time", ""))).astimezone(ZoneInfo(zone)).date()
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        return None


def conduct(period: Sequence[Event], caps: Mapping[str, Any]) -> dict[str, Any]:
    """The conduct recount: per borrower and local day, contacts and connected calls; every cap exceeded.

    A cap over several days counts the contacts of the period only (the report's window is the period).
    """
    results: dict[str, str] = {}
    for e in period:
        rule = str(e.get("rule", ""))
        if e.get("method") == OUTCOME_METHOD and e.get("decision") == "allow" and rule.startswith(OUTCOME_RULE):
            results[str(e.get("contact_id", ""))] = rule[len(OUTCOME_RULE):].split(";", 1)[0]
    contacts: list[tuple[Event, str, date, bool]] = []
    unzoned = 0
    for e in period:
        rule = str(e.get("rule", ""))
        if e.get("method") != OPEN_METHOD or e.get("decision") != "allow" or not rule.endswith(".allow"):
            continue
        day = _local_day(e)
        if day is None:
            unzoned += 1
            continue
        j = rule[:-len(".allow")]
        connected = results.get(str(e.get("contact_id", ""))) in (caps.get(j) or {}).get("connected_results", ())
        contacts.append((e, j, day, connected))
    days: dict[tuple[str, str, str], dict[str, Any]] = {}
    for e, j, day, connected in contacts:
        key = (str(e.get("lender", "")), str(e.get("borrower_id", "")), day.isoformat())
        row = days.setdefault(key, {"lender": key[0], "borrower_id": key[1], "day": key[2], "jurisdiction": j,
                                    "contacts": 0, "channels": {}, "connected_calls": 0})
        row["contacts"] += 1
        channel = str(e.get("channel", ""))
        row["channels"][channel] = row["channels"].get(channel, 0) + 1
        row["connected_calls"] += channel == "call" and connected
    breaches: list[dict[str, Any]] = []
    not_recounted: list[str] = []
    for j, stated in sorted(caps.items()):
        for cap in stated.get("caps", ()):
            name = f"{j}.cap.{cap['id']}"
            if cap["scope"] not in RECOUNTED_SCOPES:
                not_recounted.append(name)
                continue
            breaches += _cap_breaches(j, name, cap, contacts)
    for row in days.values():
        row["channels"] = dict(sorted(row["channels"].items()))
    return {"borrower_days": [days[k] for k in sorted(days)], "breaches": sorted(
        breaches, key=lambda b: (b["lender"], b["borrower_id"], b["day"], b["cap"], b.get("case_id", ""))),
        "not_recounted": not_recounted, "without_zone": unzoned}


def _cap_breaches(j: str, name: str, cap: Mapping[str, Any],
                  contacts: Sequence[tuple[Event, str, date, bool]]) -> list[dict[str, Any]]:
    """Every (scope, local day) on which the contacts the cap counts, over its days, exceed its limit."""
    groups: defaultdict[tuple[str, str, str], list[date]] = defaultdict(list)
    for e, cj, day, connected in contacts:
        if (cj == j and e.get("channel") in cap["channels"] and e.get("party") in cap["parties"]
                and (cap["count"] != "connected" or connected)):
            case = str(e.get("case_id", "")) if cap["scope"] == "case" else ""
            groups[str(e.get("lender", "")), str(e.get("borrower_id", "")), case].append(day)
    out: list[dict[str, Any]] = []
    span = timedelta(days=int(cap["days"]) - 1)
    for (lender, borrower, case), dates in groups.items():
        for day in sorted(set(dates)):
            count = sum(1 for d in dates if day - span <= d <= day)
            if count > int(cap["limit"]):
                out.append({"lender": lender, "borrower_id": borrower, **({"case_id": case} if case else {}),
                            "day": day.isoformat(), "jurisdiction": j, "cap": name, "count": count,
                            "limit": int(cap["limit"])})
    return out


def figures(events: Sequence[Event], *, start: str, end: str, size: int, lender: str, kinds: Mapping[str, str],
            caps: Mapping[str, Any]) -> dict[str, Any]:
    """Every figure of the report from `events` (any superset of the period's and its cases' earlier events)."""
    period = in_period(events, start, end, size, lender)
    history = [e for e in events if int(e.get("seq", size)) < size and (not lender or e.get("lender") == lender)]
    return {"releases": releases(period, kinds), "refusals": refusals(period), "coverage": coverage(period, history),
            "erasures": erasures(period), "purges": purges(period), "conduct": conduct(period, caps)}


def differences(report: Mapping[str, Any], recount: Mapping[str, Any]) -> list[str]:
    """The figures whose recount differs from the report (names only: a figure may hold pseudonymous ids)."""
    return [name for name in FIGURES if report.get(name) != recount.get(name)]
