"""Reads: a case's minimised record for a purpose, and the list of cases a caller may see.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from ..errors import Code
from ..model import (
    ID_RE,
    Caller,
    CaseRow,
    LoanRow,
    MandateRow,
    Org,
    Unsealer,
)
from ..ports import CaseReader, StaleView
from ..rules import access
from ..rules.capabilities import LENDER
from ..rules.decisions import decide_read, needs_evidence
from ..rules.policy import PolicyBundle, ReleaseDecision, apply_transform, days_past_due, json_value
from .context import Context
from .plans import active_plan_due, contact_history, plan_rules


@dataclass(frozen=True)
class Released:
    case_id: str
    purpose: str
    stage: str
    fields: dict[str, str]
    rules: tuple[str, ...]
    erasure: str = ""  # for the owner: "pending" or "erased" (its personal fields are then gone)


_SHARED: dict[Any, Any] = {}
S = TypeVar("S", bound=Hashable)


def _shared(value: S) -> S:
    """One object for the equal values many grants hold (a field list, the event's fixed part).

    A grant is held per party, case and purpose, so at a million cases held
    each of these copies would be a few hundred megabytes. Bounded: emptied
    whole at 4,096 distinct values (new bundles and parties), which costs only
    copies.
    """
    if len(_SHARED) > 4096:
        _SHARED.clear()
    return _SHARED.setdefault(value, value)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Grant:
    """An allowed read of one case, remembered with the rows it was decided from (vault RowCache).

    It is decided from the org, mandate, case and loan rows, the policy bundle,
    and two days: the UTC day (licence expiry) and the case's local day (mandate
    end, days past due). Any change to those rows drops it with the row cache; it
    holds only while the bundle is the same object and both days are the ones it
    was decided on. It keeps the values that are not encrypted at rest as released
    text, and the encrypted fields only as the vault's `Unsealer` (ciphertext and
    a key), so plaintext PI exists only inside the call that releases it.
    """

    bundle: PolicyBundle
    utc_day: date
    zone: ZoneInfo
    local_day: date
    case: CaseRow
    decision: ReleaseDecision
    plain: dict[str, str]
    unseal: Unsealer
    with_history: bool
    fields: tuple[str, ...]
    head_front: bytes  # the allow event's leaf up to `"seq":`, in two: the case's ids,
    head_tail: bytes  # and the rest (shared by the grants of one party, purpose and field set)

    @property
    def event_head(self) -> bytes:
        return self.head_front + self.head_tail

    def holds(self, bundle: PolicyBundle, now: datetime) -> bool:
        return (bundle is self.bundle and now.date() == self.utc_day
                and now.astimezone(self.zone).date() == self.local_day)


class Reads(Context):
    def _reach(self, caller: Caller, org: Org, case_ref: str, purpose: str) -> tuple[CaseRow, Sequence[MandateRow]]:
        """The case this caller addresses for this purpose (its own, or through its mandates), else audited."""
        if self.bundle.owner_only(org.kind, purpose):
            return self._own_case(caller, case_ref, purpose=purpose), ()
        if self.bundle.mandate_required(org.kind, purpose):
            return self._mandates_reaching(caller, case_ref, purpose)
        _, case_id = self._valid_case_ref(caller, case_ref, purpose=purpose)
        raise self._deny(caller, Code.PURPOSE_NOT_ALLOWED, "default-deny", purpose=purpose, case_id=case_id)

    def get_case(self, caller: Caller, case_ref: str, purpose: str) -> Released:
        now = self.clock.now()
        repo = self.reader()
        key = ("grant", caller.org_id, case_ref, purpose)
        # A remembered grant may be used on the reader's unchecked view (no round trip to the store):
        # its allow event is then stored only if nothing it was decided from changed meanwhile, and a
        # changed view decides again, checked. Everything else is decided on a checked view.
        view = repo.assume()
        grant: Grant | None = repo.memo(key)
        if grant is None or not grant.holds(self.bundle, now):
            grant, view = self._grant(caller, case_ref, purpose, now), None  # _standing checks the view
            self._keep(key, grant, purpose)
        try:
            return self._release(caller, grant, purpose, now, view)
        except StaleView:
            grant = self._grant(caller, case_ref, purpose, now)
            self._keep(key, grant, purpose)
            return self._release(caller, grant, purpose, now, None)

    def _keep(self, key: tuple[str, ...], grant: Grant, purpose: str) -> None:
        """Remember a grant with its rows, unless its preconditions read the contact history (not a cached table).

        Filed under its case: a change to that case's rows (its borrower's, its loan's, its mandates') or to
        any org drops it, a change to another case does not."""
        if not needs_evidence(purpose):
            self.reader().remember(key, grant, grant.case.case_id)

    def _values(self, caller: Caller, grant: Grant) -> dict[str, str]:
        """What a grant releases now: its fixed values, the sealed fields opened, the contact history read."""
        case, decision = grant.case, grant.decision
        values = dict(grant.plain)
        values.update(self._released(decision, grant.unseal(), caller.org_id))
        if grant.with_history:
            history = contact_history(self.reader(), case, self.clock.now(),
                                      recordings=caller.org_id == case.lender_id)
            values.update(self._released(decision, {"contact_history": history}, caller.org_id))
        return values

    def _release(self, caller: Caller, grant: Grant, purpose: str, now: datetime, view: int | None) -> Released:
        """The values a grant releases, once its event is durable (and, on an unchecked view, proven fresh)."""
        case, decision = grant.case, grant.decision
        values = self._values(caller, grant)
        # The release waits for its audit event to be durable.
        self.audit.append([self._event(caller, "allow", Code.OK, decision.rule, purpose=purpose, case_id=case.case_id,
                                       borrower_id=case.borrower_id, lender=case.lender_id, fields=grant.fields, now=now,
                                       bundle=grant.bundle, head=grant.event_head)], fresh_as=view)
        return Released(case.case_id, purpose, case.stage, values, decision.rules,
                        case.erasure if caller.org_id == case.lender_id else "")

    def _grant(self, caller: Caller, case_ref: str, purpose: str, now: datetime) -> Grant:
        """Every check of a read, from the rows; a refusal is audited and raised, never remembered."""
        self._check_purpose(caller, purpose, case_ref)
        org = self._standing(caller, purpose=purpose, case_ref=case_ref)
        case, mandates = self._reach(caller, org, case_ref, purpose)
        decided = self._decide_grant(caller, org, case, mandates, purpose, now)
        if not isinstance(decided, Grant):
            code, rule = decided
            raise self._deny(caller, code, rule, purpose=purpose, case_id=case.case_id, borrower_id=case.borrower_id,
                             lender=case.lender_id)
        return decided

    def _decide_grant(self, caller: Caller, org: Org, case: CaseRow, mandates: Sequence[MandateRow], purpose: str,
                      now: datetime) -> Grant | tuple[Code, str]:
        """The read's decision on a located case: a Grant, or the refusal's (code, rule), not yet audited.

        Also works out, once, what every read under this grant releases: the values
        not encrypted at rest (transforms applied), which encrypted fields to open,
        and the audit event's fixed part.
        """
        evidence = self._evidence(case) if needs_evidence(purpose) else None
        verdict = decide_read(self.bundle, org, case, mandates, purpose, now, evidence)
        if not verdict.allowed or verdict.release is None:
            return Code(verdict.code), verdict.rule
        decision = verdict.release
        zone = ZoneInfo(case.timezone)
        local_day = now.astimezone(zone).date()
        repo = self.reader()
        unseal = repo.unsealer(case, decision.encrypted)
        raw = self._plain_values(case, decision, local_day, loan=evidence.loan if evidence else None)
        if case.active_plan and "amount_due" in decision.fields:  # an accepted plan sets it (plans.py)
            due = active_plan_due(repo, plan_rules(self.bundle, case), case, repo.loan_values(case), local_day)
            if due is not None:
                raw["amount_due"] = due
        plain = self._released(decision, raw, caller.org_id)
        with_history = "contact_history" in decision.fields
        fields = _shared(tuple(sorted([*plain, *unseal.fields, *(["contact_history"] if with_history else [])])))
        # A release through a `provided` mandate says so in its rule (the compliance report's label); `entrusted`,
        # the default, adds nothing, so the other events keep their shape.
        rule = decision.rule + (";label=provided" if verdict.mandate and verdict.mandate.label == "provided" else "")
        front, tail = self._event(caller, "allow", Code.OK, rule, purpose=purpose, case_id=case.case_id,
                                  borrower_id=case.borrower_id, lender=case.lender_id, fields=fields, now=now).head_parts()
        return Grant(self.bundle, _shared(now.date()), zone, _shared(local_day), case, decision, plain, unseal,
                     with_history, fields, front, _shared(tail))

    def _plain_values(self, case: CaseRow, decision: ReleaseDecision, local_day: date,
                      store: CaseReader | None = None, loan: LoanRow | None = None) -> dict[str, Any]:
        """Released values that are not encrypted at rest, before transforms (contact history is read per call).

        `loan`: the loan terms when the caller has read them already (the preconditions' evidence).
        """
        repo = store if store is not None else self.reader()
        if loan is None and decision.needs_loan:
            loan = repo.loan_values(case)
        raw: dict[str, Any] = {}
        for name in decision.fields:
            if name in decision.encrypted or name == "contact_history":
                continue
            if name in LoanRow.FIELDS:
                raw[name] = loan.value(name) if loan is not None else None
            elif name == "lender_name":
                raw[name] = repo.org_name(case.lender_id)
            elif name == "days_past_due":
                raw[name] = days_past_due(loan.first_delinquency_on if loan is not None else None, local_day)
            elif name == "consent":
                raw[name] = {"third_party_sharing": case.consent_third_party,
                             "credit_reporting": case.consent_credit}
            elif hasattr(case, name):
                raw[name] = getattr(case, name)
        return raw

    def _released(self, decision: ReleaseDecision, raw: Mapping[str, Any], recipient: str) -> dict[str, str]:
        """Values as released: text, the field's transform applied. Absent values are omitted."""
        out: dict[str, str] = {}
        transforms = decision.fields
        for name, value in raw.items():
            if value is None:
                continue
            if type(value) is not str:
                if isinstance(value, bool):
                    value = "true" if value else "false"
                elif isinstance(value, (list, dict)):
                    value = json_value(value)
                else:
                    value = str(value)
            t = transforms[name]
            out[name] = value if t.name == "plain" else apply_transform(t, value, self.pseudonym_key, recipient)
        return out

    def subject_data(self, caller: Caller, borrower_id: str) -> list[Released]:
        """The borrower's own data in each of the caller's cases, as the lender reads it (each read audited).

        For `lender subject-export` (PIPL Art. 45, GDPR Art. 15), with the
        disclosures list of the subject report beside it.
        """
        self._standing(caller, action="subject_data")
        if not ID_RE.fullmatch(borrower_id or ""):
            raise self._deny(caller, Code.INVALID_BORROWER_ID, "input")
        cases = self.reader().cases_of_borrower(caller.org_id, borrower_id)
        if not cases:
            raise self._deny(caller, Code.BORROWER_NOT_FOUND, "ownership", borrower_id=borrower_id)
        return [self.get_case(caller, case.case_id, "servicing") for case in cases]

    def list_cases(self, caller: Caller, national_id: str = "", phone: str = "") -> list[dict[str, Any]]:
        org = self._standing(caller, action="list_cases")
        repo = self.reader()
        out: list[dict[str, Any]] = []
        if org.kind == LENDER:
            if national_id or phone:
                field, value = ("national_id", national_id) if national_id else ("phone", phone)
                if len(value) > 128:
                    raise self._deny(caller, Code.INVALID_ARGUMENT, "input")
                cases = repo.cases_by_index(org.id, field, value)
            else:
                cases = repo.cases_of_lender(org.id)
            for c in cases:
                out.append(_summary(c, "servicing", ""))
        else:
            if national_id or phone:
                raise self._deny(caller, Code.WRONG_ORG_KIND, "identity.kind")
            seen: set[tuple[str, str, str]] = set()
            now = self.clock.now()
            for m in repo.mandates_of_org(org.id):
                key = (m.lender_id, m.case_id, m.purpose)
                if key in seen:
                    continue
                seen.add(key)
                case = repo.get_case(m.lender_id, m.case_id)
                if case is None or not access.mandate([m], m.purpose, case, self.local_today(case, now))[0].ok:
                    continue
                out.append(_summary(case, m.purpose, m.until.isoformat()))
        self.audit.append([self._event(caller, "allow", Code.OK, "list", fields=[])])
        return out


def _summary(case: CaseRow, purpose: str, until: str) -> dict[str, Any]:
    return {"case_id": case.case_id, "lender": case.lender_id, "stage": case.stage, "status": case.status,
            "jurisdiction": case.jurisdiction, "purpose": purpose, "until": until, "flags": case.flags(),
            "erasure": case.erasure}
