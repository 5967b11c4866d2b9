"""Multi-process load generator: many unary calls in flight, per-call latency, fixed window.

Each worker is a separate (spawned) process with one mTLS channel that keeps its share
of the in-flight calls busy with grpc futures: every completion callback records the
call and issues the next one. Requests and responses are raw bytes (identity
(de)serialisers), so the generator spends nothing on protobuf and the echo and the
gateway pay the same client cost.

Timeline, shared by all workers through CLOCK_MONOTONIC (system-wide on Linux):
warm-up from `t_start`, measurement window `[t_meas, t_end)`, then no new calls and
a bounded drain. Only calls *completing* inside the window count; the number of
calls per worker is also capped (`max_calls`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

CALL_TIMEOUT = 10.0  # seconds; a call slower than this is an error (DEADLINE_EXCEEDED)
READY_TIMEOUT = 30.0
DRAIN_TIMEOUT = CALL_TIMEOUT + 5.0


@dataclass
class Identity:
    """An identity bundle as written by `custos org add` (client.crt, client.key, ca.crt)."""

    cert: bytes
    key: bytes
    ca: bytes

    @classmethod
    def load(cls, directory: Path) -> Identity:
        return cls((directory / "client.crt").read_bytes(), (directory / "client.key").read_bytes(),
                   (directory / "ca.crt").read_bytes())


@dataclass
class LoadResult:
    """What one load run measured (window only)."""

    seconds: float
    calls: int  # successful calls completed in the window
    errors: dict[str, int]  # status name -> count, in the window
    throughput: float  # successful calls per second
    p50_ms: float
    p99_ms: float
    mean_ms: float
    load_cpu_s: float  # CPU time of all load processes during the window
    server_cpu_s: float | None  # from the probe, if one was given
    error_sample: str = ""
    sample_response: bytes = b""
    max_calls_hit: bool = False
    worker_cpus: list[set[int]] = field(default_factory=list)


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all threads) from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        data = fh.read()
    fields = data[data.rindex(b")") + 2:].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def _worker(conn: Connection, target: str, ident: Identity, method: str, requests: list[bytes],
            offset: int, inflight: int, max_calls: int, channels: int = 1) -> None:
    """One load process: connect, report ready, run the timeline it is sent, send results back.

    Several channels are several connections (a local subchannel pool each), which the
    kernel spreads over the processes of a server sharing its port (SO_REUSEPORT).
    """
    import grpc

    creds = grpc.ssl_channel_credentials(root_certificates=ident.ca, private_key=ident.key,
                                         certificate_chain=ident.cert)
    opts = [("grpc.use_local_subchannel_pool", 1)] if channels > 1 else []
    chans = [grpc.secure_channel(target, creds, options=opts) for _ in range(channels)]
    try:
        for channel in chans:
            grpc.channel_ready_future(channel).result(timeout=READY_TIMEOUT)
    except grpc.FutureTimeoutError:
        conn.send(("failed", "channel not ready"))
        return
    calls = [ch.unary_unary(method, request_serializer=None, response_deserializer=None) for ch in chans]
    conn.send(("ready",))
    _t_start, t_meas, t_end = conn.recv()

    n = len(requests)
    lock = threading.Lock()
    done = threading.Event()
    lat = array("d")
    errors: Counter[str] = Counter()
    st: dict[str, Any] = {"issued": 0, "outstanding": 0, "next": offset, "sample": b"", "err": ""}

    def launch(i: int) -> None:
        t0 = time.monotonic()
        try:
            fut = calls[i % len(calls)].future(requests[i % n], timeout=CALL_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - counted as an error, never fatal to the run
            finish(None, t0, exc)
            return
        fut.add_done_callback(lambda f: finish(f, t0, None))

    def finish(fut: Any, t0: float, exc: BaseException | None) -> None:
        t1 = time.monotonic()
        code = "OK"
        response = None
        if fut is not None:
            try:
                response = fut.result()
            except grpc.RpcError as err:
                code = err.code().name if err.code() else "UNKNOWN"
                exc = err
            except Exception as err:  # noqa: BLE001 - e.g. cancelled
                code, exc = type(err).__name__, err
        else:
            code = type(exc).__name__
        nxt = -1
        with lock:
            if t_meas <= t1 < t_end:
                if code == "OK":
                    lat.append(t1 - t0)
                else:
                    errors[code] += 1
            if code == "OK" and not st["sample"] and response is not None:
                st["sample"] = response
            if code != "OK" and not st["err"]:
                details = exc.details() if isinstance(exc, grpc.RpcError) else str(exc)
                st["err"] = f"{code}: {details}"
            if t1 < t_end and st["issued"] < max_calls:
                st["issued"] += 1
                nxt = st["next"]
                st["next"] += 1
            else:
                st["outstanding"] -= 1
                if st["outstanding"] == 0:
                    done.set()
        if nxt >= 0:
            launch(nxt)

    with lock:
        st["outstanding"] = inflight
        st["issued"] = inflight
        first = st["next"]
        st["next"] += inflight
    for i in range(first, first + inflight):
        launch(i)
    done.wait(timeout=max(0.0, t_end - time.monotonic()) + DRAIN_TIMEOUT)
    with lock:
        conn.send(("done", lat.tobytes(), dict(errors), st["err"], st["sample"], st["issued"] >= max_calls,
                   sorted(os.sched_getaffinity(0))))
    for channel in chans:
        channel.close()


def run_load(target: str | list[str], identity_dir: Path, method: str, requests: list[bytes], *, procs: int = 2,
             inflight: int = 64, warmup: float = 2.0, seconds: float = 10.0, max_calls: int = 2_000_000,
             server_cpu: Callable[[], float] | None = None, connections: int = 0, through: bool = False) -> LoadResult:
    """Run `procs` load processes against `target` (loopback) and merge what they measured.

    `through`: return as soon as every worker has made its `max_calls` calls
    (a pass over the requests, to fill a cache), not at the window's end.

    With several targets (replicas), load process k drives target k mod n.
    Load processes inherit the calling thread's CPU affinity (pin before calling).
    `server_cpu`, if given, is sampled at the start and end of the window.
    """
    targets = [target] if isinstance(target, str) else list(target)
    for t in targets:
        if t.rsplit(":", 1)[0] not in ("127.0.0.1", "localhost", "[::1]"):
            raise ValueError("the load generator only targets loopback")
    ident = Identity.load(identity_dir)
    ctx = mp.get_context("spawn")  # no fork after grpc has started threads
    shares = [inflight // procs + (1 if k < inflight % procs else 0) for k in range(procs)]
    workers: list[tuple[Any, Connection]] = []
    try:
        for k, share in enumerate(shares):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker, daemon=True, name=f"bench-load-{k}",
                            args=(child, targets[k % len(targets)], ident, method, requests,
                                  k * len(requests) // procs, share, max_calls, max(1, connections // procs)))
            p.start()
            workers.append((p, parent))
        for _, conn in workers:
            if not conn.poll(READY_TIMEOUT + 15):
                raise RuntimeError("load worker did not start")
            msg = conn.recv()
            if msg[0] != "ready":
                raise RuntimeError(f"load worker failed: {msg[1]}")
        t_start = time.monotonic() + 0.05
        t_meas = t_start + warmup
        t_end = t_meas + seconds
        for _, conn in workers:
            conn.send((t_start, t_meas, t_end))

        def sample() -> tuple[float, float | None]:
            load = sum(proc_cpu_seconds(p.pid) for p, _ in workers)
            return load, (server_cpu() if server_cpu else None)

        time.sleep(max(0.0, t_meas - time.monotonic()))
        load0, srv0 = sample()
        if through:
            for _, conn in workers:
                conn.poll(max(0.0, t_end - time.monotonic()) + DRAIN_TIMEOUT)
        else:
            time.sleep(max(0.0, t_end - time.monotonic()))
        load1, srv1 = sample()

        lat: list[float] = []
        errors: Counter[str] = Counter()
        err_sample = ""
        resp_sample = b""
        capped = False
        cpus: list[set[int]] = []
        for p, conn in workers:
            if not conn.poll(DRAIN_TIMEOUT + 5):
                raise RuntimeError("load worker did not finish in time")
            _, raw, errs, err, resp, hit, aff = conn.recv()
            a = array("d")
            a.frombytes(raw)
            lat.extend(a)
            errors.update(errs)
            err_sample = err_sample or err
            resp_sample = resp_sample or resp
            capped = capped or hit
            cpus.append(set(aff))
            p.join(timeout=5)
    finally:
        for p, _ in workers:
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
    return merged(lat, errors, seconds, (load0, load1), (srv0, srv1), err_sample, resp_sample, capped, cpus)


def merged(lat: list[float], errors: Counter[str], seconds: float, load: tuple[float, float],
           server: tuple[float | None, float | None], err_sample: str, resp_sample: bytes, capped: bool,
           cpus: list[set[int]]) -> LoadResult:
    """One run's result from every load process's latencies and the CPU samples at the window's edges."""
    lat.sort()
    srv0, srv1 = server
    return LoadResult(
        seconds=seconds, calls=len(lat), errors=dict(errors), throughput=len(lat) / seconds,
        p50_ms=percentile(lat, 50) * 1e3, p99_ms=percentile(lat, 99) * 1e3,
        mean_ms=(sum(lat) / len(lat) * 1e3) if lat else float("nan"),
        load_cpu_s=load[1] - load[0],
        server_cpu_s=(srv1 - srv0) if srv0 is not None and srv1 is not None else None,
        error_sample=err_sample, sample_response=resp_sample, max_calls_hit=capped, worker_cpus=cpus,
    )
