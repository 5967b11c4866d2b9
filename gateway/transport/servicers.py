"""Servicers: request in, one use case, response out. Nothing is decided here."""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from custos_client.v1 import custos_pb2 as pb
from custos_client.v1 import custos_pb2_grpc as pb_grpc

from gateway.core.errors import CustosError
from gateway.core.model import FLAGS, PURPOSES, Caller, CaseRow
from gateway.core.usecases import Core
from gateway.pki import org_id_from_pem

from . import tracing
from .status import to_status

log = logging.getLogger("custos.transport")

F = TypeVar("F", bound=Callable[..., Any])

_identity_cache: dict[bytes, str | None] = {}


def caller_of(context: grpc.ServicerContext, method: str) -> Caller:
    """Identity from the verified client certificate only; metadata is never consulted."""
    auth = context.auth_context()
    pems = auth.get("x509_pem_cert")
    if not pems:
        raise CustosError("UNAUTHENTICATED")
    pem = pems[0]
    org_id = _identity_cache.get(pem)
    if org_id is None:
        org_id = org_id_from_pem(pem)
        if len(_identity_cache) > 10_000:
            _identity_cache.clear()
        _identity_cache[pem] = org_id
    if not org_id:
        raise CustosError("UNKNOWN_ORG")
    # Without tracing the audit event still gets an id to correlate by. It needs to be unique, not secret:
    # the PRNG (seeded from the OS once) avoids a getrandom() call, which releases the GIL, on every request.
    trace_id = tracing.current_trace_id() or f"{random.getrandbits(128):032x}"
    return Caller(org_id=org_id, method=method, trace_id=trace_id)


def _abort(context: grpc.ServicerContext, err: CustosError) -> None:
    tracing.annotate(decision="deny", code=err.code)
    context.abort_with_status(to_status(err))


def _internal(context: grpc.ServicerContext, exc: BaseException) -> None:
    # Type only: an exception's text could carry a value.
    log.error("unexpected %s in RPC", type(exc).__name__)
    _abort(context, CustosError("INTERNAL"))


def rpc(method: str) -> Callable[[F], F]:
    """Resolve the caller, run the body, translate CustosError to a status."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                caller = caller_of(context, method)
                tracing.annotate(org=caller.org_id)
                return fn(self, caller, request, context)
            except CustosError as err:
                _abort(context, err)
            except Exception as exc:  # noqa: BLE001 - last line: never leak a traceback
                _internal(context, exc)
            return None

        return unary  # type: ignore[return-value]

    return wrap


def rpc_stream(method: str) -> Callable[[F], F]:
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def streaming(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                caller = caller_of(context, method)
                yield from fn(self, caller, request, context)
            except CustosError as err:
                _abort(context, err)
            except Exception as exc:  # noqa: BLE001
                _internal(context, exc)

        return streaming  # type: ignore[return-value]

    return wrap


def _purpose_attr(purpose: str) -> str:
    """Span attributes carry vocabulary only, never a caller's free text."""
    return purpose if purpose in PURPOSES else "invalid"


def _case_summary(case: CaseRow) -> pb.CaseSummary:
    return pb.CaseSummary(case_id=case.case_id, lender=case.lender_id, stage=case.stage, status=case.status,
                          jurisdiction=case.jurisdiction, flags=case.flags())


def _summary(c: dict[str, Any]) -> pb.CaseSummary:
    return pb.CaseSummary(**c)


class LenderServicer(pb_grpc.LenderServiceServicer):  # type: ignore[misc]
    def __init__(self, core: Core) -> None:
        self.core = core

    @rpc("ImportCases")
    def ImportCases(self, caller: Caller, request_iterator: Iterator[pb.ImportLine], context: Any) -> pb.ImportSummary:
        lines = ((int(m.line_no), bytes(m.raw)) for m in request_iterator)
        result = self.core.import_cases(caller, lines)
        tracing.annotate(decision="allow", count=result.imported)
        return pb.ImportSummary(
            imported=result.imported, rejected_total=result.rejected_total,
            rejected=[pb.ImportRejection(line=n, code=c, reason=r) for n, c, r in result.rejected or []],
        )

    @rpc("AssignCase")
    def AssignCase(self, caller: Caller, request: pb.AssignCaseRequest, context: Any) -> pb.MandateInfo:
        tracing.annotate(purpose=_purpose_attr(request.purpose))
        m = self.core.assign(caller, request.case_id, request.org_id, request.purpose, request.until, request.label)
        return pb.MandateInfo(**m)

    @rpc("RecallCase")
    def RecallCase(self, caller: Caller, request: pb.RecallCaseRequest, context: Any) -> pb.RecallCaseResponse:
        return pb.RecallCaseResponse(recalled=self.core.recall(caller, request.case_id, request.org_id))

    @rpc("SetStage")
    def SetStage(self, caller: Caller, request: pb.SetStageRequest, context: Any) -> pb.CaseSummary:
        case = self.core.set_stage(caller, request.case_id, request.stage)
        return _case_summary(case)


    @rpc("SetFlags")
    def SetFlags(self, caller: Caller, request: pb.SetFlagsRequest, context: Any) -> pb.CaseSummary:
        changes: dict[str, Any] = {
            name: getattr(request, name) for name in FLAGS if request.HasField(name)
        }
        if request.HasField("status"):
            changes["status"] = request.status
        case = self.core.set_flags(caller, request.case_id, changes)
        return _case_summary(case)

    @rpc("Explain")
    def Explain(self, caller: Caller, request: pb.ExplainRequest, context: Any) -> pb.Explanation:
        tracing.annotate(purpose=_purpose_attr(request.purpose))
        e = self.core.explain(caller, request.org_id, request.case_id, request.purpose, request.at)
        return pb.Explanation(
            decision=e["decision"], code=e["code"], rules=e["rules"], policy_revision=e["policy_revision"],
            notes=e["notes"], fields=[pb.FieldRelease(**f) for f in e["fields"]],
        )


class CaseServicer(pb_grpc.CaseServiceServicer):  # type: ignore[misc]
    def __init__(self, core: Core) -> None:
        self.core = core

    @rpc("ListCases")
    def ListCases(self, caller: Caller, request: pb.ListCasesRequest, context: Any) -> pb.ListCasesResponse:
        cases = self.core.list_cases(caller, request.national_id, request.phone)
        tracing.annotate(decision="allow", count=len(cases))
        return pb.ListCasesResponse(cases=[_summary(c) for c in cases])

    @rpc("GetCase")
    def GetCase(self, caller: Caller, request: pb.GetCaseRequest, context: Any) -> pb.CaseRecord:
        tracing.annotate(purpose=_purpose_attr(request.purpose))
        rel = self.core.get_case(caller, request.case_id, request.purpose)
        tracing.annotate(decision="allow", count=len(rel.fields))
        return pb.CaseRecord(case_id=rel.case_id, purpose=rel.purpose, stage=rel.stage, fields=rel.fields,
                             rules=rel.rules)


    @rpc("OpenContact")
    def OpenContact(self, caller: Caller, request: pb.OpenContactRequest, context: Any) -> pb.ContactInfo:
        info = self.core.open_contact(caller, request.case_id, request.channel, request.party)
        tracing.annotate(decision="allow")
        return pb.ContactInfo(**info)

    @rpc("RecordOutcome")
    def RecordOutcome(self, caller: Caller, request: pb.RecordOutcomeRequest, context: Any) -> pb.ContactInfo:
        return pb.ContactInfo(**self.core.record_outcome(caller, request.contact_id, request.result))


class AuditServicer(pb_grpc.AuditServiceServicer):  # type: ignore[misc]
    def __init__(self, core: Core) -> None:
        self.core = core

    @rpc_stream("QueryAudit")
    def QueryAudit(self, caller: Caller, request: pb.QueryAuditRequest, context: Any) -> Iterator[pb.AuditEvent]:
        rows = self.core.audit_query(caller, request.case_id, request.org_id, request.borrower_id, request.since,
                                     request.from_seq)
        for seq, leaf in rows:
            yield pb.AuditEvent(seq=seq, leaf=leaf)

    @rpc("GetCheckpoint")
    def GetCheckpoint(self, caller: Caller, request: pb.GetCheckpointRequest, context: Any) -> pb.Checkpoint:
        note, size = self.core.checkpoint(caller)
        return pb.Checkpoint(note=note, size=size, verifier_key=self.core.verifier_key)
