"""Servicers: request in, one use case, response out. Nothing is decided here.

Each method takes the caller (established by the gate, `calls.py`) and the
decoded request; `methods` pairs them with the proto descriptors so the gate
can register them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from custos_client.v1 import custos_pb2 as pb

from gateway import packets
from gateway.core.app import Core, ImportProgress, Released
from gateway.core.errors import Code, CustosError
from gateway.core.model import FLAGS, PURPOSES, AuditEntry, Caller, CaseRow
from gateway.core.rules import auditfilter
from gateway.core.usecases.furnishing import FeedWithheld
from gateway.core.usecases.supervision import Paged

from . import tracing
from .calls import Method

AUDIT_BATCH_EVENTS = 1000
AUDIT_BATCH_BYTES = 512 * 1024
PULL_MESSAGE_ITEMS = 256  # cases per PulledCases message (a page of the work list: well under 4 MiB)


def _batched(events: Iterable[pb.AuditEvent], page: Paged | None = None) -> Iterator[pb.AuditEventBatch]:
    """Events in batches; with a `page`, the last batch carries where the next page starts (an empty batch if
    the events ended on a full one)."""
    batch: list[pb.AuditEvent] = []
    size = 0
    for event in events:
        batch.append(event)
        size += len(event.leaf)
        if len(batch) >= AUDIT_BATCH_EVENTS or size >= AUDIT_BATCH_BYTES:
            yield pb.AuditEventBatch(events=batch)
            batch, size = [], 0
    after = page.next_from_seq if page is not None else 0
    if batch or after:
        yield pb.AuditEventBatch(events=batch, next_from_seq=after)


def _batched_proven(checkpoint: str, rows: Iterable[tuple[AuditEntry, list[bytes]]],
                    page: Paged | None = None) -> Iterator[pb.AuditEventBatch]:
    """Events with their proofs, each batch with the checkpoint (so a page stands alone); at least one batch;
    the last carries `next_from_seq` as `_batched`'s does."""
    batch: list[pb.AuditEvent] = []
    size = 0
    sent = False
    for entry, proof in rows:
        batch.append(pb.AuditEvent(seq=entry.seq, leaf=entry.leaf, proof=proof))
        size += len(entry.leaf) + 32 * len(proof)
        if len(batch) >= AUDIT_BATCH_EVENTS or size >= AUDIT_BATCH_BYTES:
            yield pb.AuditEventBatch(events=batch, checkpoint=checkpoint)
            batch, size, sent = [], 0, True
    after = page.next_from_seq if page is not None else 0
    if batch or not sent or after:
        yield pb.AuditEventBatch(events=batch, checkpoint=checkpoint, next_from_seq=after)


def _purpose_attr(purpose: str) -> str:
    """Span attributes carry vocabulary only, never a caller's free text."""
    return purpose if purpose in PURPOSES else "invalid"


def _record(rel: Released) -> pb.CaseRecord:
    return pb.CaseRecord(case_id=rel.case_id, purpose=rel.purpose, stage=rel.stage, fields=rel.fields,
                         rules=rel.rules, erasure=rel.erasure)


def _plan(view: dict[str, Any]) -> pb.PlanInfo:
    """A plan as the use case gave it (promises and plans, usecases/plans.py)."""
    return pb.PlanInfo(**{k: v for k, v in view.items() if k != "instalments"},
                       instalments=[pb.Instalment(**i) for i in view.get("instalments", [])])


def _case_summary(case: CaseRow) -> pb.CaseSummary:
    return pb.CaseSummary(case_id=case.case_id, lender=case.lender_id, stage=case.stage, status=case.status,
                          jurisdiction=case.jurisdiction, flags=case.flags(), erasure=case.erasure)


def _chunked_lines(requests: Iterator[pb.LineChunk]) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) of every chunk; a chunk without lines is refused.

    A client never sends one, but one built when ImportCases took a message
    per line sends frames that decode as empty chunks (their fields are not a
    chunk's): refused, or its import would end with nothing stored and no error.
    """
    for chunk in requests:
        if not chunk.lines:
            raise CustosError(Code.MALFORMED_REQUEST, "a chunk without lines")
        for m in chunk.lines:
            yield int(m.line_no), bytes(m.raw)


def _progress(p: ImportProgress) -> pb.ImportProgress:
    return pb.ImportProgress(
        through_line=p.through_line, imported=p.imported, already_imported=p.already_imported,
        rejected_total=p.rejected_total, done=p.done,
        rejected=[pb.ImportRejection(line=n, code=c, reason=r) for n, c, r in p.rejected],
    )


class LenderServicer:
    def __init__(self, core: Core) -> None:
        self.core = core

    def ImportCases(self, caller: Caller, requests: Iterator[pb.LineChunk]) -> Iterator[pb.ImportProgress]:
        lines = _chunked_lines(requests)
        for progress in self.core.import_cases(caller, lines):
            if progress.done:
                tracing.annotate(decision="allow", count=progress.imported)
            yield _progress(progress)

    def UpdateAccounts(self, caller: Caller, requests: Iterator[pb.LineChunk]) -> Iterator[pb.UpdateProgress]:
        lines = _chunked_lines(requests)
        for p in self.core.update_accounts(caller, lines):
            if p.done:
                tracing.annotate(decision="allow", count=p.updated)
            yield pb.UpdateProgress(through_line=p.through_line, updated=p.updated, unchanged=p.unchanged,
                                    rejected_total=p.rejected_total, done=p.done,
                                    rejected=[pb.ImportRejection(line=n, code=c, reason=r) for n, c, r in p.rejected])

    def AssignCases(self, caller: Caller, requests: Iterator[pb.LineChunk]) -> Iterator[pb.PlacementProgress]:
        lines = _chunked_lines(requests)
        for p in self.core.place_cases(caller, lines):
            if p.done:
                tracing.annotate(decision="allow", count=p.assigned)
            yield pb.PlacementProgress(through_line=p.through_line, assigned=p.assigned,
                                       rejected_total=p.rejected_total, done=p.done,
                                       rejected=[pb.ImportRejection(line=n, code=c, reason=r) for n, c, r in p.rejected])

    def RecallAll(self, caller: Caller, request: pb.RecallAllRequest) -> pb.RecallCaseResponse:
        return pb.RecallCaseResponse(recalled=self.core.recall_all(caller, request.org_id))

    def AssignCase(self, caller: Caller, request: pb.AssignCaseRequest) -> pb.MandateInfo:
        tracing.annotate(purpose=_purpose_attr(request.purpose))
        m = self.core.assign(caller, request.case_id, request.org_id, request.purpose, request.until, request.label,
                             request.commission, request.agreement, request.pia)
        return pb.MandateInfo(**m)

    def RecallCase(self, caller: Caller, request: pb.RecallCaseRequest) -> pb.RecallCaseResponse:
        return pb.RecallCaseResponse(recalled=self.core.recall(caller, request.case_id, request.org_id))

    def EscalateCase(self, caller: Caller, request: pb.EscalateCaseRequest) -> pb.EscalateCaseResponse:
        tracing.annotate(purpose="litigation")
        e = self.core.escalate(caller, request.case_id, request.org_id, request.until, request.agreement, request.pia)
        return pb.EscalateCaseResponse(case_id=e["case_id"], stage=e["stage"], recalled=e["recalled"],
                                       mandate=pb.MandateInfo(**e["mandate"]))

    def ListMandates(self, caller: Caller, request: pb.ListMandatesRequest) -> pb.ListMandatesResponse:
        return pb.ListMandatesResponse(mandates=[pb.MandateInfo(**m)
                                                 for m in self.core.list_mandates(caller, request.case_id)])

    def SetConsent(self, caller: Caller, request: pb.SetConsentRequest) -> pb.ConsentInfo:
        third = request.third_party_sharing if request.HasField("third_party_sharing") else None
        credit = request.credit_reporting if request.HasField("credit_reporting") else None
        abroad = request.cross_border if request.HasField("cross_border") else None
        voice = request.artificial_voice if request.HasField("artificial_voice") else None
        return pb.ConsentInfo(**self.core.set_consent(caller, request.case_id, third, credit, abroad, voice))

    def RecordTransfer(self, caller: Caller, request: pb.RecordTransferRequest) -> pb.TransferInfo:
        return pb.TransferInfo(**self.core.record_transfer(caller, request.case_id, request.mechanism,
                                                           request.reference, request.valid_until))

    def EraseBorrower(self, caller: Caller, request: pb.EraseBorrowerRequest) -> pb.ErasureReceipt:
        return pb.ErasureReceipt(**self.core.erase(caller, request.borrower_id, request.grace_days, request.cancel))

    def SubjectData(self, caller: Caller, request: pb.SubjectDataRequest) -> pb.SubjectDataResponse:
        return pb.SubjectDataResponse(cases=[_record(rel) for rel in self.core.subject_data(caller, request.borrower_id)])

    def AcceptPlan(self, caller: Caller, request: pb.DecidePlanRequest) -> pb.PlanInfo:
        return _plan(self.core.decide_plan(caller, request.plan_id, True))

    def RejectPlan(self, caller: Caller, request: pb.DecidePlanRequest) -> pb.PlanInfo:
        return _plan(self.core.decide_plan(caller, request.plan_id, False, request.reason))

    def PurgePlan(self, caller: Caller, request: pb.PurgePlanRequest) -> pb.PurgePlanResponse:
        plan = self.core.purge_plan(caller)

        def items(rows: list[dict[str, Any]]) -> list[pb.PurgeItem]:
            return [pb.PurgeItem(borrower_id=r["borrower_id"], cases=r["cases"], due_on=r["due_on"], rule=r["rule"],
                                 held_by=r["held_by"]) for r in rows]

        return pb.PurgePlanResponse(due=items(plan["due"]), held=items(plan["held"]))

    def RecordNotice(self, caller: Caller, request: pb.RecordNoticeRequest) -> pb.RecordNoticeResponse:
        tracing.annotate(purpose="credit_reporting" if request.kind in ("", "negative_reporting") else "collection")
        return pb.RecordNoticeResponse(**self.core.record_notice(caller, request.case_id, request.on, request.kind))

    def SetStage(self, caller: Caller, request: pb.SetStageRequest) -> pb.CaseSummary:
        return _case_summary(self.core.set_stage(caller, request.case_id, request.stage))

    def SetFlags(self, caller: Caller, request: pb.SetFlagsRequest) -> pb.CaseSummary:
        changes: dict[str, Any] = {name: getattr(request, name) for name in FLAGS if request.HasField(name)}
        if request.HasField("status"):
            changes["status"] = request.status
        return _case_summary(self.core.set_flags(caller, request.case_id, changes, request.verification_sent))

    def Explain(self, caller: Caller, request: pb.ExplainRequest) -> pb.Explanation:
        tracing.annotate(purpose=_purpose_attr(request.purpose))
        e = self.core.explain(caller, request.org_id, request.case_id, request.purpose, request.at)
        return pb.Explanation(
            decision=e["decision"], code=e["code"], rules=e["rules"], policy_revision=e["policy_revision"],
            notes=e["notes"], fields=[pb.FieldRelease(**f) for f in e["fields"]],
        )

    # ---- agency performance (issue 24)
    def Performance(self, caller: Caller, request: pb.PerformanceRequest) -> pb.PerformanceResponse:
        p = self.core.performance(caller, request.from_date, request.to_date)
        return pb.PerformanceResponse(from_date=p["from"], to_date=p["to"], agencies=[
            pb.AgencyPerformance(**{k: v for k, v in a.items() if v is not None}) for a in p["agencies"]])
    def ListPayments(self, caller: Caller, request: pb.ListPaymentsRequest) -> pb.ListPaymentsResponse:
        items = self.core.list_payments(caller, request.status, request.org_id)
        tracing.annotate(decision="allow", count=len(items))
        return pb.ListPaymentsResponse(payments=[pb.PaymentInfo(**item) for item in items])

    def ConfirmPayment(self, caller: Caller, request: pb.DecidePaymentRequest) -> pb.PaymentDecision:
        return pb.PaymentDecision(**self.core.confirm_payment(caller, request.payment_id))

    def RejectPayment(self, caller: Caller, request: pb.DecidePaymentRequest) -> pb.PaymentDecision:
        return pb.PaymentDecision(**self.core.reject_payment(caller, request.payment_id, request.reason))

    # ---- EU (issue 26)
    def RecordForbearance(self, caller: Caller, request: pb.RecordForbearanceRequest) -> pb.ForbearanceInfo:
        tracing.annotate(purpose="litigation")
        doc = self.core.record_forbearance(caller, request.case_id, request.measure, request.on)
        return pb.ForbearanceInfo(case_id=doc["case_id"], measure=doc["measure"], on=doc["on"],
                                  recorded_at=doc["recorded_at"],
                                  measures=[pb.ForbearanceMeasure(**m) for m in doc["measures"]])

    def ProcessingRecord(self, caller: Caller, request: pb.ProcessingRecordRequest) -> pb.ProcessingRecordResponse:
        return pb.ProcessingRecordResponse(record=json.dumps(self.core.ropa(caller), ensure_ascii=False,
                                                             sort_keys=True))


class CaseServicer:
    def __init__(self, core: Core) -> None:
        self.core = core

    def ListCases(self, caller: Caller, request: pb.ListCasesRequest) -> pb.ListCasesResponse:
        cases = self.core.list_cases(caller, request.national_id, request.phone)
        tracing.annotate(decision="allow", count=len(cases))
        return pb.ListCasesResponse(cases=[pb.CaseSummary(**c) for c in cases])

    def GetCase(self, caller: Caller, request: pb.GetCaseRequest) -> pb.CaseRecord:
        tracing.annotate(purpose=_purpose_attr(request.purpose))
        rel = self.core.get_case(caller, request.case_id, request.purpose)
        tracing.annotate(decision="allow", count=len(rel.fields))
        return _record(rel)

    def OpenContact(self, caller: Caller, request: pb.OpenContactRequest) -> pb.ContactInfo:
        info = self.core.open_contact(caller, request.case_id, request.channel, request.party, request.artificial_voice)
        tracing.annotate(decision="allow")
        return pb.ContactInfo(**info)

    def RecordOutcome(self, caller: Caller, request: pb.RecordOutcomeRequest) -> pb.ContactInfo:
        info: dict[str, Any] = self.core.record_outcome(caller, request.contact_id, request.result,
                                                        request.promise_amount, request.promise_on,
                                                        request.recording)
        return pb.ContactInfo(**info)

    def ProposePlan(self, caller: Caller, request: pb.ProposePlanRequest) -> pb.PlanInfo:
        return _plan(self.core.propose_plan(caller, request.case_id,
                                            [(i.on, i.amount) for i in request.instalments]))

    def ShowPlans(self, caller: Caller, request: pb.ShowPlansRequest) -> pb.ShowPlansResponse:
        shown = self.core.show_plans(caller, request.case_id)
        return pb.ShowPlansResponse(case_id=shown["case_id"], plans=[_plan(p) for p in shown["plans"]])

    def PullCases(self, caller: Caller, request: pb.PullCasesRequest) -> Iterator[pb.PulledCases]:
        tracing.annotate(purpose=_purpose_attr(request.purpose))
        released = 0
        items: list[pb.PulledCase] = []
        for item in self.core.pull_cases(caller, request.purpose, request.since):
            if item.record is not None:
                released += 1
                items.append(pb.PulledCase(record=_record(item.record), cursor=item.cursor, lender_id=item.lender_id))
            elif item.removed:
                items.append(pb.PulledCase(removed=item.removed, cursor=item.cursor, lender_id=item.lender_id,
                                           code=item.code))
            else:
                tracing.annotate(decision="allow", count=released)
                yield pb.PulledCases(items=items, cursor=item.cursor, end=True)
                return
            if len(items) >= PULL_MESSAGE_ITEMS:
                yield pb.PulledCases(items=items, cursor=items[-1].cursor)
                items = []

    def ReportPayment(self, caller: Caller, request: pb.ReportPaymentRequest) -> pb.PaymentInfo:
        info = self.core.report_payment(caller, request.case_id, request.amount, request.on, request.reference)
        tracing.annotate(decision="allow")
        return pb.PaymentInfo(**info)

    def GetStatement(self, caller: Caller, request: pb.StatementRequest) -> pb.Statement:
        doc = self.core.statement(caller, request.period, request.org_id)
        tracing.annotate(decision="allow", count=len(doc["lines"]))
        return pb.Statement(period=doc["period"], lines=[pb.StatementLine(**line) for line in doc["lines"]],
                            recovered=doc["recovered"], fees=doc["fees"], currency=doc["currency"], org=doc["org"],
                            totals={cur: pb.StatementTotal(**t) for cur, t in doc["totals"].items()})


class AuditServicer:
    def __init__(self, core: Core) -> None:
        self.core = core

    def QueryAudit(self, caller: Caller, request: pb.QueryAuditRequest) -> Iterator[pb.AuditEventBatch]:
        filters = {key: getattr(request, key) for key in auditfilter.KEYS}
        if not (request.with_proofs or request.seqs):
            page = self.core.audit_query(caller, request.case_id, request.org_id, request.borrower_id, request.since,
                                         request.from_seq, filters, request.limit)
            yield from _batched((pb.AuditEvent(seq=seq, leaf=leaf) for seq, leaf in page), page)
            return
        found = self.core.proven_audit_query(caller, request.case_id, request.org_id, request.borrower_id,
                                             request.since, request.from_seq, list(request.seqs),
                                             request.proof_size, filters, request.limit)
        yield from _batched_proven(found.checkpoint, found.events, found.page)

    def SubjectReport(self, caller: Caller, request: pb.SubjectReportRequest) -> Iterator[pb.AuditEventBatch]:
        yield from _batched(pb.AuditEvent(seq=e.seq, leaf=e.leaf, lender=e.lender)
                            for e in self.core.subject_events(caller, request.borrower_id, request.lender_id))

    def GetInclusionProof(self, caller: Caller, request: pb.InclusionProofRequest) -> pb.InclusionProof:
        p = self.core.inclusion_proof(caller, request.seq, request.tree_size)
        return pb.InclusionProof(index=p["index"], tree_size=p["tree_size"], leaf_hash=p["leaf_hash"], root=p["root"],
                                 proof=p["proof"])

    def GetConsistencyProof(self, caller: Caller, request: pb.ConsistencyProofRequest) -> pb.ConsistencyProof:
        p = self.core.consistency_proof(caller, request.from_size, request.to_size)
        return pb.ConsistencyProof(from_size=p["from"], to_size=p["to"], from_root=p["from_root"],
                                   to_root=p["to_root"], proof=p["proof"])

    def GetCheckpoint(self, caller: Caller, request: pb.GetCheckpointRequest) -> pb.Checkpoint:
        note, size, cosigned = self.core.checkpoint(caller, request.size)
        return pb.Checkpoint(note=note, size=size, verifier_key=self.core.verifier_key, cosigned=cosigned)

    def Cosign(self, caller: Caller, request: pb.CosignRequest) -> pb.CosignResponse:
        return pb.CosignResponse(size=self.core.cosign(caller, request.checkpoint, request.cosignature,
                                                       request.cosigner_key))

    def ComplianceReport(self, caller: Caller, request: pb.ComplianceReportRequest) -> pb.ComplianceReportResponse:
        report = self.core.compliance_report(caller, request.from_time, request.to_time)
        return pb.ComplianceReportResponse(report=json.dumps(report, ensure_ascii=False, sort_keys=True))
    def AuditStats(self, caller: Caller, request: pb.AuditStatsRequest) -> pb.AuditStatsResponse:
        doc = self.core.audit_stats(caller, request.from_time, request.to_time, list(request.by))
        by = doc["by"]
        return pb.AuditStatsResponse(
            from_time=doc["from"], to_time=doc["to"], by=by, size=doc["size"], checkpoint=doc["checkpoint"],
            total=doc["total"], groups=[pb.AuditStatsGroup(keys={k: g[k] for k in by}, count=g["count"])
                                        for g in doc["groups"]], lender=doc.get("lender", ""))


class BureauServicer:
    def __init__(self, core: Core) -> None:
        self.core = core

    def PullFeed(self, caller: Caller, request: pb.PullFeedRequest) -> Iterator[pb.FeedItem]:
        tracing.annotate(purpose="credit_reporting")
        for item in self.core.pull(caller, request.since):
            if isinstance(item, str):
                yield pb.FeedItem(cursor=item)
            elif isinstance(item, FeedWithheld):
                yield pb.FeedItem(withheld=pb.FeedWithheld(case_id=item.case_id, code=item.code))
            else:
                yield pb.FeedItem(record=pb.FeedRecord(seq=item.seq, case_id=item.case_id, loan_id=item.loan_id,
                                                       jurisdiction=item.jurisdiction, fields=item.fields))


class PacketServicer:
    def __init__(self, core: Core) -> None:
        self.core = core

    def GetPacket(self, caller: Caller, request: pb.GetPacketRequest) -> pb.Packet:
        tracing.annotate(purpose="litigation")
        data = self.core.packet(caller, request.case_id)
        return pb.Packet(packet_id=packets.packet_id(data), data=data)


def methods(core: Core) -> dict[str, list[Method]]:
    """Every RPC of the API, from the proto descriptors, bound to its servicer method.

    A method in the proto without a servicer method, or the other way round,
    is a programming error: it fails here, at start-up.
    """
    servicers = {"LenderService": LenderServicer(core), "CaseService": CaseServicer(core),
                 "AuditService": AuditServicer(core), "PacketService": PacketServicer(core),
                 "BureauService": BureauServicer(core)}
    out: dict[str, list[Method]] = {}
    for name, service in pb.DESCRIPTOR.services_by_name.items():
        servicer = servicers[name]
        implemented = {n for n in vars(type(servicer)) if n[:1].isupper()}
        declared = {m.name for m in service.methods}
        if implemented != declared:
            raise RuntimeError(f"{name}: servicer and proto disagree on {sorted(implemented ^ declared)}")
        out[service.full_name] = [
            Method(service.full_name, m.name, getattr(pb, m.input_type.name), getattr(pb, m.output_type.name),
                   m.client_streaming, m.server_streaming, getattr(servicer, m.name))
            for m in service.methods
        ]
    return out
