"""One OpenTelemetry span per RPC, attributes from an allow-list, scrubbed on export.

We use our own small server interceptor instead of the generic
opentelemetry-instrumentation-grpc one: that costs ≈120 µs a call here
(DESIGN.md §11) and records request metadata we do not want. Two guards keep
personal data out: `annotate` drops any attribute not on the allow-list, and
`GuardExporter` rebuilds every span before export with allow-listed attributes
only, no events (exception events carry messages and stack text), no links and
no status description.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Status, StatusCode

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


class TracingInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Wraps each method's handler once (cached), so the per-call cost is one span."""

    def __init__(self, provider: TracerProvider) -> None:
        self._tracer = provider.get_tracer("custos.gateway")
        self._cache: dict[str, grpc.RpcMethodHandler] = {}

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        method = details.method
        cached = self._cache.get(method)
        if cached is not None:
            return cached
        handler = continuation(details)
        if handler is None:
            return None
        wrapped = self._wrap(handler, method)
        self._cache[method] = wrapped
        return wrapped

    def _wrap(self, handler: Any, method: str) -> Any:
        service, _, name = method.lstrip("/").rpartition("/")
        tracer = self._tracer
        attrs = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}

        def finish(span: trace.Span, context: grpc.ServicerContext) -> None:
            code = context.code() if hasattr(context, "code") else None
            if code is not None and code != grpc.StatusCode.OK:
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                span.set_status(Status(StatusCode.ERROR))

        def unary(behaviour: Callable[..., Any]) -> Callable[..., Any]:
            def run(request: Any, context: grpc.ServicerContext) -> Any:
                with tracer.start_as_current_span(name, kind=trace.SpanKind.SERVER, attributes=attrs,
                                                  record_exception=False, set_status_on_exception=False) as span:
                    try:
                        return behaviour(request, context)
                    finally:
                        finish(span, context)
            return run

        def streaming(behaviour: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
            def run(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                with tracer.start_as_current_span(name, kind=trace.SpanKind.SERVER, attributes=attrs,
                                                  record_exception=False, set_status_on_exception=False) as span:
                    try:
                        yield from behaviour(request, context)
                    finally:
                        finish(span, context)
            return run

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                unary(handler.unary_unary), handler.request_deserializer, handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                unary(handler.stream_unary), handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                streaming(handler.unary_stream), handler.request_deserializer, handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(
            streaming(handler.stream_stream), handler.request_deserializer, handler.response_serializer)
