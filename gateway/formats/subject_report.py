"""The data subject's access report (PIPL Art. 45, GDPR Art. 15), built from the audit events about them.

Who received which of the borrower's fields, when, for what purpose and
under which rule; every refused attempt with its code; and the other actions
on the borrower's cases (mandates granted and ended, stages, flags). The
events hold no personal values, so neither does the report.

Borrower ids are each lender's own: two lenders may both have a B-1. Each
event comes with the lender it is listed for (`report_lender`, see
`CustosClient.subject_events`), and one lender's report holds that lender's
events only. Without a named lender the report lists each lender's borrower
of the id apart (`lenders`), and `unattributed` holds the events, written
before events named their lender, that no record attributes to one lender
(a regulator's report only).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

_ROW = ("seq", "time", "org", "method", "purpose", "case_id", "rule")


def build(borrower_id: str, lender: str, events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One lender's report when `lender` is named; otherwise every lender's, apart, in `lenders`."""
    events = list(events)
    unattributed = [{**{k: e.get(k) for k in _ROW}, "decision": e.get("decision"), "code": e.get("code"),
                     "fields": list(e.get("fields") or [])} for e in events if not e.get("report_lender")]
    if lender:
        return {**one(borrower_id, lender, [e for e in events if e.get("report_lender") == lender]),
                "unattributed": unattributed}
    lenders = sorted({str(e["report_lender"]) for e in events if e.get("report_lender")})
    return {"borrower_id": borrower_id, "lender": "",
            "lenders": [one(borrower_id, name, [e for e in events if e.get("report_lender") == name])
                        for name in lenders],
            "unattributed": unattributed}


def one(borrower_id: str, lender: str, events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The report on one lender's borrower, from that lender's events only."""
    releases, refusals, actions = [], [], []
    recipients: dict[str, set[str]] = {}
    for e in events:
        row = {k: e.get(k) for k in _ROW}
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


def export(borrower_id: str, cases: list[Any], events: Iterable[dict[str, Any]],
           generated_at: datetime) -> dict[str, Any]:
    """`lender subject-export`: the borrower's own data and its disclosures, as the calling lender hands it over.

    The events a lender gets are all listed for that lender, so the first
    `report_lender` names it (none when there is no event at all).
    """
    events = list(events)
    own = next((str(e["report_lender"]) for e in events if e.get("report_lender")), "")
    return {"borrower_id": borrower_id, "generated_at": generated_at.isoformat(timespec="seconds"),
            "cases": cases, "disclosures": one(borrower_id, own, events)}


def table(report: dict[str, Any]) -> str:
    parts = [_one_table(r) for r in report["lenders"]] if "lenders" in report else [_one_table(report)]
    if not parts:
        parts = [f"Access report for borrower {report['borrower_id']}: no lender's borrower"]
    if report.get("unattributed"):
        lines = ["Events written before events named their lender, not attributable to one lender "
                 "(time, organisation, method, case, decision, code, rule):"]
        lines += [f"  {r['time']}  {r['org']}  {r['method']}  {r['case_id'] or '-'}  {r['decision']}  {r['code']}  "
                  f"{r['rule']}" for r in report["unattributed"]]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def _one_table(report: dict[str, Any]) -> str:
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
