"""The data subject's access report (PIPL Art. 45, GDPR Art. 15), built from the audit events about them.

Who received which of the borrower's fields, when, for what purpose and
under which rule; every refused attempt with its code; and the other actions
on the borrower's cases (mandates granted and ended, stages, flags). The
events hold no personal values, so neither does the report.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def build(borrower_id: str, lender: str, events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    releases, refusals, actions = [], [], []
    recipients: dict[str, set[str]] = {}
    for e in events:
        row = {k: e.get(k) for k in ("seq", "time", "org", "method", "purpose", "case_id", "rule")}
        if e.get("decision") == "deny":
            # Without a borrower id the attempt was refused before its case was resolved: it named this
            # case's id, which another lender may also use.
            refusals.append({**row, "code": e.get("code"), "resolved": bool(e.get("borrower_id"))})
        elif e.get("fields"):
            releases.append({**row, "fields": list(e["fields"])})
            recipients.setdefault(str(e.get("org")), set()).update(e["fields"])
        else:
            actions.append(row)
    return {"borrower_id": borrower_id, "lender": lender,
            "recipients": {org: sorted(fields) for org, fields in sorted(recipients.items())},
            "releases": releases, "refusals": refusals, "actions": actions}


def table(report: dict[str, Any]) -> str:
    lines = [f"Access report for borrower {report['borrower_id']} of {report['lender'] or 'the calling lender'}", "",
             "Who received which fields:"]
    lines += [f"  {org}: {', '.join(fields)}" for org, fields in report["recipients"].items()] or ["  nobody"]
    lines += ["", "Releases (time, organisation, purpose, case, rule, fields):"]
    lines += [f"  {r['time']}  {r['org']}  {r['purpose']}  {r['case_id']}  {r['rule']}  {', '.join(r['fields'])}"
              for r in report["releases"]] or ["  none"]
    lines += ["", "Refused attempts (time, organisation, purpose, case, code, rule):"]
    lines += [f"  {r['time']}  {r['org']}  {r['purpose'] or '-'}  {r['case_id']}  {r['code']}  {r['rule']}"
              for r in report["refusals"]] or ["  none"]
    lines += ["", "Other actions on the cases (time, organisation, action, case):"]
    lines += [f"  {r['time']}  {r['org']}  {r['method']}: {r['rule']}  {r['case_id']}" for r in report["actions"]] \
        or ["  none"]
    return "\n".join(lines)
