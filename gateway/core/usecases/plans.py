"""Promises and plans: a mandated party proposes a repayment plan, the owning lender accepts or rejects it, and an
accepted plan sets what is due, instalment by instalment, until it is kept or broken.

The plan's state is never stored: it is `commitments.plan_state` over the
loan's ledger (the lender's repayments and every confirmed payment) on the
borrower's local today, so it moves with each payment and each day without a
job. What a release needs of it goes through `cases.active_plan`, a cached,
change-fed column: accepting a plan changes the case (a pull carries it), and
reading the plan itself is one uncached point read, only for a case with one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from ..errors import Code, CustosError
from ..model import Caller, CaseRow, EventDraft, LoanRow, Org, PlanRow, reason_ok, rfc3339
from ..ports import CaseReader, UnitOfWork
from ..rules import plans as rules
from ..rules.capabilities import LENDER
from ..rules.commitments import plan_state
from ..rules.conduct import PlanRules
from ..rules.ledger import text
from .context import Context

PLAN_ID_RE = re.compile(r"^PL-[0-9a-f]{16}$")


def plan_rules(bundle: Any, case: CaseRow) -> PlanRules:
    conduct = bundle.conduct.get(case.jurisdiction)
    return conduct.plans if conduct is not None else PlanRules()


def active_plan_due(repo: CaseReader, grace: PlanRules, case: CaseRow, loan: LoanRow | None,
                    today: date) -> str | None:
    """amount_due as an accepted plan sets it today; None: the loan's own figure (no plan, or kept or broken)."""
    if not case.active_plan or loan is None:
        return None
    plan = repo.get_plan(case.active_plan)
    if plan is None or plan.status != "accepted":
        return None
    since = rules.local_day(plan.proposed_at, ZoneInfo(case.timezone))
    due = plan_state(plan.instalments, since, loan.repayments, today, grace.grace_days).amount_due
    return text(due, loan.currency) if due is not None else None


def contact_history(repo: CaseReader, case: CaseRow, now: datetime,
                    recordings: bool = False) -> list[dict[str, str | None]]:
    """The case's contact history as released; promises with their state today (the loan read only if any);
    with `recordings` (the lender's own read, issue 26), each call recording's reference."""
    rows = repo.contact_history(case)
    if not any(r.promise_amount is not None for r in rows):
        out = [r.history_entry() for r in rows]
    else:
        loan = repo.loan_values(case)
        ledger = loan.repayments if loan is not None else ()
        zone = ZoneInfo(case.timezone)
        today = now.astimezone(zone).date()
        out = [rules.history_entry(r, ledger, zone, today) for r in rows]
    if recordings:
        for row, entry in zip(rows, out, strict=True):
            if row.recording:
                entry["recording"] = row.recording
    return out


# What a plan's events carry (issue 25): names, never values (the kind is the rule's, "plan.propose:ID"). A
# proposal and an acceptance carry the instalments (an accepted plan sets the case's amount due); a rejection
# the lender's reason (sealed).
PROPOSED = ("plan.instalments",)
ACCEPTED = ("amount_due", "plan.instalments")
REJECTED = ("plan.reason",)


class Plans(Context):
    def _plan_purpose(self, org: Org) -> str:
        """The purpose a party reaches a case by for plans: the one its kind is mandated for (agency: collection)."""
        return next(iter(self.bundle.capabilities.placed_for(org.kind)), "collection")

    def propose_plan(self, caller: Caller, case_ref: str, instalments: Sequence[tuple[str, str]]) -> dict[str, Any]:
        """A mandated party's proposal; its earlier proposal on the case, still undecided, is superseded."""
        org = self._standing(caller, action="propose_plan")
        purpose = self._plan_purpose(org)
        code, parsed = rules.plan_instalments(instalments)
        if code != Code.OK:
            raise self._deny(caller, code, "input", purpose=purpose)
        case, _ = self._mandated_case(caller, case_ref, purpose)
        now = self.clock.now()
        kw: dict[str, Any] = {"purpose": purpose, "case_id": case.case_id, "borrower_id": case.borrower_id,
                              "lender": case.lender_id, "now": now}
        start = rules.plan_start(parsed, self.local_today(case, now))
        if start is not None:
            raise self._deny(caller, start, "plan.start", **kw)

        def work(repo: UnitOfWork) -> tuple[str, list[EventDraft]]:
            for earlier in repo.plans_of_case(case.lender_id, case.case_id):
                if earlier.org_id == org.id and earlier.status == "proposed":
                    repo.set_plan_status(earlier, "superseded", rfc3339(now))
            plan_id = repo.insert_plan(case, org.id, parsed, rfc3339(now))
            return plan_id, [self._event(caller, "allow", Code.OK, f"plan.propose:{plan_id}", fields=PROPOSED,
                                         **kw)]

        plan_id = self.audit.run(work)
        return {"plan_id": plan_id, "case_id": case.case_id, "status": "proposed"}

    def decide_plan(self, caller: Caller, plan_id: str, accept: bool, reason: str = "") -> dict[str, Any]:
        """The owning lender accepts (the case's plan from now; an earlier accepted one is superseded) or rejects
        (with a reason, sealed) a proposed plan. Another lender's plan looks exactly like a missing one."""
        self._standing(caller, action="decide_plan")
        rule = "plan.accept" if accept else "plan.reject"
        if not PLAN_ID_RE.fullmatch(plan_id or ""):
            raise self._deny(caller, Code.PLAN_NOT_FOUND, "input")
        if not accept and not reason_ok(reason):
            raise self._deny(caller, Code.INVALID_REASON, "input")
        now = self.clock.now()

        def work(repo: UnitOfWork) -> tuple[tuple[Code, PlanRow | None], list[EventDraft]]:
            plan = repo.get_plan(plan_id)
            if plan is None or plan.lender_id != caller.org_id:
                return (Code.PLAN_NOT_FOUND, None), [self._event(caller, "deny", Code.PLAN_NOT_FOUND, "ownership",
                                                                 now=now)]
            kw: dict[str, Any] = {"case_id": plan.case_id, "borrower_id": plan.borrower_id,
                                  "lender": plan.lender_id, "now": now}
            case = repo.get_case(plan.lender_id, plan.case_id)
            if plan.status != "proposed" or case is None:
                return (Code.PLAN_ALREADY_DECIDED, None), [
                    self._event(caller, "deny", Code.PLAN_ALREADY_DECIDED, rule, **kw)]
            if accept and case.status != "open":
                return (Code.CASE_CLOSED, None), [self._event(caller, "deny", Code.CASE_CLOSED, rule, **kw)]
            if accept:
                if case.active_plan:
                    earlier = repo.get_plan(case.active_plan)
                    if earlier is not None:
                        repo.set_plan_status(earlier, "superseded", rfc3339(now))
                repo.set_plan_status(plan, "accepted", rfc3339(now))
                repo.set_active_plan(case, plan.plan_id, rfc3339(now))
            else:
                repo.set_plan_status(plan, "rejected", rfc3339(now), reason)
            return (Code.OK, repo.get_plan(plan_id)), [self._event(caller, "allow", Code.OK, f"{rule}:{plan_id}",
                                                                   fields=ACCEPTED if accept else REJECTED, **kw)]

        code, decided = self.audit.run(work)
        if code != Code.OK or decided is None:
            raise CustosError(code)
        return {"plan_id": decided.plan_id, "case_id": decided.case_id, "status": decided.status,
                "decided_at": decided.decided_at or ""}

    def show_plans(self, caller: Caller, case_ref: str) -> dict[str, Any]:
        """The case's plans with their state today: to the owning lender all of them, with rejection reasons; to a
        party with a live mandate its own proposals and the case's accepted plan (whoever proposed it)."""
        org = self._standing(caller, action="show_plans")
        if org.kind == LENDER:
            purpose = "servicing"
            case = self._own_case(caller, case_ref, purpose=purpose)
        else:
            purpose = self._plan_purpose(org)
            case, _ = self._mandated_case(caller, case_ref, purpose)
        now = self.clock.now()
        repo = self.reader()
        found = repo.plans_of_case(case.lender_id, case.case_id)
        owner = org.kind == LENDER and org.id == case.lender_id
        if not owner:
            found = [p for p in found if p.org_id == org.id or p.plan_id == case.active_plan]
        zone = ZoneInfo(case.timezone)
        today = now.astimezone(zone).date()
        loan = repo.loan_values(case)
        ledger = loan.repayments if loan is not None else ()
        currency = loan.currency if loan is not None else ""
        grace = plan_rules(self.bundle, case).grace_days
        views: list[dict[str, Any]] = []
        for plan in found:
            view = rules.plan_view(plan, plan.plan_id == case.active_plan, ledger, currency, today, grace,
                                   rules.local_day(plan.proposed_at, zone))
            if owner and plan.sealed_reason is not None:
                view["reason"] = repo.plan_reason(plan) or ""
            views.append(view)
        self.audit.append([self._event(caller, "allow", Code.OK, "plan.show", purpose=purpose, case_id=case.case_id,
                                       borrower_id=case.borrower_id, lender=case.lender_id,
                                       fields=["plans"], now=now)])
        return {"case_id": case.case_id, "plans": views}
