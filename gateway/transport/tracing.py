"""One OpenTelemetry span per RPC, attributes from an allow-list, scrubbed on export.

The call gate (`calls.py`) opens the span, instead of the generic
opentelemetry-instrumentation-grpc interceptor: that costs ≈120 µs a call here
(DESIGN.md §11) and records request metadata we do not want. Two guards keep
personal data out: `annotate` drops any attribute not on the allow-list, and
`GuardExporter` rebuilds every span before export with allow-listed attributes
only, no events (exception events carry messages and stack text), no links and
no status description.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Status

log = logging.getLogger("custos.tracing")

ALLOWED_ATTRIBUTES = frozenset({
    "rpc.system", "rpc.service", "rpc.method", "rpc.grpc.status_code",
    "custos.org", "custos.org_kind", "custos.purpose", "custos.decision", "custos.code", "custos.count",
})


class GuardExporter(SpanExporter):
    """Scrubs spans before they leave the process, whatever the code recorded."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    @staticmethod
    def scrub(span: ReadableSpan) -> ReadableSpan:
        attrs = {k: v for k, v in (span.attributes or {}).items() if k in ALLOWED_ATTRIBUTES}
        return ReadableSpan(
            name=span.name, context=span.context, parent=span.parent, resource=span.resource,
            attributes=attrs, events=(), links=(), kind=span.kind,
            status=Status(span.status.status_code), start_time=span.start_time, end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([self.scrub(s) for s in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def make_provider(exporter: SpanExporter | None = None) -> TracerProvider | None:
    """A provider exporting through the guard: to `exporter` if given, to OTLP if configured, else none."""
    if exporter is None:
        if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            return None
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "custos-gateway"}))
    provider.add_span_processor(BatchSpanProcessor(GuardExporter(exporter)))
    return provider


def annotate(**attrs: Any) -> None:
    """Set allow-listed attributes on the current span; anything else is dropped."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    for key, value in attrs.items():
        name = f"custos.{key}"
        if name in ALLOWED_ATTRIBUTES and value is not None:
            span.set_attribute(name, value)


def current_trace_id() -> str:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""
