"""`custos serve --metrics HOST:PORT`: the Prometheus text exposition (docs/health.md, "Metrics").

prometheus_client rather than the OpenTelemetry Prometheus exporter: it is
the reference implementation of the format, has no SDK pipeline to wire (a
MeterProvider, readers, views for the histogram buckets) and its text parser
lets the tests read the exposition exactly as Prometheus would.

Labels come only from closed vocabularies: the RPC method names, allow/deny,
the stable codes (plus OK), KEK version numbers and the pool's fixed stat
names. No organisation label (the set grows with every onboarding and per-
organisation counts are the signed audit log's business: `custos audit stats
--by org`), and never a borrower's or a case's id or any value of a record.

One registry per gateway, not prometheus_client's global one: a process (the
test suite) may hold several gateways, and the default process and platform
collectors are left out, so nothing but what is listed here is exposed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.core.errors import Code, CustosError
from gateway.core.ports import Vault

log = logging.getLogger("custos.metrics")

ALLOW, DENY = "allow", "deny"
# Seconds: a cached read is well under a millisecond, an import of thousands of lines runs for seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Units of work per audit commit: 1 when idle, up to the number of busy workers under load.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The gateway's counters and histograms, and the gauges read from the store at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.calls = Counter("custos_calls", "RPCs ended, by method, decision (allow/deny) and stable code (OK when allowed)",
                             ["method", "decision", "code"], registry=self.registry)
        self.refusals = Counter("custos_refusals", "RPCs refused, by stable code", ["code"], registry=self.registry)
        self.latency = Histogram("custos_call_duration_seconds", "RPC time in the gateway, by method", ["method"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batches = Histogram("custos_audit_commit_batch_units", "Units of work committed together by the audit "
                                 "log's group commit", buckets=BATCH_BUCKETS, registry=self.registry)
        # monotonic time at which a checkpoint last covered the whole log (set by the checkpoint job)
        self._checkpoint_at: float | None = None
        self._lock = threading.Lock()
        self.server: WSGIServer | None = None
        self.port = 0

    # -------------------------------------------------------------- the call gate

    def call(self, method: str, code: Code | None, seconds: float) -> None:
        """One RPC ended: allowed (`code` None) or refused with its stable code."""
        if code is None or code == Code.OK:
            self.calls.labels(method, ALLOW, Code.OK.value).inc()
        else:
            self.calls.labels(method, DENY, code.value).inc()
            self.refusals.labels(code.value).inc()
        self.latency.labels(method).observe(seconds)

    # -------------------------------------------------------------- the checkpoint job

    def checkpointed(self, publish: Callable[[], Any]) -> Callable[[], Any]:
        """`publish` (the core's checkpoint job), noting when it last left the log covered by a checkpoint."""
        def job() -> Any:
            result = publish()  # raises when it could not publish: the age then keeps growing
            with self._lock:
                self._checkpoint_at = time.monotonic()
            return result
        return job

    def checkpoint_age(self) -> float | None:
        with self._lock:
            at = self._checkpoint_at
        return None if at is None else time.monotonic() - at

    # -------------------------------------------------------------- wiring

    def watch(self, vault: Vault, key_status: Callable[[], Any]) -> None:
        """Observe the vault's group commit, and read its state at each scrape."""
        audit: Any = vault.audit
        audit.observe_batch = self.batches.observe
        self.registry.register(_StoreCollector(self, vault, key_status))

    def serve(self, listen: str) -> int:
        """Serve the exposition on HOST:PORT (plain HTTP, no authentication: a private interface); the port bound."""
        host, _, port_text = listen.rpartition(":")
        try:
            server, _thread = start_http_server(int(port_text), addr=host.strip("[]") or "127.0.0.1",
                                                registry=self.registry)
        except (OSError, ValueError):
            raise CustosError(Code.LISTEN_FAILED, "the metrics address could not be bound") from None
        self.server = server
        self.port = int(server.server_port)
        return self.port

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class _StoreCollector(Collector):
    """Gauges read when scraped: the audit log's size and checkpoint age, the KEKs' rewrap, the database pool.

    A read that fails (the store down) leaves its gauges out of that scrape
    rather than failing it: the call counters still tell what happens.
    """

    def __init__(self, metrics: Metrics, vault: Vault, key_status: Callable[[], Any]) -> None:
        self._metrics = metrics
        self._vault = vault
        self._key_status = key_status

    def describe(self) -> Iterator[Any]:
        return iter(())  # generated at scrape time only; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        yield from self._audit()
        yield from self._keys()
        yield from self._pool()

    def _audit(self) -> Iterator[GaugeMetricFamily]:
        try:
            size = self._vault.audit.head()[0]
        except Exception:  # noqa: BLE001 - a scrape must not fail with the store
            log.warning("metrics: the audit log's size could not be read", extra={"event": "metrics_read_failed"})
        else:
            yield GaugeMetricFamily("custos_audit_events", "Events in the audit log (its tree's size)", value=size)
        age = self._metrics.checkpoint_age()
        if age is not None:
            yield GaugeMetricFamily("custos_audit_checkpoint_age_seconds", "Seconds since a signed checkpoint last "
                                    "covered the whole audit log, as this process saw it", value=age)

    def _keys(self) -> Iterator[GaugeMetricFamily]:
        try:
            status = self._key_status()
        except Exception:  # noqa: BLE001
            log.warning("metrics: the key status could not be read", extra={"event": "metrics_read_failed"})
            return
        yield GaugeMetricFamily("custos_kek_primary_version", "The primary KEK version", value=status.primary)
        per_version = GaugeMetricFamily("custos_kek_data_keys", "Data keys wrapped by each KEK version",
                                        labels=["version"])
        for version, count, _primary in status.rows:
            per_version.add_metric([str(version)], count)
        yield per_version
        yield GaugeMetricFamily("custos_kek_data_keys_to_rewrap", "Data keys not yet under the primary KEK version "
                                "(the background rewrap's work left)", value=status.to_rewrap)

    def _pool(self) -> Iterator[GaugeMetricFamily]:
        pool = getattr(self._vault, "pool", None)  # PostgreSQL only; SQLite has no pool
        if pool is None:
            return
        stats = pool.get_stats()
        family = GaugeMetricFamily("custos_db_pool", "The PostgreSQL connection pool (psycopg_pool's stats)",
                                   labels=["stat"])
        for stat in POOL_STATS:
            if stat in stats:
                family.add_metric([stat], stats[stat])
        yield family


# psycopg_pool's get_stats() keys kept: the pool's shape and whether callers wait for a connection.
POOL_STATS = ("pool_min", "pool_max", "pool_size", "pool_available", "requests_waiting", "connections_errors")
