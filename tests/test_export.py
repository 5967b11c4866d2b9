"""`custos audit export` (C2SP tlog-tiles, to the byte) and `custos audit verify --bundle`, offline."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from gateway import cli
from gateway.core.model import EventDraft
from gateway.tlog import merkle, tiles
from tests.conftest import Env


def _fill(env: Env, size: int) -> None:
    """Events until the log holds exactly `size` (the export's own query comes after its checkpoint)."""
    now = env.gw.vault.audit.head()[0]
    drafts = [EventDraft(org="lender-a", method="Test", purpose="", case_id=f"C-{i % 7}", borrower_id="",
                         decision="allow", code="OK", rule="export-test", time="2026-11-30T02:00:00.000000Z",
                         trace_id="0" * 32) for i in range(size - now)]
    for i in range(0, len(drafts), 200):
        env.gw.vault.audit.append(drafts[i:i + 200])
    assert env.gw.vault.audit.head()[0] == size


def export(env: Env, out: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    argv = ["--gateway", env.addr, "--identity", str(env.identity("regulator-1")), "--json"]
    assert cli.main(["audit", "export", "--out", str(out), *argv]) == 0
    return dict(json.loads(capsys.readouterr().out))


def verify(bundle: Path, key: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    rc = cli.main(["audit", "verify", "--bundle", str(bundle), "--key", str(key), "--json"])
    return rc, dict(json.loads(capsys.readouterr().out))


def test_index_encoding_and_paths_follow_the_spec() -> None:
    assert tiles.encode_index(0) == "000"
    assert tiles.encode_index(1234067) == "x001/x234/067"
    assert tiles.encode_index(1000) == "x001/000"
    assert tiles.tile_path(0, 5) == "tile/0/005"
    assert tiles.tile_path(1, 0, 17) == "tile/1/000.p/17"
    assert tiles.tile_path("entries", 273, 112) == "tile/entries/273.p/112"


@pytest.mark.parametrize("size", [600, 512])  # ends inside a partial tile; exactly on a tile boundary
def test_an_export_is_a_tlog_tiles_tree_an_independent_reader_gets_the_root_from(
        env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str], size: int) -> None:
    _fill(env, size)
    out = tmp_path / "bundle"
    doc = export(env, out, capsys)
    assert doc["size"] == size
    note = (out / "checkpoint").read_text()
    origin, n, root_b64 = note.split("\n")[:3]
    assert int(n) == size and origin.startswith("custos.invalid/log/")
    # An independent reader: only the spec. Level-0 tiles are the leaf hashes, the partial one last.
    full, width = divmod(size, 256)
    level0 = b"".join((out / f"tile/0/{i:03d}").read_bytes() for i in range(full))
    assert all(len((out / f"tile/0/{i:03d}").read_bytes()) == 8192 for i in range(full))
    if width:
        level0 += (out / f"tile/0/{full:03d}.p/{width}").read_bytes()
    else:
        assert not list((out / "tile/0").glob("*.p"))  # no empty partial tile
    hashes = [level0[i:i + 32] for i in range(0, len(level0), 32)]
    assert merkle.root_of(hashes) == base64.b64decode(root_b64)
    # Level 1: one hash per full level-0 tile, a partial tile of that width.
    level1 = (out / f"tile/1/000.p/{full}").read_bytes()
    assert level1 == b"".join(merkle.root_of(hashes[i * 256:(i + 1) * 256]) for i in range(full))
    # Entry bundles: uint16 big-endian length, then the leaf; the same bytes as events.jsonl, in order.
    lines = (out / "events.jsonl").read_bytes().splitlines()
    data = b"".join((out / f"tile/entries/{i:03d}").read_bytes() for i in range(full))
    if width:
        data += (out / f"tile/entries/{full:03d}.p/{width}").read_bytes()
    entries, pos = [], 0
    while pos < len(data):
        n_bytes = int.from_bytes(data[pos:pos + 2], "big")
        entries.append(data[pos + 2:pos + 2 + n_bytes])
        pos += 2 + n_bytes
    assert entries == lines and len(lines) == size
    assert [merkle.leaf_hash(e) for e in entries] == hashes
    assert (out / "audit.vkey").read_text().strip() == (env.data / "audit.vkey").read_text().strip()
    rc, doc = verify(out, env.data / "audit.vkey", capsys)
    assert rc == 0 and doc["verified"] and doc["size"] == size


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_tampered_bundle_fails_offline_and_says_where(env: Env, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    _fill(env, 700)
    good = tmp_path / "good"
    export(env, good, capsys)
    key = env.data / "audit.vkey"
    cases = {
        "entry": (lambda b: _flip(b / "tile/entries/001", 40), "altered"),
        "tile0": (lambda b: _flip(b / "tile/0/000", 5), "altered"),
        "tile1": (lambda b: _flip(b / "tile/1/000.p/2", 3), "does not match the tiles below"),
        "events": (lambda b: (b / "events.jsonl").write_bytes(
            b"\n".join((b / "events.jsonl").read_bytes().splitlines()[1:]) + b"\n"), "differs"),
        "missing": (lambda b: (b / "tile/entries/002.p/188").unlink(), "missing"),
        "checkpoint": (lambda b: (b / "checkpoint").write_text(
            (b / "checkpoint").read_text().replace("\n700\n", "\n699\n")), "does not verify"),
    }
    for name, (tamper, message) in cases.items():
        bundle = tmp_path / name
        shutil.copytree(good, bundle)
        tamper(bundle)
        rc, doc = verify(bundle, key, capsys)
        assert rc != 0, name
        assert doc["error"]["code"] == "AUDIT_VERIFY_FAILED" and message in doc["error"]["message"], (name, doc)
    # Another key: the checkpoint does not verify.
    other = tmp_path / "other.vkey"
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    origin = (good / "checkpoint").read_text().split("\n")[0]
    other.write_text(merkle.verifier_key(origin, Ed25519PrivateKey.generate().public_key()) + "\n")
    rc, doc = verify(good, other, capsys)
    assert rc != 0 and "does not verify" in doc["error"]["message"]
    assert verify(good, key, capsys)[0] == 0
    # An existing directory is never overwritten.
    argv = ["--gateway", env.addr, "--identity", str(env.identity("regulator-1")), "--json"]
    assert cli.main(["audit", "export", "--out", str(good), *argv]) != 0
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "INVALID_ARGUMENT"


@pytest.mark.parametrize("size", [700, 512])
def test_an_independent_verifier_accepts_the_export_and_refuses_a_tampered_one(
        env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str], size: int) -> None:
    """tests/tlogcheck.py, written from the C2SP specs with no code of ours, checks what our verifier checks."""
    from tests import tlogcheck

    _fill(env, size)
    good = tmp_path / "good"
    doc = export(env, good, capsys)
    vkey = (env.data / "audit.vkey").read_text()
    assert tlogcheck.verify(good, vkey) == (size, base64.b64decode(str(doc["root"])))
    assert verify(good, env.data / "audit.vkey", capsys)[0] == 0  # and our own verifier agrees
    full, width = divmod(size, 256)
    last = f"{full:03d}.p/{width}" if width else f"{full - 1:03d}"
    cases = {
        "entry": lambda b: _flip(b / "tile/entries/001", 40),
        "tile0": lambda b: _flip(b / "tile/0/000", 5),
        "tile1": lambda b: _flip(b / f"tile/1/000.p/{full}", 3),
        "missing": lambda b: (b / f"tile/entries/{last}").unlink(),
        "checkpoint": lambda b: (b / "checkpoint").write_text(
            (b / "checkpoint").read_text().replace(f"\n{size}\n", f"\n{size - 1}\n")),
    }
    for name, tamper in cases.items():
        bundle = tmp_path / name
        shutil.copytree(good, bundle)
        tamper(bundle)
        with pytest.raises(tlogcheck.BadBundle):
            tlogcheck.verify(bundle, vkey)
        assert verify(bundle, env.data / "audit.vkey", capsys)[0] != 0, name
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    origin = vkey.split("+", 1)[0]
    with pytest.raises(tlogcheck.BadBundle):
        tlogcheck.verify(good, merkle.verifier_key(origin, Ed25519PrivateKey.generate().public_key()))
