"""Use cases: each RPC's decision and enforcement, without any transport.

The pattern is always the same: establish the caller's standing, decide with
pure functions (policy, conduct rules), record the decision in the audit log,
and only then release. Denials are recorded too, with the code that denied.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from . import access
from .admission import RateLimiter
from .conduct import (
    CHANNELS,
    PARTIES,
    RESULTS,
    CaseState,
    ConductDecision,
    ConductRules,
    ContactAttempt,
    ContactRequest,
    evaluate_contact,
    history_horizon,
)
from .errors import Code, CustosError
from .importer import ID_RE, ImportedCase, LineError, parse_line
from .model import (
    LABELS,
    MANDATE_KIND,
    PURPOSES,
    STAGES,
    STATUSES,
    AuditEntry,
    Caller,
    CaseRow,
    Clock,
    EventDraft,
    LoanRow,
    MandateRow,
    Org,
    Unsealer,
    rfc3339,
)
from .policy import PolicyBundle, ReleaseDecision, apply_transform, days_past_due, json_value
from .ports import AuditLog, CaseReader, UnitOfWork

log = logging.getLogger("custos.core")

IMPORT_BATCH = 256
IMPORT_BATCH_BYTES = 8 << 20  # with lines of up to 1 MiB, a batch never holds more than this (plus one line)
MAX_REJECTIONS = 1000
ORG_ID_RE = ID_RE


@dataclass(frozen=True)
class Released:
    case_id: str
    purpose: str
    stage: str
    fields: dict[str, str]
    rules: tuple[str, ...]


@dataclass(frozen=True)
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
    fields: list[str]
    event_head: bytes

    def holds(self, bundle: PolicyBundle, now: datetime) -> bool:
        return (bundle is self.bundle and now.date() == self.utc_day
                and now.astimezone(self.zone).date() == self.local_day)


RATE_EVENT_WINDOW_S = 1.0


@dataclass
class _Suppressed:
    since: float
    count: int
    caller: Caller
    kind: str


@dataclass
class ImportProgress:
    """What an import stream has made durable so far (totals), and the rejections of the latest batch."""

    through_line: int = 0      # every line up to this number is decided and its outcome durable
    imported: int = 0
    already_imported: int = 0  # lines identical to a case imported before: nothing stored again
    rejected_total: int = 0
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (line, code, reason) of this batch
    reported: int = 0          # rejections sent so far (at most MAX_REJECTIONS in all)
    done: bool = False         # the last message: the stream ended and every line is decided


class Core:
    """Holds the collaborators; one instance serves every request."""

    def __init__(
        self,
        reader: Callable[[], CaseReader],
        audit: AuditLog,
        bundle: PolicyBundle,
        clock: Clock,
        pseudonym_key: bytes,
        sign_checkpoint: Callable[[int, bytes], str],
        verifier_key: str = "",
    ) -> None:
        self.reader = reader
        self.audit = audit
        self.bundle = bundle
        self.clock = clock
        self.pseudonym_key = pseudonym_key
        self.sign_checkpoint = sign_checkpoint
        self.verifier_key = verifier_key
        self._rates = RateLimiter()
        self._suppressed: dict[tuple[str, str], _Suppressed] = {}
        self._suppressed_lock = threading.Lock()

    # ---------------------------------------------------------------- admission
    def admit(self, caller: Caller) -> Org:
        """Before any request byte is decoded: identity, rate and standing, each refusal audited.

        The rate comes first, so that whatever else a caller gets wrong it can
        write at most its rate of events into the log; refusals beyond the rate
        are counted, not written one by one (see `_rate_denied`).
        """
        if caller.problem:
            if not self._rates.allow("cert:" + caller.cert, self.bundle.limits.rate):
                raise self._rate_denied(caller, "unidentified")
            raise self._deny(caller, caller.problem, f"identity:cert={caller.cert}" if caller.cert else "identity")
        repo = self.reader()
        repo.refresh()
        org = repo.get_org(caller.org_id)
        kind = org.kind if org is not None else ""
        if not self._rates.allow(caller.org_id, self.bundle.limits.rate_for(kind)):
            raise self._rate_denied(caller, kind or "unregistered")
        verdict = access.standing(org, self.clock.now().date())
        if not verdict.ok:
            raise self._deny(caller, verdict.code, verdict.rule)
        assert org is not None
        return org

    def deny(self, caller: Caller, code: Code, rule: str = "") -> CustosError:
        """A refusal decided outside a use case (by the transport: undecodable request, timeout, share)."""
        return self._deny(caller, code, rule or code.lower())

    def _rate_denied(self, caller: Caller, kind: str) -> CustosError:
        """Audit a rate refusal: the first of a window at once, the rest as one count when the window ends.

        A caller far over its rate would otherwise turn every refused call into a
        durable event, filling the log and the writer's commits at the expense of
        every other organisation. Each window's count is written by
        `flush_suppressed` (called about twice a second), so every refusal is in
        the log within a second or two, as `rate:KIND;repeated=N`.
        """
        key = (caller.org_id or "cert:" + caller.cert, caller.method)
        now = time.monotonic()
        with self._suppressed_lock:
            entry = self._suppressed.get(key)
            if entry is not None and now - entry.since < RATE_EVENT_WINDOW_S:
                entry.count += 1
                return CustosError(Code.RATE_LIMITED)
            self._suppressed[key] = _Suppressed(now, 0, caller, kind)
        events = [self._repeated(entry)] if entry is not None and entry.count else []
        events.append(self._event(caller, "deny", Code.RATE_LIMITED, f"rate:{kind}"))
        self.audit.append(events)
        return CustosError(Code.RATE_LIMITED)

    def _repeated(self, entry: _Suppressed) -> EventDraft:
        return self._event(entry.caller, "deny", Code.RATE_LIMITED, f"rate:{entry.kind};repeated={entry.count}")

    def flush_suppressed(self, force: bool = False) -> None:
        """Write the counts of rate refusals whose window has ended (all of them with `force`)."""
        now = time.monotonic()
        with self._suppressed_lock:
            due = [k for k, e in self._suppressed.items() if force or now - e.since >= RATE_EVENT_WINDOW_S]
            entries = [self._suppressed.pop(k) for k in due]
        events = [self._repeated(e) for e in entries if e.count]
        if events:
            self.audit.append(events)

    # ---------------------------------------------------------------- helpers
    def _event(self, caller: Caller, decision: str, code: str, rule: str, *, purpose: str = "", case_id: str = "",
               borrower_id: str = "", fields: Iterable[str] = (), now: datetime | None = None,
               bundle: PolicyBundle | None = None, head: bytes = b"") -> EventDraft:
        # Only vocabulary goes into the log: an unknown purpose (any string a caller sent) is recorded as
        # "invalid", never verbatim, so a request cannot write arbitrary text (or personal data) into it.
        if purpose and purpose not in PURPOSES:
            purpose = "invalid"
        return EventDraft(
            org=caller.org_id, method=caller.method, purpose=purpose, case_id=case_id, borrower_id=borrower_id,
            decision=decision, code=code, rule=rule, time=rfc3339(now or self.clock.now()),
            trace_id=caller.trace_id, fields=list(fields), policy_revision=(bundle or self.bundle).revision,
            head=head,
        )

    def _deny(self, caller: Caller, code: Code, rule: str = "", **kw: Any) -> CustosError:
        """Record the denial durably, then hand back the error for the caller to raise."""
        self.audit.append([self._event(caller, "deny", code, rule or code, **kw)])
        return CustosError(code)

    def _standing(self, caller: Caller, *, kinds: tuple[str, ...] | None = None, **kw: Any) -> Org:
        """Who the caller is allowed to be right now: registered, enabled, licensed, right kind.

        Every use case starts here, so this is also where the reader's cache is brought up to date.
        """
        repo = self.reader()
        repo.refresh()
        org = repo.get_org(caller.org_id)
        verdict = access.standing(org, self.clock.now().date(), kinds)
        if not verdict.ok:
            raise self._deny(caller, verdict.code, verdict.rule, **kw)
        assert org is not None
        return org

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

    def _mandated_case(self, caller: Caller, case_ref: str, purpose: str) -> tuple[CaseRow, MandateRow]:
        """The case reached through an active mandate of the caller for this purpose, or an audited denial."""
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
        kw["borrower_id"] = case.borrower_id
        verdict, active = access.mandate(mandates, purpose, case, self.local_today(case, self.clock.now()))
        if not verdict.ok:
            raise self._deny(caller, verdict.code, verdict.rule, **kw)
        assert active is not None
        return case, active

    def _check_purpose(self, caller: Caller, purpose: str, case_ref: str) -> None:
        if purpose not in PURPOSES:
            case_id = case_ref if ID_RE.fullmatch(case_ref) else ""
            raise self._deny(caller, Code.UNKNOWN_PURPOSE, "input", case_id=case_id, purpose=purpose)

    # ---------------------------------------------------------------- reads
    def resolve_for_purpose(self, caller: Caller, org: Org, case_ref: str, purpose: str) -> CaseRow:
        """The case this caller may act on for this purpose (ownership or mandate), else an audited denial."""
        if self.bundle.owner_only(org.kind, purpose):
            return self._own_case(caller, case_ref, purpose=purpose)
        if self.bundle.mandate_required(org.kind, purpose):
            return self._mandated_case(caller, case_ref, purpose)[0]
        _, case_id = self._valid_case_ref(caller, case_ref, purpose=purpose)
        raise self._deny(caller, Code.PURPOSE_NOT_ALLOWED, "default-deny", purpose=purpose, case_id=case_id)

    def get_case(self, caller: Caller, case_ref: str, purpose: str) -> Released:
        now = self.clock.now()
        repo = self.reader()
        repo.refresh()
        key = ("grant", caller.org_id, case_ref, purpose)
        grant: Grant | None = repo.memo(key)
        if grant is None or not grant.holds(self.bundle, now):
            grant = self._grant(caller, case_ref, purpose, now)
            repo.remember(key, grant)
        case, decision = grant.case, grant.decision
        values = dict(grant.plain)
        values.update(self._released(decision, grant.unseal(), caller.org_id))
        if grant.with_history:
            history = [c.history_entry() for c in repo.contact_history(case)]
            values.update(self._released(decision, {"contact_history": history}, caller.org_id))
        # The release waits for its audit event to be durable.
        self.audit.append([self._event(caller, "allow", Code.OK, decision.rule, purpose=purpose, case_id=case.case_id,
                                       borrower_id=case.borrower_id, fields=grant.fields, now=now,
                                       bundle=grant.bundle, head=grant.event_head)])
        return Released(case.case_id, purpose, case.stage, values, decision.rules)

    def _grant(self, caller: Caller, case_ref: str, purpose: str, now: datetime) -> Grant:
        """Every check of a read, from the rows; a refusal is audited and raised, never remembered.

        Also works out, once, what every read under this grant releases: the values
        not encrypted at rest (transforms applied), which encrypted fields to open,
        and the audit event's fixed part.
        """
        self._check_purpose(caller, purpose, case_ref)
        org = self._standing(caller, purpose=purpose)
        case = self.resolve_for_purpose(caller, org, case_ref, purpose)
        decision = self.bundle.release(org.kind, purpose, case.stage)
        if not decision.allowed:
            raise self._deny(caller, decision.code, decision.rule, purpose=purpose, case_id=case.case_id,
                             borrower_id=case.borrower_id)
        zone = ZoneInfo(case.timezone)
        local_day = now.astimezone(zone).date()
        repo = self.reader()
        unseal = repo.unsealer(case, decision.encrypted)
        plain = self._released(decision, self._plain_values(case, decision, local_day), caller.org_id)
        with_history = "contact_history" in decision.fields
        fields = sorted([*plain, *unseal.fields, *(["contact_history"] if with_history else [])])
        head = self._event(caller, "allow", Code.OK, decision.rule, purpose=purpose, case_id=case.case_id,
                           borrower_id=case.borrower_id, fields=fields, now=now).head_bytes()
        return Grant(self.bundle, now.date(), zone, local_day, case, decision, plain, unseal, with_history, fields,
                     head)

    def _plain_values(self, case: CaseRow, decision: ReleaseDecision, local_day: date) -> dict[str, Any]:
        """Released values that are not encrypted at rest, before transforms (contact history is read per call)."""
        repo = self.reader()
        loan = repo.loan_values(case) if decision.needs_loan else None
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

    def list_cases(self, caller: Caller, national_id: str = "", phone: str = "") -> list[dict[str, Any]]:
        org = self._standing(caller)
        repo = self.reader()
        out: list[dict[str, Any]] = []
        if org.kind == "lender":
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

    # ---------------------------------------------------------------- lender writes
    def import_cases(self, caller: Caller, lines: Iterable[tuple[int, bytes]]) -> Iterator[ImportProgress]:
        """Stream lines in batches; after each batch is durable, say so.

        Each batch (at most IMPORT_BATCH lines or IMPORT_BATCH_BYTES) commits
        whole or not at all, with an event per line. The progress yielded after
        a commit is exactly what is stored, so a client whose stream breaks
        knows what it can skip; one that does not is still safe to send the
        file again, since a line that was already imported as it is now is
        reported as `already_imported`, never stored twice. If the line stream
        breaks (an undecodable frame, the client gone, a timeout, shutdown),
        the unfinished batch is dropped, the interruption is audited with its
        code, and the code is raised.
        """
        self._standing(caller, kinds=("lender",))
        totals = ImportProgress()
        batch: list[tuple[int, bytes]] = []
        size = 0
        try:
            for item in lines:
                batch.append(item)
                size += len(item[1])
                if len(batch) >= IMPORT_BATCH or size >= IMPORT_BATCH_BYTES:
                    yield self._import_batch(caller, batch, totals)
                    batch, size = [], 0
        except CustosError as err:
            dropped = len(batch)
            batch = []
            try:
                self.audit.append([self._event(
                    caller, "deny", err.code,
                    f"import.interrupted:through_line={totals.through_line};dropped_lines={dropped}")])
            except CustosError:
                log.error("could not audit an interrupted import")
            raise
        if batch:
            yield self._import_batch(caller, batch, totals)
        yield replace(totals, rejected=[], done=True)

    def _import_batch(self, caller: Caller, batch: list[tuple[int, bytes]], totals: ImportProgress) -> ImportProgress:
        """Validate, then store the batch in one unit of work; update `totals`, return this batch's progress."""
        lender = caller.org_id
        parsed: list[tuple[int, ImportedCase | tuple[Code, str]]] = []
        for line_no, raw in batch:
            if not raw.strip():
                continue
            try:
                parsed.append((line_no, parse_line(raw)))
            except LineError as err:
                # Keep the code and reason, never the exception: its traceback holds this frame (a cycle only
                # the collector frees) and the parsed line, which may be a megabyte of anything.
                parsed.append((line_no, (err.code, err.reason)))
        last_line = max((n for n, _ in batch), default=totals.through_line)

        def work(repo: UnitOfWork) -> tuple[tuple[int, int, list[tuple[int, str, str]]], list[EventDraft]]:
            now = self.clock.now()
            stamp = rfc3339(now)
            events: list[EventDraft] = []
            rejected: list[tuple[int, str, str]] = []
            imported = already = 0

            def reject(line_no: int, code: Code, reason: str, **kw: Any) -> None:
                rejected.append((line_no, code, reason))
                events.append(self._event(caller, "deny", code, "import", now=now, **kw))

            for line_no, item in parsed:
                if isinstance(item, tuple):
                    reject(line_no, *item)
                    continue
                kw: dict[str, Any] = {"case_id": item.case_id, "borrower_id": item.borrower_id}
                state = repo.import_state(lender, item)
                if state == "same":
                    already += 1
                    events.append(self._event(caller, "allow", Code.OK, "import.already", now=now, **kw))
                    continue
                if state == "other":
                    reject(line_no, Code.CASE_EXISTS, "case_id: already imported with other values", **kw)
                    continue
                if repo.loan_exists(lender, item.loan["loan_id"]):
                    reject(line_no, Code.LOAN_EXISTS, "loan.loan_id: already imported", **kw)
                    continue
                try:
                    with repo.savepoint():
                        repo.import_case(lender, item, stamp)
                except (UnicodeError, ValueError):
                    # Validation should have caught it; still, one bad line never sinks its batch.
                    reject(line_no, Code.IMPORT_INVALID_FIELD, "a value could not be stored as text", **kw)
                    continue
                imported += 1
                events.append(self._event(caller, "allow", Code.OK, "import", now=now, **kw))
            return (imported, already, rejected), events

        imported, already, rejected = self.audit.run(work)
        room = max(MAX_REJECTIONS - totals.reported, 0)
        totals.through_line = max(totals.through_line, last_line)
        totals.imported += imported
        totals.already_imported += already
        totals.rejected_total += len(rejected)
        totals.reported += min(room, len(rejected))
        return replace(totals, rejected=rejected[:room])

    def assign(self, caller: Caller, case_ref: str, org_id: str, purpose: str, until: str, label: str) -> dict[str, str]:
        self._standing(caller, kinds=("lender",))
        case = self._own_case(caller, case_ref, purpose=purpose)
        kw: dict[str, Any] = {"purpose": purpose, "case_id": case.case_id, "borrower_id": case.borrower_id}
        label = label or "entrusted"
        if purpose not in PURPOSES:
            raise self._deny(caller, Code.UNKNOWN_PURPOSE, "input", **kw)
        if label not in LABELS:
            raise self._deny(caller, Code.UNKNOWN_LABEL, "input", **kw)
        if not ORG_ID_RE.fullmatch(org_id):
            raise self._deny(caller, Code.INVALID_ORG_ID, "input", **kw)
        until_date = _parse_date(until)
        if until_date is None:
            raise self._deny(caller, Code.INVALID_DATE, "input", **kw)
        if until_date < self.local_today(case, self.clock.now()):
            raise self._deny(caller, Code.UNTIL_IN_PAST, "input", **kw)
        target = self.reader().get_org(org_id)
        if target is None:
            raise self._deny(caller, Code.ORG_NOT_FOUND, "input", **kw)
        if MANDATE_KIND.get(purpose) != target.kind:
            raise self._deny(caller, Code.PURPOSE_KIND_MISMATCH, "mandate.kind", **kw)
        if label == "provided" and not case.consent_third_party:
            # PIPL Art. 23: providing to another handler needs the borrower's consent.
            raise self._deny(caller, Code.CONSENT_REQUIRED, "mandate.provided_consent", **kw)
        now = self.clock.now()
        stamp = rfc3339(now)

        def work(repo: UnitOfWork) -> tuple[None, list[EventDraft]]:
            repo.recall_mandates(case.lender_id, case.case_id, org_id, stamp, purpose)
            repo.insert_mandate(case.lender_id, case.case_id, org_id, purpose, label, until_date, stamp)
            return None, [self._event(caller, "allow", Code.OK, f"mandate.grant:{org_id}", now=now, **kw)]

        self.audit.run(work)
        return {"case_id": case.case_id, "org_id": org_id, "purpose": purpose, "until": until_date.isoformat(),
                "label": label, "granted_at": stamp}

    def recall(self, caller: Caller, case_ref: str, org_id: str) -> int:
        self._standing(caller, kinds=("lender",))
        case = self._own_case(caller, case_ref)
        if not ORG_ID_RE.fullmatch(org_id):
            raise self._deny(caller, Code.INVALID_ORG_ID, "input", case_id=case.case_id)
        now = self.clock.now()

        def work(repo: UnitOfWork) -> tuple[int, list[EventDraft]]:
            n = repo.recall_mandates(case.lender_id, case.case_id, org_id, rfc3339(now))
            return n, [self._event(caller, "allow", Code.OK, f"mandate.recall:{org_id}", case_id=case.case_id,
                                   borrower_id=case.borrower_id, now=now)]

        return self.audit.run(work)

    def set_stage(self, caller: Caller, case_ref: str, stage: str) -> CaseRow:
        self._standing(caller, kinds=("lender",))
        case = self._own_case(caller, case_ref)
        if stage not in STAGES:
            raise self._deny(caller, Code.UNKNOWN_STAGE, "input", case_id=case.case_id, borrower_id=case.borrower_id)
        return self._update_case(caller, case, {"stage": stage}, f"stage:{case.stage}->{stage}")

    def set_flags(self, caller: Caller, case_ref: str, changes: dict[str, Any]) -> CaseRow:
        """Set or clear case flags and status; a settled or closed case ends every mandate on it."""
        self._standing(caller, kinds=("lender",))
        case = self._own_case(caller, case_ref)
        status = changes.get("status")
        if status is not None and status not in STATUSES:
            raise self._deny(caller, Code.UNKNOWN_STATUS, "input", case_id=case.case_id, borrower_id=case.borrower_id)
        if not changes:
            return case
        rule = "flags:" + ",".join(f"{k}={_flag_text(v)}" for k, v in sorted(changes.items()))
        return self._update_case(caller, case, changes, rule)

    def _update_case(self, caller: Caller, case: CaseRow, changes: dict[str, Any], rule: str) -> CaseRow:
        """Apply validated changes to a case the caller owns; the change and its event commit together."""
        now = self.clock.now()

        def work(repo: UnitOfWork) -> tuple[CaseRow, list[EventDraft]]:
            repo.set_case_fields(case.lender_id, case.case_id, changes, rfc3339(now))
            updated = repo.get_case(case.lender_id, case.case_id)
            assert updated is not None
            return updated, [self._event(caller, "allow", Code.OK, rule, case_id=case.case_id,
                                         borrower_id=case.borrower_id, now=now)]

        return self.audit.run(work)

    # ---------------------------------------------------------------- contact
    def _conduct_rules(self, case: CaseRow) -> ConductRules:
        rules = self.bundle.conduct.get(case.jurisdiction)
        if rules is None:
            raise CustosError(Code.POLICY_INVALID, f"no conduct rules for jurisdiction {case.jurisdiction}")
        return rules

    def _contact_case(self, caller: Caller, org: Org, case_ref: str) -> CaseRow:
        """Agencies reach a case through a live collection mandate; the owning lender directly."""
        if org.kind == "lender":
            return self._own_case(caller, case_ref, purpose="collection")
        if org.kind != "agency":
            raise self._deny(caller, Code.WRONG_ORG_KIND, "identity.kind", purpose="collection")
        return self._mandated_case(caller, case_ref, "collection")[0]

    def open_contact(self, caller: Caller, case_ref: str, channel: str, party: str) -> dict[str, str]:
        """Release a phone number or address only when every conduct rule allows, counted centrally.

        The decision runs inside the serialised writer, against the history as
        committed, so two agencies racing for the last call under a cap cannot
        both get it; the attempt and its audit event commit together.
        """
        party = party or "borrower"
        org = self._standing(caller, purpose="collection")
        if channel not in CHANNELS:
            raise self._deny(caller, Code.UNKNOWN_CHANNEL, "input", purpose="collection")
        if party not in PARTIES:
            raise self._deny(caller, Code.UNKNOWN_PARTY, "input", purpose="collection")
        case = self._contact_case(caller, org, case_ref)
        rules = self._conduct_rules(case)
        now = self.clock.now()
        since = rfc3339(now - history_horizon(rules))

        def work(repo: UnitOfWork) -> tuple[tuple[ConductDecision, dict[str, str], str], list[EventDraft]]:
            fresh = repo.get_case(case.lender_id, case.case_id)
            assert fresh is not None
            repo.lock_borrower(fresh.lender_id, fresh.borrower_id)  # caps count per borrower: one decision at a time
            history = [
                ContactAttempt(at=_parse_time(c.opened_at) or now, case_id=c.case_id, org_id=c.org_id,
                               channel=c.channel, party=c.party, target=c.target.hex(), result=c.result)
                for c in repo.contacts_since(fresh.lender_id, fresh.borrower_id, since)
            ]
            target, release = self._contact_target(repo, fresh, channel, party, history)
            state = _conduct_state(fresh)
            request = ContactRequest(case_id=fresh.case_id, org_id=caller.org_id, channel=channel, party=party,
                                     target=target.hex() if target else "")
            decision = evaluate_contact(rules, state, request, history, now)
            kw: dict[str, Any] = {"purpose": "collection", "case_id": fresh.case_id,
                                  "borrower_id": fresh.borrower_id, "now": now}
            if decision.allowed and (target is None or not release):
                decision = ConductDecision(False, Code.NO_CONTACT_DATA, f"{rules.jurisdiction}.data")
            if not decision.allowed:
                return (decision, {}, ""), [self._event(caller, "deny", decision.code, decision.rule, **kw)]
            assert target is not None
            contact_id = repo.insert_contact(fresh.lender_id, fresh.case_id, fresh.borrower_id, caller.org_id,
                                             channel, party, target, rfc3339(now))
            names = [f"{party}.{k}" for k in release]
            return (decision, release, contact_id), [self._event(caller, "allow", Code.OK, decision.rule, fields=names,
                                                                 **kw)]

        decision, release, contact_id = self.audit.run(work)
        if not decision.allowed:
            raise CustosError(decision.code)
        return {"contact_id": contact_id, "case_id": case.case_id, "channel": channel, "party": party,
                "opened_at": rfc3339(now), **release}

    def _contact_target(self, repo: UnitOfWork, case: CaseRow, channel: str, party: str,
                        history: list[ContactAttempt]) -> tuple[bytes | None, dict[str, str]]:
        """The opaque key the caps count by, and the values a granted contact releases."""
        if party == "borrower":
            if channel in ("call", "sms"):
                phone = repo.borrower_values(case, ["phone"]).get("phone")
                return (repo.bidx(case.lender_id, "phone", phone), {"phone": phone}) if phone else (None, {})
            address = repo.borrower_values(case, ["home_address"]).get("home_address")
            target = repo.bidx(case.lender_id, "address", case.borrower_id)
            return (target, {"address": address}) if address else (None, {})
        raw = repo.borrower_values(case, ["emergency_contacts"]).get("emergency_contacts")
        contacts = json.loads(raw) if raw else []
        if not contacts:
            return None, {}
        rules = self._conduct_rules(case)
        allowed = rules.third_party.release if rules.third_party else ()
        keyed = [(repo.bidx(case.lender_id, "phone", c["phone"]), c) for c in contacts]
        contacted = {a.target for a in history if a.party == "emergency_contact"}
        # The first emergency contact not yet contacted; all contacted: the first (the rules then decide).
        target, chosen = next(((k, c) for k, c in keyed if k.hex() not in contacted), keyed[0])
        return target, {k: str(chosen[k]) for k in allowed if chosen.get(k)}

    def record_outcome(self, caller: Caller, contact_id: str, result: str) -> dict[str, str]:
        """Record what came of a contact; a dispute sets the case's dispute flag at once."""
        org = self._standing(caller, purpose="collection")
        if result not in RESULTS:
            raise self._deny(caller, Code.UNKNOWN_RESULT, "input", purpose="collection")
        if not ID_RE.fullmatch(contact_id):
            raise self._deny(caller, Code.CONTACT_NOT_FOUND, "input", purpose="collection")
        now = self.clock.now()

        def work(repo: UnitOfWork) -> tuple[tuple[Code, dict[str, str]], list[EventDraft]]:
            row = repo.get_contact(contact_id)
            if row is None or row.org_id != org.id:
                # Another org's contact looks exactly like a missing one.
                return (Code.CONTACT_NOT_FOUND, {}), [self._event(caller, "deny", Code.CONTACT_NOT_FOUND, "contact",
                                                               purpose="collection", now=now)]
            lender, case_id, channel, party, opened_at = row.lender_id, row.case_id, row.channel, row.party, \
                row.opened_at
            kw: dict[str, Any] = {"purpose": "collection", "case_id": case_id, "borrower_id": row.borrower_id,
                                  "now": now}
            if row.result is not None:
                return (Code.OUTCOME_ALREADY_RECORDED, {}), [self._event(caller, "deny", Code.OUTCOME_ALREADY_RECORDED,
                                                                      "contact.outcome", **kw)]
            repo.set_contact_result(contact_id, result, rfc3339(now))
            rule = f"contact.outcome:{result}"
            if result == "dispute":
                repo.set_case_fields(lender, case_id, {"disputed": True}, rfc3339(now))
                rule += ";flag:disputed=true"
            info = {"contact_id": contact_id, "case_id": case_id, "channel": channel, "party": party,
                    "opened_at": opened_at, "result": result}
            return (Code.OK, info), [self._event(caller, "allow", Code.OK, rule, **kw)]

        code, info = self.audit.run(work)
        if code != Code.OK:
            raise CustosError(code)
        return info

    # ---------------------------------------------------------------- explain
    def explain(self, caller: Caller, org_id: str, case_ref: str, purpose: str, at: str) -> dict[str, Any]:
        """What would `org_id` get for this case under `purpose` at time `at`, and why. Reports; enforces nothing."""
        self._standing(caller, kinds=("lender",))
        case = self._own_case(caller, case_ref, purpose=purpose)
        kw: dict[str, Any] = {"purpose": purpose, "case_id": case.case_id, "borrower_id": case.borrower_id}
        if purpose not in PURPOSES:
            raise self._deny(caller, Code.UNKNOWN_PURPOSE, "input", **kw)
        when = _parse_time(at) if at else self.clock.now()
        if when is None:
            raise self._deny(caller, Code.INVALID_TIME, "input", **kw)
        if not ORG_ID_RE.fullmatch(org_id):
            raise self._deny(caller, Code.INVALID_ORG_ID, "input", **kw)
        repo = self.reader()
        target = repo.get_org(org_id)
        today = self.local_today(case, when)
        notes: list[str] = [f"evaluated at {rfc3339(when)} (borrower local date {today.isoformat()})"]
        verdict = access.standing(target, when.date())
        decision: ReleaseDecision | None = None
        rules: list[str] = [verdict.rule] if not verdict.ok else []
        if verdict.ok and target is not None:
            if self.bundle.owner_only(target.kind, purpose):
                verdict = access.OK if target.id == case.lender_id else access.Verdict(Code.CASE_NOT_FOUND, "ownership")
            elif self.bundle.mandate_required(target.kind, purpose):
                mandates = [m for m in repo.mandates_for(target.id, case.case_id) if m.lender_id == case.lender_id]
                verdict, active = access.mandate(mandates, purpose, case, today)
                if active is not None:
                    notes.append(f"mandate {active.label} until {active.until.isoformat()}")
            else:
                verdict = access.Verdict(Code.PURPOSE_NOT_ALLOWED, "default-deny")
            rules.append(verdict.rule)
            if verdict.ok:
                decision = self.bundle.release(target.kind, purpose, case.stage)
                rules.extend(decision.rules)
                if not decision.allowed:
                    verdict = access.Verdict(decision.code, decision.rule)
        fields = []
        if decision is not None and decision.allowed:
            rule_of = {f: r.id for r in self.bundle.rules for f in r.fields if r.id in decision.rules}
            fields = [{"field": f, "transform": t.describe(), "rule": rule_of.get(f, "")}
                      for f, t in sorted(decision.fields.items())]
        if purpose == "collection" and target is not None and target.kind in ("agency", "lender"):
            notes.extend(self._contact_notes(case, when))
        self.audit.append([self._event(caller, "allow", Code.OK, f"explain:{org_id}", **kw)])
        return {"org_id": org_id, "case_id": case.case_id, "purpose": purpose, "stage": case.stage,
                "decision": "allow" if verdict.ok else "deny", "code": verdict.code, "fields": fields,
                "rules": rules, "policy_revision": self.bundle.revision, "notes": notes}

    def _contact_notes(self, case: CaseRow, when: datetime) -> list[str]:
        """How a call to the borrower would fare at `when`, ignoring caps (no history is consulted)."""
        rules = self._conduct_rules(case)
        d = evaluate_contact(rules, _conduct_state(case), ContactRequest(case.case_id, "explain", "call", "borrower", "explain"),
                             [], when)
        verdict = "allowed" if d.allowed else f"refused ({d.code}, rule {d.rule})"
        return [f"a borrower call at that time: {verdict}", *d.notes, f"conduct rules: {rules.source}"]

    # ---------------------------------------------------------------- audit
    def audit_query(self, caller: Caller, case_id: str = "", org: str = "", borrower_id: str = "", since: str = "",
                    from_seq: int = 0) -> Iterator[AuditEntry]:
        self._standing(caller, kinds=("regulator",), purpose="supervision")
        for value in (case_id, org, borrower_id):
            if value and not ID_RE.fullmatch(value):
                raise self._deny(caller, Code.INVALID_ARGUMENT, "input", purpose="supervision")
        since_text = ""
        if since:
            ts = _parse_time(since)
            if ts is None:
                raise self._deny(caller, Code.INVALID_TIME, "input", purpose="supervision")
            since_text = rfc3339(ts)
        self.audit.append([self._event(caller, "allow", Code.OK, "supervision.query", purpose="supervision",
                                       case_id=case_id, borrower_id=borrower_id)])
        return self.reader().audit_query(case_id, org, borrower_id, since_text, max(from_seq, 0))

    def checkpoint(self, caller: Caller) -> tuple[str, int]:
        self._standing(caller, kinds=("regulator",), purpose="supervision")
        size, root = self.audit.head()
        return self.sign_checkpoint(size, root), size


def _conduct_state(case: CaseRow) -> CaseState:
    """The conduct rules' view of a case: flags and place, no personal data."""
    return CaseState(case_id=case.case_id, borrower_key=case.borrower_id, jurisdiction=case.jurisdiction,
                     timezone=case.timezone, stage=case.stage, status=case.status, disputed=case.disputed,
                     cease_contact=case.cease_contact, attorney_represented=case.attorney_represented,
                     lost_contact=case.lost_contact)


def _summary(case: CaseRow, purpose: str, until: str) -> dict[str, Any]:
    return {"case_id": case.case_id, "lender": case.lender_id, "stage": case.stage, "status": case.status,
            "jurisdiction": case.jurisdiction, "purpose": purpose, "until": until, "flags": case.flags()}


def _flag_text(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _parse_date(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        return None


def _parse_time(text: str) -> datetime | None:
    """An RFC 3339 time with an offset, within TIME_RANGE (so later arithmetic cannot overflow), else None."""
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00")) if len(text) <= 40 else None
        if ts is None or ts.tzinfo is None:
            return None
        utc = ts.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return utc if TIME_RANGE[0] <= utc < TIME_RANGE[1] else None


# Times a caller may name (Explain.at, QueryAudit.since): wide enough for any real question, and far
# enough inside datetime's range that a day or two of arithmetic, or a zone offset, cannot overflow.
TIME_RANGE = (datetime(1900, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC))
