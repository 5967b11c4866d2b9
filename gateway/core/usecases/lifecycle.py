"""The data lifecycle: erasure by crypto-shredding (now, or after a grace period), refused under legal hold.

Erasure destroys the borrower's wrapped data key, so every value sealed under
it (personal fields, contract texts; on PostgreSQL the loan terms) can never be
opened again, with any key file; the store also drops the ciphertexts, the
blind indexes and the keyed digests that could confirm a guessed value. In the
same unit of work every mandate on the borrower's cases ends, and the erasure
is audited per case. The audit log holds no personal data, so it is untouched
and still verifies. A scheduled erasure (`--grace`) stops every release to
other parties at once (`ERASURE_PENDING`); the gateway performs it when due,
unless a legal hold was set meanwhile (it then waits for the hold to lift).

An erasure refused under a legal hold leaves the request standing: the
borrower becomes `restricted` (the cases' erasure state), and nothing of it is
released to anyone but the owning lender, and, under a litigation hold (a
held case at stage litigation), to the law firm litigating that case
(`access.blocked`). The restriction ends when the lender erases (possible once
every hold is lifted) or withdraws the request (`lender erase --cancel`);
lifting the hold alone does not end it (docs/decisions.md).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from ..errors import Code, CustosError
from ..model import ID_RE, Caller, CaseRow, EventDraft, rfc3339
from ..ports import CaseReader, UnitOfWork
from ..rules.access import RESTRICTED
from ..rules.retention import RetentionVerdict, borrower_retention
from .context import Context, log

MAX_GRACE_DAYS = 3650
# What an erasure destroys, as the receipt lists it (the same on both backends).
DESTROYED = (
    "wrapped data key",
    "sealed personal fields",
    "contract texts",
    "loan terms",
    "blind indexes (national_id, phone)",
    "contact targets",
    "import-line and bureau-feed digests",
)


class Lifecycle(Context):
    def erase(self, caller: Caller, borrower_id: str, grace_days: int = 0, cancel: bool = False) -> dict[str, Any]:
        """`lender erase`: shred now, schedule (grace_days > 0) or cancel a scheduled erasure; a receipt."""
        self._standing(caller, action="erase")
        if not ID_RE.fullmatch(borrower_id or ""):
            raise self._deny(caller, Code.INVALID_BORROWER_ID, "input")
        kw: dict[str, Any] = {"borrower_id": borrower_id}
        if grace_days < 0 or grace_days > MAX_GRACE_DAYS or (cancel and grace_days):
            raise self._deny(caller, Code.INVALID_ARGUMENT, "input", **kw)
        if not self.reader().cases_of_borrower(caller.org_id, borrower_id):
            # Another lender's borrower gets the same answer as one that does not exist.
            raise self._deny(caller, Code.BORROWER_NOT_FOUND, "ownership", **kw)
        now = self.clock.now()
        before = self.audit.head()[0]
        if cancel:
            receipt = self.audit.run(lambda repo: self._cancel(caller, repo, borrower_id, now))
        elif grace_days:
            due = now + timedelta(days=grace_days)
            receipt = self.audit.run(lambda repo: self._schedule(caller, repo, borrower_id, now, due))
        else:
            receipt = self.audit.run(lambda repo: self._shred(caller, repo, borrower_id, now, "request"))
        if "error" in receipt:
            raise CustosError(receipt["error"])
        if receipt["state"] == "erased" and self.forget is not None:
            self.forget()
        receipt["audit_seq"] = self._event_seq(caller, borrower_id, before)
        return receipt

    def run_due_erasures(self) -> int:
        """The gateway's schedule: perform every pending erasure that is due and not held; how many were."""
        now = self.clock.now()
        due = self.reader().due_erasures(rfc3339(now))
        return self._shred_each(due, now, "ScheduledErasure", reason="scheduled", guard=self._pending)

    def _shred_each(self, borrowers: list[tuple[str, str]], now: datetime, method: str, **kw: Any) -> int:
        """Shred each (lender, borrower) in its own unit of work, as the lender; one failure is retried next run."""
        done = 0
        for lender, borrower_id in borrowers:
            caller = Caller(org_id=lender, method=method)
            try:
                receipt = self.audit.run(functools.partial(self._shred, caller, borrower_id=borrower_id, now=now,
                                                           **kw))
            except CustosError:
                log.error("a scheduled shredding could not be committed; it is retried on the next run",
                          extra={"event": "shredding_failed"})
                continue
            done += receipt.get("state") == "erased"
        if done and self.forget is not None:
            self.forget()
        return done

    # ------------------------------------------------------------ retention
    def purge_plan(self, caller: Caller) -> dict[str, Any]:
        """`lender purge --dry-run`: the caller's borrowers whose retention has run, and those a hold keeps."""
        self._standing(caller, action="purge_plan")
        due, held = self._retention(self.clock.now(), caller.org_id)
        self.audit.append([self._event(caller, "allow", Code.OK, f"purge.plan:due={len(due)};held={len(held)}")])
        return {"due": due, "held": held}

    def run_retention(self) -> int:
        """The gateway's schedule: shred every borrower whose retention has run (not held); how many were."""
        now = self.clock.now()
        due, _held = self._retention(now, "")
        done = self._shred_each([(i["lender"], i["borrower_id"]) for i in due], now, "RetentionPurge",
                                reason="retention", guard=functools.partial(self._still_due, today=now.date()))
        self._purge_recordings(now)
        return done

    def _purge_recordings(self, now: datetime) -> int:
        """Issue 26: erased borrowers' call-recording references whose keeping period has run go; audited (a count)."""
        def work(repo: UnitOfWork) -> tuple[int, list[EventDraft]]:
            purged = repo.purge_recordings(rfc3339(now))
            caller = Caller(org_id="", method="RetentionPurge")
            return purged, [self._event(caller, "allow", Code.OK, f"retention.recordings:purged={purged}",
                                        now=now)] if purged else []
        return self.audit.run(work)

    def _verdict(self, repo: CaseReader, cases: list[CaseRow]) -> RetentionVerdict:
        def last_activity(case: CaseRow) -> str | None:
            history = repo.contact_history(case)
            return max((c.opened_at for c in history), default=None)

        return borrower_retention(lambda j: self.bundle.conduct[j].retention, cases, last_activity)

    def _still_due(self, repo: CaseReader, cases: list[CaseRow], today: date) -> bool:
        return bool(cases) and not any(c.erasure in ("pending", "erased") for c in cases) \
            and self._verdict(repo, cases).due(today)

    def _pending(self, _repo: CaseReader, cases: list[CaseRow]) -> bool:
        """A scheduled erasure still to perform: not cancelled or done meanwhile, and not held (it then waits)."""
        return any(c.erasure == "pending" for c in cases) and not self._blocked(cases)

    # ---- EU (issue 26): erasure's exceptions, GDPR Art. 17(3)(e)
    def _claimed(self, cases: list[CaseRow]) -> list[CaseRow]:
        """Cases at a stage their jurisdiction's `[erasure] claim_stages` keeps for a legal claim."""
        return [c for c in cases if (rules := self.bundle.conduct.get(c.jurisdiction)) is not None
                and c.stage in rules.erasure_claim_stages]

    def _blocked(self, cases: list[CaseRow]) -> bool:
        """Erased already, a case under legal hold or kept for a legal claim: no erasure, now or scheduled
        (`_refusal` says which)."""
        return any(c.erasure == "erased" or c.legal_hold for c in cases) or bool(self._claimed(cases))

    def _retention(self, now: datetime, lender: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        repo = self.reader()
        shortest = min((r.retention.years for r in self.bundle.conduct.values()), default=1)
        before = rfc3339(now - timedelta(days=365 * shortest))  # a superset: each is checked exactly below
        due: list[dict[str, Any]] = []
        held: list[dict[str, Any]] = []
        for lender_id, borrower_id in repo.retention_candidates(before, lender):
            cases = repo.cases_of_borrower(lender_id, borrower_id)
            if not cases or any(c.jurisdiction not in self.bundle.conduct for c in cases):
                continue
            verdict = self._verdict(repo, cases)
            if verdict.due_on is None or now.date() < verdict.due_on:
                continue
            item = {"lender": lender_id, "borrower_id": borrower_id, "cases": [c.case_id for c in cases],
                    "due_on": verdict.due_on.isoformat(), "rule": verdict.rule, "held_by": list(verdict.held)}
            (held if verdict.held else due).append(item)
        return due, held

    def rewrap_step(self, limit: int) -> int:
        """One bounded transaction of the background rewrap after a KEK rotation (no audit event: no decision)."""
        return self.audit.run(lambda repo: (repo.rewrap_keys(limit), []))

    # ------------------------------------------------------------ units of work
    def _fresh(self, repo: UnitOfWork, lender: str, borrower_id: str) -> list[CaseRow]:
        repo.lock_borrower(lender, borrower_id)  # against a contact decision or another erasure of the borrower
        return repo.cases_of_borrower(lender, borrower_id)

    def _refusal(self, caller: Caller, repo: UnitOfWork, cases: list[CaseRow],
                 now: datetime) -> tuple[dict[str, Any], list[EventDraft]]:
        """Erased already, or held: the refusal, audited per case it concerns.

        Refused under a hold, the request still stands: the borrower's cases
        are marked restricted in the same unit of work (PIPL Art. 47 ¶2: stored,
        not processed), and each case's restriction is audited. A scheduled
        erasure already stops every release, so it is left as it is.
        """
        if any(c.erasure == "erased" for c in cases):
            code, rule, named = Code.ALREADY_ERASED, "erasure", cases[:1]
        elif any(c.legal_hold for c in cases):
            code, rule, named = Code.LEGAL_HOLD, "erasure.legal_hold", [c for c in cases if c.legal_hold]
        else:  # GDPR Art. 17(3)(e): a case kept for a legal claim (its jurisdiction's [erasure] claim_stages)
            named = self._claimed(cases)
            code, rule = Code.LEGAL_CLAIM, f"{named[0].jurisdiction}.erasure.legal_claim"
        events = [self._event(caller, "deny", code, rule, case_id=c.case_id, borrower_id=c.borrower_id,
                              lender=c.lender_id, now=now) for c in named]
        if code in (Code.LEGAL_HOLD, Code.LEGAL_CLAIM) and not any(c.erasure for c in cases):
            why = "legal_hold" if code == Code.LEGAL_HOLD else "legal_claim"
            repo.set_erasure(caller.org_id, cases[0].borrower_id, RESTRICTED, None, rfc3339(now))
            events += [self._event(caller, "allow", Code.OK, f"erasure.restricted:{why}", case_id=c.case_id,
                                   borrower_id=c.borrower_id, lender=c.lender_id, now=now) for c in cases]
        return {"error": code}, events

    def _shred(self, caller: Caller, repo: UnitOfWork, borrower_id: str, now: datetime, reason: str,
               guard: Callable[[CaseReader, list[CaseRow]], bool] | None = None) -> tuple[dict[str, Any], list[EventDraft]]:
        """Shred now; a scheduled run passes `guard`, re-checked on the fresh cases (false: nothing, no event)."""
        lender = caller.org_id
        cases = self._fresh(repo, lender, borrower_id)
        stamp = rfc3339(now)
        if guard is not None and not guard(repo, cases):
            return {"state": "none"}, []  # cancelled, reopened, held or done meanwhile: decided again next run
        if self._blocked(cases):
            return self._refusal(caller, repo, cases, now)
        events: list[EventDraft] = []
        ended: list[str] = []
        for case in cases:
            kw: dict[str, Any] = {"case_id": case.case_id, "borrower_id": borrower_id, "lender": lender, "now": now}
            orgs = sorted({m.org_id for m in repo.mandates_of_case(lender, case.case_id) if m.recalled_at is None})
            for org in orgs:
                repo.recall_mandates(lender, case.case_id, org, stamp)
                ended.append(f"{case.case_id}:{org}")
                events.append(self._event(caller, "allow", Code.OK, f"mandate.recall:{org};erasure", **kw))
        repo.erase_borrower(lender, borrower_id, stamp)
        for case in cases:
            events.append(self._event(caller, "allow", Code.OK, f"erasure:reason={reason}", case_id=case.case_id,
                                      borrower_id=borrower_id, lender=lender, now=now))
        return self._receipt(lender, borrower_id, "erased", stamp, cases, reason=reason,
                             destroyed=list(DESTROYED), mandates_ended=ended), events

    def _schedule(self, caller: Caller, repo: UnitOfWork, borrower_id: str, now: datetime,
                  due: datetime) -> tuple[dict[str, Any], list[EventDraft]]:
        cases = self._fresh(repo, caller.org_id, borrower_id)
        if self._blocked(cases):
            return self._refusal(caller, repo, cases, now)
        stamp, due_at = rfc3339(now), rfc3339(due)
        repo.set_erasure(caller.org_id, borrower_id, "pending", due_at, stamp)
        events = [self._event(caller, "allow", Code.OK, f"erasure.scheduled:due={due_at}", case_id=c.case_id,
                              borrower_id=borrower_id, lender=c.lender_id, now=now) for c in cases]
        return self._receipt(caller.org_id, borrower_id, "pending", stamp, cases, due=due_at, reason="request"), events

    def _cancel(self, caller: Caller, repo: UnitOfWork, borrower_id: str,
                now: datetime) -> tuple[dict[str, Any], list[EventDraft]]:
        cases = self._fresh(repo, caller.org_id, borrower_id)
        if not any(c.erasure in ("pending", RESTRICTED) for c in cases):  # withdrawn: a restriction ends too
            code = Code.ALREADY_ERASED if any(c.erasure == "erased" for c in cases) else Code.NO_PENDING_ERASURE
            return {"error": code}, [self._event(caller, "deny", code, "erasure.cancel", case_id=cases[0].case_id,
                                                 borrower_id=borrower_id, lender=cases[0].lender_id, now=now)]
        stamp = rfc3339(now)
        repo.set_erasure(caller.org_id, borrower_id, "", None, stamp)
        events = [self._event(caller, "allow", Code.OK, "erasure.cancelled", case_id=c.case_id,
                              borrower_id=borrower_id, lender=c.lender_id, now=now) for c in cases]
        return self._receipt(caller.org_id, borrower_id, "cancelled", stamp, cases), events

    @staticmethod
    def _receipt(lender: str, borrower_id: str, state: str, at: str, cases: list[CaseRow], *, due: str = "",
                 reason: str = "", destroyed: list[str] | None = None,
                 mandates_ended: list[str] | None = None) -> dict[str, Any]:
        return {"lender": lender, "borrower_id": borrower_id, "state": state, "at": at, "due": due, "reason": reason,
                "destroyed": destroyed or [], "cases": [c.case_id for c in cases],
                "mandates_ended": mandates_ended or [], "audit_seq": -1}

    def _event_seq(self, caller: Caller, borrower_id: str, since: int) -> int:
        """The sequence number of the first event this erasure wrote (for the receipt); -1 if not found."""
        for entry in self.audit.reads().audit_query(borrower_id=borrower_id, from_seq=since):
            event = json.loads(entry.leaf)
            if event.get("org") == caller.org_id and event.get("method") == caller.method \
                    and str(event.get("rule", "")).startswith(("erasure", "mandate.recall")):
                return int(entry.seq)
        return -1

