"""The console's first view: navigation to the first rendered and verified timeline, in Debian's chromium.

    python -m bench.console [--sizes 1000,1000000] [--runs 5]

One embedded data directory (`custos init`, a regulator) is grown to each size
in turn (synthetic events, 1,000 per commit, as bench/proofs.py does); at each
size `custos serve` runs on loopback, the console is opened on it with the
regulator's identity and the pinned audit.vkey, and headless chromium
(Playwright, never a downloaded browser) navigates to the console's link until
the timeline's page is drawn and every event on it is verified by the page
(checkpoint signature and each inclusion proof, WebCrypto). Median of --runs,
each in a fresh browser context. The first view reads the latest page (from
the tree size back), never the log. Design target: <= 1 s at 10^6 events,
reported also as a ratio against the first size measured in the same run.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.proofs import _grow
from bench.run import Server, bench_policies, custos_cmd, server_env

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
READY = "() => ['verified','failed','unverified','error'].includes(document.querySelector('#timeline')?.dataset.state)"


def _first_views(browser: object, target: str, ids: Path, vkey: Path, runs: int) -> tuple[list[float], str]:
    from gateway.console.launch import open_console

    console = open_console(target, str(ids / "regulator-1"), "127.0.0.1:0", str(vkey))
    console.start()
    times: list[float] = []
    outcome = ""
    try:
        for _ in range(runs):
            console.token = secrets.token_urlsafe(32)  # a fresh one-time link per navigation
            url = console.url.split("?")[0] + f"?token={console.token}"
            ctx = browser.new_context()  # type: ignore[attr-defined]
            page = ctx.new_page()
            t0 = time.perf_counter()
            page.goto(url)
            page.wait_for_function(READY, timeout=60_000)
            times.append(time.perf_counter() - t0)
            outcome = str(page.eval_on_selector("#timeline", "e => e.dataset.state"))
            ctx.close()
    finally:
        console.stop()
        console.api.client.close()
    return times, outcome


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,1000000")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from vault.sqlite import SqliteVault

    cmd, env = custos_cmd(), server_env()
    rows: list[tuple[int, float, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="custos-bench-console-") as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        data, ids = Path(tmp) / "data", Path(tmp) / "ids"
        subprocess.run([*cmd, "init", str(data)], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run([*cmd, "org", "add", str(data), "--id", "regulator-1", "--kind", "regulator", "--name", "R",
                        "--out", str(ids / "regulator-1")], check=True, env=env, stdout=subprocess.DEVNULL)
        for size in (int(s) for s in args.sizes.split(",")):
            vault = SqliteVault(data)
            try:
                t0 = time.perf_counter()
                _grow(vault, size)
                grown = time.perf_counter() - t0
                size = vault.audit.size
            finally:
                vault.close()
            gw = Server("gateway", [*cmd, "serve", str(data), "--listen", "127.0.0.1:0", "--processes", "1",
                                   "--policies", str(bench_policies(Path(tmp)))], Path(tmp) / "gw.log", None)
            try:
                gw.wait_listening()
                times, outcome = _first_views(browser, gw.target, ids, data / "audit.vkey", args.runs)
            finally:
                gw.stop()
            rows.append((size, statistics.median(times), max(times), outcome))
            print(f"  {size:>9} events: first view {statistics.median(times) * 1000:.0f} ms median, "
                  f"{max(times) * 1000:.0f} ms max, timeline {outcome} (grown in {grown:.1f} s)", flush=True)
        browser.close()
    base, top = rows[0], rows[-1]
    print(f"console first view at {top[0]} events: {top[1] * 1000:.0f} ms (target <= 1000 ms), "
          f"{top[1] / base[1]:.2f} x the view at {base[0]} events")
    return 0 if all(r[3] == "verified" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
