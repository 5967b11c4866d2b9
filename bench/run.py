"""`make bench`: audited `GetCase` vs a bare gRPC + mTLS echo, alternating, in one run.

Set-up: a fresh temporary data directory (`custos init`, a lender, an agency), N
synthetic cases at stage `reminder` imported and mandated to the agency through a
temporarily started gateway. Then, per round: echo server run, gateway run — each a
fresh server subprocess pinned to CPU 0, driven by `bench.load` from processes pinned
to CPU 1 (when the machine has 2+ CPUs). Prints a table per round, the medians and
the gateway/echo ratios; writes bench/results/latest.json.

    python -m bench.run [--rounds 3] [--seconds 10] [--inflight 64] [--cases 1000] [--quick]
    python -m bench.run --store postgresql     # also: one PostgreSQL replica, and two against one

With `--store postgresql` a throwaway PostgreSQL server (tests/pg.py, pinned
with the servers to CPU 0) holds a second copy of the cases, and each round
also runs one gateway replica on it (`pg`) and two replicas sharing the load
(`pg x2`); their server CPU includes PostgreSQL's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.echo_server import ECHO_METHOD
from bench.load import LoadResult, proc_cpu_seconds, run_load

GETCASE_METHOD = "/custos.v1.CaseService/GetCase"
PURPOSE = "collection"
LENDER = "bench-lender"
AGENCY = "bench-agency"
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
TARGET_RATIO = 0.75
LISTEN_RE = re.compile(rb"listening on (\S+):(\d+)")


@dataclass
class Run:
    """One measured server run."""

    round: int
    server: str  # "echo" | "gateway"
    throughput: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    calls: int
    errors: dict[str, int]
    error_sample: str
    server_cpu_us_per_call: float
    server_core_util: float  # server CPU seconds per wall second (1.0 = one core busy)
    load_core_util: float
    load_cpu_us_per_call: float
    server_log_errors: int


# ------------------------------------------------------------------ processes


def custos_cmd() -> list[str]:
    """The `custos` entry point next to this interpreter (falls back to the module)."""
    exe = Path(sys.executable).parent / "custos"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "gateway.cli"]


def server_env() -> dict[str, str]:
    """The servers run with the caller's environment (the gateway logs nothing per request)."""
    return dict(os.environ)


@contextlib.contextmanager
def pinned(cpus: set[int] | None) -> Iterator[None]:
    """Pin the calling thread while children are started; they inherit the mask."""
    if not cpus:
        yield
        return
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


class Server:
    """A server subprocess whose stdout/stderr go to a log file; the port is read from it."""

    def __init__(self, name: str, argv: list[str], log_path: Path, cpus: set[int] | None) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")  # closed in stop()
        with pinned(cpus):
            self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=server_env(),
                                         cwd=Path(__file__).resolve().parent.parent)
        self.target = ""

    def wait_listening(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = LISTEN_RE.search(self.log_path.read_bytes())
            if m:
                self.target = f"{m.group(1).decode()}:{int(m.group(2))}"
                return self.target
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start; log:\n{self.log_path.read_text(errors='replace')[-2000:]}")

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def log_errors(self) -> int:
        text = self.log_path.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if " ERROR " in line or "Traceback" in line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def check_call(target: str, identity: Path, method: str, request: bytes, timeout: float = 30.0) -> bytes:
    """One call, waiting for the server to be ready; raises on any failure."""
    import grpc

    from bench.load import Identity

    ident = Identity.load(identity)
    creds = grpc.ssl_channel_credentials(root_certificates=ident.ca, private_key=ident.key,
                                         certificate_chain=ident.cert)
    with grpc.secure_channel(target, creds) as ch:
        call = ch.unary_unary(method, request_serializer=None, response_deserializer=None)
        return bytes(call(request, timeout=timeout, wait_for_ready=True))


# ------------------------------------------------------------------ set-up


def bench_policies(work: Path) -> Path:
    """The shipped bundle with the per-organisation rate raised out of the way.

    The benchmarks drive one agency (or regulator) far past the default
    500 (50) calls/s on purpose: it measures what a call costs, not the limiter's verdict. The
    limiter itself still runs on every call (its cost is in the figures).
    """
    import shutil

    from policies import BUNDLE_DIR

    dest = work / "policies"
    if not dest.exists():
        shutil.copytree(BUNDLE_DIR, dest, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
        limits = dest / "limits.toml"
        text = limits.read_text().replace("per_second = 500\n", "per_second = 1000000\n")
        text = text.replace("per_second = 50\n", "per_second = 1000000\n")  # the regulators' rate too
        limits.write_text(text.replace("burst = 1000\n", "burst = 1000000\n").replace("burst = 100\n",
                                                                                          "burst = 1000000\n"))
    return dest


@contextlib.contextmanager
def throwaway_database(store: str, name: str) -> Iterator[str | None]:
    """None for the embedded store; for `postgresql` a database on a throwaway server (tests/pg.py), stopped
    on the way out. Without Debian's binaries the bench ends with exit status 2."""
    if store != "postgresql":
        yield None
        return
    from tests.pg import PgServer, binaries

    bindir = binaries()
    if bindir is None:
        print("no PostgreSQL binaries found", file=sys.stderr)
        raise SystemExit(2)
    pg = PgServer(bindir)
    pg.start()
    try:
        yield pg.create_database(name)
    finally:
        pg.stop()


def data_dir(work: Path, database: str | None = None) -> tuple[Path, Path]:
    """`custos init` (embedded, or on `database`), a lender and a licensed agency; (data dir, identities dir)."""
    data, ids, cmd, env = work / "data", work / "identities", custos_cmd(), server_env()
    subprocess.run([*cmd, "init", str(data), *(["--database", database] if database else [])], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    subprocess.run([*cmd, "org", "add", str(data), "--id", LENDER, "--kind", "lender", "--name", "Bench Lender",
                    "--out", str(ids / LENDER)], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run([*cmd, "org", "add", str(data), "--id", AGENCY, "--kind", "agency", "--name", "Bench Agency",
                    "--licence-no", "LIC-BENCH-1", "--licence-expires", "2030-12-31", "--out", str(ids / AGENCY)],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return data, ids


def setup(work: Path, n_cases: int, database: str | None = None) -> tuple[Path, Path, list[bytes], int]:
    """Data dir with a lender and an agency, n_cases mandated; returns (data, agency id dir, requests, size)."""
    from custos_client import CustosClient
    from custos_client.v1 import custos_pb2 as pb

    from gateway import synth

    data, ids = data_dir(work, database)
    cmd = custos_cmd()
    gw = Server("gateway (set-up)", [*cmd, "serve", str(data), "--listen", "127.0.0.1:0", "--processes", "1", "--policies",
                                     str(bench_policies(work))], work / "setup.log", None)
    try:
        target = gw.wait_listening()
        until = (date.today() + timedelta(days=365)).isoformat()
        with CustosClient(target, ids / LENDER, timeout=120) as lender:
            lines = synth.jsonl([synth.case_line(i, stage="reminder") for i in range(1, n_cases + 1)]).splitlines()
            result = lender.import_lines(lines)
            if result.imported != n_cases:
                raise RuntimeError(f"import: {result.imported} of {n_cases} imported, {result.rejected[:3]}")
            placed = lender.assign_lines(json.dumps({"case_id": f"C-{i}", "to": AGENCY, "purpose": PURPOSE,
                                                     "until": until, "agreement": "AG-1", "pia": "PIA-1"}).encode()
                                         for i in range(1, n_cases + 1))
            if placed.assigned != n_cases:
                raise RuntimeError(f"placement: {placed.assigned} of {n_cases}, {placed.rejected[:3]}")
        requests = [pb.GetCaseRequest(case_id=f"C-{i}", purpose=PURPOSE).SerializeToString()
                    for i in range(1, n_cases + 1)]
        sizes = sorted(len(check_call(target, ids / AGENCY, GETCASE_METHOD, requests[i]))
                       for i in range(0, n_cases, max(1, n_cases // 25)))
        size = sizes[len(sizes) // 2]
    finally:
        gw.stop()
    return data, ids / AGENCY, requests, size


# ------------------------------------------------------------------ measurement


def measure(kind: str, rnd: int, data: Path, agency: Path, requests: list[bytes], size: int,
            args: argparse.Namespace, work: Path, server_cpus: set[int] | None,
            load_cpus: set[int] | None) -> tuple[Run, LoadResult, list[int]]:
    """Start one server, drive it, stop it."""
    from custos_client.v1 import custos_pb2 as pb

    if kind == "echo":
        argv = [sys.executable, "-m", "bench.echo_server", str(data), "--listen", "127.0.0.1:0", "--size", str(size),
                "--workers", str(args.workers)]
        method = ECHO_METHOD
    elif kind in ("gateway", "pg"):
        argv = [*custos_cmd(), "serve", str(data), "--listen", "127.0.0.1:0", "--processes", "1",
                "--workers", str(args.workers),
                "--policies", str(bench_policies(work))]
        method = GETCASE_METHOD
    else:  # a measurement variant of the gateway (bench.decompose)
        argv = [sys.executable, "-m", "bench.variant_server", str(data), "--variant", kind, "--workers",
                str(args.workers), "--policies", str(bench_policies(work))]
        method = GETCASE_METHOD
    servers = [Server(kind, argv, work / f"{kind}-{rnd}.log", server_cpus)]
    if kind == "pg x2":  # a second replica on its own copy of the data directory, the same database
        argv = [*custos_cmd(), "serve", str(data), "--listen", "127.0.0.1:0", "--processes", "1",
                "--workers", str(args.workers),
                "--policies", str(bench_policies(work))]
        servers = [Server(f"pg-{n}", [*argv[:2], str(d), *argv[3:]], work / f"pg{n}-{rnd}.log", server_cpus)
                   for n, d in ((1, data), (2, replica_copy(data)))]
    srv = servers[0]

    def server_cpu() -> float:
        return sum(s.cpu_seconds() for s in servers) + (PG_CPU() if kind.startswith("pg") and PG_CPU else 0.0)

    try:
        targets = [s.wait_listening() for s in servers]
        for target in targets:
            check_call(target, agency, method, requests[0])
        srv_aff = sorted(os.sched_getaffinity(srv.proc.pid))
        with pinned(load_cpus):
            res = run_load(targets, agency, method, requests, procs=max(args.procs, len(targets)),
                           inflight=args.inflight, warmup=args.warmup, seconds=args.seconds, server_cpu=server_cpu)
        if method == GETCASE_METHOD and res.sample_response:
            rec = pb.CaseRecord.FromString(res.sample_response)
            if rec.purpose != PURPOSE or not rec.fields:
                raise RuntimeError("gateway answered GetCase without a released record")
        log_errors = sum(s.log_errors() for s in servers)
    finally:
        for s in servers:
            s.stop()
    calls = max(res.calls, 1)
    srv_cpu = res.server_cpu_s or 0.0
    run = Run(round=rnd, server=kind, throughput=res.throughput, p50_ms=res.p50_ms, p99_ms=res.p99_ms,
              mean_ms=res.mean_ms, calls=res.calls, errors=res.errors, error_sample=res.error_sample,
              server_cpu_us_per_call=srv_cpu / calls * 1e6, server_core_util=srv_cpu / res.seconds,
              load_core_util=res.load_cpu_s / res.seconds, load_cpu_us_per_call=res.load_cpu_s / calls * 1e6,
              server_log_errors=log_errors)
    return run, res, srv_aff


def replica_copy(data: Path) -> Path:
    """The second replica's data directory: a copy of the first (same keys, same database URL)."""
    dest = data.parent / "replica-2" / "data"
    if not dest.exists():
        shutil.copytree(data, dest, ignore=shutil.ignore_patterns("serve.lock"))
    return dest


PG_CPU: Any = None  # set when a PostgreSQL server runs: CPU seconds of its processes


def postgres_cpu(server: Any) -> float:
    """utime + stime of the postmaster and every process it forked (the backends serving the replicas)."""
    pid = int((server.data / "postmaster.pid").read_text().split()[0])
    total = proc_cpu_seconds(pid)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_bytes()
            except OSError:
                continue
            if int(stat[stat.rindex(b")") + 2:].split()[1]) == pid:
                try:
                    total += proc_cpu_seconds(int(entry.name))
                except OSError:
                    pass
    return total


# ------------------------------------------------------------------ report


def fmt_run(r: Run) -> str:
    errs = sum(r.errors.values())
    return (f"  {r.server:<8} {r.throughput:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {errs:7d} "
            f"{r.server_cpu_us_per_call:10.0f} {r.server_core_util * 100:7.0f}% {r.load_core_util * 100:7.0f}%")


HEADER = (f"  {'server':<8} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
          f"{'srv µs/call':>10} {'srv core':>8} {'load core':>8}")


def summarise(runs: list[Run]) -> dict[str, Any]:
    med: dict[str, dict[str, float]] = {}
    for kind in sorted({r.server for r in runs}, key=KINDS.index):
        rs = [r for r in runs if r.server == kind]
        med[kind] = {k: statistics.median(getattr(r, k) for r in rs) for k in
                     ("throughput", "p50_ms", "p99_ms", "server_cpu_us_per_call", "server_core_util",
                      "load_core_util", "load_cpu_us_per_call")}
        med[kind]["errors"] = sum(sum(r.errors.values()) for r in rs)
    e, g = med["echo"], med["gateway"]
    ratios = {
        "throughput": g["throughput"] / e["throughput"],
        "p50": g["p50_ms"] / e["p50_ms"],
        "p99": g["p99_ms"] / e["p99_ms"],
        "server_cpu_per_call": g["server_cpu_us_per_call"] / e["server_cpu_us_per_call"],
    }
    per_round = [next(r.throughput for r in runs if r.round == n and r.server == "gateway")
                 / next(r.throughput for r in runs if r.round == n and r.server == "echo")
                 for n in sorted({r.round for r in runs})]
    if "pg" in med:
        ratios["pg_over_sqlite"] = med["pg"]["throughput"] / g["throughput"]
        ratios["pg_p99_over_sqlite"] = med["pg"]["p99_ms"] / g["p99_ms"]
    if "pg x2" in med and "pg" in med:
        ratios["pg2_over_pg1"] = med["pg x2"]["throughput"] / med["pg"]["throughput"]
    return {"medians": med, "ratios": ratios, "throughput_ratio_per_round": per_round,
            "controls_us_per_call": g["server_cpu_us_per_call"] - e["server_cpu_us_per_call"]}


KINDS = ["echo", "gateway", "pg", "pg x2"]
PG_TARGET = 0.8


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0, help="measurement window per run")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--inflight", type=int, default=64, help="calls in flight, all load processes together")
    ap.add_argument("--procs", type=int, default=2, help="load generator processes")
    ap.add_argument("--cases", type=int, default=1000, help="mandated cases the requests rotate over")
    ap.add_argument("--workers", type=int, default=128, help="server RPC worker threads (echo and gateway alike)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round of 3 s, 1 s warm-up")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--keep", action="store_true", help="keep the temporary data directory and server logs")
    ap.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite",
                    help="postgresql: also one and two gateway replicas on a throwaway PostgreSQL server")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds, args.warmup = 1, 3.0, 1.0
    if args.rounds < 1 or args.seconds <= 0 or args.inflight < args.procs or args.cases < 1 or args.procs < 1:
        ap.error("need rounds >= 1, seconds > 0, procs >= 1, inflight >= procs, cases >= 1")

    ncpu = len(os.sched_getaffinity(0))
    server_cpus, load_cpus = ({0}, {1}) if ncpu >= 2 and {0, 1} <= os.sched_getaffinity(0) else (None, None)
    tracing = "on (OTLP)" if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") else "off (no OTEL_EXPORTER_OTLP_ENDPOINT)"
    print(f"custos bench: python {platform.python_version()}, {ncpu} CPUs usable, "
          f"rounds {args.rounds} x {args.seconds:g} s (+{args.warmup:g} s warm-up), {args.inflight} calls in flight "
          f"from {args.procs} load processes, {args.cases} cases")
    if server_cpus:
        print("pinning: server process -> CPU 0, load generator processes -> CPU 1 (os.sched_setaffinity)")
    else:
        print("pinning: none (fewer than 2 CPUs usable) - server and load share the CPU")
    print("load generator: bench.load - Python, multiprocessing (spawn), grpcio sync channel futures with "
          "completion callbacks, identity (de)serialisers, one mTLS channel per process")
    print(f"gateway tracing: {tracing}")

    work = Path(tempfile.mkdtemp(prefix="custos-bench-"))
    runs: list[Run] = []
    affinity: dict[str, Any] = {}
    pg = None
    try:
        t0 = time.monotonic()
        data, agency, requests, size = setup(work, args.cases)
        print(f"set-up: {args.cases} cases imported and mandated in {time.monotonic() - t0:.1f} s; "
              f"typical GetCase response {size} bytes (echo answers with {size} bytes)")
        kinds = ["echo", "gateway"]
        pg_data, pg_agency = data, agency
        if args.store == "postgresql":
            global PG_CPU
            from tests.pg import PgServer, binaries

            bindir = binaries()
            if bindir is None:
                raise SystemExit("--store postgresql needs Debian's postgresql package (initdb, pg_ctl)")
            with pinned(server_cpus):
                pg = PgServer(bindir)
                pg.start()
            PG_CPU = lambda: postgres_cpu(pg)  # noqa: E731
            t0 = time.monotonic()
            pg_data, pg_agency, _, _ = setup(work / "pg", args.cases, database=pg.create_database("custos_bench"))
            print(f"set-up (PostgreSQL): the same cases in {time.monotonic() - t0:.1f} s; the servers' CPU of "
                  "the pg runs includes PostgreSQL's")
            kinds += ["pg", "pg x2"]
        for rnd in range(1, args.rounds + 1):
            print(f"\nround {rnd}/{args.rounds}")
            print(HEADER)
            for kind in kinds:
                on_pg = kind.startswith("pg")
                run, res, srv_aff = measure(kind, rnd, pg_data if on_pg else data, pg_agency if on_pg else agency,
                                            requests, size, args, work, server_cpus, load_cpus)
                affinity[kind] = {"server": srv_aff, "load": [sorted(c) for c in res.worker_cpus]}
                runs.append(run)
                print(fmt_run(run), flush=True)
                if run.errors:
                    print(f"    errors: {run.errors}; first: {run.error_sample[:200]}")
                if run.server_log_errors:
                    print(f"    server log: {run.server_log_errors} ERROR/Traceback lines ({work}/{kind}-{rnd}.log)")
                if res.max_calls_hit:
                    print("    note: a load process hit its call cap before the window ended")
    finally:
        if pg is not None:
            pg.stop()
        if args.keep:
            print(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    s = summarise(runs)
    e, r = s["medians"]["echo"], s["ratios"]
    print(f"\nmedians of {args.rounds} round(s)")
    print(HEADER)
    for kind, m in s["medians"].items():
        print(f"  {kind:<8} {m['throughput']:9.0f} {m['p50_ms']:8.2f} {m['p99_ms']:8.2f} {int(m['errors']):7d} "
              f"{m['server_cpu_us_per_call']:10.0f} {m['server_core_util'] * 100:7.0f}% "
              f"{m['load_core_util'] * 100:7.0f}%")
    verdict = "meets" if r["throughput"] >= TARGET_RATIO else "is BELOW"
    print(f"\ngateway / echo: throughput {r['throughput']:.2f}x (per round: "
          f"{', '.join(f'{x:.2f}' for x in s['throughput_ratio_per_round'])}), "
          f"p50 {r['p50']:.2f}x, p99 {r['p99']:.2f}x, server CPU per call {r['server_cpu_per_call']:.2f}x "
          f"(+{s['controls_us_per_call']:.0f} µs for the controls)")
    print(f"target >= {TARGET_RATIO}x echo throughput: the gateway {verdict} it ({r['throughput']:.2f}x)")
    if "pg_over_sqlite" in r:
        pg_verdict = "meets" if r["pg_over_sqlite"] >= PG_TARGET else "is BELOW"
        print(f"one PostgreSQL replica / the SQLCipher gateway: throughput {r['pg_over_sqlite']:.2f}x, "
              f"p99 {r['pg_p99_over_sqlite']:.2f}x; target >= {PG_TARGET}x: {pg_verdict} it")
        print(f"two PostgreSQL replicas / one: throughput {r['pg2_over_pg1']:.2f}x (both on the server core)")
    if e["load_core_util"] > 0.9:
        print(f"note: during the echo runs the load core was {e['load_core_util'] * 100:.0f}% busy (server core "
              f"{e['server_core_util'] * 100:.0f}%): the echo figure may be partly limited by the Python load "
              "generator, which makes the ratio flatter the gateway")

    doc = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"python": platform.python_version(), "cpus_usable": ncpu, "platform": platform.platform()},
        "settings": {"rounds": args.rounds, "seconds": args.seconds, "warmup": args.warmup,
                     "inflight": args.inflight, "procs": args.procs, "cases": args.cases, "response_bytes": size,
                     "tracing": tracing},
        "pinning": {"server_cpus": sorted(server_cpus) if server_cpus else None,
                    "load_cpus": sorted(load_cpus) if load_cpus else None, "observed": affinity},
        "load_generator": "bench.load (Python multiprocessing, grpcio futures)",
        "runs": [asdict(x) for x in runs],
        **s,
        "target_ratio": TARGET_RATIO,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
