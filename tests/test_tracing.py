"""Tracing: one span per RPC, allow-listed attributes, nothing else leaves the process."""

from __future__ import annotations

import pytest
from custos_client import CustosClientError
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from gateway.transport.tracing import ALLOWED_ATTRIBUTES, GuardExporter
from tests.conftest import Env


def test_guard_scrubs_attributes_events_and_status_text() -> None:
    sink = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(GuardExporter(sink)))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("GetCase") as span:
        span.set_attribute("custos.org", "agency-1")
        span.set_attribute("borrower.phone", "+8613900000001")
        span.record_exception(ValueError("name Synth Person"))
        span.add_event("note", {"value": "+8613900000001"})
        span.set_status(Status(StatusCode.ERROR, "bad value +8613900000001"))
    (out,) = sink.get_finished_spans()
    assert dict(out.attributes or {}) == {"custos.org": "agency-1"}
    assert out.events == () and out.status.description is None and out.status.status_code == StatusCode.ERROR
    provider.shutdown()


def test_every_rpc_has_one_span_with_allowed_attributes_only(seeded: Env) -> None:
    seeded.client("agency-1").get_case("C-1", "collection")
    with pytest.raises(CustosClientError):
        seeded.client("agency-2").get_case("C-1", "collection")
    seeded.gw.provider.force_flush()  # type: ignore[union-attr]
    spans = seeded.spans.get_finished_spans()
    gets = [s for s in spans if s.name == "GetCase"]
    assert len(gets) == 2
    ok, denied = gets
    assert ok.attributes is not None and denied.attributes is not None
    assert ok.attributes["custos.org"] == "agency-1" and ok.attributes["custos.decision"] == "allow"
    assert ok.attributes["custos.count"] == 8
    assert denied.attributes["custos.code"] == "NO_MANDATE" and denied.status.status_code == StatusCode.ERROR
    for s in spans:
        assert set(s.attributes or {}) <= ALLOWED_ATTRIBUTES
        assert s.events == () and s.status.description is None
    # The audit event carries the span's trace id, so an operator can join the two.
    ev = [e for e in seeded.events(case_id="C-1", org="agency-1") if e.method == "GetCase"][-1]
    assert ev.data["trace_id"] == format(ok.context.trace_id, "032x")
