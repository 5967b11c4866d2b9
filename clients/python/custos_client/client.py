"""A typed client over the generated stubs, with its own error type.

Identity is an mTLS bundle directory (client.crt, client.key, ca.crt) as
written by `custos org add`; the gateway reads who you are from the
certificate, so there is nothing else to configure. `agent=` optionally names the
person acting within your organisation (sent as `custos-agent` metadata with
every call and recorded in its events); it never changes who the caller is.
"""

from __future__ import annotations

import collections
import json
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from . import verify
from .codes import ClientCode, Code
from .results import (
    AgencyPerformance,
    AssignResult,
    AuditEvent,
    AuditStats,
    CaseRecord,
    CaseSummary,
    Checkpoint,
    ComplianceReport,
    Consent,
    ConsistencyProof,
    Contact,
    CurrencyTotal,
    ErasureReceipt,
    Escalation,
    ExplainedField,
    Explanation,
    Feed,
    FeedRecord,
    Forbearance,
    ForbearanceMeasure,
    ImportResult,
    InclusionProof,
    Instalment,
    Mandate,
    Notice,
    Payment,
    PaymentDecision,
    Performance,
    Plan,
    Plans,
    ProcessingRecord,
    ProposedPlan,
    ProvenEvent,
    ProvenPage,
    PulledCase,
    PullEnd,
    PullItem,
    PullRecord,
    PullRemoved,
    PurgeItem,
    PurgePlan,
    Recall,
    RecallAll,
    Rejected,
    Statement,
    StatementLine,
    StatsGroup,
    SubjectCase,
    SubjectEvent,
    Transfer,
    UpdateResult,
    Withheld,
)
from .v1 import custos_pb2 as pb
from .v1 import custos_pb2_grpc as pb_grpc

DOMAIN = "custos.v1"
# The gateway rejects longer import lines; sending only a prefix keeps a giant
# line from failing the whole stream at the transport's message limit.
MAX_IMPORT_LINE = 1 << 20
# Placement lines travel this many to a message (at most this many bytes; a longer line travels alone).
CHUNK_LINES = 256
CHUNK_BYTES = 1 << 20


class CustosClientError(Exception):
    """A failed call: `code` is the gateway's stable error code (see `custos_client.codes`), `status` the gRPC
    status name ("" when the client itself failed), `message` the gateway's public text.

    Named apart from the gateway's own `CustosError` (`gateway.core.errors`), so
    a traceback or a grep tells which side raised it. A broken import also
    carries `progress`: what the gateway had confirmed as durable before the
    break (the totals of the last progress message).
    """

    def __init__(self, code: str, message: str, status: str = "", progress: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = str(code)  # a plain str: compare it with codes.Code members or with the code's text
        self.message = message
        self.status = status
        self.progress = progress

    @property
    def retryable(self) -> bool:
        """True when the gateway was unreachable or unavailable (its store, its audit log, a shutdown): the same
        call may succeed later, after a backoff. False for a refusal with a stable code (the same call gets the
        same answer) and for a failure on the client's side. The CLI's exit status 4 is exactly these."""
        if self.code in _UNREACHED:
            return True
        return self.status == "UNAVAILABLE"


# gRPC status names a call reports as its code when no gateway described the failure (connection refused, ...).
_UNREACHED = frozenset({Code.UNAVAILABLE, "DEADLINE_EXCEEDED", "CANCELLED"})


class AuditVerifyError(CustosClientError):
    """An audit event or checkpoint that does not verify against the pinned key; `seq` names the event."""

    def __init__(self, message: str, seq: int | None = None) -> None:
        super().__init__(Code.AUDIT_VERIFY_FAILED, message, "FAILED_PRECONDITION")
        self.seq = seq


def _check(seq: int, leaf: bytes, proof: Iterable[bytes], size: int, root: bytes) -> None:
    try:
        verify.check_event(seq, leaf, list(proof), size, root)
    except verify.VerifyFailed as exc:
        raise AuditVerifyError(str(exc), seq) from None


# A call the gateway cut short itself (its watchdog, a share) has no room for details: the
# stable code leads the status text instead, as "CODE: message".
_CODE_PREFIX = re.compile(r"^([A-Z][A-Z0-9_]{2,40}): (.*)\Z", re.S)


def _translate(err: grpc.RpcError) -> CustosClientError:
    status_name = err.code().name if err.code() else "UNKNOWN"
    code = status_name
    try:
        status = rpc_status.from_call(err)
    except ValueError:
        status = None
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.domain == DOMAIN:
                code = info.reason
        return CustosClientError(code, status.message, status_name)
    message = err.details() or "call failed"
    match = _CODE_PREFIX.match(message)
    if match:
        return CustosClientError(match.group(1), match.group(2), status_name)
    return CustosClientError(code, message, status_name)


@dataclass(frozen=True)
class Identity:
    cert: bytes
    key: bytes
    ca: bytes

    @classmethod
    def load(cls, directory: str | Path) -> Identity:
        d = Path(directory)
        try:
            return cls((d / "client.crt").read_bytes(), (d / "client.key").read_bytes(), (d / "ca.crt").read_bytes())
        except OSError:
            raise CustosClientError(Code.IDENTITY_INVALID, "identity bundle missing or unreadable") from None


# Request metadata naming the person acting within the caller's organisation (the gateway checks its syntax).
AGENT_HEADER = "custos-agent"
_SENDABLE = re.compile(r"[\x20-\x7e]*\Z")  # what gRPC can carry as a metadata value


class _AgentMetadata(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
                     grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):  # type: ignore[misc]
    """Adds the agent to every call's metadata, streams included, whatever stub method made it."""

    def __init__(self, agent: str) -> None:
        self._pair = (AGENT_HEADER, agent)

    def _details(self, details: Any) -> Any:
        return details._replace(metadata=[*(details.metadata or ()), self._pair])

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


class EventPage(Iterator[tuple[int, bytes]]):
    """The (seq, leaf) events of one audit query, read as they arrive; once read to the end, `next_from_seq`
    is the `from_seq` that continues a query made with a limit (0: nothing more matches)."""

    def __init__(self) -> None:
        self.next_from_seq = 0
        self._events: Iterator[tuple[int, bytes]] = iter(())

    def start(self, events: Iterator[tuple[int, bytes]]) -> None:
        self._events = events

    def __next__(self) -> tuple[int, bytes]:
        return next(self._events)


class CustosClient:
    def __init__(self, gateway: str, identity: Identity | str | Path, *, timeout: float = 30.0,
                 agent: str = "") -> None:
        """`agent`: the person acting, as your organisation names them (a pseudonymous id, 1-64 of A-Z a-z 0-9
        . _ : -), sent with every call and recorded in every event it causes; it never changes which
        organisation acts (that is the certificate's). "" names none."""
        ident = identity if isinstance(identity, Identity) else Identity.load(identity)
        if not _SENDABLE.match(agent):
            raise CustosClientError(Code.INVALID_AGENT, "the agent is 1-64 of A-Z a-z 0-9 . _ : -")
        creds = grpc.ssl_channel_credentials(root_certificates=ident.ca, private_key=ident.key,
                                             certificate_chain=ident.cert)
        self._channel = grpc.secure_channel(gateway, creds, options=[("grpc.max_send_message_length", 2 << 20)])
        self.agent = agent
        if agent:
            self._channel = grpc.intercept_channel(self._channel, _AgentMetadata(agent))
        self._lender = pb_grpc.LenderServiceStub(self._channel)
        self._cases = pb_grpc.CaseServiceStub(self._channel)
        self._audit = pb_grpc.AuditServiceStub(self._channel)
        self._packets = pb_grpc.PacketServiceStub(self._channel)
        self._bureau = pb_grpc.BureauServiceStub(self._channel)
        self.timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> CustosClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: Any, request: Any, metadata: Iterable[tuple[str, str]] | None = None,
              timeout: float | None = None) -> Any:
        try:
            return fn(request, timeout=timeout or self.timeout, metadata=metadata)
        except grpc.RpcError as err:
            raise _translate(err) from None

    # ------------------------------------------------------------ lender
    def import_lines(self, lines: Iterable[bytes]) -> ImportResult:
        """Stream raw JSONL lines (numbered from 1); nothing is buffered beyond gRPC's window.

        Returns an ImportResult. If the stream breaks, the CustosClientError carries
        `progress`: a dict of the same keys, for what the gateway had confirmed durable. Sending the same file again
        is safe: lines already imported come back as `already_imported`.
        """
        t = self._stream_lines(self._lender.ImportCases, lines, ("imported", "already_imported"), "import")
        return ImportResult(t["imported"], t["already_imported"], t["rejected_total"], _rejected(t),
                            t["through_line"])

    def assign_lines(self, lines: Iterable[bytes]) -> AssignResult:
        """Stream placement lines ({"case_id", "to", "purpose", "until", "label"} each, numbered from 1).

        Returns an AssignResult; a broken stream raises CustosClientError with
        `progress` (a dict: what was granted).
        """
        t = self._stream_lines(self._lender.AssignCases, lines, ("assigned",), "placement")
        return AssignResult(t["assigned"], t["rejected_total"], _rejected(t), t["through_line"])

    def update_lines(self, lines: Iterable[bytes]) -> UpdateResult:
        """Stream account-update lines ({"case_id", "as_of", "loan", "repayments", "status", "borrower"} each,
        numbered from 1).

        Returns an UpdateResult; a broken stream raises CustosClientError with
        `progress` (a dict: what was applied). Sending
        the same file again is safe: lines already applied come back as `unchanged`.
        """
        t = self._stream_lines(self._lender.UpdateAccounts, lines, ("updated", "unchanged"), "update")
        return UpdateResult(t["updated"], t["unchanged"], t["rejected_total"], _rejected(t), t["through_line"])

    def update_file(self, path: str | Path) -> UpdateResult:
        """`update_lines` over a JSONL file, read as it is sent."""
        with open(path, "rb") as fh:
            return self.update_lines(fh)

    def _stream_lines(self, rpc: Any, lines: Iterable[bytes], counters: tuple[str, ...], what: str) -> dict[str, Any]:
        failed: list[BaseException] = []

        def numbered() -> Iterator[pb.ImportLine]:
            try:
                for n, raw in enumerate(lines, start=1):
                    yield pb.ImportLine(line_no=n, raw=raw.rstrip(b"\r\n")[: MAX_IMPORT_LINE + 1])
            except Exception as exc:  # noqa: BLE001 - reported below, after the gateway confirmed what it got
                # The lines read so far are whole: end the stream normally, so that the gateway stores and
                # confirms them, and report the failure with exactly what was stored.
                failed.append(exc)

        def chunks() -> Iterator[pb.LineChunk]:
            chunk: list[pb.ImportLine] = []
            size = 0
            for line in numbered():
                if chunk and (size + len(line.raw) > CHUNK_BYTES or len(chunk) >= CHUNK_LINES):
                    yield pb.LineChunk(lines=chunk)
                    chunk, size = [], 0
                chunk.append(line)
                size += len(line.raw)
            if chunk:
                yield pb.LineChunk(lines=chunk)

        totals: dict[str, Any] = {**dict.fromkeys(counters, 0), "rejected_total": 0, "rejected": [], "through_line": 0}
        done = False
        try:
            for p in rpc(chunks(), timeout=24 * 3600):
                totals.update({k: getattr(p, k) for k in counters}, rejected_total=p.rejected_total,
                              through_line=p.through_line)
                totals["rejected"].extend({"line": x.line, "code": x.code, "reason": x.reason} for x in p.rejected)
                done = done or p.done
        except grpc.RpcError as err:
            failure = _translate(err)
            failure.progress = totals
            raise failure from None
        if failed:
            raise CustosClientError(ClientCode.IMPORT_READ_FAILED,
                                    f"reading the lines failed ({type(failed[0]).__name__}) after "
                                    f"line {totals['through_line']}", "", totals)
        if not done:
            raise CustosClientError(Code.CLIENT_GONE, f"the {what} stream ended before the gateway confirmed it", "",
                                    totals)
        return totals

    def import_file(self, path: str | Path) -> ImportResult:
        """`import_lines` over a JSONL file, read as it is sent."""
        with open(path, "rb") as fh:
            return self.import_lines(fh)

    def assign(self, case_id: str, org_id: str, purpose: str, until: str, label: str = "",
               commission: str = "", agreement: str = "", pia: str = "") -> Mandate:
        """Mandate a case; `commission` ("0.18") is the mandate's fee term on what the org recovers; `agreement`
        and `pia` name the agreement and impact assessment (required where the case's jurisdiction says)."""
        r = self._call(self._lender.AssignCase, pb.AssignCaseRequest(
            case_id=case_id, org_id=org_id, purpose=purpose, until=until, label=label, commission=commission,
            agreement=agreement, pia=pia))
        return _mandate(r)

    def list_mandates(self, case_id: str) -> list[Mandate]:
        """The mandates of one of the caller's cases, newest first (recalled ones with `recalled_at`)."""
        r = self._call(self._lender.ListMandates, pb.ListMandatesRequest(case_id=case_id))
        return [_mandate(m) for m in r.mandates]

    def recall_all(self, org_id: str) -> RecallAll:
        """End every mandate the organisation holds on the caller's cases (it was terminated)."""
        r = self._call(self._lender.RecallAll, pb.RecallAllRequest(org_id=org_id))
        return RecallAll(org_id, int(r.recalled))

    def recall(self, case_id: str, org_id: str) -> Recall:
        r = self._call(self._lender.RecallCase, pb.RecallCaseRequest(case_id=case_id, org_id=org_id))
        return Recall(case_id, org_id, int(r.recalled))

    def get_packet(self, case_id: str) -> tuple[str, bytes]:
        """(packet id, the packet file's bytes) of a case escalated to the caller (a law firm)."""
        r = self._call(self._packets.GetPacket, pb.GetPacketRequest(case_id=case_id))
        return r.packet_id, bytes(r.data)

    def escalate(self, case_id: str, law_firm: str, until: str = "", agreement: str = "",
                 pia: str = "") -> Escalation:
        """Move the case to litigation under the law firm's mandate; the agencies' mandates end (returned)."""
        r = self._call(self._lender.EscalateCase, pb.EscalateCaseRequest(case_id=case_id, org_id=law_firm, until=until,
                                                                         agreement=agreement, pia=pia))
        return Escalation(r.case_id, r.stage, list(r.recalled), _mandate(r.mandate))

    def erase(self, borrower_id: str, grace_days: int = 0, cancel: bool = False) -> ErasureReceipt:
        """Crypto-shred a borrower (now, after grace_days, or cancel a scheduled erasure): the erasure receipt."""
        r = self._call(self._lender.EraseBorrower,
                       pb.EraseBorrowerRequest(borrower_id=borrower_id, grace_days=grace_days, cancel=cancel))
        return ErasureReceipt(r.lender, r.borrower_id, r.state, r.at, r.due, r.reason, list(r.destroyed),
                              list(r.cases), list(r.mandates_ended), int(r.audit_seq))

    def subject_data(self, borrower_id: str) -> list[SubjectCase]:
        """The borrower's own data in each of the caller's cases (a lender answering an access request)."""
        r = self._call(self._lender.SubjectData, pb.SubjectDataRequest(borrower_id=borrower_id))
        return [SubjectCase(c.case_id, c.stage, _released(c.fields), c.erasure) for c in r.cases]

    def purge_plan(self) -> PurgePlan:
        """Due and held: borrowers whose retention ran out, shredded by the gateway's schedule."""
        r = self._call(self._lender.PurgePlan, pb.PurgePlanRequest())

        def items(rows: Any) -> list[PurgeItem]:
            return [PurgeItem(i.borrower_id, list(i.cases), i.due_on, i.rule, list(i.held_by)) for i in rows]

        return PurgePlan(items(r.due), items(r.held))

    def set_consent(self, case_id: str, third_party_sharing: bool | None = None,
                    credit_reporting: bool | None = None, cross_border: bool | None = None,
                    artificial_voice: bool | None = None) -> Consent:
        """Record a change of the borrower's consents (None: unchanged)."""
        req = pb.SetConsentRequest(case_id=case_id)
        if cross_border is not None:
            req.cross_border = cross_border
        if artificial_voice is not None:
            req.artificial_voice = artificial_voice
        if third_party_sharing is not None:
            req.third_party_sharing = third_party_sharing
        if credit_reporting is not None:
            req.credit_reporting = credit_reporting
        r = self._call(self._lender.SetConsent, req)
        return Consent(r.case_id, r.third_party_sharing, r.credit_reporting, r.changed_at, list(r.mandates_ended),
                       r.cross_border, r.artificial_voice)

    def record_transfer(self, case_id: str, mechanism: str, reference: str, valid_until: str) -> Transfer:
        """Record the case's transfer mechanism for provision abroad (PIPL Art. 38, GDPR Art. 45-47; one of its
        jurisdiction's `[mandates] transfer_mechanisms`), valid through `valid_until`."""
        r = self._call(self._lender.RecordTransfer, pb.RecordTransferRequest(
            case_id=case_id, mechanism=mechanism, reference=reference, valid_until=valid_until))
        return Transfer(r.case_id, r.mechanism, r.reference, r.valid_until, r.cross_border)

    def record_notice(self, case_id: str, on: str, kind: str = "") -> Notice:
        """Record the day the borrower was given a notice: of coming negative credit reporting (the default kind),
        the validation notice or the notice that collection is outsourced (`kind`)."""
        r = self._call(self._lender.RecordNotice, pb.RecordNoticeRequest(case_id=case_id, on=on, kind=kind))
        return Notice(r.case_id, r.kind, r.notice_on, r.negative_notice_on)

    # ---- EU (issue 26)
    def record_forbearance(self, case_id: str, measure: str, on: str) -> Forbearance:
        """Record a forbearance measure on a case (CCD Art. 35); the answer lists every measure of the case."""
        r = self._call(self._lender.RecordForbearance,
                       pb.RecordForbearanceRequest(case_id=case_id, measure=measure, on=on))
        return Forbearance(r.case_id, r.measure, r.on, r.recorded_at,
                           [ForbearanceMeasure(m.measure, m.on) for m in r.measures])

    def ropa(self) -> ProcessingRecord:
        """The record of processing activities (GDPR Art. 30) generated from the caller's mandates, one document."""
        r = self._call(self._lender.ProcessingRecord, pb.ProcessingRecordRequest())
        return ProcessingRecord(json.loads(r.record))

    # ---- agency performance (issue 24)
    def performance(self, from_date: str = "", to_date: str = "") -> Performance:
        """Figures per agency over UTC days."""
        r = self._call(self._lender.Performance, pb.PerformanceRequest(from_date=from_date, to_date=to_date))

        def opt(a: Any, name: str) -> int | None:
            return int(getattr(a, name)) if a.HasField(name) else None

        return Performance(r.from_date, r.to_date, [
            AgencyPerformance(a.org, a.kind, int(a.cases_placed), int(a.contact_attempts), int(a.conversations),
                              int(a.promises), opt(a, "promises_kept"), opt(a, "plans"), opt(a, "plans_kept"),
                              dict(sorted(a.recovered.items())), {k: int(v) for k, v in sorted(a.refusals.items())})
            for a in r.agencies])

    def set_stage(self, case_id: str, stage: str) -> CaseSummary:
        return _summary(self._call(self._lender.SetStage, pb.SetStageRequest(case_id=case_id, stage=stage)))

    def set_flags(self, case_id: str, status: str | None = None, verification_sent: str = "",
                  **flags: bool) -> CaseSummary:
        """Set (True) or clear (False) flags: disputed, cease_contact, attorney_represented, lost_contact,
        legal_hold, identity_theft, discharged; and optionally the status (open, settled, closed). Flags not named
        stay as they are. `verification_sent` (YYYY-MM-DD, with disputed=False): the day verification of a
        dispute was sent."""
        req = pb.SetFlagsRequest(case_id=case_id, verification_sent=verification_sent)
        for name, value in flags.items():
            setattr(req, name, value)
        if status is not None:
            req.status = status
        return _summary(self._call(self._lender.SetFlags, req))

    def explain(self, org_id: str, case_id: str, purpose: str, at: str = "") -> Explanation:
        r = self._call(self._lender.Explain, pb.ExplainRequest(org_id=org_id, case_id=case_id, purpose=purpose, at=at))
        return Explanation(org_id, case_id, purpose, r.decision, r.code,
                           [ExplainedField(f.field, f.transform, f.rule) for f in r.fields], list(r.rules),
                           r.policy_revision, list(r.notes))

    # ------------------------------------------------------------ payments and statements
    def report_payment(self, case_id: str, amount: str, on: str, reference: str) -> Payment:
        """Report a payment collected on a mandated case; the same reference again answers the same payment."""
        r = self._call(self._cases.ReportPayment, pb.ReportPaymentRequest(case_id=case_id, amount=amount, on=on,
                                                                          reference=reference))
        return _payment(r)

    def payments(self, status: str = "", org_id: str = "") -> list[Payment]:
        """The payments reported on the caller's (a lender's) cases, optionally of one status and one org."""
        r = self._call(self._lender.ListPayments, pb.ListPaymentsRequest(status=status, org_id=org_id))
        return [_payment(p) for p in r.payments]

    def confirm_payment(self, payment_id: str) -> PaymentDecision:
        r = self._call(self._lender.ConfirmPayment, pb.DecidePaymentRequest(payment_id=payment_id))
        return _decision(r)

    def reject_payment(self, payment_id: str, reason: str) -> PaymentDecision:
        r = self._call(self._lender.RejectPayment, pb.DecidePaymentRequest(payment_id=payment_id, reason=reason))
        return _decision(r)

    def statement(self, period: str, org_id: str = "") -> Statement:
        """The month's confirmed payments, and their totals per currency."""
        r = self._call(self._cases.GetStatement, pb.StatementRequest(period=period, org_id=org_id))
        lines = [StatementLine(x.payment_id, x.case_id, x.lender, x.org, x.on, x.confirmed_at, x.amount, x.currency,
                               x.rate, x.fee) for x in r.lines]
        return Statement(r.period, r.org, lines, r.recovered, r.fees, r.currency,
                         {cur: CurrencyTotal(t.recovered, t.fees) for cur, t in sorted(r.totals.items())})

    # ------------------------------------------------------------ contact
    def open_contact(self, case_id: str, channel: str, party: str = "borrower",
                     artificial_voice: bool = False) -> Contact:
        r = self._call(self._cases.OpenContact, pb.OpenContactRequest(case_id=case_id, channel=channel, party=party,
                                                                      artificial_voice=artificial_voice))
        return _contact(r)

    def record_outcome(self, contact_id: str, result: str, amount: str = "", on: str = "",
                       recording: str = "") -> Contact:
        """What came of a contact; a promise to pay with its amount and date (the borrower's local date); a call
        recording's opaque reference (never its content)."""
        return _contact(self._call(self._cases.RecordOutcome, pb.RecordOutcomeRequest(
            contact_id=contact_id, result=result, promise_amount=amount, promise_on=on, recording=recording)))

    # ------------------------------------------------------------ promises and plans
    def propose_plan(self, case_id: str, instalments: Iterable[tuple[str, str]]) -> ProposedPlan:
        """A repayment plan of (YYYY-MM-DD, amount) instalments on a mandated case."""
        r = self._call(self._cases.ProposePlan, pb.ProposePlanRequest(
            case_id=case_id, instalments=[pb.Instalment(on=on, amount=amount) for on, amount in instalments]))
        return ProposedPlan(r.plan_id, r.case_id, r.status)

    def accept_plan(self, plan_id: str) -> Plan:
        return _plan(self._call(self._lender.AcceptPlan, pb.DecidePlanRequest(plan_id=plan_id)))

    def reject_plan(self, plan_id: str, reason: str) -> Plan:
        return _plan(self._call(self._lender.RejectPlan, pb.DecidePlanRequest(plan_id=plan_id, reason=reason)))

    def show_plans(self, case_id: str) -> Plans:
        """The plans of a case, each with its instalments."""
        r = self._call(self._cases.ShowPlans, pb.ShowPlansRequest(case_id=case_id))
        return Plans(r.case_id, [_plan(p) for p in r.plans])

    # ------------------------------------------------------------ cases
    def list_cases(self, national_id: str = "", phone: str = "") -> list[CaseSummary]:
        r = self._call(self._cases.ListCases, pb.ListCasesRequest(national_id=national_id, phone=phone))
        return [_summary(c) for c in r.cases]

    def get_case(self, case_id: str, purpose: str, metadata: Iterable[tuple[str, str]] | None = None
                 ) -> CaseRecord:
        """The fields of one case the policy releases to the caller for `purpose` (the read is audited)."""
        r = self._call(self._cases.GetCase, pb.GetCaseRequest(case_id=case_id, purpose=purpose), metadata)
        return CaseRecord(r.case_id, r.purpose, r.stage, _released(r.fields), list(r.rules), r.erasure)

    # ------------------------------------------------------------ work lists
    def pull_cases(self, purpose: str, since: str = "", timeout: float = 3600) -> Iterator[PullItem]:
        """The caller's mandated cases, streamed: only those changed after `since` if given.

        Yields three kinds of item (`results.PullItem`); tell them apart with isinstance (or match):
        - PullRecord: a case to work, `item.record` (a PulledCase: case_id, lender_id, purpose, stage,
          fields, rules).
        - PullRemoved: a case that left the list (with `since` only): `item.case_id`, `item.code`.
        - last, PullEnd: store `item.cursor` and pull from it next time.

            cases = [item.record for item in client.pull_cases("collection") if isinstance(item, PullRecord)]

        If the stream breaks, the CustosClientError's `progress` holds {"cursor": ...} of
        the last message received: pulling again from it repeats and skips nothing.
        """
        last = since
        ended = False
        try:
            for message in self._cases.PullCases(pb.PullCasesRequest(purpose=purpose, since=since),
                                                 timeout=timeout):
                for item in message.items:
                    last = item.cursor
                    if item.WhichOneof("item") == "record":
                        r = item.record
                        yield PullRecord(PulledCase(r.case_id, item.lender_id, r.purpose, r.stage, _released(r.fields),
                                                    list(r.rules)), item.cursor)
                    else:
                        yield PullRemoved(item.removed, item.lender_id, item.code, item.cursor)
                if message.end:
                    ended = True
                    last = message.cursor
                    yield PullEnd(message.cursor)
        except grpc.RpcError as err:
            failure = _translate(err)
            failure.progress = {"cursor": last}
            raise failure from None
        if not ended:
            raise CustosClientError(Code.UNAVAILABLE,
                                    "the pull ended without its last cursor: pull again from the last one",
                                    progress={"cursor": last})

    # ------------------------------------------------------------ the bureau feed
    def pull_feed(self, since: str = "") -> Feed:
        """The records changed since `since` (a bureau), and those the format cannot carry (not numbered: sent
        once corrected). Keep the cursor."""
        records: list[FeedRecord] = []
        withheld: list[Withheld] = []
        cursor = ""
        try:
            for item in self._bureau.PullFeed(pb.PullFeedRequest(since=since), timeout=3600):
                kind = item.WhichOneof("item")
                if kind == "cursor":
                    cursor = item.cursor
                elif kind == "withheld":
                    withheld.append(Withheld(item.withheld.case_id, item.withheld.code))
                else:
                    r = item.record
                    records.append(FeedRecord(int(r.seq), r.case_id, r.loan_id, r.jurisdiction, _released(r.fields)))
        except grpc.RpcError as err:
            raise _translate(err) from None
        if not cursor:
            raise CustosClientError(Code.UNAVAILABLE,
                                    "the feed ended without a cursor: pull again with the same --since")
        return Feed(records, withheld, cursor)

    # ------------------------------------------------------------ audit
    def audit_events(self, case_id: str = "", org_id: str = "", borrower_id: str = "", since: str = "",
                     from_seq: int = 0, until: str = "", decision: str = "", code: str = "", method: str = "",
                     purpose: str = "", channel: str = "", agent: str = "", limit: int = 0) -> EventPage:
        """(seq, leaf bytes) in log order; the leaf is exactly the Merkle leaf. `until` leaves out an event at
        exactly that time; `decision`, `code`, `method`, `purpose`, `channel`, `agent` keep the events with that
        value. `limit`: at most that many (0: all); once read, the page's `next_from_seq` is the `from_seq` that
        continues (0: nothing more). A lender gets only events whose `lender` is itself."""
        req = pb.QueryAuditRequest(case_id=case_id, org_id=org_id, borrower_id=borrower_id, since=since,
                                   from_seq=from_seq, until=until, decision=decision, code=code, method=method,
                                   purpose=purpose, channel=channel, agent=agent, limit=limit)
        page = EventPage()

        def events() -> Iterator[tuple[int, bytes]]:
            try:
                for batch in self._audit.QueryAudit(req, timeout=3600):
                    for ev in batch.events:
                        yield ev.seq, ev.leaf
                    page.next_from_seq = batch.next_from_seq or page.next_from_seq
            except grpc.RpcError as err:
                raise _translate(err) from None

        page.start(events())
        return page

    def verified_audit_events(self, vkey: str, case_id: str = "", org_id: str = "", borrower_id: str = "",
                              since: str = "", from_seq: int = 0, until: str = "", decision: str = "",
                              code: str = "", method: str = "", purpose: str = "",
                              channel: str = "", agent: str = "", limit: int = 0, *,
                              tree: verify.SignedTree | None = None) -> EventPage:
        """(seq, leaf bytes) like `audit_events`, each checked before it is yielded: a regulator never reads an
        unverified event.

        The gateway serves every event with its inclusion proof and each page
        with a checkpoint of the current tree; the checkpoint's signature is
        checked against `vkey` (the pinned `audit.vkey` text) and each event's
        leaf hash, through its proof, must give the signed root. Raises
        AuditVerifyError (code AUDIT_VERIFY_FAILED, `seq` the first event that
        does not verify). It proves what is returned is in the signed log, not
        that nothing matching was left out: a full `audit verify` shows that.
        `limit` and `next_from_seq` as for `audit_events` (each page is checked
        against the checkpoint its own query was answered with). `tree`: a
        checkpoint verified before (`verify.verify_checkpoint`): the events up to
        its size only, each proved against its root (a figure's recount at the
        size it was computed at).
        """
        req = pb.QueryAuditRequest(case_id=case_id, org_id=org_id, borrower_id=borrower_id, since=since,
                                   from_seq=from_seq, with_proofs=True, until=until, decision=decision, code=code,
                                   method=method, purpose=purpose, channel=channel, agent=agent, limit=limit,
                                   proof_size=tree.size if tree is not None else 0)
        given = tree is not None  # then the gateway sends no checkpoint: the proofs lead to that tree's root
        page = EventPage()

        def events() -> Iterator[tuple[int, bytes]]:
            signed = tree
            try:
                for batch in self._audit.QueryAudit(req, timeout=3600):
                    if signed is None:
                        try:
                            signed = verify.verify_checkpoint(batch.checkpoint, vkey)
                        except verify.VerifyFailed as exc:
                            raise AuditVerifyError(str(exc)) from None
                    elif not given and batch.checkpoint != signed.note:
                        raise AuditVerifyError("the pages of the answer carry different checkpoints")
                    for ev in batch.events:
                        _check(ev.seq, ev.leaf, ev.proof, signed.size, signed.root)
                        yield ev.seq, ev.leaf
                    page.next_from_seq = batch.next_from_seq or page.next_from_seq
            except grpc.RpcError as err:
                raise _translate(err) from None
            if signed is None:
                raise AuditVerifyError("the gateway sent no checkpoint to check the events against")

        page.start(events())
        return page

    def verified_audit_query(self, vkey: str, **filters: Any) -> list[AuditEvent]:
        """`audit_query`, every event checked against a checkpoint signed by the pinned key (see above)."""
        return [AuditEvent.from_leaf(json.loads(leaf)) for _, leaf in self.verified_audit_events(vkey, **filters)]

    def proven_audit_page(self, limit: int, last: bool = False, **filters: Any) -> ProvenPage:
        """At most `limit` events from `from_seq` on, each with its inclusion proof, and the checkpoint signed for
        this query, all UNCHECKED: for a reader that verifies them itself (the console's page does, in the
        browser); `next_from_seq` 0: nothing more.
        `last`: the last `limit` events up to the checkpoint instead (for a from_seq just below the tree size:
        the newest page, the events appended meanwhile, this query's own among them, included)."""
        req = pb.QueryAuditRequest(with_proofs=True, limit=0 if last else limit, **filters)
        events: collections.deque[ProvenEvent] = collections.deque(maxlen=limit if last else None)
        note, nxt = "", 0
        try:
            for batch in self._audit.QueryAudit(req, timeout=self.timeout):
                note = note or batch.checkpoint
                nxt = batch.next_from_seq or nxt
                events.extend(ProvenEvent(int(ev.seq), bytes(ev.leaf), list(ev.proof)) for ev in batch.events)
        except grpc.RpcError as err:
            raise _translate(err) from None
        return ProvenPage(note, list(events), 0 if last else int(nxt))

    def proven_events(self, seqs: Iterable[int], size: int) -> list[ProvenEvent]:
        """These events (a missing one left out), each with its inclusion proof in the tree of `size`, UNCHECKED:
        the caller checks them against a checkpoint of that size it verified (or shows them as unverified)."""
        wanted = sorted(set(seqs))
        got: list[ProvenEvent] = []
        try:
            for i in range(0, len(wanted), 1000):
                req = pb.QueryAuditRequest(seqs=wanted[i:i + 1000], with_proofs=True, proof_size=size)
                for batch in self._audit.QueryAudit(req, timeout=3600):
                    got += [ProvenEvent(int(ev.seq), bytes(ev.leaf), list(ev.proof)) for ev in batch.events]
        except grpc.RpcError as err:
            raise _translate(err) from None
        return got

    def check_sample(self, seqs: Iterable[int], size: int, root: bytes) -> int:
        """Re-read these events and check each by inclusion proof against a root verified before; the count.

        For an incremental verifier: the events it verified on earlier runs
        are not read again, so an edit in place there would go unseen; a
        random sample of them, re-read here, is found altered with the
        probability the sample size gives. Raises AuditVerifyError naming the
        first event that is missing or does not lead to `root`.
        """
        wanted = sorted(set(seqs))
        got: dict[int, tuple[bytes, list[bytes]]] = {}
        try:
            for i in range(0, len(wanted), 1000):
                req = pb.QueryAuditRequest(seqs=wanted[i:i + 1000], with_proofs=True, proof_size=size)
                for batch in self._audit.QueryAudit(req, timeout=3600):
                    for ev in batch.events:
                        got[ev.seq] = (ev.leaf, list(ev.proof))
        except grpc.RpcError as err:
            raise _translate(err) from None
        for seq in wanted:
            if seq not in got:
                raise AuditVerifyError(f"event {seq} missing: the gateway did not return it", seq)
            _check(seq, *got[seq], size, root)
        return len(wanted)

    def subject_events(self, borrower_id: str, lender_id: str = "") -> list[SubjectEvent]:
        """Every event about one lender's borrower of this id (a lender: its own; a regulator: the named lender's,
        or every lender's), each with `report_lender`: the lender it is listed for ("" none sure).
        """
        try:
            return [SubjectEvent(AuditEvent.from_leaf(json.loads(ev.leaf)), ev.lender)
                    for batch in self._audit.SubjectReport(
                pb.SubjectReportRequest(borrower_id=borrower_id, lender_id=lender_id), timeout=3600)
                for ev in batch.events]
        except grpc.RpcError as err:
            raise _translate(err) from None

    def audit_stats(self, from_: str, to: str, by: Sequence[str] = ()) -> AuditStats:
        """Events per group over [from_, to), counted over the events with seq < size.

        `by`: org, code, method, purpose, channel, decision, lender, agent, day, month; none gives the total.
        A lender's figures also carry "lender" (its id: only events naming it as the owning lender count).
        The checkpoint is the gateway's signed note of that size: check it, and the figures, by recounting the
        verified events (`verified_audit_events(..., tree=...)`; the CLI's `audit stats --verify`).
        """
        r = self._call(self._audit.AuditStats, pb.AuditStatsRequest(from_time=from_, to_time=to, by=list(by)))
        keys = list(r.by)
        # `lender`: a lender's figures, the events naming it as the owning lender.
        return AuditStats(r.from_time, r.to_time, keys, int(r.size), r.checkpoint, int(r.total),
                          [StatsGroup({k: g.keys.get(k, "") for k in keys}, int(g.count)) for g in r.groups],
                          r.lender)

    def audit_query(self, **filters: Any) -> list[AuditEvent]:
        """The events `audit_events` reads, parsed (unchecked: `verified_audit_query` checks each by proof)."""
        return [AuditEvent.from_leaf(json.loads(leaf)) for _, leaf in self.audit_events(**filters)]

    def inclusion_proof(self, seq: int, size: int = 0) -> InclusionProof:
        """The hashing path of event `seq` (unchecked: `gateway.tlog.proofcheck` or the CLI's `audit prove` check
        it); size 0: the current tree."""
        r = self._call(self._audit.GetInclusionProof, pb.InclusionProofRequest(seq=seq, tree_size=size))
        return InclusionProof(int(r.index), int(r.tree_size), bytes(r.leaf_hash), bytes(r.root), list(r.proof))

    def consistency_proof(self, first: int, second: int = 0) -> ConsistencyProof:
        """The proof that the tree of `first` events is a prefix of the tree of `second` (0: the current one)."""
        r = self._call(self._audit.GetConsistencyProof, pb.ConsistencyProofRequest(from_size=first, to_size=second))
        return ConsistencyProof(int(r.from_size), int(r.to_size), bytes(r.from_root), bytes(r.to_root),
                                list(r.proof))

    def checkpoint(self, size: int = 0) -> str:
        """A checkpoint of the current tree; given a size, the one the gateway published for it."""
        return str(self._call(self._audit.GetCheckpoint, pb.GetCheckpointRequest(size=size)).note)

    def checkpoint_and_cosigned(self, size: int = 0) -> Checkpoint:
        """`checkpoint(size)` and, from the same answer, the latest checkpoint each regulator cosigned."""
        r = self._call(self._audit.GetCheckpoint, pb.GetCheckpointRequest(size=size))
        return Checkpoint(str(r.note), list(r.cosigned))

    def cosigned(self) -> list[str]:
        """The latest checkpoint each regulator cosigned, each with its cosignature line."""
        return list(self._call(self._audit.GetCheckpoint, pb.GetCheckpointRequest()).cosigned)

    def cosign(self, checkpoint: str, cosignature: str, cosigner_key: str) -> int:
        r = self._call(self._audit.Cosign, pb.CosignRequest(checkpoint=checkpoint, cosignature=cosignature,
                                                            cosigner_key=cosigner_key))
        return int(r.size)

    def compliance_report(self, from_: str, to: str) -> ComplianceReport:
        """The compliance report of [from_, to) as one JSON document (a regulator: every case; a lender: its own).

        Every figure is recomputable from the verified events of the period: `custos audit compliance-report
        --verify` does it (gateway/core/rules/compliance.py)."""
        r = self._call(self._audit.ComplianceReport, pb.ComplianceReportRequest(from_time=from_, to_time=to))
        return ComplianceReport(json.loads(r.report))

    def checkpoint_and_key(self) -> tuple[str, str]:
        """The signed checkpoint and the verifier key the gateway names (pin your own copy to trust it)."""
        r = self._call(self._audit.GetCheckpoint, pb.GetCheckpointRequest())
        return str(r.note), str(r.verifier_key)


def _released(fields: Any) -> dict[str, str]:
    """Released fields by name: a protobuf map has no order, and the same answer should print the same bytes."""
    return dict(sorted(fields.items()))


def _rejected(totals: dict[str, Any]) -> list[Rejected]:
    return [Rejected(x["line"], x["code"], x["reason"]) for x in totals["rejected"]]


def _payment(r: Any) -> Payment:
    return Payment(r.payment_id, r.status, r.case_id, r.org, r.amount, r.currency, r.on, r.reference, r.reported_at,
                   r.decided_at, r.commission, r.reason if r.status == "rejected" else "")


def _decision(r: Any) -> PaymentDecision:
    if r.status != "confirmed":
        return PaymentDecision(r.payment_id, r.status, r.case_id, r.decided_at)
    return PaymentDecision(r.payment_id, r.status, r.case_id, r.decided_at, r.org, r.amount, r.currency,
                           r.commission, r.outstanding, r.amount_due, r.case_status)


def _contact(r: Any) -> Contact:
    """Only the fields the gateway released: phone, or address, and a name for a third party."""
    return Contact(r.contact_id, r.case_id, r.channel, r.party, r.opened_at, r.phone, r.address, r.name, r.result,
                   r.promise_amount, r.promise_on, r.recording, r.artificial_voice)


def _plan(p: Any) -> Plan:
    return Plan(p.plan_id, p.case_id, p.status, p.org, p.proposed_at, p.decided_at, p.paid, p.amount_due, p.reason,
                [Instalment(i.on, i.amount, i.state) for i in p.instalments])


def _summary(c: Any) -> CaseSummary:
    return CaseSummary(c.case_id, c.lender, c.stage, c.status, c.jurisdiction, c.purpose, c.until, list(c.flags),
                       c.erasure)


def __getattr__(name: str) -> type[CustosClientError]:
    """`CustosError`: the old name of `CustosClientError`, kept (with a DeprecationWarning) for one release."""
    if name == "CustosError":
        warnings.warn("custos_client.CustosError is deprecated: use CustosClientError (same class)",
                      DeprecationWarning, stacklevel=2)
        return CustosClientError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _mandate(m: pb.MandateInfo) -> Mandate:
    """A mandate; the optional parts (commission, agreement, pia, recalled_at) "" when not set."""
    return Mandate(m.case_id, m.org_id, m.purpose, m.until, m.label, m.granted_at, m.commission, m.agreement, m.pia,
                   m.recalled_at)
