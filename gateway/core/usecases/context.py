"""What every use case shares: the collaborators, the audit of decisions, and the checks of standing and reach.

The feature modules (reads, lender, contact, explain, supervision,
gatekeeping) each add one group of use cases to this context; `usecases.Core`
puts them together. Nothing here imports grpc or a storage backend: the core
knows storage only through `ports`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.tlog.proofs import NodeCache

from ..errors import Code, CustosError
from ..model import (
    ID_RE,
    ORG_ID_RE,
    PURPOSES,
    Caller,
    CaseRow,
    Clock,
    EventDraft,
    MandateRow,
    Org,
    rfc3339,
)
from ..ports import AuditLog, CaseReader
from ..rules import access
from ..rules.admission import RateLimiter, _Suppressed
from ..rules.conduct import (
    CaseState,
    ConductRules,
)
from ..rules.mandates import cross_border
from ..rules.policy import PolicyBundle
from ..rules.preconditions import Evidence

log = logging.getLogger("custos.core")


class Context:
    def __init__(
        self,
        reader: Callable[[], CaseReader],
        audit: AuditLog,
        bundle: PolicyBundle,
        clock: Clock,
        pseudonym_key: bytes,
        sign_checkpoint: Callable[[int, bytes], str],
        verifier_key: str = "",
        assemble_packet: Callable[[Any], bytes] | None = None,
        forget: Callable[[], bool] | None = None,
    ) -> None:
        self.reader = reader
        self.audit = audit
        self.bundle = bundle
        self.clock = clock
        self.pseudonym_key = pseudonym_key
        self.sign_checkpoint = sign_checkpoint
        self.verifier_key = verifier_key
        # Builds and signs a litigation packet (gateway/packets); None: no packet key, packets refused.
        self.assemble_packet = assemble_packet
        # The store's step after an erasure (SQLite: checkpoint the WAL away); None: nothing to do.
        self.forget = forget
        self._rates = RateLimiter()
        self._nodes = NodeCache()  # this log's complete ranges of tree hashes (immutable once complete)
        self._published = -1  # the tree size of the last checkpoint this process published
        self._suppressed: dict[tuple[str, str], _Suppressed] = {}
        self._suppressed_lock = threading.Lock()

    def _event(self, caller: Caller, decision: str, code: str, rule: str, *, purpose: str = "", case_id: str = "",
               borrower_id: str = "", fields: Iterable[str] = (), now: datetime | None = None,
               bundle: PolicyBundle | None = None, head: bytes = b"", lender: str = "", channel: str = "",
               contact_id: str = "", party: str = "", zone: str = "") -> EventDraft:
        # Only vocabulary goes into the log: an unknown purpose (any string a caller sent) is recorded as
        # "invalid", never verbatim, so a request cannot write arbitrary text (or personal data) into it.
        if purpose and purpose not in PURPOSES:
            purpose = "invalid"
        return EventDraft(
            org=caller.org_id, method=caller.method, purpose=purpose, case_id=case_id, borrower_id=borrower_id,
            decision=decision, code=code, rule=rule, time=rfc3339(now or self.clock.now()),
            trace_id=caller.trace_id, fields=list(fields), policy_revision=(bundle or self.bundle).revision,
            head=head, lender=lender, channel=channel, contact_id=contact_id, agent=caller.agent,
            party=party, zone=zone,
        )

    def _deny(self, caller: Caller, code: Code, rule: str = "", **kw: Any) -> CustosError:
        """Record the denial durably, then hand back the error for the caller to raise."""
        self.audit.append([self._event(caller, "deny", code, rule or code, **kw)])
        return CustosError(code)

    def _standing(self, caller: Caller, *, action: str | None = None, case_ref: str | None = None,
                  **kw: Any) -> Org:
        """Who the caller is allowed to be right now: registered, enabled, licensed, of a kind allowed `action`.

        Which kinds may take an action is the bundle's capability table (`rules/capabilities.py`); None: any
        kind (the release rules decide, as for GetCase).

        Every use case starts here, so this is also where the reader's cache is brought up to date. A
        refusal names `case_ref` as admission's would (`deny_standing`): admission may have let the call
        through on an unchecked view whose org row a change elsewhere has made stale (PostgreSQL).
        """
        repo = self.reader()
        repo.refresh()
        # Read again on the checked view: admission may have read it on an unchecked one (`Gatekeeping.admit`).
        org = repo.get_org(caller.org_id)
        verdict = access.standing(org, self.clock.now().date(), self.bundle.capabilities, action, caller.agent)
        if not verdict.ok:
            if case_ref is not None:
                raise self.deny_standing(caller, verdict, case_ref)
            raise self._deny(caller, verdict.code, verdict.rule, **kw)
        assert org is not None
        return org

    def deny_standing(self, caller: Caller, verdict: access.Verdict, case_ref: str) -> CustosError:
        """Audit a standing refusal naming the request's case (`Gatekeeping.deny_standing`)."""
        raise NotImplementedError

    def _valid_case_ref(self, caller: Caller, case_ref: str, **kw: Any) -> tuple[str | None, str]:
        lender, _, case_id = case_ref.rpartition("/")
        if not ID_RE.fullmatch(case_id) or (lender and not ORG_ID_RE.fullmatch(lender)):
            raise self._deny(caller, Code.INVALID_CASE_ID, "input", **kw)
        return (lender or None), case_id

    def _own_case(self, caller: Caller, case_ref: str, **kw: Any) -> CaseRow:
        lender, case_id = self._valid_case_ref(caller, case_ref, **kw)
        case = None
        if lender in (None, caller.org_id):
            case = self.reader().get_case(caller.org_id, case_id)
        if case is None:
            # Same answer for "no such case" and "another lender's case": existence is not revealed.
            raise self._deny(caller, Code.CASE_NOT_FOUND, "ownership", case_id=case_id, **kw)
        return case

    @staticmethod
    def local_today(case: CaseRow, now: datetime) -> date:
        return now.astimezone(ZoneInfo(case.timezone)).date()

    def _mandates_reaching(self, caller: Caller, case_ref: str, purpose: str) -> tuple[CaseRow, Sequence[MandateRow]]:
        """The case a caller addresses by id through its mandates, and those mandates; else an audited denial.

        Only locates: whether a mandate is live is the decision's to say
        (`decisions.decide_read`, `access.mandate`).
        """
        lender, case_id = self._valid_case_ref(caller, case_ref, purpose=purpose)
        kw: dict[str, Any] = {"purpose": purpose, "case_id": case_id}
        repo = self.reader()
        mandates: Sequence[MandateRow] = repo.mandates_for(caller.org_id, case_id)
        if lender:
            mandates = [m for m in mandates if m.lender_id == lender]
        if not mandates:
            raise self._deny(caller, Code.NO_MANDATE, "mandate", **kw)
        if len({m.lender_id for m in mandates}) > 1:
            raise self._deny(caller, Code.CASE_AMBIGUOUS, "mandate", **kw)
        case = repo.get_case(mandates[0].lender_id, case_id)
        if case is None:
            raise self._deny(caller, Code.NO_MANDATE, "mandate", **kw)
        return case, mandates

    def _mandated_case(self, caller: Caller, case_ref: str, purpose: str) -> tuple[CaseRow, MandateRow]:
        """The case reached through an active mandate of the caller for this purpose, or an audited denial."""
        case, mandates = self._mandates_reaching(caller, case_ref, purpose)
        today = self.local_today(case, self.clock.now())
        verdict, active = access.mandate(mandates, purpose, case, today)
        if verdict.ok:  # abroad, only while the cross-border safeguards hold (issue 26, PIPL Art. 38-39)
            rules = self.bundle.conduct.get(case.jurisdiction)
            org = self.reader().get_org(caller.org_id) if rules is not None else None
            if rules is not None and org is not None:
                verdict = cross_border(rules.mandates, case, org.jurisdiction, today)
        if not verdict.ok:
            raise self._deny(caller, verdict.code, verdict.rule, purpose=purpose, case_id=case.case_id,
                             borrower_id=case.borrower_id, lender=case.lender_id)
        assert active is not None
        return case, active

    def _check_purpose(self, caller: Caller, purpose: str, case_ref: str) -> None:
        if purpose not in PURPOSES:
            case_id = case_ref if ID_RE.fullmatch(case_ref) else ""
            raise self._deny(caller, Code.UNKNOWN_PURPOSE, "input", case_id=case_id, purpose=purpose)

    def _evidence(self, case: CaseRow) -> Evidence:
        """What the litigation and credit-reporting preconditions read: the loan terms and the contact history."""
        repo = self.reader()
        return Evidence(repo.loan_values(case), repo.contact_history(case))

    def _conduct_rules(self, case: CaseRow) -> ConductRules:
        rules = self.bundle.conduct.get(case.jurisdiction)
        if rules is None:
            raise CustosError(Code.POLICY_INVALID, f"no conduct rules for jurisdiction {case.jurisdiction}")
        return rules


def _conduct_state(case: CaseRow) -> CaseState:
    """The conduct rules' view of a case: flags and place, no personal data."""
    return CaseState(case_id=case.case_id, borrower_key=case.borrower_id, jurisdiction=case.jurisdiction,
                     timezone=case.timezone, stage=case.stage, status=case.status, disputed=case.disputed,
                     cease_contact=case.cease_contact, attorney_represented=case.attorney_represented,
                     lost_contact=case.lost_contact, lender_id=case.lender_id,
                     consent_artificial_voice=case.consent_artificial_voice, notices=_notices(case))


def _notices(case: CaseRow) -> dict[str, date]:
    """The notices on file that gate contact (issue 26), by kind."""
    out: dict[str, date] = {}
    for kind, text in (("validation", case.validation_notice_on), ("outsourcing", case.outsourcing_notice_on)):
        if text:
            out[kind] = date.fromisoformat(text)
    return out


def _flag_text(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)
