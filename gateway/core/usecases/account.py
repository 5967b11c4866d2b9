"""Account updates from the lender (`lender update FILE.jsonl`): the living account.

The lender's book moves every day; a file of update lines (`updates.parse_update`)
brings the shared account up to date, streamed and batched exactly as an import
is (each batch one unit of work, an event per line, rejections by line number).

Order: per case the last applied update's `as_of` and a keyed digest of its
content are kept (`UnitOfWork.last_update`). A line older than that is
`STALE_UPDATE`; the same time with the same content is `unchanged` (sending a
file twice changes nothing); the same time with other content is
`STALE_UPDATE` too, since two different states of the book cannot both be the
one at that instant.

Applying: repayments are appended with the ledger's arithmetic
(`ledger.apply_payment`), then every figure the line states replaces the
computed one (the lender's book wins over arithmetic). A status is set as
`lender flag --status` sets it (the closure time follows); a line that brings
`outstanding` to zero from above without a status settles the case. A
settled or closed case releases nothing through mandates (`access`:
CASE_CLOSED). Borrower corrections are resealed (`correct_borrower`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from ..errors import Code
from ..model import Caller, CaseRow, EventDraft, LoanRow, rfc3339, stored_time
from ..ports import UnitOfWork
from ..rules import ledger
from ..updates import AccountUpdate, parse_update
from .lender import BatchProgress, LenderActions, parse_batch

# The key of the keyed digest of an update's content (UnitOfWork.bidx): never stored as text.
DIGEST_FIELD = "update-line"


@dataclass
class UpdateProgress(BatchProgress):
    updated: int = 0
    unchanged: int = 0  # the same as_of and content as the last update applied, or a newer one that changes nothing


@dataclass(frozen=True)
class Change:
    """What one update line does to a case: the loan values, case fields and PI to write, and their names."""

    loan: dict[str, Any]
    case: dict[str, Any]
    borrower: dict[str, str]
    fields: list[str]


def plan_change(case: CaseRow, loan: LoanRow, current_pi: dict[str, str], item: AccountUpdate,
                stamp: str) -> Change:
    """The change one line makes, from the case's current state. Pure.

    Repayments first, by the ledger's arithmetic; then each figure the line
    states wins over the computed one. Only values that differ are written
    and named.
    """
    work = loan
    computed: dict[str, Any] = {}
    for entry in item.repayments:
        applied = ledger.apply_payment(work, entry)
        computed.update(applied.values)
        work = replace(work, **applied.values)  # type: ignore[arg-type]
    computed.update(item.loan)
    values = {k: v for k, v in computed.items() if v != getattr(loan, k)}
    fields = sorted(values)

    case_fields: dict[str, Any] = {}
    status = item.status
    if status is None and "outstanding" in values:
        before, after = ledger.money(loan.outstanding), ledger.money(values["outstanding"])
        if after == ledger.ZERO and before != ledger.ZERO and case.status == "open":
            status = "settled"  # a case paid in full settles
    if status is not None and status != case.status:
        case_fields["status"] = status
        if (status == "open") != (case.status == "open"):
            # As `lender flag --status`: retention runs from the closure; a reopened case has none.
            case_fields["closed_at"] = None if status == "open" else stamp
        fields.append("status")

    pi = {k: v for k, v in item.borrower.items() if current_pi.get(k) != v}
    fields += sorted(pi)
    return Change(values, case_fields, pi, fields)


class Accounts(LenderActions):
    def update_accounts(self, caller: Caller, lines: Iterable[tuple[int, bytes]]) -> Iterator[UpdateProgress]:
        """Stream update lines in batches; after each batch is durable, say what it updated and rejected."""
        self._standing(caller, action="update_accounts")
        yield from self._in_batches(caller, lines, UpdateProgress(), self._update_batch, "update")

    def _update_batch(self, caller: Caller, batch: list[tuple[int, bytes]], totals: UpdateProgress) -> UpdateProgress:
        parsed, last_line = parse_batch(batch, parse_update, totals.through_line)
        lender = caller.org_id

        def work(repo: UnitOfWork) -> tuple[tuple[int, int, list[tuple[int, str, str]]], list[EventDraft]]:
            now = self.clock.now()
            stamp = rfc3339(now)
            events: list[EventDraft] = []
            rejected: list[tuple[int, str, str]] = []
            updated = unchanged = 0
            ids = sorted({p.case_id for _, p in parsed if isinstance(p, AccountUpdate)})
            # One decision per borrower at a time, against another replica's update, an erasure or a contact
            # decision: the order check and the erasure state are read after the locks (taken in one order).
            for borrower in sorted({c.borrower_id for c in repo.cases_by_id(lender, ids).values()}):
                repo.lock_borrower(lender, borrower)
            cases = repo.cases_by_id(lender, ids)

            def reject(line_no: int, code: Code, reason: str, rule: str = "update", **kw: Any) -> None:
                rejected.append((line_no, code, reason))
                events.append(self._event(caller, "deny", code, rule, now=now, **kw))

            for line_no, item in parsed:
                if isinstance(item, tuple):
                    reject(line_no, *item)
                    continue
                case = cases.get(item.case_id)
                if case is None:  # another lender's case or none: the same answer
                    reject(line_no, Code.CASE_NOT_FOUND, "case_id: no such case", "ownership", case_id=item.case_id)
                    continue
                kw: dict[str, Any] = {"case_id": case.case_id, "borrower_id": case.borrower_id, "lender": lender}
                loan = repo.loan_values(case)
                if case.erasure == "erased" or loan is None:
                    reject(line_no, Code.BORROWER_ERASED, "case_id: this borrower's data was erased", **kw)
                    continue
                if item.borrower and case.erasure == "pending":
                    reject(line_no, Code.ERASURE_PENDING, "borrower: the borrower's data is scheduled for erasure",
                           **kw)
                    continue
                digest = repo.bidx(lender, DIGEST_FIELD, item.canonical)
                last = repo.last_update(lender, case.case_id)
                if last is not None:
                    last_as_of, last_digest = stored_time(last[0]), last[1]
                    when = stored_time(item.as_of)
                    if when < last_as_of:
                        reject(line_no, Code.STALE_UPDATE, "as_of: older than the last update applied to this case",
                               "account.update.stale", **kw)
                        continue
                    if when == last_as_of:
                        if digest == last_digest:
                            unchanged += 1
                            events.append(self._event(caller, "allow", Code.OK, "account.update.already", now=now,
                                                      **kw))
                        else:
                            reject(line_no, Code.STALE_UPDATE,
                                   "as_of: the same as the last update applied to this case, with other content",
                                   "account.update.stale", **kw)
                        continue
                current_pi = repo.borrower_values(case, item.borrower) if item.borrower else {}
                change = plan_change(case, loan, current_pi, item, stamp)
                if change.loan:
                    repo.update_loan(case, change.loan, stamp)
                if change.case:
                    repo.set_case_fields(lender, case.case_id, change.case, stamp)
                    cases[case.case_id] = replace(case, **change.case)
                if change.borrower:
                    repo.correct_borrower(case, change.borrower, stamp)
                repo.set_last_update(lender, case.case_id, item.as_of, digest, stamp)
                if change.fields:
                    updated += 1
                    events.append(self._event(caller, "allow", Code.OK, "account.update", fields=change.fields,
                                              now=now, **kw))
                else:  # a newer book that says what the account already says: recorded, nothing changed
                    unchanged += 1
                    events.append(self._event(caller, "allow", Code.OK, "account.update.same", now=now, **kw))
            return (updated, unchanged, rejected), events

        updated, unchanged, rejected = self.audit.run(work)
        totals.updated += updated
        totals.unchanged += unchanged
        return replace(totals, rejected=totals.settle(last_line, rejected))
