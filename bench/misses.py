"""What a row-cache miss costs a read, in one process: alone, under concurrency, and its SQL statement by itself.

    python -m bench.misses [--cases 20000] [--reads 6400] [--threads 1,64]

Set-up (`bench.run.setup`, embedded store): `--cases` synthetic cases mandated
to one agency. Then, in this process, on a gateway built in-process with the
audit append left out (the same for hits and misses, measured in
bench/breakdown.py), `Core.get_case` is timed in process CPU per read:

- hit: the threads read the first 1,000 cases again and again (every grant is
  remembered);
- miss: they read the cases after the first 2,000 each once (the row cache
  holds about 10,000 cases' entries, so each read misses);
- statement: the one SQL statement a miss runs (mandates, case, borrower and
  loan), on a connection of its own, over the same cases;
- memory: the Python objects (tracemalloc) that 2,000 misses leave in the
  row cache, per case: what holding a working set in memory would cost.

Issue 13's reads target (10^6 cases in turn at >= 0.9 x the throughput at
10^3) allows a miss at most about a tenth of a served read's CPU; these
figures show what a miss costs before gRPC and the audit log add theirs.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.run import AGENCY, PURPOSE, setup


def _unaudited(gw: Any) -> tuple[Any, Any]:
    """The gateway's core with the audit append left out (timed apart in bench/breakdown.py), and the agency."""
    from gateway.core.model import Caller

    core = gw.core
    core.audit.append = lambda events, fresh_as=None: None
    return core, Caller(org_id=AGENCY, method="GetCase", trace_id="0" * 32)


def _reads(core: Any, caller: Any, cases: list[str], k: int, per: int, stride: int) -> None:
    for j in range(per):
        core.get_case(caller, cases[(k + j * stride) % len(cases)], PURPOSE)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.misses", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=20_000)
    ap.add_argument("--reads", type=int, default=6400, help="reads per measurement, shared by the threads")
    ap.add_argument("--threads", default="1,64")
    args = ap.parse_args(argv)
    counts = [int(t) for t in args.threads.split(",")]
    if args.cases < 2000 + args.reads:
        ap.error("--cases must be at least 2000 + --reads (every read of the miss run a case of its own)")

    from gateway.transport.server import build
    from vault.sqlite import SqliteVault
    from vault.sqlite.store import _MANDATE_AND_CASE_SQL

    work = Path(tempfile.mkdtemp(prefix="custos-misses-"))
    try:
        data, _agency, _requests, _size = setup(work, args.cases)
        for threads in counts:
            for mode in ("hit", "miss"):
                gw = build(data, "127.0.0.1:0")  # a fresh gateway (an empty row cache) for each measurement
                try:
                    core, caller = _unaudited(gw)
                    warm = [f"C-{i}" for i in range(1, 1001)]
                    for case in warm:
                        core.get_case(caller, case, PURPOSE)
                    cases = warm if mode == "hit" else [f"C-{i}" for i in range(2001, 2001 + args.reads)]
                    per = args.reads // threads

                    pool = [threading.Thread(target=_reads, args=(core, caller, cases, k, per, threads))
                            for k in range(threads)]
                    cpu = time.process_time()
                    for t in pool:
                        t.start()
                    for t in pool:
                        t.join()
                    cpu = time.process_time() - cpu
                    print(f"{mode:4}  {threads:3} threads  {cpu / (per * threads) * 1e6:6.0f} µs CPU per read",
                          flush=True)
                finally:
                    gw.stop(0)
        gw = build(data, "127.0.0.1:0")
        try:
            assert isinstance(gw.vault, SqliteVault)
            conn = gw.vault._open(gw.vault.layout.db)
            cases = [f"C-{i}" for i in range(2001, 2001 + args.reads)]
            for label in ("first read", "again"):
                t0 = time.perf_counter()
                for case in cases:
                    conn.execute(_MANDATE_AND_CASE_SQL, (AGENCY, case)).fetchall()
                print(f"statement alone ({label})  {(time.perf_counter() - t0) / len(cases) * 1e6:6.0f} µs per read")
            core, caller = _unaudited(gw)
            core.get_case(caller, "C-1", PURPOSE)
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            for case in cases[:2000]:
                core.get_case(caller, case, PURPOSE)
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
            print(f"memory the row cache holds per case read  {held / min(2000, len(cases)) / 1024:6.1f} KiB")
        finally:
            gw.stop(0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
