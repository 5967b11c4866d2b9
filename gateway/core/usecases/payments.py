"""Payments reported by those who collect, the lender's decision on each, and the commission statements.

A mandated agency or law firm reports a payment it collected; the lender
confirms or rejects it. A confirmed payment enters the loan's ledger
(`ledger.apply_payment`, attributed to the reporting organisation) in the same
unit of work that confirms it, so balances, the change feed and everything
downstream move together; a payment that pays the loan in full settles the
case, which ends its mandates as a settlement by the lender does. A statement
is the confirmed payments of a month with each one's commission.
"""

from __future__ import annotations

import secrets
from typing import Any

from ..errors import Code, CustosError
from ..model import (
    ID_RE,
    ORG_ID_RE,
    PAYMENT_STATUSES,
    Caller,
    CaseRow,
    EventDraft,
    PaymentRow,
    Repayment,
    parse_date,
    reason_ok,
    rfc3339,
)
from ..ports import UnitOfWork
from ..rules import access, ledger
from ..rules import payments as rules
from ..rules.capabilities import LENDER
from .context import Context


def _item(p: PaymentRow, reason: str | None) -> dict[str, Any]:
    """A payment as the lender lists it (the reason only of a rejected one)."""
    out: dict[str, Any] = {"payment_id": p.id, "case_id": p.case_id, "org": p.org_id, "amount": p.amount,
                           "currency": p.currency, "on": p.paid_on, "reference": p.reference, "status": p.status,
                           "reported_at": p.reported_at, "decided_at": p.decided_at or "",
                           "commission": p.commission or ""}
    if p.status == "rejected":
        out["reason"] = reason or ""
    return out


# What a payment's events carry (issue 25): the names of what the payment holds, never a value; the kind is
# the rule's ("payment.report:ID"). A reported payment has an amount, a date and the reporter's reference; a
# confirmed one enters the ledger with the commission applied; a rejected one has the lender's reason (sealed).
REPORTED = ("payment.amount", "payment.on", "payment.reference")
CONFIRMED = ("payment.amount", "payment.commission", "payment.on")
REJECTED = ("payment.reason",)


class Payments(Context):
    def report_payment(self, caller: Caller, case_ref: str, amount: str, on: str, reference: str) -> dict[str, Any]:
        """Record a payment the caller collected on a case it holds a live collection or litigation mandate of.

        The same (lender, org, reference) is one payment: reported again with the same case, amount and date it
        is answered with the stored payment (its id and current status) and nothing new is stored; with anything
        else it is PAYMENT_REFERENCE_CONFLICT. The caller's mandate is checked first, for a repeat too.
        """
        org = self._standing(caller, action="report_payment")
        purposes = [p for p in self.bundle.capabilities.placed_for(org.kind) if p in rules.PAYMENT_PURPOSES]
        purposes = purposes or ["collection"]
        value = ledger.positive(amount)
        day = parse_date(on)
        named = case_ref.rpartition("/")[2]
        about = {"case_id": named} if ID_RE.fullmatch(named) else {}  # the case as named: never a caller's text
        if value is None:
            raise self._deny(caller, Code.INVALID_AMOUNT, "input", **about)
        if day is None:
            raise self._deny(caller, Code.INVALID_DATE, "input", **about)
        if not rules.reference_ok(reference):
            raise self._deny(caller, Code.INVALID_REFERENCE, "input", **about)
        case, mandates = self._mandates_reaching(caller, case_ref, purposes[0])
        kw: dict[str, Any] = {"case_id": case.case_id, "borrower_id": case.borrower_id, "lender": case.lender_id}
        now = self.clock.now()
        verdicts = [(p, *access.mandate(mandates, p, case, self.local_today(case, now))) for p in purposes]
        live = next((p for p, verdict, _ in verdicts if verdict.ok), None)
        if live is None:
            # The refusal of the purpose the caller was mandated for (else of the first): why it may not report.
            purpose, verdict, _ = next((v for v in verdicts if v[1].code != Code.PURPOSE_NOT_MANDATED), verdicts[0])
            raise self._deny(caller, verdict.code, verdict.rule, purpose=purpose, **kw)
        kw["purpose"] = live
        loan = self.reader().loan_values(case)
        problem = rules.date_problem(day, loan, self.local_today(case, now))
        if problem is not None:
            raise self._deny(caller, problem, "payment.date", **kw)
        if loan is None:  # the borrower's data (and so the loan's terms) is gone: access.mandate refused it already
            raise self._deny(caller, access.erasure(case).code, "erasure", **kw)
        stamp = rfc3339(now)
        row = PaymentRow(id="P-" + secrets.token_hex(8), lender_id=case.lender_id, case_id=case.case_id,
                         borrower_id=case.borrower_id, org_id=caller.org_id, amount=amount, currency=loan.currency,
                         paid_on=day.isoformat(), reference=reference, status="reported", reported_at=stamp)

        def work(repo: UnitOfWork) -> tuple[tuple[PaymentRow, bool], list[EventDraft]]:
            stored = repo.payment_by_reference(case.lender_id, caller.org_id, reference)
            if stored is None and repo.insert_payment(row):
                return (row, True), [self._event(caller, "allow", Code.OK, f"payment.report:{row.id}",
                                                 fields=REPORTED, now=now, **kw)]
            stored = stored or repo.payment_by_reference(case.lender_id, caller.org_id, reference)
            assert stored is not None  # the insert lost to this very row
            if rules.same_payment(stored, case.case_id, value, row.paid_on):
                return (stored, True), [self._event(caller, "allow", Code.OK, f"payment.report.again:{stored.id}",
                                                    fields=REPORTED, now=now, **kw)]
            return (stored, False), [self._event(caller, "deny", Code.PAYMENT_REFERENCE_CONFLICT,
                                                 "payment.reference", now=now, **kw)]

        payment, accepted = self.audit.run(work)
        if not accepted:
            raise CustosError(Code.PAYMENT_REFERENCE_CONFLICT)
        return {"payment_id": payment.id, "status": payment.status, "case_id": payment.case_id,
                "org": payment.org_id, "amount": payment.amount, "currency": payment.currency, "on": payment.paid_on,
                "reference": payment.reference, "reported_at": payment.reported_at}

    def list_payments(self, caller: Caller, status: str = "", org_id: str = "") -> list[dict[str, Any]]:
        """The lender's payments, oldest report first; a rejected one with its reason (opened for the lender only)."""
        self._standing(caller, action="list_payments")
        if status and status not in PAYMENT_STATUSES:
            raise self._deny(caller, Code.UNKNOWN_PAYMENT_STATUS, "input", lender=caller.org_id)
        if org_id and not ORG_ID_RE.fullmatch(org_id):
            raise self._deny(caller, Code.INVALID_ORG_ID, "input", lender=caller.org_id)
        repo = self.reader()
        rows = repo.payments_of_lender(caller.org_id, status, org_id)
        items = [_item(p, repo.payment_reason(p) if p.status == "rejected" else None) for p in rows]
        rule = "payments.list" + (f";status={status}" if status else "") + (f";org={org_id}" if org_id else "")
        self.audit.append([self._event(caller, "allow", Code.OK, rule, lender=caller.org_id)])
        return items

    def _own_payment(self, caller: Caller, payment_id: str) -> tuple[PaymentRow, CaseRow, dict[str, Any]]:
        """The caller's payment still to decide, with its case; else an audited refusal.

        Another lender's payment is answered as a missing one (its existence is not revealed).
        """
        payment = self.reader().get_payment(payment_id) if rules.reference_ok(payment_id) else None
        if payment is None or payment.lender_id != caller.org_id:
            raise self._deny(caller, Code.PAYMENT_NOT_FOUND, "ownership", lender=caller.org_id)
        kw: dict[str, Any] = {"case_id": payment.case_id, "borrower_id": payment.borrower_id,
                              "lender": payment.lender_id}
        if payment.status != "reported":
            raise self._deny(caller, Code.PAYMENT_ALREADY_DECIDED, f"payment.status:{payment.id}", **kw)
        case = self.reader().get_case(payment.lender_id, payment.case_id)
        if case is None or case.erasure == "erased":
            raise self._deny(caller, Code.ERASED, "erasure", **kw)
        return payment, case, kw

    def confirm_payment(self, caller: Caller, payment_id: str) -> dict[str, Any]:
        """Confirm a reported payment: in one unit of work it is confirmed with the reporting organisation's
        commission rate and enters the loan's ledger; paid in full, the case settles.

        The rate is that of the organisation's latest mandate on the case, live or not (the payment may be
        confirmed after the mandate ended); a mandate without a fee term gives "0".
        """
        self._standing(caller, action="decide_payment")
        payment, case, kw = self._own_payment(caller, payment_id)
        now = self.clock.now()
        stamp = rfc3339(now)

        def work(repo: UnitOfWork) -> tuple[tuple[Code, dict[str, Any]], list[EventDraft]]:
            repo.lock_borrower(case.lender_id, case.borrower_id)  # one decision on this loan's ledger at a time
            current = repo.get_payment(payment.id)
            if current is None or current.status != "reported":
                return (Code.PAYMENT_ALREADY_DECIDED, {}), [self._event(
                    caller, "deny", Code.PAYMENT_ALREADY_DECIDED, f"payment.status:{payment.id}", now=now, **kw)]
            fresh = repo.get_case(case.lender_id, case.case_id)
            loan = repo.loan_values(fresh) if fresh is not None else None
            if fresh is None or loan is None:
                return (Code.ERASED, {}), [self._event(caller, "deny", Code.ERASED, "erasure", now=now, **kw)]
            latest = next((m for m in repo.mandates_of_case(case.lender_id, case.case_id)
                           if m.org_id == current.org_id), None)
            commission = (latest.commission if latest is not None else None) or "0"
            applied = ledger.apply_payment(loan, Repayment(current.paid_on, current.amount, by=current.org_id,
                                                           payment_id=current.id))
            repo.update_loan(fresh, applied.values, stamp)
            repo.decide_payment(current, "confirmed", stamp, commission, None)
            events = [self._event(caller, "allow", Code.OK, f"payment.confirm:{current.id}", fields=CONFIRMED,
                                  now=now, **kw)]
            settled = applied.paid_in_full and fresh.status == "open"
            if settled:
                # As `lender flag --status settled`: the case closes and every mandate on it ends (access.mandate).
                repo.set_case_fields(case.lender_id, case.case_id, {"status": "settled", "closed_at": stamp}, stamp)
                events.append(self._event(caller, "allow", Code.OK, f"flags:status=settled;paid_in_full:{current.id}",
                                          now=now, **kw))
            values = applied.values
            return (Code.OK, {"payment_id": current.id, "status": "confirmed", "case_id": current.case_id,
                              "org": current.org_id, "amount": current.amount, "currency": current.currency,
                              "commission": commission, "decided_at": stamp,
                              "outstanding": str(values.get("outstanding", loan.outstanding) or ""),
                              "amount_due": str(values.get("amount_due", loan.amount_due) or ""),
                              "case_status": "settled" if settled else fresh.status}), events

        code, result = self.audit.run(work)
        if code != Code.OK:
            raise CustosError(code)
        return result

    def reject_payment(self, caller: Caller, payment_id: str, reason: str) -> dict[str, Any]:
        """Reject a reported payment with a reason (sealed under the borrower's data key); nothing else changes."""
        self._standing(caller, action="decide_payment")
        if not reason_ok(reason):
            raise self._deny(caller, Code.INVALID_REASON, "input", lender=caller.org_id)
        payment, case, kw = self._own_payment(caller, payment_id)
        now = self.clock.now()
        stamp = rfc3339(now)

        def work(repo: UnitOfWork) -> tuple[bool, list[EventDraft]]:
            repo.lock_borrower(case.lender_id, case.borrower_id)
            current = repo.get_payment(payment.id)
            if current is None or not repo.decide_payment(current, "rejected", stamp, None, reason):
                return False, [self._event(caller, "deny", Code.PAYMENT_ALREADY_DECIDED,
                                           f"payment.status:{payment.id}", now=now, **kw)]
            return True, [self._event(caller, "allow", Code.OK, f"payment.reject:{current.id}", fields=REJECTED,
                                      now=now, **kw)]

        if not self.audit.run(work):
            raise CustosError(Code.PAYMENT_ALREADY_DECIDED)
        return {"payment_id": payment.id, "status": "rejected", "case_id": payment.case_id, "decided_at": stamp}

    def statement(self, caller: Caller, period: str, org_id: str = "") -> dict[str, Any]:
        """Every payment confirmed in a UTC calendar month, each with its rate and fee, and the totals.

        A lender gets those of its cases (all its agencies, or `org_id`'s); an agency or law firm gets its own,
        across lenders, and asking for another organisation's is NOT_YOUR_STATEMENT.
        """
        org = self._standing(caller, action="statement")
        bounds = rules.period_bounds(period)
        if bounds is None:
            raise self._deny(caller, Code.INVALID_PERIOD, "input")
        if org_id and not ORG_ID_RE.fullmatch(org_id):
            raise self._deny(caller, Code.INVALID_ORG_ID, "input")
        rule = f"statement:{period}" + (f";org={org_id}" if org_id else "")
        repo = self.reader()
        if org.kind == LENDER:
            rows = repo.confirmed_payments(*bounds, lender=caller.org_id, org_id=org_id)
            lender = caller.org_id
        else:
            if org_id and org_id != caller.org_id:
                raise self._deny(caller, Code.NOT_YOUR_STATEMENT, rule)
            rows = repo.confirmed_payments(*bounds, org_id=caller.org_id)
            lender = ""
        self.audit.append([self._event(caller, "allow", Code.OK, rule, lender=lender)])
        doc = rules.statement(period, rows)
        doc["org"] = org_id or ("" if org.kind == LENDER else caller.org_id)
        return doc

