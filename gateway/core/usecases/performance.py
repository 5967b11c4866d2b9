"""Agency performance (`lender performance`): per agency and law firm, what the lender placed with it and what
came of it over a range of days, every figure recomputable from the audit log and the confirmed payments.

- placed, contact attempts, conversations, promises, refusals by code: counted
  from the audit log's events (`rules.performance.tally`), never from side
  tables, so a regulator's `audit query` recounts them exactly;
- recovered: the ledger entries attributed to the organisation (`by`, a
  confirmed payment) dated in the range, summed per currency (a lender's book
  may hold several; they are never added together);
- promises kept: a promise whose stored amount and date the contact row holds,
  kept by the ledger (`rules.commitments.promise_state`, from the outcome's
  local day); null when a promise recorded before promises carried terms is
  in range (counted only where every promise has them);
- plans: the plans it proposed (`plan.propose:ID` events); plans kept: those of
  them the lender accepted whose instalments the ledger has all paid
  (`rules.commitments.plan_state`, the plan's grace period) as of today.

The range is of UTC days, both ends inclusive: `--from` 00:00:00Z to the end of
`--to`; without `--from` from the log's start, without `--to` through today
(UTC). The read is audited (counts only, no PI).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..errors import Code
from ..model import Caller, CaseRow, LoanRow, Org, parse_date, rfc3339
from ..rules.commitments import KEPT, plan_state
from ..rules.ledger import text, total
from ..rules.performance import PROMISE, Tally, tally
from ..rules.plans import local_day, promise_of
from .context import Context
from .plans import plan_rules


class Performance(Context):
    def performance(self, caller: Caller, start: str = "", end: str = "") -> dict[str, Any]:
        """Per organisation the lender works with, its figures over [start, end] (UTC days, inclusive)."""
        self._standing(caller, action="performance")
        now = self.clock.now()
        first = parse_date(start) if start else None
        last = parse_date(end) if end else now.astimezone(UTC).date()
        if (start and first is None) or last is None or (first is not None and first > last):
            raise self._deny(caller, Code.INVALID_DATE, "input")
        low = rfc3339(datetime.combine(first, time(), UTC)) if first else ""
        high = rfc3339(datetime.combine(last + timedelta(days=1), time(), UTC))
        lender = caller.org_id
        counts = tally(lender, (json.loads(e.leaf) for e in self.audit.reads().audit_query(since=low)), low, high)
        repo = self.reader()
        kinds = self.bundle.capabilities.mandated_to("collection") | self.bundle.capabilities.mandated_to("litigation")
        orgs = sorted(o for o in counts if (found := repo.get_org(o)) is not None and found.kind in kinds)
        cases = {c.case_id: c for c in repo.cases_of_lender(lender)}
        loans: dict[str, LoanRow | None] = {}

        def loan(case_id: str) -> LoanRow | None:
            if case_id not in loans:
                case = cases.get(case_id)
                loans[case_id] = repo.loan_values(case) if case is not None else None
            return loans[case_id]

        low_day, high_day = (first.isoformat() if first else ""), last.isoformat()
        recovered: dict[str, dict[str, list[str]]] = {}
        for case_id in cases:
            row = loan(case_id)
            for entry in row.repayments if row is not None else ():
                if entry.by in orgs and low_day <= entry.on <= high_day:
                    recovered.setdefault(entry.by, {}).setdefault(row.currency if row else "", []).append(entry.amount)
        agencies = [self._figures(o, repo.get_org(o), counts[o], recovered.get(o, {}), cases, loan, low, high,
                                  now.astimezone(UTC).date()) for o in orgs]
        self.audit.append([self._event(caller, "allow", Code.OK, f"performance:orgs={len(orgs)}")])
        return {"from": first.isoformat() if first else "", "to": last.isoformat(), "agencies": agencies}

    def _figures(self, org: str, found: Org | None, t: Tally, recovered: dict[str, list[str]],
                 cases: dict[str, CaseRow], loan: Callable[[str], LoanRow | None], low: str, high: str,
                 today: date) -> dict[str, Any]:
        return {
            "org": org, "kind": found.kind if found is not None else "",
            "cases_placed": t.placed, "contact_attempts": t.attempts, "conversations": t.conversations,
            "promises": t.promises, "promises_kept": self._kept(org, t, cases, loan, low, high, today),
            "plans": len(t.plans), "plans_kept": self._plans_kept(t, today),
            "recovered": {cur: text(total(amounts), cur) for cur, amounts in sorted(recovered.items())},
            "refusals": dict(sorted(t.refusals.items())),
        }

    def _plans_kept(self, t: Tally, today: date) -> int:
        """Its plans (by id, from the log) accepted and, by the ledger, kept."""
        repo = self.reader()
        kept = 0
        for plan_id in t.plans:
            plan = repo.get_plan(plan_id)
            if plan is None or plan.status != "accepted":
                continue
            case = repo.get_case(plan.lender_id, plan.case_id)
            loan = repo.loan_values(case) if case is not None else None
            if case is None or loan is None:
                continue
            zone = ZoneInfo(case.timezone)
            grace = plan_rules(self.bundle, case).grace_days
            state = plan_state(plan.instalments, local_day(plan.proposed_at, zone), loan.repayments, today, grace)
            kept += state.state == KEPT
        return kept

    def _kept(self, org: str, t: Tally, cases: dict[str, CaseRow], loan: Callable[[str], LoanRow | None], low: str,
              high: str, today: date) -> int | None:
        """Promises kept by the ledger; None when a promise's terms are not stored (nothing to judge it by)."""
        if not t.promises:
            return 0
        repo = self.reader()
        kept = 0
        seen = 0
        for case_id in sorted(set(t.promised)):
            case = cases.get(case_id)
            row = loan(case_id)
            if case is None or row is None:
                return None
            for contact in repo.contact_history(case):
                if contact.org_id != org or contact.result != PROMISE or not contact.result_at \
                        or not low <= contact.result_at < high:
                    continue
                state = promise_of(contact, row.repayments, ZoneInfo(case.timezone), today)
                if state is None:  # recorded before promises carried terms: nothing to judge it by
                    return None
                seen += 1
                kept += state == KEPT
        return kept if seen == t.promises else None
