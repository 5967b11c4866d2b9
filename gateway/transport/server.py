"""Assembles a gateway: vault, policy bundle, core, servicers, mTLS server."""

from __future__ import annotations

import functools
import gc
import hashlib
import hmac
import logging
import resource
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from gateway import packets
from gateway.core.app import Core
from gateway.core.errors import Code, CustosError
from gateway.core.model import Clock, SystemClock
from gateway.core.ports import Vault
from gateway.core.rules.limits import ConnectionLimits
from gateway.core.rules.policy import load_bundle
from gateway.tlog.merkle import sign_checkpoint
from policies import BUNDLE_DIR
from vault.backends import open_vault
from vault.datadir import (
    Layout,
    ServeLock,
    audit_signing_key,
    load_config,
    packet_key_name,
    packet_signing_key,
)

from .calls import Gate, Watchdog
from .health import Health, enable_reflection, health_server, store_probe
from .metrics import Metrics
from .servicers import methods
from .tracing import make_provider

log = logging.getLogger("custos.server")


class Rewrapper:
    """The background rewrap after a KEK rotation: bounded transactions, a pause between them, then idle.

    Each step moves up to a batch of data keys found through the index on
    their KEK version; a step that moved nothing means every data key is
    under the primary version, and the thread checks again every
    REWRAP_IDLE_S (a rotation is picked up within that).
    """

    def __init__(self, core: Core, batch: Callable[[], tuple[int, float]]) -> None:
        self._core = core
        self._batch = batch  # (rewrap_batch, rewrap_pause_s), read each time: reloads apply
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="custos-rewrap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            size, pause = self._batch()
            try:
                moved = self._core.rewrap_step(size)
            except CustosError:
                log.error("the background rewrap could not commit a batch; retrying", extra={"event": "rewrap_failed"})
                moved = 0
            if self._stop.wait(pause if moved else REWRAP_IDLE_S):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@dataclass
class Gateway:
    server: grpc.Server
    port: int
    vault: Vault
    core: Core
    provider: TracerProvider | None
    policy_dir: Path
    gate: Gate
    watchdog: Watchdog
    lock: ServeLock | None = None
    rewrapper: Rewrapper | None = None
    health: Health | None = None
    health_server: grpc.Server | None = None  # `--health HOST:PORT`: plaintext, Health only
    health_port: int = 0
    metrics: Metrics | None = None  # `--metrics HOST:PORT`: the Prometheus exposition

    def reload_policies(self) -> str:
        """Load the bundle again and swap it in whole; a bad bundle raises and the running one stays.

        Requests already deciding keep the bundle they started with; the next
        ones see the new rules, and their audit events carry the new revision.
        The [connections] limits stay as they were at start-up (gRPC fixes them
        when the port opens).
        """
        bundle = load_bundle(self.policy_dir)
        self.core.bundle = bundle
        self.vault.policy_revision = bundle.revision
        log.info("policy bundle reloaded, revision %s", bundle.revision,
                 extra={"event": "policy_reloaded", "revision": bundle.revision})
        return bundle.revision

    def stop(self, grace: float | None = 1.0) -> bool:
        """Stop within about `grace` + STOP_MARGIN_S seconds, whatever the calls in flight are doing.

        New calls are refused at once; calls in flight get `grace` seconds, then
        are cancelled; the audit writer finishes the commit it is in (every
        acknowledged event is already durable: a caller is answered only after
        its commit) and refuses any other. Returns False if something had to be
        abandoned, in which case the process should exit rather than linger.
        Health says NOT_SERVING first (watchers are told at once) and the
        health port answers so until the calls have drained.
        """
        if self.health is not None:
            self.health.shutting_down()
        self.gate.stopping = True
        clean = self.server.stop(grace).wait((grace or 0.0) + STOP_MARGIN_S)
        if self.health_server is not None:
            self.health_server.stop(None)
        if self.metrics is not None:
            self.metrics.stop()
        if not clean:
            log.error("calls still running %.1f s after the grace period; cancelling them", STOP_MARGIN_S,
                      extra={"event": "calls_cancelled"})
            self.watchdog.drop_all(Code.SHUTTING_DOWN)
        try:
            self.core.flush_suppressed(force=True)
        except CustosError:
            log.error("could not write the last counts of rate-limited calls", extra={"event": "rate_counts_lost"})
        self.watchdog.stop()
        if self.rewrapper is not None:
            self.rewrapper.stop()
        clean = self.vault.audit.close(STOP_MARGIN_S) and clean
        if self.provider is not None:
            self.provider.shutdown()
        self.vault.close()
        if self.lock is not None:
            self.lock.release()
        return clean


STOP_MARGIN_S = 3.0
CHECKPOINT_EVERY_S = 1.0  # a checkpoint at least once a second while events arrive
REWRAP_IDLE_S = 1.0  # how soon a running gateway starts the rewrap after `custos keys rotate` (an index probe)
RETENTION_EVERY_S = 3600.0  # the retention purge: at start-up, then hourly (periods are years, due by the day)
LIFECYCLE_EVERY_S = 5.0  # due erasures (and retention purges) are performed within seconds of falling due
LAPSE_EVERY_S = 600.0  # mandates past their last day marked lapsed, for the work lists' change feed


def server_credentials(layout: Layout) -> grpc.ServerCredentials:
    key = layout.key_provider().tls_key()
    try:
        chain = (layout.tls / "server.crt").read_bytes()
        ca = (layout.tls / "ca.crt").read_bytes()
    except OSError:
        raise CustosError(Code.DATA_DIR_INVALID, "server certificate missing") from None
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=ca, require_client_auth=True)


def accepts_tls12(host: str, port: int, timeout: float = 5.0) -> bool:
    """Whether the server at host:port answers a TLS 1.2-only ClientHello with a ServerHello.

    Looks at the server's first handshake message rather than at whether the
    handshake completes: without a client certificate even a TLS 1.2 server
    would fail the handshake later, for another reason. A refusal comes as an
    alert or a closed connection before any ServerHello. Anything else that
    goes wrong (no connection) raises OSError: the check did not happen.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # only the protocol version is at stake; nothing is sent
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["h2"])
    outgoing = ssl.MemoryBIO()
    tls = ctx.wrap_bio(ssl.MemoryBIO(), outgoing)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(hello)
        first = b""
        while len(first) < 6:
            try:
                chunk = sock.recv(6 - len(first))
            except ConnectionResetError:
                return False
            if not chunk:
                return False
            first += chunk
    # Record type 22 (handshake) whose first message is type 2 (ServerHello).
    return first[0] == 22 and first[5] == 2


def _probe_host(listen: str) -> str:
    host = listen.rsplit(":", 1)[0].strip("[]")
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)


# gRPC core's own metadata limit, above the policy's: this many times it, at most CORE_METADATA_MAX (but never
# below the policy's own). Metadata between the two is read and refused by the gate with a stable code; only
# beyond core's limit does gRPC core refuse it itself (RESOURCE_EXHAUSTED with its own text).
CORE_METADATA_FACTOR = 8
CORE_METADATA_MAX = 1024 * 1024


def core_metadata_limit(policy_limit: int) -> int:
    return max(policy_limit, min(policy_limit * CORE_METADATA_FACTOR, CORE_METADATA_MAX))


def server_options(limits: ConnectionLimits, workers: int, stream_deadline_s: float,
                   reuse_port: bool = False) -> list[tuple[str, Any]]:
    """gRPC channel arguments that bound what any client can hold: connections, handshakes, streams, bytes.

    SO_REUSEPORT only for the processes of one `serve --processes N`: otherwise
    a second gateway (of another directory) could share the port unnoticed.
    """
    max_connections = _connection_cap(limits.max_connections, workers)
    return [
        ("grpc.so_reuseport", int(reuse_port)),
        ("grpc.max_receive_message_length", limits.max_message_bytes),
        # gRPC core refuses metadata over its limit with a status of its own (and, between its soft and hard
        # limits, at random): it gets room above ours, so the gate refuses first, as METADATA_TOO_LARGE.
        ("grpc.max_metadata_size", core_metadata_limit(limits.max_metadata_bytes)),
        ("grpc.absolute_max_metadata_size", core_metadata_limit(limits.max_metadata_bytes)),
        ("grpc.max_concurrent_streams", limits.max_concurrent_streams),
        ("grpc.max_allowed_incoming_connections", max_connections),
        ("grpc.server_handshake_timeout_ms", int(limits.handshake_timeout_s * 1000)),
        ("grpc.max_connection_idle_ms", int(limits.idle_timeout_s * 1000)),
        ("grpc.max_connection_age_ms", int(limits.max_age_s * 1000)),
        # A recycled connection takes no new calls; those in flight may run to their own deadline.
        ("grpc.max_connection_age_grace_ms", int(stream_deadline_s * 1000)),
    ]


# Descriptors the gateway itself needs beside its connections: two databases (file, WAL, index) per
# worker thread and the writer, the listening socket, logs, the trace exporter.
FD_RESERVE_BASE = 64
FD_RESERVE_PER_WORKER = 8


def _connection_cap(configured: int, workers: int) -> int:
    """The configured connection bound, lowered to fit the open-file limit (raised to its hard limit first)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    room = soft - FD_RESERVE_BASE - FD_RESERVE_PER_WORKER * workers
    if room < configured:
        if room < 16:
            log.error("RLIMIT_NOFILE %d leaves no room for connections; raise it (LimitNOFILE=)", soft,
                      extra={"event": "fd_limit"})
        else:
            log.warning("connections limited to %d by RLIMIT_NOFILE %d", room, soft, extra={"event": "fd_limit"})
    return max(16, min(configured, room))


def build(data_dir: Path, listen: str = "127.0.0.1:7443", *, policy_dir: Path | None = None,
          clock: Clock | None = None, span_exporter: SpanExporter | None = None, workers: int = 128,
          reuse_port: bool = False, reflection: bool = False, health_listen: str | None = None,
          metrics_listen: str | None = None) -> Gateway:
    """Build and start a gateway; policy problems raise before anything listens.

    Health (docs/health.md) is served on the mTLS port and, with
    `health_listen`, on a plaintext port of its own; reflection only when asked;
    the Prometheus exposition on `metrics_listen` (plain HTTP, no authentication).
    """
    policy_dir = policy_dir or BUNDLE_DIR
    bundle = load_bundle(policy_dir)
    lock = ServeLock.take(data_dir)
    try:
        vault = open_vault(data_dir, bundle.revision)
    except BaseException:
        lock.release()
        raise
    layout = Layout.of(data_dir)  # the directory's files (the vault read the same config.json)
    config = load_config(layout)
    origin = config["origin"]
    signing_key = audit_signing_key(layout)
    pseudonym_key = hmac.new(vault.bidx_key, b"custos/pseudonym", hashlib.sha256).digest()
    packet_key = packet_signing_key(layout, origin)
    if packet_key is None:
        log.warning("no packet signing key (keys/packet.key): litigation packets are refused until one is in place",
                    extra={"event": "packet_key_missing"})
    assemble = None if packet_key is None else functools.partial(
        packets.build, signer=packet_key, key_name=packet_key_name(origin))
    core = Core(
        reader=vault.reader, audit=vault.audit, bundle=bundle, clock=clock or SystemClock(),
        pseudonym_key=pseudonym_key,
        sign_checkpoint=lambda size, root: sign_checkpoint(origin, size, root, signing_key),
        verifier_key=layout.vkey.read_text().strip(),
        assemble_packet=assemble,
        forget=vault.forget,
    )
    provider = make_provider(span_exporter)
    metrics = Metrics() if metrics_listen is not None else None
    # (every so many seconds, the job, what to log if it fails); the last run of each, first ones due at once.
    jobs: list[tuple[float, Callable[[], Any], str]] = [
        (CHECKPOINT_EVERY_S, metrics.checkpointed(core.publish_checkpoint) if metrics else core.publish_checkpoint,
         "could not publish a checkpoint"),
        (LIFECYCLE_EVERY_S, core.run_due_erasures, "could not run the scheduled erasures"),
        (RETENTION_EVERY_S, core.run_retention, "could not run the retention purge"),
        (LAPSE_EVERY_S, core.lapse_mandates, "could not mark lapsed mandates"),
    ]
    last = [-every for every, _, _ in jobs]

    def tick() -> None:
        """About twice a second: rate-refusal counts; then whichever scheduled job is due."""
        core.flush_suppressed()
        now = time.monotonic()
        for i, (every, job, failure) in enumerate(jobs):
            if now - last[i] >= every:
                last[i] = now
                try:
                    job()
                except CustosError:
                    log.error(failure, extra={"event": "job_failed"})

    watchdog = Watchdog(on_tick=tick)
    gate = Gate(core, provider, watchdog)
    gate.metrics = metrics
    calls = bundle.limits.calls
    api = methods(core)
    health = Health(api)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc"),
        handlers=[gate.generic_handler(name, ms) for name, ms in api.items()],
        options=server_options(bundle.limits.connections, workers,
                               max(calls.stream_deadline_s, calls.import_deadline_s), reuse_port),
        # Beyond this many calls queued or running, gRPC refuses new ones at once (RESOURCE_EXHAUSTED).
        maximum_concurrent_rpcs=max(256, workers * 8),
    )
    health.add_to(server)
    if reflection:
        enable_reflection(server, api)
    try:
        port = server.add_secure_port(listen, server_credentials(layout))
    except RuntimeError:  # grpcio's way of saying the address could not be bound
        port = 0
    gateway = Gateway(server, port, vault, core, provider, policy_dir, gate, watchdog, lock, health=health)
    gateway.rewrapper = Rewrapper(core, lambda: (core.bundle.limits.lifecycle.rewrap_batch,
                                                 core.bundle.limits.lifecycle.rewrap_pause_s))
    if port != 0 and health_listen is not None:
        gateway.health_server, gateway.health_port = health_server(health, health_listen, reuse_port)
        if gateway.health_port == 0:
            port = 0
    if port != 0 and metrics is not None and metrics_listen is not None:
        from gateway.core.usecases.keys import KeyRotation

        gateway.metrics = metrics
        metrics.watch(vault, KeyRotation(vault.kek, vault.reader, vault.audit).status)
        try:
            metrics.serve(metrics_listen)
        except CustosError:
            port = 0
    if port == 0:
        gateway.stop(None)
        raise CustosError(Code.LISTEN_FAILED)
    server.start()
    if gateway.health_server is not None:
        gateway.health_server.start()
    try:
        tls12 = accepts_tls12(_probe_host(listen), port)
    except OSError:
        tls12 = True  # could not check: treat as not enforced
    if tls12:
        gateway.stop(None)
        log.error("start-up TLS check: the server accepted a TLS 1.2 handshake; refusing to serve"
                  " (grpc imported before gateway?)", extra={"event": "tls_self_check", "result": "failed"})
        raise CustosError(Code.TLS_NOT_ENFORCED)
    # Everything loaded so far (modules, the policy bundle, gRPC) lives as long as the process: take it
    # out of the collector's scans, which otherwise walk it again on every full collection (measured:
    # about 13 µs of collector time per request under load).
    gc.freeze()
    # Requests leave a few cycles behind (gRPC's per-call state), so with the default threshold of 700
    # the young generation was collected every few dozen requests: measured 367 collections and about
    # 8 µs of collector time per request; with 20,000, one collection in the same run.
    gc.set_threshold(20_000, 10, 10)
    log.info("start-up TLS check: a TLS 1.2 handshake was refused, as it must be",
             extra={"event": "tls_self_check", "result": "ok"})
    health.start(store_probe(vault, layout))  # SERVING from here, while the probe finds store and keys
    if gateway.health_port:
        log.info("grpc.health.v1.Health alone, plaintext, on port %d", gateway.health_port,
                 extra={"event": "health_listening", "port": gateway.health_port})
    if gateway.metrics is not None:
        log.info("Prometheus metrics, plain HTTP, on port %d", gateway.metrics.port,
                 extra={"event": "metrics_listening", "port": gateway.metrics.port})
    log.info("custos gateway listening on port %d, policy %s", port, bundle.revision,
             extra={"event": "gateway_listening", "port": port, "revision": bundle.revision})
    return gateway
