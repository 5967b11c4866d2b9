"""The compliance report (issue 25): a period's figures, computed from the audit log by rules/compliance.py.

A regulator gets every lender's cases; the owning lender only the events that
name it (`lender`). The figures are the pure functions' of the stored events,
so the client recounts them from the verified events (`--verify`).
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import Code
from ..model import Caller, parse_time, rfc3339
from ..rules import compliance
from ..rules.capabilities import LENDER
from .context import Context


class Compliance(Context):
    def compliance_report(self, caller: Caller, start: str, end: str) -> dict[str, Any]:
        """The report of [start, end): the figures, and what they were counted with (kinds, caps, tree size)."""
        org = self._standing(caller, action="compliance_report", purpose="supervision")
        purpose = "servicing" if org.kind == LENDER else "supervision"
        since, until = parse_time(start), parse_time(end)
        if since is None or until is None:
            raise self._deny(caller, Code.INVALID_TIME, "input", purpose=purpose)
        if since >= until:
            raise self._deny(caller, Code.INVALID_TIME_RANGE, "input", purpose=purpose)
        lender = org.id if org.kind == LENDER else ""
        period = {"from": rfc3339(since), "to": rfc3339(until)}
        # Audited first, like a query (no PI: the period and the scope); the figures ignore this event.
        self.audit.append([self._event(caller, "allow", Code.OK,
                                       f"compliance.report:from={period['from']};to={period['to']}",
                                       purpose=purpose, lender=lender)])
        size = self.audit.head()[0]
        log = self.audit.reads()
        events = [json.loads(e.leaf) for e in log.audit_query(since=period["from"]) if e.seq < size]
        window = compliance.in_period(events, period["from"], period["to"], size, lender)
        # The released cases' consent and notice events may precede the period: read by case (indexed).
        seen = {int(e["seq"]) for e in events}
        for lender_id, case_id in sorted({(str(e.get("lender", "")), str(e.get("case_id", "")))
                                          for e in window if compliance.released(e)}):
            for entry in log.audit_query(case_id=case_id):
                if entry.seq < size and entry.seq not in seen:
                    event = json.loads(entry.leaf)
                    if event.get("method") in (compliance.CONSENT_METHOD, compliance.NOTICE_METHOD) \
                            and event.get("lender") == lender_id:
                        seen.add(entry.seq)
                        events.append(event)
        repo = self.reader()
        kinds: dict[str, str] = {}
        for org_id in compliance.release_orgs(window):
            found = repo.get_org(org_id)
            kinds[org_id] = found.kind if found is not None else ""
        caps = compliance.caps_statement(self.bundle.conduct)
        figures = compliance.figures(events, start=period["from"], end=period["to"], size=size, lender=lender,
                                     kinds=kinds, caps=caps)
        return {"period": period, "scope": lender or "all", "size": size, "policy_revision": self.bundle.revision,
                "org_kinds": kinds, "caps": caps, **figures}
