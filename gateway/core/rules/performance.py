"""Agency performance, counted from the audit log's events alone (pure): every figure can be recounted by anyone
who can read the log (`audit query`), with the same rules, and comes out the same.

The events counted are a lender's own (`org` = the lender): a mandate granted
(`mandate.grant:ORG[;placement]`, or `escalate:STAGE->litigation;to=ORG`),
and those of other organisations about the lender's cases (`lender` = the
lender): a contact opened (`OpenContact`, allowed), an outcome recorded
(`RecordOutcome`, allowed, rule `contact.outcome:RESULT`), any refusal
(`decision` deny, by `code`). An event without a `lender` key (a refusal
before the case was resolved: a bad id, another's contact) is nobody's
case and is not counted for any lender.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Outcomes that mean someone was reached and spoke: a conversation (the opt-outs too: somebody said so).
# no_answer, wrong_number, invalid_number and undeliverable are attempts only.
CONVERSATIONS = frozenset({"connected", "promise_to_pay", "dispute", "stop_calls", "stop_texts", "refused",
                           "has_attorney"})
PROMISE = "promise_to_pay"
OPEN_CONTACT = "OpenContact"
PLAN_PROPOSED = "plan.propose:"
RECORD_OUTCOME = "RecordOutcome"


@dataclass
class Tally:
    """One organisation's counts from the events; `promised` lists the cases of its promises (event order)."""

    placed: int = 0
    attempts: int = 0
    conversations: int = 0
    promises: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    promised: list[str] = field(default_factory=list)
    plans: list[str] = field(default_factory=list)  # the ids of the plans it proposed (`plan.propose:ID`)


def granted_to(rule: str) -> str | None:
    """The organisation a lender's allowed event mandated, or None when the event grants nothing."""
    if rule.startswith("mandate.grant:"):
        return rule[len("mandate.grant:"):].split(";", 1)[0] or None
    if rule.startswith("escalate:"):
        for part in rule.split(";")[1:]:
            if part.startswith("to="):
                return part[3:] or None
    return None


def outcome_of(rule: str) -> str | None:
    if not rule.startswith("contact.outcome:"):
        return None
    return rule[len("contact.outcome:"):].split(";", 1)[0]


def tally(lender: str, events: Iterable[Mapping[str, Any]], start: str, end: str) -> dict[str, Tally]:
    """Per organisation, the counts of the events timed in [start, end) (RFC 3339 text, compared as text: the
    log's times are fixed-width UTC); `start` "" has no lower bound."""
    out: dict[str, Tally] = {}
    for e in events:
        at = str(e.get("time", ""))
        if at < start or at >= end:
            continue
        org, decision, rule = str(e.get("org", "")), e.get("decision"), str(e.get("rule", ""))
        if org == lender:
            to = granted_to(rule) if decision == "allow" else None
            if to is not None and to != lender:
                out.setdefault(to, Tally()).placed += 1
            continue
        if e.get("lender") != lender or not org:
            continue
        t = out.setdefault(org, Tally())
        if decision == "deny":
            t.refusals[str(e.get("code", ""))] += 1
            continue
        method = e.get("method")
        if method == OPEN_CONTACT:
            t.attempts += 1
        elif rule.startswith(PLAN_PROPOSED):
            t.plans.append(rule[len(PLAN_PROPOSED):])
        elif method == RECORD_OUTCOME:
            result = outcome_of(rule)
            if result in CONVERSATIONS:
                t.conversations += 1
            if result == PROMISE:
                t.promises += 1
                t.promised.append(str(e.get("case_id", "")))
    return out
