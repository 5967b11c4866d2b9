"""gateway/tlog/tiles.py: C2SP tlog-tiles paths, and a bundle written from events then checked with the key alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.tlog.merkle import Frontier, canonical_json, leaf_hash, sign_checkpoint, verifier_key
from gateway.tlog.tiles import TILE, BundleError, encode_index, tile_path, verify_bundle, write_bundle


@pytest.mark.parametrize(("n", "path"), [
    (0, "000"), (7, "007"), (999, "999"), (1000, "x001/000"), (1234067, "x001/x234/067"),
])
def test_indexes_are_three_digit_path_elements(n: int, path: str) -> None:
    assert encode_index(n) == path


def test_tile_paths_full_and_partial() -> None:
    assert tile_path(0, 0) == "tile/0/000"
    assert tile_path(1, 1234, 5) == "tile/1/x001/234.p/5"
    assert tile_path("entries", 3, TILE) == "tile/entries/003"
    assert tile_path("entries", 3, 17) == "tile/entries/003.p/17"


def test_a_bundle_of_synthetic_leaves_is_written_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.tlog.tiles as tiles

    monkeypatch.setattr(tiles, "_check_event", lambda entry, seq: None)  # plain leaves, not audit events
    leaves = [canonical_json({"n": i}) for i in range(TILE + 3)]
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf_hash(leaf))
    key = Ed25519PrivateKey.generate()
    origin = "custos.test/log"
    note = sign_checkpoint(origin, len(leaves), frontier.root(), key)
    vkey = verifier_key(origin, key.public_key())
    out = tmp_path / "bundle"
    assert write_bundle(out, note, vkey, iter(leaves)) == (len(leaves), frontier.root())
    assert len((out / "tile/0/000").read_bytes()) == TILE * 32
    assert len((out / "tile/0/001.p/3").read_bytes()) == 3 * 32
    assert (out / "tile/1/000.p/1").is_file()
    assert (out / "events.jsonl").read_bytes() == b"".join(leaf + b"\n" for leaf in leaves)
    check = verify_bundle(out, vkey)
    assert (check.size, check.root, check.origin) == (len(leaves), frontier.root(), origin)
    with pytest.raises(BundleError, match="exists"):
        write_bundle(out, note, vkey, iter(leaves))
    # One changed leaf hash in a tile is found.
    tile = out / "tile/0/001.p/3"
    tile.write_bytes(b"\x00" * 32 + tile.read_bytes()[32:])
    with pytest.raises(BundleError, match="event 256 altered"):
        verify_bundle(out, vkey)


def test_leaves_that_do_not_match_the_checkpoint_leave_nothing_behind(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    leaves = [canonical_json({"n": i}) for i in range(3)]
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf_hash(leaf))
    note = sign_checkpoint("o", 3, frontier.root(), key)
    vkey = verifier_key("o", key.public_key())
    with pytest.raises(BundleError, match="covers 3 events but 2"):
        write_bundle(tmp_path / "b", note, vkey, iter(leaves[:2]))
    with pytest.raises(BundleError, match="do not hash to the checkpoint's root"):
        write_bundle(tmp_path / "b", note, vkey, iter([leaves[1], leaves[0], leaves[2]]))
    assert list(tmp_path.iterdir()) == []
