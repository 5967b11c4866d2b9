"""`audit verify` on a large log: the first full run, then an incremental run after 1,000 new events.

    python -m bench.verify [--events 1000000] [--added 1000]

A fresh embedded data directory with a regulator; the log is grown in-process
to `--events` synthetic events (1,000 per commit), then a gateway is started
(`custos serve`) and the regulator verifies it exactly as `custos audit verify
--key VKEY --state FILE` does (the same client calls and `verify_log`, timed
in this process, so the CLI's start-up is not counted; it is printed
separately). Then the gateway is stopped, `--added` events are appended, it is
started again, and the same state is verified incrementally.
Design targets: the first run at 10^6 events <= 20 s; the incremental run
after 1,000 new events on a 10^6 log <= 1 s.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from bench.proofs import _grow
from bench.run import Server, custos_cmd, server_env


def _verify(target: str, ids: Path, vkey: str, state: dict[str, object] | None) -> tuple[float, dict[str, object]]:
    from custos_client import CustosClient

    from gateway.tlog.verify import resume_from, verify_log

    t0 = time.perf_counter()
    with CustosClient(target, ids, timeout=3600) as c:
        note = c.checkpoint()
        result = verify_log(c.audit_events(from_seq=resume_from(state)), note, vkey, state,
                            lambda a, b: list(c.consistency_proof(a, b).proof))
    return time.perf_counter() - t0, result.state() | {"read": result.read}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.verify", description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--added", type=int, default=1000)
    args = ap.parse_args(argv)
    from vault.sqlite import SqliteVault

    cmd, env = custos_cmd(), server_env()
    with tempfile.TemporaryDirectory(prefix="custos-bench-verify-") as tmp:
        data, ids = Path(tmp) / "data", Path(tmp) / "ids"
        subprocess.run([*cmd, "init", str(data)], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run([*cmd, "org", "add", str(data), "--id", "regulator-1", "--kind", "regulator", "--name", "R",
                        "--out", str(ids / "regulator-1")], check=True, env=env, stdout=subprocess.DEVNULL)
        vault = SqliteVault(data)
        t0 = time.perf_counter()
        _grow(vault, args.events)
        grown = time.perf_counter() - t0
        vault.close()
        vkey = (data / "audit.vkey").read_text()

        def serve() -> Server:
            gw = Server("gateway", [*cmd, "serve", str(data), "--listen", "127.0.0.1:0", "--processes", "1"],
                        Path(tmp) / "gw.log", None)
            gw.wait_listening()
            return gw

        gw = serve()
        try:
            full_s, state = _verify(gw.target, ids / "regulator-1", vkey, None)
        finally:
            gw.stop()
        size = int(state["size"])  # type: ignore[call-overload]
        vault = SqliteVault(data)
        _grow(vault, vault.audit.size + args.added)
        vault.close()
        gw = serve()
        try:
            inc_s, after = _verify(gw.target, ids / "regulator-1", vkey, state)
            state_file = Path(tmp) / "state.json"
            import json

            state_file.write_text(json.dumps({k: v for k, v in after.items() if k != "read"}))
            t0 = time.perf_counter()
            subprocess.run([*cmd, "audit", "verify", "--key", str(data / "audit.vkey"), "--state", str(state_file),
                            "--gateway", gw.target, "--identity", str(ids / "regulator-1")], check=True, env=env,
                           stdout=subprocess.DEVNULL)
            cli_s = time.perf_counter() - t0
        finally:
            gw.stop()
    print(f"log grown to {args.events} events in {grown:.1f} s (in-process, 1,000 per commit)")
    print(f"first full verify: {size} events in {full_s:.1f} s ({size / full_s:.0f} events/s; target <= 20 s at 10^6)")
    print(f"incremental verify after {args.added} new events: {inc_s:.2f} s, {after['read']} events read "
          f"(target <= 1 s); the same through the CLI, start-up included: {cli_s:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
