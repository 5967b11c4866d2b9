"""The regulator's view, in-process: proof latency as the log grows, and what the tiles cost the append.

    python -m bench.proofs [--sizes 1000,100000,1000000] [--proofs 200] [--append 20000]

- **Proof latency.** One embedded data directory (`custos init`, a regulator)
  is grown to each size in turn (synthetic audit events, 1,000 per commit, as
  the gateway writes them). At each size, `--proofs` inclusion proofs of
  random events against the current tree and as many consistency proofs from
  a random earlier size, each checked with the independent verifier, twice:
  *computed* in-process from the stored nodes through the log's cache (as the
  gateway keeps one), and *served*: a regulator's `GetInclusionProof` /
  `GetConsistencyProof` calls to `custos serve` over mTLS on loopback, as
  `custos audit prove` makes them, which includes auditing the request.
  Median and p99 per proof. Design target: at 10^6 events at most 2 x the
  latency at 10^3.
- **Append with tiles.** `--append` events in batches of 8 (the group commit's
  usual size under load), alternately with tile upkeep on and off (it is
  derived data, so off is a fair baseline), three times each; events/s.
  Design target: with tiles >= 0.9 x without.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.run import Server, bench_policies, custos_cmd, server_env


def _events(n: int, start: int) -> list[Any]:
    from gateway.core.model import EventDraft

    return [EventDraft(org=f"agency-{i % 5}", method="GetCase", purpose="collection", case_id=f"C-{i % 997}",
                       borrower_id=f"B-{i % 991}", decision="allow", code="OK", rule="collection.reminder",
                       time="2026-12-01T00:00:00.000000Z", trace_id="0" * 32, fields=["full_name", "phone"])
            for i in range(start, start + n)]


def _grow(vault: Any, target: int, events: Callable[[int, int], list[Any]] | None = None) -> None:
    """Append events (`events(n, first_seq)`, default this bench's) 1,000 to a commit until the log holds `target`."""
    make = events or _events
    size = vault.audit.size
    while size < target:
        n = min(1000, target - size)
        vault.audit.append(make(n, size))
        size += n


def _proof_times(vault: Any, proofs: int, rnd: random.Random) -> tuple[list[float], list[float]]:
    from gateway.tlog.proofcheck import verify_consistency, verify_inclusion
    from gateway.tlog.proofs import NodeCache

    log = vault.audit.reads()
    size, root = vault.audit.head()
    cache = NodeCache()  # as the gateway keeps one per log
    inc, con = [], []
    for _ in range(proofs):
        seq = rnd.randrange(size)
        t0 = time.perf_counter()
        tree = cache.tree(log.audit_nodes, log.audit_leaf_hash_range, log.audit_tile_inner)
        proof = tree.inclusion(seq, size)
        leaf = tree.entries(0, seq, seq + 1)[0]
        inc.append(time.perf_counter() - t0)
        assert verify_inclusion(seq, size, leaf, proof, root)
        first = rnd.randrange(1, size)
        t0 = time.perf_counter()
        tree = cache.tree(log.audit_nodes, log.audit_leaf_hash_range, log.audit_tile_inner)
        proof, first_root = tree.consistency(first, size), tree.root(first)
        con.append(time.perf_counter() - t0)
        assert verify_consistency(first, size, first_root, root, proof)
    return inc, con


def _served_times(target: str, identity: Path, size: int, proofs: int,
                  rnd: random.Random) -> tuple[list[float], list[float]]:
    from custos_client import CustosClient

    from gateway.tlog.proofcheck import verify_consistency, verify_inclusion

    inc, con = [], []
    with CustosClient(target, identity) as c:
        root = c.inclusion_proof(0, size).root  # also warms the channel
        for _ in range(proofs):
            seq = rnd.randrange(size)
            t0 = time.perf_counter()
            p = c.inclusion_proof(seq, size)
            inc.append(time.perf_counter() - t0)
            assert p.root == root and verify_inclusion(seq, size, p.leaf_hash, p.proof, root)
            first = rnd.randrange(1, size)
            t0 = time.perf_counter()
            q = c.consistency_proof(first, size)
            con.append(time.perf_counter() - t0)
            assert q.to_root == root and verify_consistency(first, size, q.from_root, root, q.proof)
    return inc, con


def _no_nodes(old: int, new: int) -> None:
    """The baseline: the append without the tree's nodes (derived data) kept."""


def _p(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.proofs", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,100000,1000000")
    ap.add_argument("--proofs", type=int, default=200)
    ap.add_argument("--append", type=int, default=20000)
    args = ap.parse_args(argv)
    from vault.sqlite import SqliteVault

    rnd = random.Random(11)
    sizes = [int(s) for s in args.sizes.split(",")]
    cmd, env = custos_cmd(), server_env()
    with tempfile.TemporaryDirectory(prefix="custos-bench-proofs-") as tmp:
        data, ids = Path(tmp) / "data", Path(tmp) / "ids"
        subprocess.run([*cmd, "init", str(data)], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run([*cmd, "org", "add", str(data), "--id", "regulator-1", "--kind", "regulator", "--name", "R",
                        "--out", str(ids / "regulator-1")], check=True, env=env, stdout=subprocess.DEVNULL)
        vault = SqliteVault(data)
        try:
            rows: list[tuple[int, float, tuple[list[float], list[float]], tuple[list[float], list[float]]]] = []
            for size in sizes:
                t0 = time.perf_counter()
                _grow(vault, size)
                grown = time.perf_counter() - t0
                size = vault.audit.size
                computed = _proof_times(vault, args.proofs, rnd)
                vault.close()
                gw = Server("gateway", [*cmd, "serve", str(data), "--listen", "127.0.0.1:0", "--processes", "1", "--policies",
                                       str(bench_policies(Path(tmp)))], Path(tmp) / "gw.log", None)
                try:
                    gw.wait_listening()
                    served = _served_times(gw.target, ids / "regulator-1", size, args.proofs, rnd)
                finally:
                    gw.stop()
                vault = SqliteVault(data)
                rows.append((size, grown, computed, served))
            print("proof latency, median / p99 in ms (each proof checked by the independent verifier):")
            print("     events   computed: inclusion   consistency   served: inclusion   consistency")
            for size, grown, (ci, cc), (si, sc) in rows:
                print(f"  {size:>9}  {_p(ci, 0.5):>9.2f} / {_p(ci, 0.99):<5.2f}  {_p(cc, 0.5):>6.2f} / {_p(cc, 0.99):<5.2f}"
                      f"  {_p(si, 0.5):>8.2f} / {_p(si, 0.99):<5.2f}  {_p(sc, 0.5):>6.2f} / {_p(sc, 0.99):<5.2f}"
                      f"   (grown in {grown:.1f} s)")
            base, top = rows[0], rows[-1]
            for label, (b, t) in (("computed", (base[2], top[2])), ("served", (base[3], top[3]))):
                print(f"{label}: at {top[0]} events against {base[0]}: inclusion "
                      f"{_p(t[0], 0.5) / _p(b[0], 0.5):.2f} x, consistency "
                      f"{_p(t[1], 0.5) / _p(b[1], 0.5):.2f} x (target <= 2 x)")
            on: list[float] = []
            off: list[float] = []
            audit = vault.audit
            store = audit.tables.store_nodes
            for _ in range(3):
                for tiles, out in ((True, on), (False, off)):
                    audit.tables.store_nodes = store if tiles else _no_nodes  # type: ignore[method-assign,assignment]
                    start = audit.size
                    t0 = time.perf_counter()
                    for i in range(0, args.append, 8):
                        audit.append(_events(8, start + i))
                    out.append(args.append / (time.perf_counter() - t0))
            audit.tables.store_nodes = store  # type: ignore[method-assign]
            ratio = statistics.median(on) / statistics.median(off)
            print(f"append, batches of 8: with tiles {statistics.median(on):.0f} events/s, without "
                  f"{statistics.median(off):.0f} events/s: {ratio:.2f} x (target >= 0.9 x); per run "
                  f"{[round(x) for x in on]} / {[round(x) for x in off]}")
        finally:
            vault.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
