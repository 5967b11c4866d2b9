"""Bulk placement: mandates granted from a file, and every mandate of a terminated organisation ended at once.

Lenders place accounts by the thousand. A placement file is JSON Lines, one
`{"case_id", "to", "purpose", "until", "label", "commission", "agreement", "pia"}` per line (all but the first four
optional; "agreement" and "pia" name the records before sharing, issue 26), streamed like an
import: batches of lines, each batch one unit of work with one event per
placement, each line granted or rejected with its line number, a stable code
and a reason that never quotes the line. A placement is checked exactly as
`lender assign` checks one (`access.placement_problem`, `mandates.mandate_problem`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from ..errors import Code
from ..importer import LineError, json_object, load_line
from ..model import ID_RE, LABELS, ORG_ID_RE, PURPOSES, Caller, EventDraft, Org, parse_date, rfc3339
from ..ports import UnitOfWork
from ..rules import access
from ..rules import payments as payment_rules
from .lender import BatchProgress, LenderActions, parse_batch, records_presence, valid_reference

# The reason of a placement line refused by the granting rules (issue 26): stable text, free of the line's values.
_REASONS = {
    Code.CASE_CLOSED: "case_id: the case is settled or closed",
    Code.IDENTITY_THEFT_REPORTED: "case_id: the debt is reported as the result of identity theft",
    Code.DEBT_DISCHARGED: "case_id: the debt is discharged",
    Code.AGREEMENT_REQUIRED: "agreement: the jurisdiction requires the agreement's reference",
    Code.PIA_REQUIRED: "pia: the jurisdiction requires the impact assessment's reference",
    Code.CROSS_BORDER_NOT_ALLOWED: "to: abroad without a valid transfer mechanism (or the consent it needs)",
}

RECALL_PAGE = 500  # cases per transaction when ending every mandate of an organisation


@dataclass(frozen=True)
class Placement:
    case_id: str
    to: str
    purpose: str
    until: date
    label: str
    commission: str | None = None  # the mandate's fee term, a rate ("0.18")
    agreement: str | None = None   # issue 26: the agreement's and impact assessment's references
    pia: str | None = None


@dataclass
class PlacementProgress(BatchProgress):
    assigned: int = 0


def parse_placement(raw: bytes) -> Placement:
    """One line to a placement, or LineError with a stable code and a reason free of the line's values."""
    doc = load_line(raw)
    d = json_object(doc, "", {"case_id", "to", "purpose", "until"}, {"label", "commission", "agreement", "pia"})
    for key in ("case_id", "to", "purpose", "until", "label", "commission", "agreement", "pia"):
        if key in d and not isinstance(d[key], str):
            raise LineError(Code.IMPORT_INVALID_FIELD, f"{key}: must be a string")
    if not ID_RE.fullmatch(d["case_id"]):
        raise LineError(Code.INVALID_CASE_ID, "case_id: 1-64 characters of letters, digits and ._:-")
    if not ORG_ID_RE.fullmatch(d["to"]):
        raise LineError(Code.INVALID_ORG_ID, "to: not an organisation id")
    if d["purpose"] not in PURPOSES:
        raise LineError(Code.UNKNOWN_PURPOSE, "purpose: unknown")
    label = d.get("label") or "entrusted"
    if label not in LABELS:
        raise LineError(Code.UNKNOWN_LABEL, "label: entrusted or provided")
    until = parse_date(d["until"])
    if until is None:
        raise LineError(Code.INVALID_DATE, "until: YYYY-MM-DD")
    commission = d.get("commission") or None
    if commission is not None and payment_rules.rate(commission) is None:
        raise LineError(Code.INVALID_COMMISSION, "commission: a rate from 0 to 1 with at most 4 decimals")
    for key in ("agreement", "pia"):
        if not valid_reference(d.get(key, "")):
            raise LineError(Code.INVALID_RECORD_REFERENCE, f"{key}: 1-64 characters of letters, digits and ._:-")
    return Placement(d["case_id"], d["to"], d["purpose"], until, label, commission, d.get("agreement") or None,
                     d.get("pia") or None)


class Placements(LenderActions):
    def place_cases(self, caller: Caller, lines: Iterable[tuple[int, bytes]]) -> Iterator[PlacementProgress]:
        """Stream placement lines in batches; after each batch is durable, say what it granted and rejected."""
        self._standing(caller, action="place_cases")
        yield from self._in_batches(caller, lines, PlacementProgress(), self._place_batch, "placement")

    def _place_batch(self, caller: Caller, batch: list[tuple[int, bytes]],
                     totals: PlacementProgress) -> PlacementProgress:
        parsed, last_line = parse_batch(batch, parse_placement, totals.through_line)
        lender = caller.org_id

        def work(repo: UnitOfWork) -> tuple[tuple[int, list[tuple[int, str, str]]], list[EventDraft]]:
            now = self.clock.now()
            stamp = rfc3339(now)
            events: list[EventDraft] = []
            rejected: list[tuple[int, str, str]] = []
            orgs: dict[str, Org | None] = {}
            cases = repo.cases_by_id(lender, sorted({p.case_id for _, p in parsed if isinstance(p, Placement)}))
            grants: dict[tuple[str, str, str], tuple[str, str, str, str, date, str | None]] = {}
            records: dict[tuple[str, str, str], tuple[str, str, str, str | None, str | None]] = {}
            assigned = 0

            def flush() -> None:
                """Grant what is pending, then name its records (the rows must exist first)."""
                repo.grant_mandates(lender, list(grants.values()), stamp)
                if records:
                    repo.set_mandate_records(lender, list(records.values()))
                grants.clear()
                records.clear()

            for line_no, item in parsed:
                if isinstance(item, tuple):
                    rejected.append((line_no, item[0], item[1]))
                    events.append(self._event(caller, "deny", item[0], "placement", now=now))
                    continue
                kw: dict[str, Any] = {"purpose": item.purpose, "case_id": item.case_id, "now": now}
                case = cases.get(item.case_id)
                if case is None:  # another lender's case or none: the same answer
                    rejected.append((line_no, Code.CASE_NOT_FOUND, "case_id: no such case"))
                    events.append(self._event(caller, "deny", Code.CASE_NOT_FOUND, "ownership", **kw))
                    continue
                kw["borrower_id"], kw["lender"] = case.borrower_id, case.lender_id
                if item.to not in orgs:
                    orgs[item.to] = repo.get_org(item.to)
                problem = access.placement_problem(case, orgs[item.to], item.purpose, item.label, item.until,
                                                   self.local_today(case, now), self.bundle.capabilities)
                target = orgs[item.to]
                if problem is None and target is not None:
                    verdict = self._grant_problem(case, target.jurisdiction, item.purpose, item.agreement or "",
                                                  item.pia or "", self.local_today(case, now))
                    if not verdict.ok:
                        problem = (verdict.code, verdict.rule, _REASONS.get(verdict.code, "case_id: refused"))
                if problem is not None:
                    code, rule, reason = problem
                    rejected.append((line_no, code, reason))
                    events.append(self._event(caller, "deny", code, rule, **kw))
                    continue
                key = (case.case_id, item.to, item.purpose)
                if key in grants:  # the same mandate twice in one batch: the later line replaces the earlier
                    flush()
                grants[key] = (case.case_id, item.to, item.purpose, item.label, item.until, item.commission)
                if item.agreement or item.pia:
                    records[key] = (case.case_id, item.to, item.purpose, item.agreement, item.pia)
                events.append(self._event(caller, "allow", Code.OK, f"mandate.grant:{item.to};placement"
                                          + records_presence(item.agreement, item.pia), **kw))
                assigned += 1
            flush()
            return (assigned, rejected), events

        assigned, rejected = self.audit.run(work)
        totals.assigned += assigned
        return replace(totals, rejected=totals.settle(last_line, rejected))

    def recall_all(self, caller: Caller, org_id: str) -> int:
        """End every live mandate the organisation holds on the caller's cases (it was terminated); one event each."""
        self._standing(caller, action="recall_all")
        if not ORG_ID_RE.fullmatch(org_id):
            raise self._deny(caller, Code.INVALID_ORG_ID, "input")
        if self.reader().get_org(org_id) is None:
            raise self._deny(caller, Code.ORG_NOT_FOUND, "input")
        cases = sorted({m.case_id for m in self.reader().mandates_of_org(org_id) if m.lender_id == caller.org_id})
        total = 0
        for i in range(0, len(cases), RECALL_PAGE):
            page = cases[i:i + RECALL_PAGE]

            def work(repo: UnitOfWork, page: list[str] = page) -> tuple[int, list[EventDraft]]:
                now = self.clock.now()
                n, events = 0, []
                for case_id in page:
                    ended = repo.recall_mandates(caller.org_id, case_id, org_id, rfc3339(now))
                    if ended:
                        case = repo.get_case(caller.org_id, case_id)
                        n += ended
                        events.append(self._event(caller, "allow", Code.OK, f"mandate.recall:{org_id};all",
                                                  case_id=case_id, borrower_id=case.borrower_id if case else "",
                                                  lender=caller.org_id, now=now))
                return n, events

            total += self.audit.run(work)
        if not cases:
            self.audit.append([self._event(caller, "allow", Code.OK, f"mandate.recall:{org_id};all;none")])
        return total
