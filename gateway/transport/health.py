"""`grpc.health.v1.Health` and server reflection: what a load balancer, a probe or a generic client asks.

Health answers per service (the five `custos.v1` services) and overall (""),
all with one status: every service needs the same store, keys and audit log,
so none can serve while another cannot. NOT_SERVING until start-up has
loaded the store and keys and passed the TLS check; then a probe thread
checks, every HEALTH_EVERY_S, that the key files are readable, that the store
answers a query, that the audit log can be read, and (embedded store) that
the database files at their paths are still the ones opened, and flips the
status both ways. On shutdown everything goes NOT_SERVING first, for good,
then the calls drain (`Gateway.stop`).

Health is not behind the call gate: it names no organisation, reads no
case, writes no audit event, and a certificate that admission would refuse
(a disabled organisation) still learns only "SERVING". It is served on the
mTLS port (a client certificate of the directory's CA is needed, as for any
call there) and, with `serve --health HOST:PORT`, on a plaintext port that
serves Health and nothing else, for probes that cannot present a
certificate (Kubernetes' gRPC probes, most load balancers). Reflection is
never on that port.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway.core.ports import Vault
from vault.datadir import Layout

log = logging.getLogger("custos.server")

HEALTH_EVERY_S = 1.0  # how often the probe checks the store and keys (a status changes within about this)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
HEALTH_SERVICE = health.SERVICE_NAME  # grpc.health.v1.Health
HEALTH_PORT_WORKERS = 4  # the plaintext health port: Check is a dict look-up, Watch does not hold a thread


def store_probe(vault: Vault, layout: Layout) -> Callable[[], str | None]:
    """What is wrong with the store or the keys now (a short reason, no value from them), or None.

    The embedded store's files are compared with the ones opened (device and
    inode): an open SQLite file keeps answering after it was deleted, moved
    or replaced under the gateway, or its volume unmounted, so a query alone
    would call that healthy while every write goes to a file nobody will read.
    """
    files = [] if layout.database else [layout.db, layout.audit_db]
    opened = {path: _identity(path) for path in files}

    def probe() -> str | None:
        try:
            layout.key_provider().kek().primary_version()
        except Exception:  # noqa: BLE001 - any failure reading the keys is "keys unavailable"
            return "keys unavailable"
        for path, identity in opened.items():
            if identity is None or _identity(path) != identity:
                return "store files missing or replaced"
        try:
            vault.reader().feed_high_water()
            vault.audit.head()
        except Exception:  # noqa: BLE001 - any failure of the query is "store unavailable"
            return "store unavailable"
        return None

    return probe


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class Health:
    """The health servicer, its statuses, and the thread that keeps them true."""

    def __init__(self, services: Iterable[str]) -> None:
        self.servicer = health.HealthServicer()
        self.names = ["", *services]
        self._status = NOT_SERVING
        self._set(NOT_SERVING)  # the servicer starts with "" SERVING: nothing is loaded yet
        self._probe: Callable[[], str | None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _set(self, status: int) -> None:
        self._status = status
        for name in self.names:
            self.servicer.set(name, status)

    @property
    def serving(self) -> bool:
        return bool(self._status == SERVING)

    def check(self) -> None:
        """Run the probe once and set every status from it (logged on a change only)."""
        if self._probe is None or self._stop.is_set():
            return
        problem = self._probe()
        status = SERVING if problem is None else NOT_SERVING
        if status != self._status and not self._stop.is_set():
            if problem is None:
                log.info("health: serving again", extra={"event": "health_serving"})
            else:
                log.error("health: not serving (%s)", problem, extra={"event": "health_not_serving"})
            self._set(status)

    def start(self, probe: Callable[[], str | None], every: float | None = None) -> None:
        """Start-up is done: check now (SERVING if all is well), then every `every` (HEALTH_EVERY_S) seconds."""
        every = every or HEALTH_EVERY_S
        self._probe = probe
        problem = probe()
        if problem is not None:
            log.error("health: not serving (%s)", problem, extra={"event": "health_not_serving"})
        self._set(SERVING if problem is None else NOT_SERVING)
        self._thread = threading.Thread(target=self._run, args=(every,), name="custos-health", daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - the probe thread must outlive a bad check
                log.error("health check failed: %s", type(exc).__name__,
                          extra={"event": "health_check_failed", "error": type(exc).__name__})
                self._set(NOT_SERVING)

    def shutting_down(self) -> None:
        """NOT_SERVING for every name, for good (later checks change nothing); watchers are told at once."""
        self._stop.set()
        self._status = NOT_SERVING
        self.servicer.enter_graceful_shutdown()
        if self._thread is not None:
            self._thread.join(timeout=HEALTH_EVERY_S + 10)

    def add_to(self, server: grpc.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)


def enable_reflection(server: grpc.Server, services: Iterable[str]) -> None:
    """Reflection on the mTLS port only: it hands any holder of a certificate the whole API's map."""
    reflection.enable_server_reflection([*services, HEALTH_SERVICE, reflection.SERVICE_NAME], server)


def health_server(health_: Health, listen: str, reuse_port: bool = False) -> tuple[grpc.Server, int]:
    """A plaintext server of Health alone, for probes without a certificate; (server, port), port 0 if unbound."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=HEALTH_PORT_WORKERS, thread_name_prefix="health"),
                         options=[("grpc.so_reuseport", int(reuse_port))], maximum_concurrent_rpcs=64)
    health_.add_to(server)
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError:
        port = 0
    return server, port
