"""Where a read's CPU goes, in-process: the read path hot and cold, and the audit append by batch size.

`make bench` measures the gateway against the echo over gRPC. These figures explain it and are in
bench/README.md:

- **Read path.** `Core.get_case` without the audit append, on a warm grant, is timed two ways. *Hot* is
  back to back. *Cold* runs after touching 16 MB between calls. In the server, gRPC, TLS and the kernel
  run between two reads on the one core, so a read there costs about what *cold* shows.
- **Append.** `AuditLog.append` of 1, 8 and 32 events is timed in thread CPU. The figure covers one
  group commit: leaves, the Merkle frontier, one INSERT and its fsync.

    python -m bench.breakdown [--cases 1000] [--calls 3000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.run import AGENCY, PURPOSE, setup


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.breakdown", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--calls", type=int, default=3000)
    args = ap.parse_args(argv)

    from gateway.core.model import Caller
    from gateway.transport.server import build

    work = Path(tempfile.mkdtemp(prefix="custos-breakdown-"))
    try:
        data, _agency, _requests, _size = setup(work, args.cases)
        gw = build(data, "127.0.0.1:0")
        try:
            core = gw.core
            caller = Caller(org_id=AGENCY, method="GetCase", trace_id="0" * 32)
            ids = [f"C-{i}" for i in range(1, args.cases + 1)]
            append = core.audit.append
            core.audit.append = lambda events: None  # type: ignore[method-assign]
            for i in range(len(ids) * 2):
                core.get_case(caller, ids[i % len(ids)], PURPOSE)  # every grant decided, caches warm
            scratch = bytearray(16 * 1024 * 1024)
            print(f"read path (Core.get_case without the audit append, warm grants, {args.calls} calls):")
            for mode in ("hot", "cold"):
                total = 0.0
                for i in range(args.calls):
                    if mode == "cold":
                        scratch[::64] = bytes(len(scratch) // 64)  # one write per cache line of 16 MB
                    t = time.thread_time()
                    core.get_case(caller, ids[i % len(ids)], PURPOSE)
                    total += time.thread_time() - t
                print(f"  {mode:5} {total / args.calls * 1e6:6.0f} µs CPU per read")
            core.audit.append = append  # type: ignore[method-assign]

            def event(i: int) -> object:
                return core._event(caller, "allow", "OK", "bench", purpose=PURPOSE, case_id=f"C-{i}",
                                   borrower_id=f"B-{i}", fields=["amount_due", "full_name", "phone"])

            print("audit append (one group commit: leaves, frontier, one INSERT + fsync), thread CPU:")
            for batch in (1, 8, 32):
                rounds = max(20, 2400 // batch)
                events = [[event(i) for i in range(batch)] for _ in range(rounds)]
                t = time.thread_time()
                for evs in events:
                    core.audit.append(evs)  # type: ignore[arg-type]
                per_batch = (time.thread_time() - t) / rounds * 1e6
                print(f"  batch {batch:2}: {per_batch:6.0f} µs per batch, {per_batch / batch:5.0f} µs per event")
        finally:
            gw.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
