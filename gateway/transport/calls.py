"""The call gate: every RPC enters here before a byte of its request is decoded.

gRPC's generated handlers read and decode the request before any code of ours
runs, on a worker thread and with no time limit: a client that sends headers
and never the message holds that worker for as long as it likes, an
undecodable message becomes gRPC's own INTERNAL error, and nothing is known of
the caller while it waits. So every method is registered here as a raw
streaming handler instead, and a call goes through, in order:

1. identity, from the verified client certificate (never metadata);
2. admission by the core: the caller's rate, its standing (disabled, licence),
   each refusal audited;
3. the caller's share of the workers: its calls in the gateway, and its
   streams, are counted per organisation and refused beyond the limits;
4. the request, read under the watchdog, which drops a call whose client
   keeps it waiting (first message, next stream message, reading responses)
   or that outlives its server-side deadline;
5. decoding, where a message that does not parse is `MALFORMED_REQUEST`;
6. the servicer, then the response.

The watchdog is one thread for all calls: registering a call is two dict
operations, and no request is handed between threads.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import grpc
from cryptography import x509
from google.protobuf.message import DecodeError, Message
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from gateway import logs
from gateway.core.app import Core
from gateway.core.errors import Code, CustosError
from gateway.core.model import Caller, agent_ok
from gateway.core.rules.access import Verdict
from gateway.core.rules.admission import Shares
from gateway.core.rules.limits import CallLimits
from gateway.pki import org_id_of

from . import tracing
from .status import GRPC_CODE, to_status

if TYPE_CHECKING:
    from .metrics import Metrics

log = logging.getLogger("custos.transport")

WATCHDOG_TICK_S = 0.05
FLUSH_EVERY_S = 0.5


# ------------------------------------------------------------------ identity


@dataclass(frozen=True)
class _CertInfo:
    org_id: str
    problem: Code | None
    fingerprint: str
    not_after: datetime | None


_identity_cache: dict[bytes, _CertInfo] = {}


def _cert_info(pem: bytes) -> _CertInfo:
    info = _identity_cache.get(pem)
    if info is not None:
        return info
    fingerprint = hashlib.sha256(pem).hexdigest()[:16]
    try:
        cert = x509.load_pem_x509_certificate(pem)
        not_after: datetime | None = cert.not_valid_after_utc
    except ValueError:
        cert, not_after = None, None
    org_id = org_id_of(cert) if cert is not None else None
    info = _CertInfo(org_id or "", None if org_id else Code.UNKNOWN_ORG, fingerprint, not_after)
    if len(_identity_cache) > 10_000:
        _identity_cache.clear()
    _identity_cache[pem] = info
    return info


# Request metadata naming the person acting within the calling organisation (issue 25). Never identity: the
# organisation is the certificate's, whatever this says (DESIGN invariant 5).
AGENT_HEADER = "custos-agent"


def agent_of(context: grpc.ServicerContext) -> str | None:
    """The request's agent ("" when none is named), or None when it is not one the log may hold (bad syntax,
    or named twice): admission then refuses the call INVALID_AGENT without writing the text anywhere."""
    found = [value for key, value in context.invocation_metadata() or () if key == AGENT_HEADER]
    if not found:
        return ""
    if len(found) > 1 or not isinstance(found[0], str) or not found[0] or not agent_ok(found[0]):
        return None
    return found[0]


def caller_of(context: grpc.ServicerContext, method: str) -> Caller:
    """Identity from the verified client certificate only; metadata never names the organisation.

    A problem with the certificate does not raise here: the caller comes back
    with the problem's code, so that admission audits the refusal. So does an
    agent (`custos-agent` metadata) that is not an id: INVALID_AGENT, and no
    agent on the caller, so its text reaches no event.
    """
    # Without tracing the audit event still gets an id to correlate by. It needs to be unique, not secret:
    # the PRNG (seeded from the OS once) avoids a getrandom() call, which releases the GIL, on every request.
    trace_id = tracing.current_trace_id() or f"{random.getrandbits(128):032x}"
    pems = context.auth_context().get("x509_pem_cert")
    if not pems:
        return Caller(org_id="", method=method, trace_id=trace_id, problem=Code.UNAUTHENTICATED)
    info = _cert_info(pems[0])
    problem = info.problem
    if not problem and info.not_after is not None and info.not_after < datetime.now(UTC):
        # TLS checked validity at the handshake; a connection can outlive the certificate.
        problem = Code.CERT_EXPIRED
    agent = agent_of(context)
    if agent is None:
        problem, agent = problem or Code.INVALID_AGENT, ""
    return Caller(org_id=info.org_id, method=method, trace_id=trace_id, problem=problem, cert=info.fingerprint,
                  agent=agent)


# ------------------------------------------------------------------ the watchdog


class _Dropped(Exception):
    """The call ended while we waited on the client: dropped by the watchdog (`code`), or the client left."""

    def __init__(self, code: Code) -> None:
        super().__init__(code)
        self.code = code


class Call:
    """One call in flight, as the watchdog sees it."""

    __slots__ = ("_waiting_code", "_waiting_limit", "_waiting_since", "context", "deadline", "dropped", "recheck")

    def __init__(self, context: grpc.ServicerContext, deadline: float) -> None:
        self.context = context
        self.deadline = deadline
        self.dropped: Code | None = None
        self._waiting_since = 0.0
        self._waiting_limit = 0.0
        self._waiting_code = Code.STREAM_IDLE
        # The caller's standing on a checked view, asked once if the call still waits for its first message after
        # STANDING_READ_S: admission let it in on an unchecked view (PostgreSQL), which a change elsewhere (an
        # org disabled by another process) may have made stale, and a half-open call must not keep its worker.
        self.recheck: Callable[[], Code | None] | None = None

    def waiting(self, limit: float, code: Code) -> None:
        """From now until `working`, the call waits on its client, for at most `limit` seconds."""
        self._waiting_limit = limit
        self._waiting_code = code
        self._waiting_since = time.monotonic()

    def working(self) -> None:
        self._waiting_since = 0.0

    def check(self, now: float) -> None:
        if self.dropped:
            return
        if now >= self.deadline:
            self.drop(Code.CALL_DEADLINE)
        elif self._waiting_since and now - self._waiting_since >= self._waiting_limit:
            self.drop(self._waiting_code)
        elif self._waiting_since and self.recheck is not None and now - self._waiting_since >= STANDING_READ_S:
            recheck, self.recheck = self.recheck, None
            refused = recheck()
            if refused is not None and self._waiting_since:
                self.drop(refused)

    def drop(self, code: Code) -> None:
        """End the call now with `code`; the thread waiting on the client is released by gRPC."""
        self.dropped = code
        cancel(self.context, code)


def cancel(context: grpc.ServicerContext, code: Code) -> None:
    """Cancel a call with our status code and catalogue text, from any thread.

    The public `ServicerContext.cancel` sends a bare CANCELLED; gRPC core can
    cancel with a status of our choosing (grpc_call_cancel_with_status), which
    the Python context reaches through its call object. If that is ever not
    there, the bare cancel still frees the worker.
    """
    err = CustosError(code)
    status = GRPC_CODE[err.spec.category]
    try:
        context._rpc_event.call.cancel(status.value[0], f"{code}: {err.message}")
    except (AttributeError, TypeError):
        context.cancel()


class Watchdog:
    """Drops calls that wait on their client too long or pass their deadline; flushes counted refusals."""

    def __init__(self, on_tick: Callable[[], None] | None = None) -> None:
        self._calls: dict[int, Call] = {}
        self._on_tick = on_tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="custos-watchdog", daemon=True)
        self._thread.start()

    def register(self, call: Call) -> None:
        self._calls[id(call)] = call

    def unregister(self, call: Call) -> None:
        self._calls.pop(id(call), None)

    def drop_all(self, code: Code) -> int:
        """Drop every call in flight (shutdown); returns how many."""
        calls = list(self._calls.values())
        for call in calls:
            if not call.dropped:
                call.drop(code)
        return len(calls)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        flushed = time.monotonic()
        while not self._stop.wait(WATCHDOG_TICK_S):
            now = time.monotonic()
            for call in list(self._calls.values()):
                try:
                    call.check(now)
                except Exception as exc:  # noqa: BLE001 - one bad call must not stop the watchdog
                    log.error("watchdog could not drop a call: %s", type(exc).__name__,
                              extra={"event": "watchdog_drop_failed", "error": type(exc).__name__})
            if self._on_tick is not None and now - flushed >= FLUSH_EVERY_S:
                flushed = now
                try:
                    self._on_tick()
                except Exception as exc:  # noqa: BLE001
                    log.error("watchdog tick failed: %s", type(exc).__name__,
                              extra={"event": "watchdog_tick_failed", "error": type(exc).__name__})


# ------------------------------------------------------------------ methods


# How long the request of an organisation refused for its standing is awaited, for the case it names.
STANDING_READ_S = 0.25


@dataclass(frozen=True)
class Method:
    service: str            # full name, e.g. custos.v1.CaseService
    name: str               # e.g. GetCase
    request: type[Message]
    response: type[Message]
    client_streaming: bool
    server_streaming: bool
    handler: Callable[..., Any]  # (caller, request or request iterator) -> response or response iterator


class Gate:
    """Builds the raw handlers for every method and runs each call through the steps above."""

    def __init__(self, core: Core, provider: TracerProvider | None, watchdog: Watchdog) -> None:
        self.core = core
        self.watchdog = watchdog
        self.shares = Shares()
        self.stopping = False
        self.metrics: Metrics | None = None  # `serve --metrics`: each call's method, decision, code and time
        self._tracer = provider.get_tracer("custos.gateway") if provider is not None else None

    def generic_handler(self, service: str, methods: list[Method]) -> grpc.GenericRpcHandler:
        handlers: dict[str, grpc.RpcMethodHandler] = {}
        for m in methods:
            serialize = m.response.SerializeToString
            if m.server_streaming:
                handlers[m.name] = grpc.stream_stream_rpc_method_handler(
                    self._streaming(m), request_deserializer=None, response_serializer=serialize)
            else:
                handlers[m.name] = grpc.stream_unary_rpc_method_handler(
                    self._unary(m), request_deserializer=None, response_serializer=serialize)
        return grpc.method_handlers_generic_handler(service, handlers)

    # -------------------------------------------------------------- the two shapes

    def _unary(self, m: Method) -> Callable[[Iterator[bytes], grpc.ServicerContext], Any]:
        def handle(request_iterator: Iterator[bytes], context: grpc.ServicerContext) -> Any:
            with self._admitted(m, context, streaming=False) as (caller, call, limits, refusal):
                if refusal is not None:
                    raise self._refuse(caller, m, call, request_iterator, refusal)
                request = self._first(caller, m, call, request_iterator, limits.first_message_timeout_s)
                return m.handler(caller, request)
            return None  # refused or dropped: the status is set

        return handle

    def _streaming(self, m: Method) -> Callable[[Iterator[bytes], grpc.ServicerContext], Iterator[Any]]:
        def handle(request_iterator: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[Any]:
            with self._admitted(m, context, streaming=True) as (caller, call, limits, refusal):
                if refusal is not None:
                    raise self._refuse(caller, m, call, request_iterator, refusal)
                if m.client_streaming:
                    argument: Any = self._stream_of_requests(caller, m, call, request_iterator, limits)
                else:
                    argument = self._first(caller, m, call, request_iterator, limits.first_message_timeout_s)
                responses = iter(m.handler(caller, argument))
                while True:
                    try:
                        item = next(responses)  # our own work: not the client's time
                    except StopIteration:
                        break
                    # Until the next loop, gRPC sends this item: if the client does not read, that waits.
                    call.waiting(limits.stream_idle_timeout_s, Code.STREAM_IDLE)
                    yield item
                    call.working()
                    if call.dropped:
                        raise _Dropped(call.dropped)

        return handle

    @contextmanager
    def _admitted(self, m: Method, context: grpc.ServicerContext, *,
                  streaming: bool) -> Iterator[tuple[Caller, Call, CallLimits, Verdict | None]]:
        """Steps 1-3 and the watchdog around the body; every failure inside becomes a status here."""
        with self._span(m) as span:
            caller: Caller | None = None
            call: Call | None = None
            share = False
            started = time.monotonic()
            ended: Code | None = None  # the stable code the call ended with; None: allowed
            try:
                caller, refusal = self._caller(context, m)
                limits = self.core.bundle.limits.calls
                self._enter_share(caller, streaming=streaming)
                share = True
                deadline = (limits.import_deadline_s if m.client_streaming else limits.stream_deadline_s
                            if streaming else limits.unary_deadline_s)
                call = Call(context, time.monotonic() + deadline)
                self.watchdog.register(call)
                yield caller, call, limits, refusal
            except CustosError as err:
                ended = err.code
                self._abort(context, err)
            except _Dropped as gone:
                ended = gone.code
                self._gone(context, caller, gone)
            except GeneratorExit:  # a stream whose client left while it was being sent
                ended = Code.CLIENT_GONE
                raise
            except Exception as exc:  # noqa: BLE001 - last line: never leak a traceback
                ended = Code.INTERNAL
                self._internal(context, exc)
            finally:
                if self.metrics is not None:
                    self.metrics.call(m.name, ended, time.monotonic() - started)
                if share and caller is not None:
                    self.shares.leave(caller.org_id, streaming)
                if call is not None:
                    self.watchdog.unregister(call)
                logs.CALL.set(None)
                _finish(span, context)

    # -------------------------------------------------------------- steps

    def _caller(self, context: grpc.ServicerContext, m: Method) -> tuple[Caller, Verdict | None]:
        """Identity and admission; a refusal for the caller's standing is returned, to be audited with its case."""
        caller = caller_of(context, m.name)
        logs.CALL.set((caller.org_id, caller.method, caller.trace_id))  # what a log line in this call names
        tracing.annotate(org=caller.org_id or None)
        if self.stopping:
            raise CustosError(Code.SHUTTING_DOWN)
        _, refusal = self.core.admission(caller)
        if refusal is None and metadata_size(context) > self.core.bundle.limits.connections.max_metadata_bytes:
            raise self.core.deny(caller, Code.METADATA_TOO_LARGE, "input.metadata")
        return caller, refusal

    def _refuse(self, caller: Caller, m: Method, call: Call, request_iterator: Iterator[bytes],
                refusal: Verdict) -> CustosError:
        """A refused organisation's request is read only briefly, for the case it names, then refused.

        Clients send the message with the headers, so it is there at once; a
        half-open call holds its worker for STANDING_READ_S at most and is
        refused (and audited) by the watchdog with the standing code.
        """
        case_ref = ""
        if not m.client_streaming:
            raw = self._read(call, request_iterator, STANDING_READ_S, refusal.code)
            try:
                message = m.request.FromString(raw or b"")
                case_ref = str(getattr(message, "case_id", ""))
            except DecodeError:
                pass
        return self.core.deny_standing(caller, refusal, case_ref)

    def _enter_share(self, caller: Caller, *, streaming: bool) -> None:
        refused = self.shares.enter(caller.org_id, streaming, self.core.bundle.limits.calls)
        if refused:
            raise self.core.deny(caller, Code.CONCURRENCY_LIMITED, refused)

    def _read(self, call: Call, request_iterator: Iterator[bytes], limit: float, code: Code) -> bytes | None:
        """The next raw message, or None at the end of the client's stream."""
        call.waiting(limit, code)
        try:
            return next(request_iterator)
        except StopIteration:
            # A cancelled call can also end the iterator as if the client had half-closed (whichever of
            # gRPC's two callbacks runs first): only an active, undropped call has really ended its stream.
            if call.dropped:
                raise _Dropped(call.dropped) from None
            if not call.context.is_active():
                raise _Dropped(Code.CLIENT_GONE) from None
            return None
        except grpc.RpcError:
            raise _Dropped(call.dropped or Code.CLIENT_GONE) from None
        finally:
            call.working()

    def _decode(self, caller: Caller, m: Method, raw: bytes | None) -> Message:
        if raw is None:
            raise self.core.deny(caller, Code.MALFORMED_REQUEST, "input.message_missing")
        message = _parse(m, raw)
        if message is None:
            raise self.core.deny(caller, Code.MALFORMED_REQUEST, "input.decode")
        return message

    def _first(self, caller: Caller, m: Method, call: Call, request_iterator: Iterator[bytes],
               limit: float) -> Message:
        call.recheck = functools.partial(self.core.standing_now, caller)
        try:
            return self._decode(caller, m, self._read(call, request_iterator, limit, Code.REQUEST_TIMEOUT))
        finally:
            call.recheck = None

    def _stream_of_requests(self, caller: Caller, m: Method, call: Call, request_iterator: Iterator[bytes],
                            limits: CallLimits) -> Iterator[Message]:
        """Decoded messages of a client stream; a break raises CustosError for the use case to handle.

        The use case, not this layer, audits a broken stream: it knows what the
        stream had stored so far.
        """
        limit = limits.first_message_timeout_s
        code = Code.REQUEST_TIMEOUT
        while True:
            try:
                raw = self._read(call, request_iterator, limit, code)
            except _Dropped as gone:
                raise CustosError(gone.code) from None
            if raw is None:
                return
            if self.stopping:
                raise CustosError(Code.SHUTTING_DOWN)
            message = _parse(m, raw)
            if message is None:
                raise CustosError(Code.MALFORMED_REQUEST)
            limit, code = limits.stream_idle_timeout_s, Code.STREAM_IDLE
            yield message

    # -------------------------------------------------------------- endings

    def _abort(self, context: grpc.ServicerContext, err: CustosError) -> None:
        tracing.annotate(decision="deny", code=err.code)
        context.abort_with_status(to_status(err))

    def _gone(self, context: grpc.ServicerContext, caller: Caller | None, gone: _Dropped) -> None:
        """The call already ended: the client has its status (or left). A drop by the gateway is a refusal.

        Ends with an abort all the same: a unary handler that returned None
        would have gRPC serialize None as the response, which it logs with a
        traceback, per call (gRPC core ending a call itself, e.g. for metadata
        over its hard limit, came here). On an ended call the abort sends nothing.
        """
        tracing.annotate(decision="deny", code=gone.code)
        if caller is not None and gone.code != Code.CLIENT_GONE:
            try:
                self.core.deny(caller, gone.code, "watchdog")
            except CustosError:
                log.error("could not audit a dropped call", extra={"event": "audit_failed"})
        context.abort_with_status(to_status(CustosError(gone.code)))

    def _internal(self, context: grpc.ServicerContext, exc: BaseException) -> None:
        # Type only: an exception's text could carry a value.
        log.error("unexpected %s in RPC", type(exc).__name__,
                  extra={"event": "internal_error", "error": type(exc).__name__})
        self._abort(context, CustosError(Code.INTERNAL))

    def _span(self, m: Method) -> Any:
        if self._tracer is None:
            return nullcontext()
        attrs = {"rpc.system": "grpc", "rpc.service": m.service, "rpc.method": m.name}
        return self._tracer.start_as_current_span(m.name, kind=trace.SpanKind.SERVER, attributes=attrs,
                                                  record_exception=False, set_status_on_exception=False)


# What HTTP/2 (RFC 7540 6.5.2) and gRPC core count per header besides its name and value.
HEADER_OVERHEAD = 32


def metadata_size(context: grpc.ServicerContext) -> int:
    """The request's metadata as gRPC core measures it (name + value + 32 per entry), pseudo-headers aside."""
    return sum(len(key) + len(value) + HEADER_OVERHEAD for key, value in context.invocation_metadata() or ())


def _parse(m: Method, raw: bytes) -> Message | None:
    """The request message, or None for bytes that are not one (truncated, wrong types, invalid UTF-8)."""
    try:
        return m.request.FromString(raw)
    except (DecodeError, RuntimeError, ValueError):
        return None


def _finish(span: trace.Span | None, context: grpc.ServicerContext) -> None:
    if span is None:
        return
    code = context.code()
    if code is not None and code != grpc.StatusCode.OK:
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        span.set_status(Status(StatusCode.ERROR))
