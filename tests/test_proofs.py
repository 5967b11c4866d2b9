"""Inclusion and consistency proofs from stored tiles, checked by an independently written verifier.

Known answers: every size 1..64 and every pair of sizes up to 64, sizes that
end inside a partial tile and exactly on tile boundaries (with and without the
tiles stored), the Certificate Transparency test vectors, and the proofs the
gateway serves for a real log on both backends.
"""

from __future__ import annotations

import json

import pytest

from gateway import cli
from gateway.core.model import EventDraft
from gateway.tlog import merkle
from gateway.tlog.proofcheck import root_from_inclusion, verify_consistency, verify_inclusion
from gateway.tlog.proofs import TILE, StoredTree, inner_node, new_nodes
from tests.conftest import Env
from tests.test_audit import CT_LEAVES, CT_ROOTS

H = bytes.fromhex


def tree(hashes: list[bytes], tiles: bool = True,
         inners: dict[tuple[int, int], bytes] | None = None) -> tuple[StoredTree, dict[tuple[int, int], bytes]]:
    """A stored tree over `hashes`: with tiles, the entries and each full tile's interior (into `inners`)."""
    stored: dict[tuple[int, int], bytes] = {}
    inner = {} if inners is None else inners

    def nodes(level: int, start: int, end: int) -> list[bytes]:
        out = []
        for i in range(start, end):
            if (level, i) not in stored:
                break
            out.append(stored[(level, i)])
        return out

    if tiles:
        for level, idx, h, tile_inner in new_nodes(0, len(hashes), lambda a, b: hashes[a:b], nodes):
            stored[(level, idx)] = h
            inner[(level - 1, idx)] = tile_inner
    return StoredTree(nodes, lambda a, b: hashes[a:b], lambda lv, i: inner.get((lv, i))), stored


LEAVES = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(66000)]


def test_every_size_and_pair_up_to_64() -> None:
    for n in range(1, 65):
        hashes = LEAVES[:n]
        t, _ = tree(hashes)
        root = merkle.root_of(hashes)
        assert t.root(n) == root
        for m in range(n):
            proof = t.inclusion(m, n)
            assert verify_inclusion(m, n, hashes[m], proof, root), (m, n)
            assert not verify_inclusion(m, n, LEAVES[n + 1], proof, root)  # another leaf
            if proof:
                assert not verify_inclusion(m, n, hashes[m], proof[:-1], root)  # a hash short
                assert not verify_inclusion(m, n, hashes[m], [*proof, proof[0]], root)  # a hash too many
        for first in range(1, n + 1):
            proof = t.consistency(first, n)
            first_root = merkle.root_of(hashes[:first])
            assert verify_consistency(first, n, first_root, root, proof), (first, n)
            if first < n:
                assert not verify_consistency(first, n, merkle.root_of(LEAVES[1:first + 1]), root, proof)
                assert not verify_consistency(first, n, first_root, merkle.root_of(LEAVES[1:n + 1]), proof)


@pytest.mark.parametrize("n", [255, 256, 257, 511, 512, 513, 1000, 65535, 65536, 65537])
def test_sizes_around_tile_boundaries_with_and_without_stored_tiles(n: int) -> None:
    hashes = LEAVES[:n]
    root = merkle.root_of(hashes)
    with_tiles, stored = tree(hashes)
    without, _ = tree(hashes, tiles=False) if n < 2000 else (with_tiles, {})
    # Entries are stored from level 1 up, one per completed block of 256^level leaves.
    assert len([k for k in stored if k[0] == 1]) == n // TILE and len([k for k in stored if k[0] == 2]) == n // TILE**2
    for t in (with_tiles, without):
        assert t.root(n) == root
        for m in {0, 1, 254, 255, 256, n // 2, n - 2, n - 1} - {n}:
            if 0 <= m < n:
                assert verify_inclusion(m, n, hashes[m], t.inclusion(m, n), root), (m, n)
        for first in {1, 255, 256, 257, n // 3, n - 1, n}:
            if 0 < first <= n:
                assert verify_consistency(first, n, merkle.root_of(hashes[:first]), root, t.consistency(first, n))


def test_a_full_tiles_stored_interior_is_what_proofs_read_and_each_node_is_its_subtree_root() -> None:
    n = 65536 + 300
    hashes = LEAVES[:n]
    inners: dict[tuple[int, int], bytes] = {}
    t, _ = tree(hashes, inners=inners)
    assert set(inners) == {(0, i) for i in range(n // TILE)} | {(1, 0)}
    assert all(len(v) == 254 * 32 for v in inners.values())
    for height, pos in ((1, 0), (1, 127), (3, 5), (7, 1)):  # tile 3 of level 0: leaves 768..1023
        span = 1 << height
        start = 3 * TILE + pos * span
        assert inner_node(inners[(0, 3)], height, pos) == merkle.root_of(hashes[start:start + span])
    root = merkle.root_of(hashes)
    m = 3 * TILE + 77
    assert verify_inclusion(m, n, hashes[m], t.inclusion(m, n), root)
    # Proofs really come from the interior: a flipped node there (and nowhere else) breaks this proof.
    bad = bytearray(inners[(0, 3)])
    bad[(128 + 64 + 8) * 32] ^= 1  # height 3, node 8: leaves 832..839, the sibling on the path of leaf 845
    inners[(0, 3)] = bytes(bad)
    assert not verify_inclusion(m, n, hashes[m], t.inclusion(m, n), root)
    # A tile without a stored interior (written before they were kept) is hashed from its entries.
    del inners[(0, 3)]
    assert verify_inclusion(m, n, hashes[m], t.inclusion(m, n), root)


def test_stored_entries_are_the_roots_an_independent_reader_computes() -> None:
    """Each stored entry is the RFC 6962 root of its block of leaves, by the recursive definition."""
    for n in (256 * 3, 256 * 3 + 17, 65536 + 300):
        _, stored = tree(LEAVES[:n])
        for (level, idx), h in stored.items():
            span = TILE ** level
            assert h == merkle.root_of(LEAVES[idx * span:(idx + 1) * span]), (level, idx)


def test_certificate_transparency_test_vectors() -> None:
    hashes = [merkle.leaf_hash(x) for x in CT_LEAVES]
    t, _ = tree(hashes)
    for n in range(1, 9):
        assert t.root(n).hex() == CT_ROOTS[n - 1]
    # Inclusion and consistency proofs published with the CT test data (RFC 6962 leaves).
    inclusion = {
        (0, 1): [],
        (0, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                 "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                 "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
        (5, 8): ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                 "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                 "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
        (2, 3): ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        (1, 5): ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                 "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                 "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"],
    }
    for (m, n), proof in inclusion.items():
        assert [h.hex() for h in t.inclusion(m, n)] == proof, (m, n)
        assert verify_inclusion(m, n, hashes[m], [H(h) for h in proof], H(CT_ROOTS[n - 1]))
    consistency = {
        (1, 1): [],
        (1, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                 "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                 "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
        (6, 8): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                 "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                 "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
        (2, 5): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                 "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"],
    }
    for (m, n), proof in consistency.items():
        assert [h.hex() for h in t.consistency(m, n)] == proof, (m, n)
        assert verify_consistency(m, n, H(CT_ROOTS[m - 1]), H(CT_ROOTS[n - 1]), [H(h) for h in proof])


def test_malformed_proofs_and_sizes_are_refused_by_the_verifier() -> None:
    assert root_from_inclusion(3, 3, LEAVES[0], []) is None
    assert root_from_inclusion(-1, 3, LEAVES[0], []) is None
    assert not verify_consistency(0, 3, b"", b"", [])
    assert not verify_consistency(4, 3, b"", b"", [])
    assert not verify_consistency(3, 3, LEAVES[0], LEAVES[0], [LEAVES[1]])  # equal sizes: no proof
    assert not verify_consistency(3, 5, merkle.root_of(LEAVES[:3]), merkle.root_of(LEAVES[:5]), [])


def _events(env: Env, n: int) -> None:
    drafts = [EventDraft(org="lender-a", method="Test", purpose="", case_id=f"C-{i % 7}", borrower_id="",
                         decision="allow", code="OK", rule="proof-test", time="2026-11-30T02:00:00.000000Z",
                         trace_id="0" * 32) for i in range(n)]
    for i in range(0, n, 100):
        env.gw.vault.audit.append(drafts[i:i + 100])


def test_the_gateway_serves_proofs_from_its_stored_tiles_that_verify(env: Env) -> None:
    _events(env, 600)  # past two full tiles (plus what set-up wrote)
    reg = env.client("regulator-1")
    size, root = env.gw.vault.audit.head()
    log = env.gw.vault.audit.reads()
    assert len(log.audit_nodes(1, 0, 10)) == size // TILE  # a level-1 entry per full block of 256 leaves
    leaves = log.audit_leaf_hash_range(0, size)
    interior = log.audit_tile_inner(0, 1)  # and each full tile's interior, the growing one's not yet
    assert interior is not None and interior[:32] == merkle.root_of(leaves[256:258])
    assert log.audit_tile_inner(0, size // TILE) is None
    for seq in (0, 1, 255, 256, 511, size // 2, size - 1):
        p = reg.inclusion_proof(seq)
        assert p.tree_size >= size and p.leaf_hash == leaves[seq]
        assert verify_inclusion(seq, p.tree_size, p.leaf_hash, p.proof, p.root)
        q = reg.inclusion_proof(seq, size)
        assert q.root == root and verify_inclusion(seq, size, leaves[seq], q.proof, root)
    c = reg.consistency_proof(300, size)
    assert c.to_root == root and c.from_root == merkle.root_of(leaves[:300])
    assert verify_consistency(300, size, c.from_root, c.to_root, c.proof)
    # Proof requests are audited (sizes only) and out-of-range ones refused with a stable code.
    from custos_client import CustosClientError

    for call in (lambda: reg.inclusion_proof(10**9), lambda: reg.inclusion_proof(5, 3),
                 lambda: reg.consistency_proof(0), lambda: reg.consistency_proof(10, 10**9)):
        with pytest.raises(CustosClientError) as info:
            call()
        assert info.value.code == "PROOF_OUT_OF_RANGE"
    with pytest.raises(CustosClientError) as info:
        env.client("agency-1").inclusion_proof(0)
    assert info.value.code == "WRONG_ORG_KIND"


def test_a_log_written_before_tiles_gets_them_at_the_next_open(env: Env) -> None:
    from gateway.transport.server import build

    _events(env, 700)
    size, root = env.gw.vault.audit.head()
    _clear_tiles(env)
    env.close()
    env.clients = {}
    env.gw = build(env.data, "127.0.0.1:0", clock=env.clock, workers=8)
    log = env.gw.vault.audit.reads()
    assert len(log.audit_nodes(1, 0, 100)) == size // TILE
    p = env.client("regulator-1").inclusion_proof(3, size)
    assert p.root == root and verify_inclusion(3, size, p.leaf_hash, p.proof, root)


def _clear_tiles(env: Env) -> None:
    """As a log written before the nodes were stored (they are derived data, not part of the log)."""
    vault = env.gw.vault
    if hasattr(vault, "pool"):
        with vault.pool.connection() as conn:
            conn.execute("DELETE FROM audit_nodes")
    else:
        vault.audit.tables.audit_conn.execute("DELETE FROM audit_nodes")


def test_audit_prove_and_consistency_cli(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    _events(env, 40)
    argv = ["--gateway", env.addr, "--identity", str(env.identity("regulator-1")), "--json"]
    assert cli.main(["audit", "prove", "7", *argv]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["index"] == 7 and set(doc) == {"index", "tree_size", "leaf_hash", "root", "proof"}
    assert cli.main(["audit", "consistency", "--from", "5", "--to", "30", *argv]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["from"] == 5 and doc["to"] == 30 and doc["proof"]
    assert cli.main(["audit", "prove", "-1", *argv]) != 0
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "INVALID_ARGUMENT"


def test_a_gap_in_the_stored_nodes_costs_time_never_a_wrong_proof_or_a_failed_append() -> None:
    hashes = LEAVES[:60000]
    t, stored = tree(hashes)
    del stored[(1, 7)]  # lost (derived data): everything still verifies, computed from the leaves
    root = merkle.root_of(hashes)
    for m in (7 * 256 + 3, 100, 59999):
        assert verify_inclusion(m, len(hashes), hashes[m], t.inclusion(m, len(hashes)), root)
    more = LEAVES[:65536]
    grown = {(lv, i): h for lv, i, h, _ in new_nodes(len(hashes), len(more), lambda a, b: more[a:b],
                                                   lambda lv, a, b: _prefix(stored, lv, a, b))}
    assert grown[(2, 0)] == merkle.root_of(more)  # the level-2 entry is made despite the gap below it


def _prefix(stored: dict[tuple[int, int], bytes], level: int, start: int, end: int) -> list[bytes]:
    out = []
    for i in range(start, end):
        if (level, i) not in stored:
            break
        out.append(stored[(level, i)])
    return out


def test_the_node_cache_keeps_complete_ranges_only_so_a_growing_log_proves_right() -> None:
    from gateway.tlog.proofs import NodeCache

    hashes: list[bytes] = []
    stored: dict[tuple[int, int], bytes] = {}
    reads: list[tuple[int, int, int]] = []

    def nodes(level: int, start: int, end: int) -> list[bytes]:
        reads.append((level, start, end))
        return _prefix(stored, level, start, end)

    def leaves(start: int, end: int) -> list[bytes]:
        reads.append((0, start, end))
        return hashes[start:end]

    cache = NodeCache(entries=64)
    for size in (300, 301, 700, 1000, 70000, 70001):
        old = len(hashes)
        hashes.extend(LEAVES[old:size] if size <= len(LEAVES) else [])
        for level, idx, h, _ in new_nodes(old, len(hashes), lambda a, b: hashes[a:b], lambda lv, a, b: _prefix(stored, lv, a, b)):
            stored[(level, idx)] = h
        n = len(hashes)
        root = merkle.root_of(hashes)
        for m in (0, n // 2, n - 1):
            tree = cache.tree(nodes, leaves)
            assert verify_inclusion(m, n, hashes[m], tree.inclusion(m, n), root), (m, n)
        first = max(1, n // 3)
        tree = cache.tree(nodes, leaves)
        assert verify_consistency(first, n, merkle.root_of(hashes[:first]), root, tree.consistency(first, n))
    before = len(reads)
    tree = cache.tree(nodes, leaves)
    tree.inclusion(0, len(hashes))
    assert len(reads) - before <= 2  # the left subtrees come from the cache; only the growing tail is read


def test_a_checkpoint_is_published_at_least_once_a_second_while_events_arrive(env: Env) -> None:
    import time

    from gateway.tlog.merkle import parse_verifier_key, verify_checkpoint

    vkey = parse_verifier_key((env.data / "audit.vkey").read_text())
    log = env.gw.vault.audit.reads()
    for _ in range(3):
        _events(env, 50)
        size = env.gw.vault.audit.head()[0]
        deadline = time.monotonic() + 3.0
        latest = log.latest_checkpoint()
        while (latest is None or latest[0] < size) and time.monotonic() < deadline:
            time.sleep(0.1)
            latest = log.latest_checkpoint()
        assert latest is not None and latest[0] == size
        cp = verify_checkpoint(latest[1], vkey)  # a signed note with the origin init fixed
        assert cp.size == size and cp.origin == json.loads((env.data / "config.json").read_text())["origin"]
    time.sleep(1.5)
    assert log.latest_checkpoint() == latest  # nothing new arrived: nothing new published
    # Served by size to a regulator (a witness catching up), the same note; a size never published is not found.
    from custos_client import CustosClientError

    reg = env.client("regulator-1")
    assert reg.checkpoint(latest[0]) == latest[1]
    with pytest.raises(CustosClientError) as info:
        reg.checkpoint(latest[0] + 10**6)
    assert info.value.code == "CHECKPOINT_NOT_FOUND"
