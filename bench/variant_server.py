"""Measurement harness for `bench.decompose`: the gateway with one part of `GetCase` taken out.

- `full`: the gateway as `custos serve` runs it; on stop it prints how many group
  commits carried how many events.
- `no-append`: reads are authorised, read, decrypted and minimised, but the audit
  append is skipped.
- `fixed-record`: every `GetCase` returns one record decided at start-up; no policy,
  no vault, no audit. What is left is gRPC, mTLS, identity, the servicer and protobuf.

The two cut-down variants release without audit, so they exist only to divide the
benchmark's cost among the layers. They listen on loopback only and are not part
of the installed package.

    python -m bench.variant_server DATA_DIR --variant no-append [--workers 16]
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from bench.run import AGENCY, PURPOSE
from gateway.core.model import Caller
from gateway.transport.server import build
from vault.groupcommit import GroupCommit

VARIANTS = ("full", "no-append", "fixed-record")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.variant_server")
    ap.add_argument("data_dir", type=Path, help="the data directory bench.run's set-up made")
    ap.add_argument("--variant", choices=VARIANTS, required=True)
    ap.add_argument("--workers", type=int, default=128)
    ap.add_argument("--policies", type=Path, default=None)
    args = ap.parse_args(argv)
    gw = build(args.data_dir, "127.0.0.1:0", workers=args.workers, policy_dir=args.policies)  # loopback only
    core, audit = gw.core, gw.vault.audit
    assert isinstance(audit, GroupCommit)  # both backends' audit logs batch through it
    stats = {"commits": 0, "events": 0}
    if args.variant == "fixed-record":
        record = core.get_case(Caller(org_id=AGENCY, method="GetCase", trace_id="0" * 32), "C-1", PURPOSE)
        core.get_case = lambda caller, case_ref, purpose: record  # type: ignore[method-assign]
    elif args.variant == "no-append":
        audit.append = lambda events, fresh_as=None: None  # type: ignore[method-assign,misc]
    else:
        commit = audit._commit

        def counted(batch: list[Any]) -> None:
            stats["commits"] += 1
            stats["events"] += len(batch)
            commit(batch)

        audit._commit = counted  # type: ignore[method-assign]
    print(f"variant {args.variant} listening on 127.0.0.1:{gw.port}", flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    gw.stop(1.0)
    if args.variant == "full":
        print(f"group commits: {stats['commits']} commits, {stats['events']} events", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
