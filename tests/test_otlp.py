"""OTLP export: with OTEL_EXPORTER_OTLP_ENDPOINT set, spans reach a collector, scrubbed."""

from __future__ import annotations

import threading
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from custos_client import CustosClient, CustosClientError
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from gateway import synth
from gateway.transport.server import build
from gateway.transport.tracing import ALLOWED_ATTRIBUTES
from tests.conftest import FakeClock


class Collector(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    """A minimal OTLP/gRPC trace collector on loopback that keeps what it receives."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.lock = threading.Lock()

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest,
               context: grpc.ServicerContext) -> trace_service_pb2.ExportTraceServiceResponse:
        with self.lock:
            self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


def test_spans_are_exported_over_otlp_without_pi(env_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    collector = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    gw = build(env_dir / "data", "127.0.0.1:0", clock=FakeClock())
    line = synth.case_line(1)
    try:
        addr = f"127.0.0.1:{gw.port}"
        with CustosClient(addr, env_dir / "ids" / "lender-a") as lender, \
                CustosClient(addr, env_dir / "ids" / "agency-1") as agency:
            lender.import_lines(synth.jsonl([line]).splitlines())
            lender.assign("C-1", "agency-1", "collection", "2026-12-31", agreement="AG-1", pia="PIA-1")
            assert agency.get_case("C-1", "collection").fields["full_name"] == line["borrower"]["full_name"]
            with pytest.raises(CustosClientError):
                agency.get_case("C-1", "servicing")
        assert gw.provider is not None
        gw.provider.force_flush()
    finally:
        gw.stop(0)
        server.stop(0)
    spans = [s for r in collector.requests for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert {s.name for s in spans} >= {"ImportCases", "AssignCase", "GetCase"}
    raw = b"".join(r.SerializeToString() for r in collector.requests)
    for value in synth.pi_values(line):
        assert value.encode() not in raw
    for s in spans:
        assert {a.key for a in s.attributes} <= ALLOWED_ATTRIBUTES
        assert not s.events and not s.status.message
    denied = [s for s in spans if s.name == "GetCase" and any(a.key == "custos.code" for a in s.attributes)]
    assert denied and {a.value.string_value for a in denied[0].attributes if a.key == "custos.code"} == {
        "PURPOSE_NOT_ALLOWED"}
