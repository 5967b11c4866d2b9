"""The filters a supervisor's `audit query` narrows the log with beyond its indexes (case, org, borrower, since):
until, decision, code, method, purpose, the contact channel contact events carry, and the agent (the person
acting, as the organisation names it); and the owning lender a lender's query is held to (never the request's).

Pure: a filter is checked once when the query is made (a bad value is a stable
code, never an empty answer that looks like "nothing happened") and then
matched against each event's leaf, the bytes the Merkle tree holds, so what a
filter keeps is exactly what a reader of the verified events would keep.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields

from ..errors import Code
from ..model import PURPOSES, agent_ok, parse_time, rfc3339
from .conduct import CHANNELS

METHOD_RE = re.compile(r"^[A-Za-z]{1,64}\Z")
DECISIONS = ("allow", "deny")
_CODES = frozenset(c.value for c in Code)


@dataclass(frozen=True)
class EventFilter:
    until: str = ""     # the stored RFC 3339 form: an event at exactly this time or later is left out
    decision: str = ""
    code: str = ""
    method: str = ""
    purpose: str = ""
    channel: str = ""
    agent: str = ""
    # Forced by the use case, never asked for: a lender's query keeps only events whose `lender` is the caller.
    lender: str = ""

    def active(self) -> bool:
        return bool(self.until or self.decision or self.code or self.method or self.purpose or self.channel
                    or self.agent or self.lender)

    def matches(self, leaf: bytes) -> bool:
        event = json.loads(leaf)
        return ((not self.until or str(event.get("time", "")) < self.until)
                and (not self.decision or event.get("decision") == self.decision)
                and (not self.code or event.get("code") == self.code)
                and (not self.method or event.get("method") == self.method)
                and (not self.purpose or event.get("purpose") == self.purpose)
                and (not self.channel or event.get("channel") == self.channel)
                and (not self.agent or event.get("agent") == self.agent)
                and (not self.lender or event.get("lender") == self.lender))


# The filters' names, as the request, the client and the CLI spell them (`lender` is no request's to set).
KEYS = tuple(f.name for f in fields(EventFilter) if f.name != "lender")


def event_filter(until: str = "", decision: str = "", code: str = "", method: str = "", purpose: str = "",
                 channel: str = "", agent: str = "") -> EventFilter | Code:
    """The filter these values ask for, or the code of the first one that is not a value the log can hold."""
    until_text = ""
    if until:
        ts = parse_time(until)
        if ts is None:
            return Code.INVALID_TIME
        until_text = rfc3339(ts)
    if decision and decision not in DECISIONS:
        return Code.INVALID_ARGUMENT
    if code and code not in _CODES:
        return Code.INVALID_ARGUMENT
    if method and not METHOD_RE.fullmatch(method):
        return Code.INVALID_ARGUMENT
    if purpose and purpose not in PURPOSES:
        return Code.UNKNOWN_PURPOSE
    if channel and channel not in CHANNELS:
        return Code.UNKNOWN_CHANNEL
    if not agent_ok(agent):
        return Code.INVALID_AGENT  # as the header would be: the same syntax, the same code
    return EventFilter(until_text, decision, code, method, purpose, channel, agent)
