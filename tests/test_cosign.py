"""Cosigned checkpoints (C2SP tlog-cosignature): a regulator's signature that makes a split view evidence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from custos_client import CustosClientError

from gateway import cli
from gateway.tlog.cosign import Cosigner, verify_cosignature
from tests.conftest import Env
from tests.test_audit import _verify, rewrite_history


def _cosign(env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    key = tmp_path / "witness.key"
    if not key.exists():
        assert cli.main(["audit", "cosigner-key", "--name", "regulator.example/witness", "--out", str(key)]) == 0
        capsys.readouterr()
        assert key.stat().st_mode & 0o777 == 0o600
    argv = ["--gateway", env.addr, "--identity", str(env.identity("regulator-1")), "--json"]
    assert cli.main(["audit", "cosign", "--key", str(key), "--state", str(tmp_path / "state.json"), *argv]) == 0
    return dict(json.loads(capsys.readouterr().out))


def test_a_verified_checkpoint_is_cosigned_stored_and_served(seeded: Env, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert _verify(seeded, tmp_path)[0] == 0
    doc = _cosign(seeded, tmp_path, capsys)
    state = json.loads((tmp_path / "state.json").read_text())
    assert doc["cosigned"] == state["size"] and doc["cosigner"] == "regulator.example/witness"
    served = seeded.client("regulator-1").cosigned()
    assert len(served) == 1 and served[0].startswith(state["checkpoint"].rstrip("\n"))
    line = served[0].rstrip("\n").splitlines()[-1]
    vkey = (tmp_path / "witness.key.vkey").read_text()
    assert verify_cosignature(state["checkpoint"], line, vkey) > 0
    # The log grows honestly: later verifications pass, with and without a state, and still see the cosigned one.
    seeded.client("agency-1").get_case("C-1", "collection")
    assert _verify(seeded, tmp_path)[0] == 0
    assert _verify(seeded, tmp_path, None)[0] == 0
    events = [e for e in seeded.events() if e.method == "Cosign"]
    assert [e.data["rule"] for e in events] == [f"supervision.cosign:size={state['size']}"]


def test_bad_cosignatures_are_refused(seeded: Env, tmp_path: Path) -> None:
    reg = seeded.client("regulator-1")
    note = reg.checkpoint()
    signer = Cosigner.generate("regulator.example/w")
    good = signer.cosign(note, 1_700_000_000)
    forged = note.replace(note.split("\n")[2], "A" * 43 + "=")  # another root: not signed by this log
    other = Cosigner.generate("regulator.example/other")
    for args in ((forged, signer.cosign(forged, 1), signer.vkey()), (note, good, other.vkey()),
                 (note, good[:-4] + "AAA=", signer.vkey()), (note, good, "not a key")):
        with pytest.raises(CustosClientError) as info:
            reg.cosign(*args)
        assert info.value.code == "COSIGNATURE_INVALID"
    with pytest.raises(CustosClientError) as info:
        seeded.client("agency-1").cosign(note, good, signer.vkey())
    assert info.value.code == "WRONG_ORG_KIND"
    assert reg.cosign(note, good, signer.vkey()) == int(note.split("\n")[1])


def test_a_history_rewritten_after_a_cosignature_is_a_split_view_even_to_a_new_verifier(
        seeded: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _verify(seeded, tmp_path)[0] == 0
    _cosign(seeded, tmp_path, capsys)
    # The operator rewrites event 3 and the tree head, and the gateway signs the forged root with the real key.
    rewrite_history(seeded, 3)
    # A verifier that never saw this log before has no state: the cosigned checkpoint is its evidence.
    rc, _, err = _verify(seeded, tmp_path, None)
    assert rc != 0 and "split view" in err, err
