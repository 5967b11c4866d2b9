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
from typing import Any, cast

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from . import verify
from .codes import ClientCode, Code
from .results import CaseRecord, Feed, FeedRecord, ImportResult, InclusionProof, PullItem, UpdateResult, Withheld
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

        Returns {"imported", "already_imported", "rejected_total", "rejected", "through_line"}.
        If the stream breaks, the CustosClientError carries `progress`: the same keys,
        for what the gateway had confirmed durable. Sending the same file again
        is safe: lines already imported come back as `already_imported`.
        """
        result = self._stream_lines(self._lender.ImportCases, lines, ("imported", "already_imported"), "import")
        return cast(ImportResult, result)

    def assign_lines(self, lines: Iterable[bytes]) -> dict[str, Any]:
        """Stream placement lines ({"case_id", "to", "purpose", "until", "label"} each, numbered from 1).

        Returns {"assigned", "rejected_total", "rejected", "through_line"}; a
        broken stream raises CustosClientError with `progress` (what was granted).
        """
        return self._stream_lines(self._lender.AssignCases, lines, ("assigned",), "placement")

    def update_lines(self, lines: Iterable[bytes]) -> UpdateResult:
        """Stream account-update lines ({"case_id", "as_of", "loan", "repayments", "status", "borrower"} each,
        numbered from 1).

        Returns {"updated", "unchanged", "rejected_total", "rejected", "through_line"}; a
        broken stream raises CustosClientError with `progress` (what was applied). Sending
        the same file again is safe: lines already applied come back as `unchanged`.
        """
        result = self._stream_lines(self._lender.UpdateAccounts, lines, ("updated", "unchanged"), "update")
        return cast(UpdateResult, result)

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
               commission: str = "", agreement: str = "", pia: str = "") -> dict[str, Any]:
        """Mandate a case; `commission` ("0.18") is the mandate's fee term on what the org recovers; `agreement`
        and `pia` name the agreement and impact assessment (required where the case's jurisdiction says)."""
        r = self._call(self._lender.AssignCase, pb.AssignCaseRequest(
            case_id=case_id, org_id=org_id, purpose=purpose, until=until, label=label, commission=commission,
            agreement=agreement, pia=pia))
        return _mandate(r)

    def list_mandates(self, case_id: str) -> list[dict[str, Any]]:
        """The mandates of one of the caller's cases, newest first (recalled ones with `recalled_at`)."""
        r = self._call(self._lender.ListMandates, pb.ListMandatesRequest(case_id=case_id))
        return [_mandate(m) for m in r.mandates]

    def recall_all(self, org_id: str) -> dict[str, Any]:
        """End every mandate the organisation holds on the caller's cases (it was terminated)."""
        r = self._call(self._lender.RecallAll, pb.RecallAllRequest(org_id=org_id))
        return {"org_id": org_id, "recalled": r.recalled}

    def recall(self, case_id: str, org_id: str) -> dict[str, Any]:
        r = self._call(self._lender.RecallCase, pb.RecallCaseRequest(case_id=case_id, org_id=org_id))
        return {"case_id": case_id, "org_id": org_id, "recalled": r.recalled}

    def get_packet(self, case_id: str) -> tuple[str, bytes]:
        """(packet id, the packet file's bytes) of a case escalated to the caller (a law firm)."""
        r = self._call(self._packets.GetPacket, pb.GetPacketRequest(case_id=case_id))
        return r.packet_id, bytes(r.data)

    def escalate(self, case_id: str, law_firm: str, until: str = "", agreement: str = "",
                 pia: str = "") -> dict[str, Any]:
        """Move the case to litigation under the law firm's mandate; the agencies' mandates end (returned)."""
        r = self._call(self._lender.EscalateCase, pb.EscalateCaseRequest(case_id=case_id, org_id=law_firm, until=until,
                                                                         agreement=agreement, pia=pia))
        return {"case_id": r.case_id, "stage": r.stage, "recalled": list(r.recalled), "mandate": _mandate(r.mandate)}

    def erase(self, borrower_id: str, grace_days: int = 0, cancel: bool = False) -> dict[str, Any]:
        """Crypto-shred a borrower (now, after grace_days, or cancel a scheduled erasure): the erasure receipt."""
        r = self._call(self._lender.EraseBorrower,
                       pb.EraseBorrowerRequest(borrower_id=borrower_id, grace_days=grace_days, cancel=cancel))
        return {"lender": r.lender, "borrower_id": r.borrower_id, "state": r.state, "at": r.at, "due": r.due,
                "reason": r.reason, "destroyed": list(r.destroyed), "cases": list(r.cases),
                "mandates_ended": list(r.mandates_ended), "audit_seq": r.audit_seq}

    def subject_data(self, borrower_id: str) -> list[dict[str, Any]]:
        """The borrower's own data in each of the caller's cases (a lender answering an access request)."""
        r = self._call(self._lender.SubjectData, pb.SubjectDataRequest(borrower_id=borrower_id))
        return [{"case_id": c.case_id, "stage": c.stage, "fields": dict(c.fields), "erasure": c.erasure}
                for c in r.cases]

    def purge_plan(self) -> dict[str, Any]:
        """{"due": [...], "held": [...]}: borrowers whose retention ran out, shredded by the gateway's schedule."""
        r = self._call(self._lender.PurgePlan, pb.PurgePlanRequest())

        def items(rows: Any) -> list[dict[str, Any]]:
            return [{"borrower_id": i.borrower_id, "cases": list(i.cases), "due_on": i.due_on, "rule": i.rule,
                     "held_by": list(i.held_by)} for i in rows]

        return {"due": items(r.due), "held": items(r.held)}

    def set_consent(self, case_id: str, third_party_sharing: bool | None = None,
                    credit_reporting: bool | None = None, cross_border: bool | None = None,
                    artificial_voice: bool | None = None) -> dict[str, Any]:
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
        return {"case_id": r.case_id, "third_party_sharing": r.third_party_sharing,
                "credit_reporting": r.credit_reporting, "changed_at": r.changed_at,
                "mandates_ended": list(r.mandates_ended), "cross_border": r.cross_border,
                "artificial_voice": r.artificial_voice}

    def record_transfer(self, case_id: str, mechanism: str, reference: str, valid_until: str) -> dict[str, Any]:
        """Record the case's transfer mechanism for provision abroad (PIPL Art. 38, GDPR Art. 45-47; one of its
        jurisdiction's `[mandates] transfer_mechanisms`), valid through `valid_until`."""
        r = self._call(self._lender.RecordTransfer, pb.RecordTransferRequest(
            case_id=case_id, mechanism=mechanism, reference=reference, valid_until=valid_until))
        return {"case_id": r.case_id, "mechanism": r.mechanism, "reference": r.reference,
                "valid_until": r.valid_until, "cross_border": r.cross_border}

    def record_notice(self, case_id: str, on: str, kind: str = "") -> dict[str, Any]:
        """Record the day the borrower was given a notice: of coming negative credit reporting (the default kind),
        the validation notice or the notice that collection is outsourced (`kind`)."""
        r = self._call(self._lender.RecordNotice, pb.RecordNoticeRequest(case_id=case_id, on=on, kind=kind))
        out = {"case_id": r.case_id, "kind": r.kind, "notice_on": r.notice_on}
        if r.negative_notice_on:
            out["negative_notice_on"] = r.negative_notice_on
        return out

    # ---- EU (issue 26)
    def record_forbearance(self, case_id: str, measure: str, on: str) -> dict[str, Any]:
        """Record a forbearance measure on a case (CCD Art. 35); the answer lists every measure of the case."""
        r = self._call(self._lender.RecordForbearance,
                       pb.RecordForbearanceRequest(case_id=case_id, measure=measure, on=on))
        return {"case_id": r.case_id, "measure": r.measure, "on": r.on, "recorded_at": r.recorded_at,
                "measures": [{"measure": m.measure, "on": m.on} for m in r.measures]}

    def ropa(self) -> dict[str, Any]:
        """The record of processing activities (GDPR Art. 30) generated from the caller's mandates, one document."""
        r = self._call(self._lender.ProcessingRecord, pb.ProcessingRecordRequest())
        doc: dict[str, Any] = json.loads(r.record)
        return doc

    # ---- agency performance (issue 24)
    def performance(self, from_date: str = "", to_date: str = "") -> dict[str, Any]:
        """{"from", "to", "agencies": [{"org", "kind", "cases_placed", ...}]}: figures per agency over UTC days."""
        r = self._call(self._lender.Performance, pb.PerformanceRequest(from_date=from_date, to_date=to_date))

        def opt(a: Any, name: str) -> int | None:
            return int(getattr(a, name)) if a.HasField(name) else None

        return {"from": r.from_date, "to": r.to_date, "agencies": [
            {"org": a.org, "kind": a.kind, "cases_placed": a.cases_placed, "contact_attempts": a.contact_attempts,
             "conversations": a.conversations, "promises": a.promises, "promises_kept": opt(a, "promises_kept"),
             "plans": opt(a, "plans"), "plans_kept": opt(a, "plans_kept"), "recovered": dict(sorted(a.recovered.items())),
             "refusals": dict(sorted(a.refusals.items()))} for a in r.agencies]}

    def set_stage(self, case_id: str, stage: str) -> dict[str, Any]:
        return _summary(self._call(self._lender.SetStage, pb.SetStageRequest(case_id=case_id, stage=stage)))

    def set_flags(self, case_id: str, status: str | None = None, verification_sent: str = "",
                  **flags: bool) -> dict[str, Any]:
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

    def explain(self, org_id: str, case_id: str, purpose: str, at: str = "") -> dict[str, Any]:
        r = self._call(self._lender.Explain, pb.ExplainRequest(org_id=org_id, case_id=case_id, purpose=purpose, at=at))
        return {"org_id": org_id, "case_id": case_id, "purpose": purpose, "decision": r.decision, "code": r.code,
                "fields": [{"field": f.field, "transform": f.transform, "rule": f.rule} for f in r.fields],
                "rules": list(r.rules), "policy_revision": r.policy_revision, "notes": list(r.notes)}

    # ------------------------------------------------------------ payments and statements
    def report_payment(self, case_id: str, amount: str, on: str, reference: str) -> dict[str, Any]:
        """Report a payment collected on a mandated case; the same reference again answers the same payment."""
        r = self._call(self._cases.ReportPayment, pb.ReportPaymentRequest(case_id=case_id, amount=amount, on=on,
                                                                          reference=reference))
        return _payment(r)

    def payments(self, status: str = "", org_id: str = "") -> list[dict[str, Any]]:
        """The payments reported on the caller's (a lender's) cases, optionally of one status and one org."""
        r = self._call(self._lender.ListPayments, pb.ListPaymentsRequest(status=status, org_id=org_id))
        return [_payment(p) for p in r.payments]

    def confirm_payment(self, payment_id: str) -> dict[str, Any]:
        r = self._call(self._lender.ConfirmPayment, pb.DecidePaymentRequest(payment_id=payment_id))
        return _decision(r)

    def reject_payment(self, payment_id: str, reason: str) -> dict[str, Any]:
        r = self._call(self._lender.RejectPayment, pb.DecidePaymentRequest(payment_id=payment_id, reason=reason))
        return _decision(r)

    def statement(self, period: str, org_id: str = "") -> dict[str, Any]:
        """{"period", "lines", "recovered", "fees", "currency", "totals", "org"}: the month's confirmed payments."""
        r = self._call(self._cases.GetStatement, pb.StatementRequest(period=period, org_id=org_id))
        lines = [{"payment_id": x.payment_id, "case_id": x.case_id, "lender": x.lender, "org": x.org, "on": x.on,
                  "confirmed_at": x.confirmed_at, "amount": x.amount, "currency": x.currency, "rate": x.rate,
                  "fee": x.fee} for x in r.lines]
        return {"period": r.period, "org": r.org, "lines": lines, "recovered": r.recovered, "fees": r.fees,
                "currency": r.currency,
                "totals": {cur: {"recovered": t.recovered, "fees": t.fees} for cur, t in sorted(r.totals.items())}}

    # ------------------------------------------------------------ contact
    def open_contact(self, case_id: str, channel: str, party: str = "borrower",
                     artificial_voice: bool = False) -> dict[str, Any]:
        r = self._call(self._cases.OpenContact, pb.OpenContactRequest(case_id=case_id, channel=channel, party=party,
                                                                      artificial_voice=artificial_voice))
        return _contact(r)

    def record_outcome(self, contact_id: str, result: str, amount: str = "", on: str = "",
                       recording: str = "") -> dict[str, Any]:
        """What came of a contact; a promise to pay with its amount and date (the borrower's local date); a call
        recording's opaque reference (never its content)."""
        return _contact(self._call(self._cases.RecordOutcome, pb.RecordOutcomeRequest(
            contact_id=contact_id, result=result, promise_amount=amount, promise_on=on, recording=recording)))

    # ------------------------------------------------------------ promises and plans
    def propose_plan(self, case_id: str, instalments: Iterable[tuple[str, str]]) -> dict[str, Any]:
        """A repayment plan of (YYYY-MM-DD, amount) instalments on a mandated case: {"plan_id", "status"}."""
        r = self._call(self._cases.ProposePlan, pb.ProposePlanRequest(
            case_id=case_id, instalments=[pb.Instalment(on=on, amount=amount) for on, amount in instalments]))
        return {"plan_id": r.plan_id, "case_id": r.case_id, "status": r.status}

    def accept_plan(self, plan_id: str) -> dict[str, Any]:
        return _plan(self._call(self._lender.AcceptPlan, pb.DecidePlanRequest(plan_id=plan_id)))

    def reject_plan(self, plan_id: str, reason: str) -> dict[str, Any]:
        return _plan(self._call(self._lender.RejectPlan, pb.DecidePlanRequest(plan_id=plan_id, reason=reason)))

    def show_plans(self, case_id: str) -> dict[str, Any]:
        """{"case_id", "plans": [{"plan_id", "org", "status", "instalments": [{"on", "amount", "state"}], ...}]}."""
        r = self._call(self._cases.ShowPlans, pb.ShowPlansRequest(case_id=case_id))
        return {"case_id": r.case_id, "plans": [_plan(p) for p in r.plans]}

    # ------------------------------------------------------------ cases
    def list_cases(self, national_id: str = "", phone: str = "") -> list[dict[str, Any]]:
        r = self._call(self._cases.ListCases, pb.ListCasesRequest(national_id=national_id, phone=phone))
        return [_summary(c) for c in r.cases]

    def get_case(self, case_id: str, purpose: str, metadata: Iterable[tuple[str, str]] | None = None
                 ) -> CaseRecord:
        """The fields of one case the policy releases to the caller for `purpose` (the read is audited)."""
        r = self._call(self._cases.GetCase, pb.GetCaseRequest(case_id=case_id, purpose=purpose), metadata)
        out: CaseRecord = {"case_id": r.case_id, "purpose": r.purpose, "stage": r.stage, "fields": dict(r.fields),
               "rules": list(r.rules)}
        if r.erasure:
            out["erasure"] = r.erasure
        return out

    # ------------------------------------------------------------ work lists
    def pull_cases(self, purpose: str, since: str = "", timeout: float = 3600) -> Iterator[PullItem]:
        """The caller's mandated cases, streamed: only those changed after `since` if given.

        Yields three kinds of item (`results.PullItem`); tell them apart by key:
        - {"record": {case_id, lender_id, purpose, stage, fields, rules}, "cursor"}: a case to work.
          The case is NESTED under "record": count `"record" in item`, read `item["record"]["fields"]`;
          the item itself has no "case_id" or "fields".
        - {"removed": case_id, "lender_id", "code", "cursor"}: a case that left the list (with `since` only).
        - last, {"cursor", "end": True}: keep that cursor for the next pull.

            cases = [item["record"] for item in client.pull_cases("collection") if "record" in item]

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
                        yield {"record": {"case_id": r.case_id, "lender_id": item.lender_id, "purpose": r.purpose,
                                          "stage": r.stage, "fields": dict(r.fields), "rules": list(r.rules)},
                               "cursor": item.cursor}
                    else:
                        yield {"removed": item.removed, "lender_id": item.lender_id, "code": item.code,
                               "cursor": item.cursor}
                if message.end:
                    ended = True
                    last = message.cursor
                    yield {"cursor": message.cursor, "end": True}
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
        """{"records": [...], "withheld": [{"case_id", "code"}], "cursor": "..."}: the records changed since
        `since` (a bureau), and those the format cannot carry (not numbered: sent once corrected). Keep the cursor."""
        records: list[FeedRecord] = []
        withheld: list[Withheld] = []
        cursor = ""
        try:
            for item in self._bureau.PullFeed(pb.PullFeedRequest(since=since), timeout=3600):
                kind = item.WhichOneof("item")
                if kind == "cursor":
                    cursor = item.cursor
                elif kind == "withheld":
                    withheld.append({"case_id": item.withheld.case_id, "code": item.withheld.code})
                else:
                    r = item.record
                    records.append({"seq": r.seq, "case_id": r.case_id, "loan_id": r.loan_id,
                                    "jurisdiction": r.jurisdiction, **dict(r.fields)})
        except grpc.RpcError as err:
            raise _translate(err) from None
        if not cursor:
            raise CustosClientError(Code.UNAVAILABLE,
                                    "the feed ended without a cursor: pull again with the same --since")
        return {"records": records, "withheld": withheld, "cursor": cursor}

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

    def verified_audit_query(self, vkey: str, **filters: Any) -> list[dict[str, Any]]:
        """`audit_query`, every event checked against a checkpoint signed by the pinned key (see above)."""
        return [json.loads(leaf) for _, leaf in self.verified_audit_events(vkey, **filters)]

    def proven_audit_page(self, limit: int, last: bool = False, **filters: Any) -> dict[str, Any]:
        """At most `limit` events from `from_seq` on, each with its inclusion proof, and the checkpoint signed for
        this query, all UNCHECKED: for a reader that verifies them itself (the console's page does, in the
        browser). {"checkpoint": note, "events": [(seq, leaf, proof)], "next_from_seq": n (0: nothing more)}.
        `last`: the last `limit` events up to the checkpoint instead (for a from_seq just below the tree size:
        the newest page, the events appended meanwhile, this query's own among them, included)."""
        req = pb.QueryAuditRequest(with_proofs=True, limit=0 if last else limit, **filters)
        events: collections.deque[tuple[int, bytes, list[bytes]]] = collections.deque(maxlen=limit if last else None)
        note, nxt = "", 0
        try:
            for batch in self._audit.QueryAudit(req, timeout=self.timeout):
                note = note or batch.checkpoint
                nxt = batch.next_from_seq or nxt
                events.extend((ev.seq, ev.leaf, list(ev.proof)) for ev in batch.events)
        except grpc.RpcError as err:
            raise _translate(err) from None
        return {"checkpoint": note, "events": list(events), "next_from_seq": 0 if last else nxt}

    def proven_events(self, seqs: Iterable[int], size: int) -> list[tuple[int, bytes, list[bytes]]]:
        """These events (a missing one left out), each with its inclusion proof in the tree of `size`, UNCHECKED:
        the caller checks them against a checkpoint of that size it verified (or shows them as unverified)."""
        wanted = sorted(set(seqs))
        got: list[tuple[int, bytes, list[bytes]]] = []
        try:
            for i in range(0, len(wanted), 1000):
                req = pb.QueryAuditRequest(seqs=wanted[i:i + 1000], with_proofs=True, proof_size=size)
                for batch in self._audit.QueryAudit(req, timeout=3600):
                    got += [(ev.seq, ev.leaf, list(ev.proof)) for ev in batch.events]
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

    def subject_events(self, borrower_id: str, lender_id: str = "") -> list[dict[str, Any]]:
        """Every event about one lender's borrower of this id (a lender: its own; a regulator: the named lender's,
        or every lender's), as leaf objects with `report_lender` added: the lender it is listed for ("" none sure).
        """
        try:
            return [{**json.loads(ev.leaf), "report_lender": ev.lender} for batch in self._audit.SubjectReport(
                pb.SubjectReportRequest(borrower_id=borrower_id, lender_id=lender_id), timeout=3600)
                for ev in batch.events]
        except grpc.RpcError as err:
            raise _translate(err) from None

    def audit_stats(self, from_: str, to: str, by: Sequence[str] = ()) -> dict[str, Any]:
        """Events per group over [from_, to): {"from", "to", "by", "size", "checkpoint", "total", "groups":
        [{<each key of by>: value, "count": n}, ...]}, counted over the events with seq < size.

        `by`: org, code, method, purpose, channel, decision, lender, agent, day, month; none gives the total.
        A lender's figures also carry "lender" (its id: only events naming it as the owning lender count).
        The checkpoint is the gateway's signed note of that size: check it, and the figures, by recounting the
        verified events (`verified_audit_events(..., tree=...)`; the CLI's `audit stats --verify`).
        """
        r = self._call(self._audit.AuditStats, pb.AuditStatsRequest(from_time=from_, to_time=to, by=list(by)))
        keys = list(r.by)
        doc: dict[str, Any] = {
            "from": r.from_time, "to": r.to_time, "by": keys, "size": int(r.size), "checkpoint": r.checkpoint,
            "total": int(r.total),
            "groups": [{**{k: g.keys.get(k, "") for k in keys}, "count": int(g.count)} for g in r.groups]}
        if r.lender:
            doc["lender"] = r.lender  # a lender's figures: the events naming it as the owning lender
        return doc

    def audit_query(self, **filters: Any) -> list[dict[str, Any]]:
        return [json.loads(leaf) for _, leaf in self.audit_events(**filters)]

    def inclusion_proof(self, seq: int, size: int = 0) -> InclusionProof:
        """{"index", "tree_size", "leaf_hash", "root", "proof"} (bytes); size 0: the current tree."""
        r = self._call(self._audit.GetInclusionProof, pb.InclusionProofRequest(seq=seq, tree_size=size))
        return {"index": r.index, "tree_size": r.tree_size, "leaf_hash": r.leaf_hash, "root": r.root,
                "proof": list(r.proof)}

    def consistency_proof(self, first: int, second: int = 0) -> dict[str, Any]:
        """{"from", "to", "from_root", "to_root", "proof"} (bytes); second 0: the current tree."""
        r = self._call(self._audit.GetConsistencyProof, pb.ConsistencyProofRequest(from_size=first, to_size=second))
        return {"from": r.from_size, "to": r.to_size, "from_root": r.from_root, "to_root": r.to_root,
                "proof": list(r.proof)}

    def checkpoint(self, size: int = 0) -> str:
        """A checkpoint of the current tree; given a size, the one the gateway published for it."""
        return str(self._call(self._audit.GetCheckpoint, pb.GetCheckpointRequest(size=size)).note)

    def checkpoint_and_cosigned(self, size: int = 0) -> tuple[str, list[str]]:
        """`checkpoint(size)` and, from the same answer, the latest checkpoint each regulator cosigned."""
        r = self._call(self._audit.GetCheckpoint, pb.GetCheckpointRequest(size=size))
        return str(r.note), list(r.cosigned)

    def cosigned(self) -> list[str]:
        """The latest checkpoint each regulator cosigned, each with its cosignature line."""
        return list(self._call(self._audit.GetCheckpoint, pb.GetCheckpointRequest()).cosigned)

    def cosign(self, checkpoint: str, cosignature: str, cosigner_key: str) -> int:
        r = self._call(self._audit.Cosign, pb.CosignRequest(checkpoint=checkpoint, cosignature=cosignature,
                                                            cosigner_key=cosigner_key))
        return int(r.size)

    def compliance_report(self, from_: str, to: str) -> dict[str, Any]:
        """The compliance report of [from_, to) as one JSON document (a regulator: every case; a lender: its own).

        Every figure is recomputable from the verified events of the period: `custos audit compliance-report
        --verify` does it (gateway/core/rules/compliance.py)."""
        r = self._call(self._audit.ComplianceReport, pb.ComplianceReportRequest(from_time=from_, to_time=to))
        doc: dict[str, Any] = json.loads(r.report)
        return doc

    def checkpoint_and_key(self) -> tuple[str, str]:
        """The signed checkpoint and the verifier key the gateway names (pin your own copy to trust it)."""
        r = self._call(self._audit.GetCheckpoint, pb.GetCheckpointRequest())
        return str(r.note), str(r.verifier_key)


def _payment(r: Any) -> dict[str, Any]:
    out = {"payment_id": r.payment_id, "status": r.status, "case_id": r.case_id, "org": r.org, "amount": r.amount,
           "currency": r.currency, "on": r.on, "reference": r.reference, "reported_at": r.reported_at,
           "decided_at": r.decided_at, "commission": r.commission}
    if r.status == "rejected" and r.reason:
        out["reason"] = r.reason
    return out


def _decision(r: Any) -> dict[str, Any]:
    out = {"payment_id": r.payment_id, "status": r.status, "case_id": r.case_id, "decided_at": r.decided_at}
    if r.status == "confirmed":
        out.update(org=r.org, amount=r.amount, currency=r.currency, commission=r.commission,
                   outstanding=r.outstanding, amount_due=r.amount_due, case_status=r.case_status)
    return out


def _contact(r: Any) -> dict[str, Any]:
    """Only the fields the gateway released: phone, or address, and a name for a third party."""
    out = {"contact_id": r.contact_id, "case_id": r.case_id, "channel": r.channel, "party": r.party,
           "opened_at": r.opened_at}
    for key in ("phone", "address", "name", "result", "promise_amount", "promise_on", "recording",
                "artificial_voice"):
        if getattr(r, key):
            out[key] = getattr(r, key)
    return out


def _plan(p: Any) -> dict[str, Any]:
    """A plan: its id, case, proposer, status and instalments always; the rest only where the gateway set it."""
    out: dict[str, Any] = {"plan_id": p.plan_id, "case_id": p.case_id, "status": p.status}
    for key in ("org", "proposed_at", "decided_at", "paid", "amount_due", "reason"):
        if getattr(p, key):
            out[key] = getattr(p, key)
    out["instalments"] = [{"on": i.on, "amount": i.amount, **({"state": i.state} if i.state else {})}
                          for i in p.instalments]
    return out


def _summary(c: Any) -> dict[str, Any]:
    return {"case_id": c.case_id, "lender": c.lender, "stage": c.stage, "status": c.status,
            "jurisdiction": c.jurisdiction, "purpose": c.purpose, "until": c.until, "flags": list(c.flags),
            "erasure": c.erasure}


def __getattr__(name: str) -> type[CustosClientError]:
    """`CustosError`: the old name of `CustosClientError`, kept (with a DeprecationWarning) for one release."""
    if name == "CustosError":
        warnings.warn("custos_client.CustosError is deprecated: use CustosClientError (same class)",
                      DeprecationWarning, stacklevel=2)
        return CustosClientError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _mandate(m: pb.MandateInfo) -> dict[str, Any]:
    """A mandate as a dict; the optional parts (commission, agreement, pia, recalled_at) only when set."""
    out: dict[str, Any] = {"case_id": m.case_id, "org_id": m.org_id, "purpose": m.purpose, "until": m.until,
                           "label": m.label, "granted_at": m.granted_at}
    for key in ("commission", "agreement", "pia", "recalled_at"):
        if getattr(m, key):
            out[key] = getattr(m, key)
    return out
