"""Files the CLI writes with personal data in them (issue 22, finding 2).

`lender subject-export`, `cases pull --out`, `bureau pull --out` and `packet
get` used to write through whatever sat at `<out>.part` (O_CREAT|O_TRUNC): a
stale 0644 `.part` left the PI file 0644, a `.part` symlink sent the PI where
it pointed, and an existing --out was overwritten silently. Now: a new file,
0600, never through a link; an existing --out refused with OUTPUT_EXISTS
(before anything is fetched) unless --force, which replaces a link at --out
rather than the file it points to.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway import cli, packets
from gateway.tlog import tiles
from tests.conftest import Env

STALE = b"stale bytes of an earlier run\n"
VICTIM = b"someone else's file\n"


@dataclass(frozen=True)
class Command:
    org: str
    argv: tuple[str, ...]
    check: Callable[[Env, bytes], object]  # raises unless the bytes are what the command writes


def _json(env: Env, data: bytes) -> object:
    return json.loads(data)


def _packet(env: Env, data: bytes) -> object:
    return packets.verify(data, (env.data / "packet.vkey").read_text())


COMMANDS = {
    "subject-export": Command("lender-a", ("lender", "subject-export", "B-1"), _json),
    "cases-pull": Command("agency-1", ("cases", "pull", "--purpose", "collection"), _json),
    "bureau-pull": Command("bureau-1", ("bureau", "pull"), _json),
    "packet-get": Command("lawfirm-1", ("packet", "get", "C-1"), _packet),
}


def run(env: Env, name: str, out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, object]]:
    cmd = COMMANDS[name]
    capsys.readouterr()
    rc = cli.main([*cmd.argv, "--out", str(out), "--gateway", env.addr, "--identity", str(env.identity(cmd.org)),
                   "--json", *extra])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return rc, json.loads(captured.out)


def assert_private(env: Env, name: str, out: Path) -> None:
    """`out` is a regular file of ours (not a link), owner-only, holding the command's whole output."""
    st = os.lstat(out)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    COMMANDS[name].check(env, out.read_bytes())


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part") and not p.name.startswith("out."))


@pytest.mark.parametrize("name", COMMANDS)
def test_a_stale_world_readable_part_file_is_neither_used_nor_made_the_output(
        escalated: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    out = tmp_path / "out.json"
    part = tmp_path / "out.json.part"
    part.write_bytes(STALE)
    part.chmod(0o644)
    rc, _ = run(escalated, name, out, capsys)
    assert rc == 0
    assert_private(escalated, name, out)
    assert part.read_bytes() == STALE  # not ours: left as it was
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", COMMANDS)
def test_a_part_symlink_does_not_send_the_data_elsewhere(
        escalated: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / "victim.txt"
    victim.write_bytes(VICTIM)
    victim.chmod(0o644)
    out = tmp_path / "out.json"
    (tmp_path / "out.json.part").symlink_to(victim)
    rc, _ = run(escalated, name, out, capsys)
    assert rc == 0
    assert victim.read_bytes() == VICTIM and stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert_private(escalated, name, out)


@pytest.mark.parametrize("name", COMMANDS)
def test_an_existing_out_is_refused_without_force_and_replaced_with_it(
        escalated: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    out = tmp_path / "out.json"
    out.write_bytes(STALE)
    out.chmod(0o644)
    before = len(escalated.events(org=COMMANDS[name].org))
    rc, doc = run(escalated, name, out, capsys)
    assert rc == 1 and doc["error"]["code"] == "OUTPUT_EXISTS"  # type: ignore[index]
    assert out.read_bytes() == STALE
    # Refused before anything was asked of the gateway: no data released, so no audit event.
    assert len(escalated.events(org=COMMANDS[name].org)) == before
    rc, doc = run(escalated, name, out, capsys, "--force")
    assert rc == 0 and doc["out"] == str(out)
    assert_private(escalated, name, out)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", COMMANDS)
def test_force_replaces_a_symlink_at_out_not_the_file_it_points_to(
        escalated: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(VICTIM)
    victim.chmod(0o644)
    out = tmp_path / "out.json"
    out.symlink_to(victim)
    rc, doc = run(escalated, name, out, capsys)
    assert rc == 1 and doc["error"]["code"] == "OUTPUT_EXISTS"  # type: ignore[index]
    rc, _ = run(escalated, name, out, capsys, "--force")
    assert rc == 0
    assert victim.read_bytes() == VICTIM and stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert_private(escalated, name, out)


def test_audit_export_leaves_a_stale_part_alone(seeded: Env, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The bundle is built in a directory of its own with a random name: whatever sits at OUT.part (here a link
    to another directory with someone's file in it) is neither followed nor removed."""
    work = tmp_path / "work"
    elsewhere = work / "elsewhere"
    elsewhere.mkdir(parents=True)
    (elsewhere / "keep.txt").write_bytes(VICTIM)
    out = work / "bundle"
    (work / "bundle.part").symlink_to(elsewhere)
    argv = ["--gateway", seeded.addr, "--identity", str(seeded.identity("regulator-1")), "--json"]
    assert cli.main(["audit", "export", "--out", str(out), *argv]) == 0
    size = json.loads(capsys.readouterr().out)["size"]
    assert [p.name for p in elsewhere.iterdir()] == ["keep.txt"] and (elsewhere / "keep.txt").read_bytes() == VICTIM
    assert (work / "bundle.part").is_symlink()
    assert tiles.verify_bundle(out, (out / "audit.vkey").read_text()).size == size
    assert sorted(p.name for p in work.iterdir()) == ["bundle", "bundle.part", "elsewhere"]
