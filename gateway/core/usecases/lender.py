"""Lender actions: import, mandates (assign, recall), stage, flags and status.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from functools import partial
from typing import Any, TypeVar

from ..errors import Code, CustosError
from ..importer import LineError, parse_line
from ..model import (
    FORBEARANCE_MEASURES,
    ID_RE,
    LABELS,
    ORG_ID_RE,
    PURPOSES,
    STAGES,
    STATUSES,
    Caller,
    CaseRow,
    EventDraft,
    ImportOutcome,
    parse_date,
    rfc3339,
)
from ..ports import UnitOfWork
from ..rules import access
from ..rules import mandates as mandate_rules
from ..rules import payments as payment_rules
from ..rules.conduct import NOTICE_KINDS
from .context import Context, _flag_text, log

IMPORT_BATCH = 256


IMPORT_BATCH_BYTES = 8 << 20  # with lines of up to 1 MiB, a batch never holds more than this (plus one line)


MAX_REJECTIONS = 1000
# Decision: an escalation without --until mandates counsel for a year (renewed by escalating again).
ESCALATION_DAYS = 365


@dataclass
class BatchProgress:
    """What a line stream has made durable so far, and the rejections of the latest batch."""

    through_line: int = 0      # every line up to this number is decided and its outcome durable
    rejected_total: int = 0
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (line, code, reason) of this batch
    reported: int = 0          # rejections sent so far (at most MAX_REJECTIONS in all)
    done: bool = False         # the last message: the stream ended and every line is decided

    def settle(self, last_line: int, rejected: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
        """Count a committed batch in the totals; return the rejections still to report (MAX_REJECTIONS in all)."""
        room = max(MAX_REJECTIONS - self.reported, 0)
        self.through_line = max(self.through_line, last_line)
        self.rejected_total += len(rejected)
        self.reported += min(room, len(rejected))
        return rejected[:room]


@dataclass
class ImportProgress(BatchProgress):
    imported: int = 0
    already_imported: int = 0  # lines identical to a case imported before: nothing stored again


P = TypeVar("P", bound=BatchProgress)
L = TypeVar("L")


def parse_batch(batch: list[tuple[int, bytes]], parse: Callable[[bytes], L], through_line: int
                ) -> tuple[list[tuple[int, L | tuple[Code, str]]], int]:
    """Each non-blank line parsed, or its (code, reason); and the batch's last line number."""
    parsed: list[tuple[int, L | tuple[Code, str]]] = []
    for line_no, raw in batch:
        if not raw.strip():
            continue
        try:
            parsed.append((line_no, parse(raw)))
        except LineError as err:
            # Keep the code and reason, never the exception: its traceback holds this frame (a cycle only
            # the collector frees) and the parsed line, which may be a megabyte of anything.
            parsed.append((line_no, (err.code, err.reason)))
    return parsed, max((n for n, _ in batch), default=through_line)


def valid_reference(ref: str) -> bool:
    """An agreement or impact-assessment reference: empty (none named) or an id (issue 26)."""
    return not ref or ID_RE.fullmatch(ref) is not None


def records_presence(agreement: str | None, pia: str | None) -> str:
    """The records a mandate names, for its audit event: presence only, never the reference (it may be telling)."""
    return f";agreement={_yes(bool(agreement))};pia={_yes(bool(pia))}"


def _yes(value: bool | None) -> str:
    return "yes" if value else "no"


class LenderActions(Context):
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
        self._standing(caller, action="import_cases")
        yield from self._in_batches(caller, lines, ImportProgress(), self._import_batch, "import")

    def _in_batches(self, caller: Caller, lines: Iterable[tuple[int, bytes]], totals: P,
                    run: Callable[[Caller, list[tuple[int, bytes]], P], P], what: str) -> Iterator[P]:
        """A line stream cut into batches of at most IMPORT_BATCH lines or IMPORT_BATCH_BYTES, each run durably.

        A broken stream drops its unfinished batch, is audited as interrupted
        (`<what>.interrupted`) with its code, and re-raises it.
        """
        batch: list[tuple[int, bytes]] = []
        size = 0
        try:
            for item in lines:
                batch.append(item)
                size += len(item[1])
                if len(batch) >= IMPORT_BATCH or size >= IMPORT_BATCH_BYTES:
                    yield run(caller, batch, totals)
                    batch, size = [], 0
        except CustosError as err:
            dropped = len(batch)
            batch = []
            try:
                self.audit.append([self._event(
                    caller, "deny", err.code,
                    f"{what}.interrupted:through_line={totals.through_line};dropped_lines={dropped}")])
            except CustosError:
                log.error("could not audit an interrupted %s", what, extra={"event": "audit_failed"})
            raise
        if batch:
            yield run(caller, batch, totals)
        yield replace(totals, rejected=[], done=True)

    def _import_batch(self, caller: Caller, batch: list[tuple[int, bytes]], totals: ImportProgress) -> ImportProgress:
        """Validate, then store the batch in one unit of work; update `totals`, return this batch's progress."""
        lender = caller.org_id
        parsed, last_line = parse_batch(batch, partial(parse_line, jurisdictions=self.bundle.jurisdictions),
                                        totals.through_line)

        def work(repo: UnitOfWork) -> tuple[tuple[int, int, list[tuple[int, str, str]]], list[EventDraft]]:
            now = self.clock.now()
            stamp = rfc3339(now)
            events: list[EventDraft] = []
            rejected: list[tuple[int, str, str]] = []
            imported = already = 0

            def reject(line_no: int, code: Code, reason: str, **kw: Any) -> None:
                rejected.append((line_no, code, reason))
                events.append(self._event(caller, "deny", code, "import", now=now, **kw))

            valid = [item for _, item in parsed if not isinstance(item, tuple)]
            # No savepoint per line (measured: 14 % of an import's server CPU): validation leaves nothing the store
            # can refuse (text is valid Unicode, ids and sizes are bounded) but what import_cases reports per case;
            # anything else fails the batch whole, undone with its unit.
            outcomes = iter(repo.import_cases(lender, valid, stamp))
            for line_no, item in parsed:
                if isinstance(item, tuple):
                    reject(line_no, *item)
                    continue
                kw: dict[str, Any] = {"case_id": item.case_id, "borrower_id": item.borrower_id, "lender": lender}
                outcome = next(outcomes)
                if outcome == ImportOutcome.SAME:
                    already += 1
                    events.append(self._event(caller, "allow", Code.OK, "import.already", now=now, **kw))
                elif outcome == ImportOutcome.OTHER:
                    reject(line_no, Code.CASE_EXISTS, "case_id: already imported with other values", **kw)
                elif outcome == ImportOutcome.ERASED:
                    reject(line_no, Code.BORROWER_ERASED, "borrower_id: this borrower's data was erased", **kw)
                elif outcome == ImportOutcome.LOAN_EXISTS:
                    reject(line_no, Code.LOAN_EXISTS, "loan.loan_id: already imported", **kw)
                elif outcome == ImportOutcome.STORED:
                    imported += 1
                    events.append(self._event(caller, "allow", Code.OK, "import", now=now, **kw))
                else:  # a store that answers otherwise is a bug: the batch fails whole
                    raise ValueError(f"unknown import outcome {outcome!r}")
            return (imported, already, rejected), events

        imported, already, rejected = self.audit.run(work)
        totals.imported += imported
        totals.already_imported += already
        return replace(totals, rejected=totals.settle(last_line, rejected))

    def assign(self, caller: Caller, case_ref: str, org_id: str, purpose: str, until: str, label: str,
               commission: str = "", agreement: str = "", pia: str = "") -> dict[str, str]:
        """Mandate the case to an organisation; `commission`, a rate on what it recovers, is the mandate's fee term;
        `agreement` and `pia` name the records before sharing (PIPL Art. 21, 55), required where the rules say."""
        self._standing(caller, action="assign")
        case = self._own_case(caller, case_ref, purpose=purpose)
        kw: dict[str, Any] = {"purpose": purpose, "case_id": case.case_id, "borrower_id": case.borrower_id,
                              "lender": case.lender_id}
        label = label or "entrusted"
        if purpose not in PURPOSES:
            raise self._deny(caller, Code.UNKNOWN_PURPOSE, "input", **kw)
        if label not in LABELS:
            raise self._deny(caller, Code.UNKNOWN_LABEL, "input", **kw)
        if not ORG_ID_RE.fullmatch(org_id):
            raise self._deny(caller, Code.INVALID_ORG_ID, "input", **kw)
        until_date = parse_date(until)
        if until_date is None:
            raise self._deny(caller, Code.INVALID_DATE, "input", **kw)
        if commission and payment_rules.rate(commission) is None:
            raise self._deny(caller, Code.INVALID_COMMISSION, "input", **kw)
        if not valid_reference(agreement) or not valid_reference(pia):
            raise self._deny(caller, Code.INVALID_RECORD_REFERENCE, "input", **kw)
        target = self.reader().get_org(org_id)
        today = self.local_today(case, self.clock.now())
        problem = access.placement_problem(case, target, purpose, label, until_date, today, self.bundle.capabilities)
        if problem is not None:
            raise self._deny(caller, problem[0], problem[1], **kw)
        assert target is not None  # placement_problem refuses an unknown organisation
        verdict = self._grant_problem(case, target.jurisdiction, purpose, agreement, pia, today)
        if not verdict.ok:
            raise self._deny(caller, verdict.code, verdict.rule, **kw)
        now = self.clock.now()
        stamp = rfc3339(now)

        def work(repo: UnitOfWork) -> tuple[None, list[EventDraft]]:
            repo.recall_mandates(case.lender_id, case.case_id, org_id, stamp, purpose)
            repo.insert_mandate(case.lender_id, case.case_id, org_id, purpose, label, until_date, stamp,
                                commission or None)
            if agreement or pia:
                repo.set_mandate_records(case.lender_id, [(case.case_id, org_id, purpose, agreement or None,
                                                           pia or None)])
            rule = (f"mandate.grant:{org_id}" + (f";commission={commission}" if commission else "")
                    + records_presence(agreement, pia))
            return None, [self._event(caller, "allow", Code.OK, rule, now=now, **kw)]

        self.audit.run(work)
        return {"case_id": case.case_id, "org_id": org_id, "purpose": purpose, "until": until_date.isoformat(),
                "label": label, "granted_at": stamp, "commission": commission, "agreement": agreement, "pia": pia}

    def list_mandates(self, caller: Caller, case_ref: str) -> list[dict[str, str]]:
        """The mandates of one of the caller's cases, newest first, recalled ones too, each with the references of
        its records before sharing (issue 26). Decision: the `assign` capability covers reading what it granted."""
        self._standing(caller, action="assign")
        case = self._own_case(caller, case_ref)
        mandates = self.reader().mandates_of_case(case.lender_id, case.case_id)
        self.audit.append([self._event(caller, "allow", Code.OK, f"mandates.list:{len(mandates)}",
                                       case_id=case.case_id, borrower_id=case.borrower_id, lender=case.lender_id)])
        return [{"case_id": m.case_id, "org_id": m.org_id, "purpose": m.purpose, "until": m.until.isoformat(),
                 "label": m.label, "granted_at": m.granted_at, "commission": m.commission or "",
                 "agreement": m.agreement or "", "pia": m.pia or "", "recalled_at": m.recalled_at or ""}
                for m in mandates]

    def _grant_problem(self, case: CaseRow, org_jurisdiction: str, purpose: str, agreement: str, pia: str,
                       today: date) -> access.Verdict:
        """The granting rules of issue 26 in order: collecting a debt that must not be, the records before sharing,
        then the cross-border safeguards."""
        rules = self._mandate_rules(case)
        verdict = mandate_rules.mandate_problem(rules, case, purpose, agreement, pia)
        return verdict if not verdict.ok else mandate_rules.cross_border(rules, case, org_jurisdiction, today)

    def _mandate_rules(self, case: CaseRow) -> mandate_rules.MandateRules:
        """The granting rules of the case's jurisdiction (issue 26); a jurisdiction without a file: the defaults."""
        rules = self.bundle.conduct.get(case.jurisdiction)
        return rules.mandates if rules is not None else mandate_rules.MandateRules()

    def recall(self, caller: Caller, case_ref: str, org_id: str) -> int:
        self._standing(caller, action="recall")
        case = self._own_case(caller, case_ref)
        if not ORG_ID_RE.fullmatch(org_id):
            raise self._deny(caller, Code.INVALID_ORG_ID, "input", case_id=case.case_id, borrower_id=case.borrower_id,
                             lender=case.lender_id)
        now = self.clock.now()

        def work(repo: UnitOfWork) -> tuple[int, list[EventDraft]]:
            n = repo.recall_mandates(case.lender_id, case.case_id, org_id, rfc3339(now))
            return n, [self._event(caller, "allow", Code.OK, f"mandate.recall:{org_id}", case_id=case.case_id,
                                   borrower_id=case.borrower_id, lender=case.lender_id, now=now)]

        return self.audit.run(work)

    def escalate(self, caller: Caller, case_ref: str, org_id: str, until: str = "", agreement: str = "",
                 pia: str = "") -> dict[str, Any]:
        """The case to litigation under the law firm's mandate; every agency's mandate on it ends, together.

        One unit of work, so no agency can read the case at litigation and no
        moment exists where the firm is mandated but agencies still are. The
        case must be open (a settled or closed case is not sued on), and a debt
        reported as identity theft or discharged is not sued on either; the
        firm's mandate names its agreement and impact assessment where the
        jurisdiction requires (issue 26).
        """
        self._standing(caller, action="escalate")
        case = self._own_case(caller, case_ref, purpose="litigation")
        kw: dict[str, Any] = {"purpose": "litigation", "case_id": case.case_id, "borrower_id": case.borrower_id,
                              "lender": case.lender_id}
        if not ORG_ID_RE.fullmatch(org_id):
            raise self._deny(caller, Code.INVALID_ORG_ID, "input", **kw)
        if not valid_reference(agreement) or not valid_reference(pia):
            raise self._deny(caller, Code.INVALID_RECORD_REFERENCE, "input", **kw)
        now = self.clock.now()
        today = self.local_today(case, now)
        until_date = parse_date(until) if until else today + timedelta(days=ESCALATION_DAYS)
        if until_date is None:
            raise self._deny(caller, Code.INVALID_DATE, "input", **kw)
        if until_date < today:
            raise self._deny(caller, Code.UNTIL_IN_PAST, "input", **kw)
        target = self.reader().get_org(org_id)
        if target is None:
            raise self._deny(caller, Code.ORG_NOT_FOUND, "input", **kw)
        if target.kind not in self.bundle.capabilities.mandated_to("litigation"):
            raise self._deny(caller, Code.PURPOSE_KIND_MISMATCH, "escalation.kind", **kw)
        if case.status != "open":
            raise self._deny(caller, Code.CASE_CLOSED, "escalation.case_status", **kw)
        verdict = self._grant_problem(case, target.jurisdiction, "litigation", agreement, pia, today)
        if not verdict.ok:
            raise self._deny(caller, verdict.code, verdict.rule.replace("mandate.", "escalation.", 1), **kw)
        self._forbearance_gate(caller, case, today, kw)
        stamp = rfc3339(now)

        def work(repo: UnitOfWork) -> tuple[list[str] | None, list[EventDraft]]:
            current = repo.get_case(case.lender_id, case.case_id)
            if current is None or current.status != "open":  # closed since the check above
                return None, [self._event(caller, "deny", Code.CASE_CLOSED, "escalation.case_status", now=now, **kw)]
            live = {m.org_id for m in repo.mandates_of_case(case.lender_id, case.case_id) if m.recalled_at is None}
            collectors = self.bundle.capabilities.mandated_to("collection")
            agencies = sorted(o for o in live if (found := repo.get_org(o)) is not None and found.kind in collectors)
            events = []
            for agency in agencies:
                repo.recall_mandates(case.lender_id, case.case_id, agency, stamp)
                events.append(self._event(caller, "allow", Code.OK, f"mandate.recall:{agency};escalation",
                                          now=now, **kw))
            repo.set_case_fields(case.lender_id, case.case_id, {"stage": "litigation"}, stamp)
            repo.recall_mandates(case.lender_id, case.case_id, org_id, stamp, "litigation")
            repo.insert_mandate(case.lender_id, case.case_id, org_id, "litigation", "entrusted", until_date, stamp)
            if agreement or pia:
                repo.set_mandate_records(case.lender_id, [(case.case_id, org_id, "litigation", agreement or None,
                                                           pia or None)])
            # the records' presence before `to=`, which stays last (readers take the org from the end)
            events.append(self._event(caller, "allow", Code.OK, f"escalate:{current.stage}->litigation"
                                      + records_presence(agreement, pia) + f";to={org_id}", now=now, **kw))
            return agencies, events

        recalled = self.audit.run(work)
        if recalled is None:
            raise CustosError(Code.CASE_CLOSED)
        return {"case_id": case.case_id, "stage": "litigation", "recalled": recalled,
                "mandate": {"case_id": case.case_id, "org_id": org_id, "purpose": "litigation",
                            "until": until_date.isoformat(), "label": "entrusted", "granted_at": stamp,
                            "agreement": agreement, "pia": pia}}

    def record_notice(self, caller: Caller, case_ref: str, on: str, kind: str = "") -> dict[str, str]:
        """The day the borrower was given a notice: of coming negative credit reporting (征信业管理条例 Art. 15;
        the default kind), the US validation notice (Reg F §1006.34) or the CN notice that collection is
        outsourced (issue 26). The last two gate an agency's contact where the conduct file says so."""
        self._standing(caller, action="record_notice")
        kind = kind or "negative_reporting"
        purpose = "credit_reporting" if kind == "negative_reporting" else "collection"
        case = self._own_case(caller, case_ref, purpose=purpose)
        kw: dict[str, Any] = {"purpose": purpose, "case_id": case.case_id, "borrower_id": case.borrower_id,
                              "lender": case.lender_id}
        if kind not in NOTICE_KINDS:
            raise self._deny(caller, Code.UNKNOWN_NOTICE_KIND, "input", **kw)
        day = parse_date(on)
        if day is None:
            raise self._deny(caller, Code.INVALID_DATE, "input", **kw)
        now = self.clock.now()
        if day > self.local_today(case, now):
            raise self._deny(caller, Code.NOTICE_IN_FUTURE, "input", **kw)

        def work(repo: UnitOfWork) -> tuple[None, list[EventDraft]]:
            if kind == "negative_reporting":
                repo.set_negative_notice(case, day.isoformat())
            else:
                repo.set_case_fields(case.lender_id, case.case_id, {f"{kind}_notice_on": day.isoformat()}, rfc3339(now))
            return None, [self._event(caller, "allow", Code.OK, f"notice:{kind}={day.isoformat()}",
                                      now=now, **kw)]

        self.audit.run(work)
        out = {"case_id": case.case_id, "kind": kind, "notice_on": day.isoformat()}
        if kind == "negative_reporting":
            out["negative_notice_on"] = day.isoformat()
        return out

    def set_consent(self, caller: Caller, case_ref: str, third_party: bool | None,
                    credit: bool | None, cross_border: bool | None = None,
                    artificial_voice: bool | None = None) -> dict[str, Any]:
        """Record a change of the borrower's consents, with its time; a withdrawal takes effect at once.

        Withdrawing third-party sharing ends every `provided` mandate of the
        case (PIPL Art. 15, 23: providing to another handler rests on it);
        withdrawing credit reporting withholds the case from every bureau
        (`CONSENT_WITHDRAWN`), in every jurisdiction. The cross-border consent
        (PIPL Art. 39, issue 26) is checked at every read abroad, so its
        withdrawal stops them at once without ending a mandate.
        `artificial_voice`: prior express consent to artificial or AI voice
        calls (TCPA §227(b)(1)(A), FCC 24-17); revoked, every such call is
        refused from then on.
        """
        self._standing(caller, action="set_consent")
        case = self._own_case(caller, case_ref)
        kw: dict[str, Any] = {"case_id": case.case_id, "borrower_id": case.borrower_id, "lender": case.lender_id}
        if third_party is None and credit is None and cross_border is None and artificial_voice is None:
            raise self._deny(caller, Code.INVALID_ARGUMENT, "input", **kw)
        now = self.clock.now()
        stamp = rfc3339(now)
        changes: dict[str, Any] = {"consent_changed_at": stamp}
        if third_party is not None:
            changes["consent_third_party"] = third_party
        if credit is not None:
            changes["consent_credit"] = credit
            changes["credit_withdrawn"] = not credit
        if cross_border is not None:
            changes["consent_cross_border"] = cross_border
        if artificial_voice is not None:
            changes["consent_artificial_voice"] = artificial_voice
        rule = "consent:" + ";".join(f"{k}={_yes(v)}" for k, v in (("third_party_sharing", third_party),
                                                                 ("credit_reporting", credit),
                                                                 ("cross_border", cross_border),
                                                                 ("artificial_voice", artificial_voice))
                                     if v is not None)

        def work(repo: UnitOfWork) -> tuple[tuple[CaseRow, list[str]], list[EventDraft]]:
            repo.set_case_fields(case.lender_id, case.case_id, changes, stamp)
            events = [self._event(caller, "allow", Code.OK, rule, now=now, **kw)]
            ended: list[str] = []
            if third_party is False:
                for m in repo.mandates_of_case(case.lender_id, case.case_id):
                    if m.label == "provided" and m.recalled_at is None and m.org_id not in ended:
                        repo.recall_mandates(case.lender_id, case.case_id, m.org_id, stamp, m.purpose)
                        ended.append(m.org_id)
                        events.append(self._event(caller, "allow", Code.OK,
                                                  f"mandate.recall:{m.org_id};consent_withdrawn", purpose=m.purpose,
                                                  now=now, **kw))
            updated = repo.get_case(case.lender_id, case.case_id)
            assert updated is not None
            return (updated, ended), events

        updated, ended = self.audit.run(work)
        return {"case_id": updated.case_id, "third_party_sharing": updated.consent_third_party,
                "credit_reporting": updated.consent_credit, "changed_at": stamp, "mandates_ended": ended,
                "cross_border": updated.consent_cross_border,
                "artificial_voice": updated.consent_artificial_voice}

    def record_transfer(self, caller: Caller, case_ref: str, mechanism: str, reference: str,
                        valid_until: str) -> dict[str, Any]:
        """The case's transfer mechanism for provision abroad (PIPL Art. 38, GDPR Art. 45-47; issue 26), replacing
        any before. The names accepted are those of the case's jurisdiction (`[mandates] transfer_mechanisms`).

        Decision: per case, as consent is (one lender's cases may go to
        different recipients under different filings). A date already past is
        accepted (it records what was filed) and simply allows nothing.
        """
        self._standing(caller, action="set_consent")
        case = self._own_case(caller, case_ref)
        kw: dict[str, Any] = {"case_id": case.case_id, "borrower_id": case.borrower_id, "lender": case.lender_id}
        if mechanism not in self._mandate_rules(case).transfer_mechanisms:  # the case's jurisdiction's list
            raise self._deny(caller, Code.UNKNOWN_MECHANISM, "input", **kw)
        if not reference or not valid_reference(reference):
            raise self._deny(caller, Code.INVALID_RECORD_REFERENCE, "input", **kw)
        until = parse_date(valid_until)
        if until is None:
            raise self._deny(caller, Code.INVALID_DATE, "input", **kw)
        updated = self._update_case(caller, case, {"transfer_mechanism": mechanism, "transfer_reference": reference,
                                                   "transfer_valid_until": until.isoformat()},
                                    f"transfer:{mechanism};valid_until={until.isoformat()}")
        return {"case_id": updated.case_id, "mechanism": mechanism, "reference": reference,
                "valid_until": until.isoformat(), "cross_border": updated.consent_cross_border}

    def set_stage(self, caller: Caller, case_ref: str, stage: str) -> CaseRow:
        self._standing(caller, action="set_stage")
        case = self._own_case(caller, case_ref)
        if stage not in STAGES:
            raise self._deny(caller, Code.UNKNOWN_STAGE, "input", case_id=case.case_id, borrower_id=case.borrower_id,
                             lender=case.lender_id)
        if stage == "litigation" and case.stage != "litigation":
            self._forbearance_gate(caller, case, self.local_today(case, self.clock.now()),
                                   {"case_id": case.case_id, "borrower_id": case.borrower_id, "lender": case.lender_id})
        return self._update_case(caller, case, {"stage": stage}, f"stage:{case.stage}->{stage}")

    # ---- EU (issue 26): forbearance before enforcement (CCD (EU) 2023/2225 Art. 35)
    def _forbearance_gate(self, caller: Caller, case: CaseRow, today: date, kw: dict[str, Any]) -> None:
        """Refuse litigation where the case's jurisdiction requires a forbearance measure dated on or before the
        case's local day and none is recorded; a measure dated later does not count until its day."""
        rules = self.bundle.conduct.get(case.jurisdiction)
        if rules is None or not rules.litigation.requires_forbearance:
            return
        measures = self.reader().forbearance_of(case.lender_id, case.case_id)
        if not any(on <= today.isoformat() for _measure, on in measures):
            raise self._deny(caller, Code.FORBEARANCE_REQUIRED, f"{case.jurisdiction}.litigation.forbearance", **kw)

    def record_forbearance(self, caller: Caller, case_ref: str, measure: str, on: str) -> dict[str, Any]:
        """`lender forbearance`: a measure offered or agreed on a case, dated `on` (it counts from that day).

        Recorded in any jurisdiction (the lender's own record); it gates litigation only where the conduct
        file's [litigation] requires_forbearance says so. Measure and day only: no personal data.
        """
        self._standing(caller, action="record_forbearance")
        case = self._own_case(caller, case_ref)
        kw: dict[str, Any] = {"case_id": case.case_id, "borrower_id": case.borrower_id, "lender": case.lender_id}
        if measure not in FORBEARANCE_MEASURES:
            raise self._deny(caller, Code.UNKNOWN_MEASURE, "input", **kw)
        day = parse_date(on)
        if day is None:
            raise self._deny(caller, Code.INVALID_DATE, "input", **kw)
        now = self.clock.now()
        stamp = rfc3339(now)

        def work(repo: UnitOfWork) -> tuple[list[tuple[str, str]], list[EventDraft]]:
            repo.add_forbearance(case.lender_id, case.case_id, measure, day.isoformat(), stamp)
            return repo.forbearance_of(case.lender_id, case.case_id), [
                self._event(caller, "allow", Code.OK, f"forbearance:{measure}={day.isoformat()}", now=now, **kw)]

        measures = self.audit.run(work)
        return {"case_id": case.case_id, "measure": measure, "on": day.isoformat(), "recorded_at": stamp,
                "measures": [{"measure": m, "on": d} for m, d in measures]}

    def set_flags(self, caller: Caller, case_ref: str, changes: dict[str, Any],
                  verification_sent: str = "") -> CaseRow:
        """Set or clear case flags and status; a settled or closed case ends every mandate on it.

        `verification_sent` (issue 26): the day verification of the debt was
        sent, recorded as a dispute is cleared (Reg F §1006.38); required for
        that where the conduct file says `verification_to_clear_dispute`.
        """
        self._standing(caller, action="set_flags")
        case = self._own_case(caller, case_ref)
        kw: dict[str, Any] = {"case_id": case.case_id, "borrower_id": case.borrower_id, "lender": case.lender_id}
        status = changes.get("status")
        if status is not None and status not in STATUSES:
            raise self._deny(caller, Code.UNKNOWN_STATUS, "input", **kw)
        if verification_sent:
            sent = parse_date(verification_sent)
            if sent is None:
                raise self._deny(caller, Code.INVALID_DATE, "input", **kw)
            if changes.get("disputed") is not False:
                raise self._deny(caller, Code.INVALID_ARGUMENT, "input", **kw)  # it goes with --no-disputed
            if sent > self.local_today(case, self.clock.now()):
                raise self._deny(caller, Code.NOTICE_IN_FUTURE, "input", **kw)
        elif (changes.get("disputed") is False and case.disputed
              and self._conduct_rules(case).prerequisites.verification_to_clear_dispute):
            raise self._deny(caller, Code.VERIFICATION_REQUIRED, f"{case.jurisdiction}.notice.verification", **kw)
        if not changes:
            return case
        rule = "flags:" + ",".join(f"{k}={_flag_text(v)}" for k, v in sorted(changes.items()))
        if verification_sent:
            changes = {**changes, "verification_sent_on": verification_sent}
            rule += f";verification_sent={verification_sent}"
        if status is not None and (status == "open") != (case.status == "open"):
            # Retention runs from the closure (policies/conduct/*.toml [retention]); a reopened case has none.
            changes = {**changes, "closed_at": None if status == "open" else rfc3339(self.clock.now())}
        if changes.get("identity_theft") or changes.get("discharged"):
            return self._stop_collection(caller, case, changes, rule)
        return self._update_case(caller, case, changes, rule)

    def _stop_collection(self, caller: Caller, case: CaseRow, changes: dict[str, Any], rule: str) -> CaseRow:
        """Set identity_theft or discharged and, where the rules refuse collecting such a debt, end every live
        collecting mandate on the case in the same unit of work (Reg F §1006.30(b): the debt is no longer placed
        for collection; a mandate left standing would let the agency go on). Clearing the flag restores none."""
        now = self.clock.now()
        stamp = rfc3339(now)
        kw: dict[str, Any] = {"case_id": case.case_id, "borrower_id": case.borrower_id, "lender": case.lender_id}

        def work(repo: UnitOfWork) -> tuple[CaseRow, list[EventDraft]]:
            repo.set_case_fields(case.lender_id, case.case_id, changes, stamp)
            updated = repo.get_case(case.lender_id, case.case_id)
            assert updated is not None
            events = [self._event(caller, "allow", Code.OK, rule, now=now, **kw)]
            rules = self._mandate_rules(updated)
            for m in repo.mandates_of_case(case.lender_id, case.case_id):
                if m.recalled_at is not None or m.purpose not in mandate_rules.COLLECTING:
                    continue
                why = mandate_rules.collecting_problem(rules, updated, m.purpose)
                if why.ok or why.code == Code.CASE_CLOSED:  # a closed case's mandates end by its closure already
                    continue
                repo.recall_mandates(case.lender_id, case.case_id, m.org_id, stamp, m.purpose)
                events.append(self._event(caller, "allow", Code.OK,
                                          f"mandate.recall:{m.org_id};{why.rule.removeprefix('mandate.')}",
                                          purpose=m.purpose, now=now, **kw))
            return updated, events

        return self.audit.run(work)

    def _update_case(self, caller: Caller, case: CaseRow, changes: dict[str, Any], rule: str) -> CaseRow:
        """Apply validated changes to a case the caller owns; the change and its event commit together."""
        now = self.clock.now()

        def work(repo: UnitOfWork) -> tuple[CaseRow, list[EventDraft]]:
            repo.set_case_fields(case.lender_id, case.case_id, changes, rfc3339(now))
            updated = repo.get_case(case.lender_id, case.case_id)
            assert updated is not None
            return updated, [self._event(caller, "allow", Code.OK, rule, case_id=case.case_id,
                                         borrower_id=case.borrower_id, lender=case.lender_id, now=now)]

        return self.audit.run(work)
