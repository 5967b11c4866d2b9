"""The CLI's manners (issue 27): --version, completion scripts, exit statuses a script can tell apart, --json for
every output (usage errors included) and no JSON without it, and `audit checkpoint` with its cosignatures."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway import cli
from gateway.cli import completion
from gateway.cli.output import (
    EXIT_ERROR,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    EXIT_VERIFY_FAILED,
    exit_status,
)
from gateway.cli.parser import build_parser
from tests.conftest import Env
from tests.test_audit import _verify
from tests.test_cli import Run, assert_error, conn
from tests.test_cosign import _cosign


@pytest.fixture(autouse=True)
def _no_env_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CUSTOS_GATEWAY", "CUSTOS_IDENTITY", "CUSTOS_AGENT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(capsys)


def _no_json(out: str) -> None:
    """Text output: neither the whole of it nor any line of it is a JSON object or array."""
    assert out.strip(), "the command printed nothing"
    for text in (out, *out.splitlines()):
        try:
            value = json.loads(text)
        except ValueError:
            continue
        assert not isinstance(value, (dict, list)), f"JSON printed without --json: {out!r}"


# ------------------------------------------------------------------ --version


def test_version_names_the_package_and_the_api(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"custos {version('custos')} (proto custos.v1)\n"
    with pytest.raises(SystemExit) as info:
        cli.main(["--version", "--json"])
    assert info.value.code == 0
    assert json.loads(capsys.readouterr().out) == {"version": version("custos"), "proto": "custos.v1"}


# ------------------------------------------------------------------ usage errors


@pytest.mark.parametrize("argv", [
    ["--json", "no-such-command"],
    ["cases", "get", "--json"],  # CASE and --purpose missing
    ["bureau", "pull", "--format", "cdf", "--json"],
    ["audit", "query", "--limit", "many", "--json"],
    ["cases", "list", "--no-such-flag", "--json"],
])
def test_a_usage_error_is_a_json_document_with_json_and_exits_2(run: Run, argv: list[str]) -> None:
    rc, out, err = run(*argv)
    assert rc == EXIT_USAGE == 2
    doc = json.loads(out)
    assert set(doc) == {"error"} and doc["error"]["code"] == "USAGE" and doc["error"]["message"]
    assert err.startswith("usage: custos") and "error: USAGE: " in err


def test_a_usage_error_without_json_prints_nothing_on_stdout(run: Run) -> None:
    rc, out, err = run("cases", "get")
    assert rc == EXIT_USAGE and out == ""
    assert "error: USAGE: the following arguments are required: case, --purpose" in err


# ------------------------------------------------------------------ exit statuses, one per case


def test_exit_status_table() -> None:
    assert exit_status("USAGE") == exit_status("INVALID_ARGUMENT") == EXIT_USAGE
    assert exit_status("INVALID_CASE_ID", "INVALID_ARGUMENT") == EXIT_REFUSED  # the gateway's, not ours
    assert exit_status("NO_MANDATE", "PERMISSION_DENIED") == EXIT_REFUSED
    assert exit_status("RATE_LIMITED", "RESOURCE_EXHAUSTED") == EXIT_REFUSED
    assert exit_status("UNAVAILABLE", "UNAVAILABLE") == EXIT_UNAVAILABLE
    assert exit_status("SHUTTING_DOWN", "UNAVAILABLE") == EXIT_UNAVAILABLE
    assert exit_status("DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED") == EXIT_UNAVAILABLE
    assert exit_status("UNAVAILABLE") == EXIT_UNAVAILABLE  # a stream that ended early, said by the client
    for code in ("AUDIT_VERIFY_FAILED", "STATS_MISMATCH", "REPORT_MISMATCH", "PACKET_INVALID",
                 "PACKET_RECIPIENT_MISMATCH"):
        assert exit_status(code) == exit_status(code, "FAILED_PRECONDITION") == EXIT_VERIFY_FAILED
    assert exit_status("DATA_DIR_INVALID") == exit_status("INTERNAL") == EXIT_ERROR
    assert exit_status("KEYS_UNAVAILABLE") == EXIT_ERROR  # a local data directory's, not a gateway's


def test_exit_2_for_the_command_lines_own_mistake(run: Run) -> None:
    rc, doc, err = run.json("cases", "list")  # no --gateway, no --identity
    assert_error(rc, doc, err, "INVALID_ARGUMENT")
    assert rc == EXIT_USAGE


def test_exit_3_when_the_gateway_refuses_with_a_stable_code(seeded: Env, run: Run) -> None:
    rc, doc, err = run.json("cases", "get", "C-1", "--purpose", "collection", *conn(seeded, "agency-2"))
    assert_error(rc, doc, err, "NO_MANDATE")
    assert rc == EXIT_REFUSED
    rc, doc, err = run.json("cases", "get", "C" * 10_000, "--purpose", "servicing", *conn(seeded, "lender-a"))
    assert_error(rc, doc, err, "INVALID_CASE_ID")  # bad input the gateway refuses: a refusal, not a usage error
    assert rc == EXIT_REFUSED


def test_exit_4_when_the_gateway_is_unreachable(env: Env, run: Run) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, doc, err = run.json("cases", "list", "--gateway", f"127.0.0.1:{port}", "--identity",
                            str(env.identity("agency-1")))
    assert_error(rc, doc, err, "UNAVAILABLE")
    assert rc == EXIT_UNAVAILABLE


def test_exit_5_when_a_verification_fails(seeded: Env, run: Run, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert cli.main(["init", str(other)]) == 0
    rc, doc, err = run.json("audit", "verify", "--key", str(other / "audit.vkey"), *conn(seeded, "regulator-1"))
    assert_error(rc, doc, err, "AUDIT_VERIFY_FAILED")
    assert rc == EXIT_VERIFY_FAILED
    packet = tmp_path / "packet.pdf"
    packet.write_bytes(b"%PDF-1.7\nnot a packet\n")
    rc, doc, err = run.json("packet", "verify", str(packet), "--key", str(seeded.data / "packet.vkey"))
    assert_error(rc, doc, err, "PACKET_INVALID")
    assert rc == EXIT_VERIFY_FAILED


def test_exit_1_for_any_other_failure(run: Run, tmp_path: Path) -> None:
    rc, doc, _ = run.json("keys", "status", str(tmp_path / "nowhere"))
    assert rc == EXIT_ERROR and doc["error"]["code"] == "DATA_DIR_INVALID", doc


def test_exit_statuses_of_the_installed_script(tmp_path: Path) -> None:
    """Through the `custos` entry point as a shell script sees it."""
    exe = shutil.which("custos", path=str(Path(sys.executable).parent))
    assert exe is not None
    usage = subprocess.run([exe, "--json", "no-such-command"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and json.loads(usage.stdout)["error"]["code"] == "USAGE"
    other = subprocess.run([exe, "keys", "status", str(tmp_path / "nowhere")], capture_output=True, text=True,
                           timeout=60)
    assert other.returncode == 1 and other.stdout == "" and "Traceback" not in other.stderr


# ------------------------------------------------------------------ completion


def _paths() -> dict[str, completion.Node]:
    return completion.tree(build_parser())


def test_the_tree_holds_every_command_and_flag() -> None:
    nodes = _paths()
    assert "lender plan accept" in nodes and "audit checkpoint" in nodes and "completion" in nodes
    assert set(nodes["completion"].values) == {"bash", "zsh", "fish"}
    assert {"--json", "--gateway", "--identity", "--agent", "--size"} <= set(nodes["audit checkpoint"].flags)
    assert nodes["bureau pull"].flag_values["--format"] == ["json", "metro2"]
    assert "--reuse-port" not in nodes["serve"].flags  # internal flags are not offered
    assert "--version" in nodes[""].flags and "--version" in nodes["keys retire"].flags


@pytest.mark.parametrize("shell", completion.SHELLS)
def test_each_script_names_every_command_and_flag(run: Run, shell: str) -> None:
    rc, text, _ = run("completion", shell)
    assert rc == 0
    for path, node in _paths().items():
        assert f"{path}" in text
        for word in node.subs + node.flags + node.values:
            assert word in text, (shell, path, word)
    rc, doc, _ = run.json("completion", shell)
    assert rc == 0 and doc["shell"] == shell and doc["script"].rstrip("\n") == text.rstrip("\n")


def _script(shell: str) -> str:
    return completion.script(shell, build_parser())


def test_the_bash_script_is_valid_and_completes(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    script = tmp_path / "custos.bash"
    script.write_text(_script("bash"))
    assert subprocess.run([bash, "-n", str(script)], capture_output=True, timeout=30).returncode == 0
    probe = f"""source {script}
t() {{ COMP_WORDS=("$@"); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); COMPREPLY=(); _custos; echo "${{COMPREPLY[*]}}"; }}
t custos ""
t custos le
t custos lender plan ""
t custos --json audit check
t custos bureau pull --format ""
t custos completion ""
t custos audit checkpoint --s
"""
    out = subprocess.run([bash, "-c", probe], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert {"init", "lender", "audit", "completion", "--version"} <= set(lines[0].split())
    assert lines[1:] == ["lender", "accept reject --help", "checkpoint", "json metro2", "bash zsh fish --help --json",
                         "--size"]


def test_the_zsh_script_is_valid_where_zsh_exists(tmp_path: Path) -> None:
    text = _script("zsh")
    assert text.startswith("#compdef custos\n") and "compdef _custos custos" in text and "compadd" in text
    zsh = shutil.which("zsh")
    if zsh is None:  # .ci/run installs it: under CI a missing shell is a failure, never a skip
        assert os.environ.get("CI") != "true", "zsh is missing (Debian package zsh; .ci/run installs it)"
        pytest.skip("zsh is not installed: its structure is checked above, its syntax is not")
    script = tmp_path / "_custos"
    script.write_text(text)
    assert subprocess.run([zsh, "-n", str(script)], capture_output=True, timeout=30).returncode == 0


def test_the_fish_script_is_valid_where_fish_exists(tmp_path: Path) -> None:
    text = _script("fish")
    assert "complete -c custos -a '(__custos_complete)'" in text
    assert text.count("\nfunction ") + text.startswith("function ") == 4
    assert text.count("\nend\n") == 4  # every function closed (each switch and if inside closes on its own line)
    fish = shutil.which("fish")
    if fish is None:  # .ci/run installs it: under CI a missing shell is a failure, never a skip
        assert os.environ.get("CI") != "true", "fish is missing (Debian package fish; .ci/run installs it)"
        pytest.skip("fish is not installed: its structure is checked above, its syntax is not")
    script = tmp_path / "custos.fish"
    script.write_text(text)
    assert subprocess.run([fish, "--no-execute", str(script)], capture_output=True, timeout=30).returncode == 0


# ------------------------------------------------------------------ no JSON without --json


def test_contact_open_and_outcome_print_text_without_json(seeded: Env, run: Run) -> None:
    rc, out, _ = run("contact", "open", "C-1", "--channel", "call", *conn(seeded, "agency-1"))
    assert rc == 0
    _no_json(out)
    assert out.startswith("contact ") and " on C-1: call to borrower at +86" in out
    contact_id = out.split()[1]
    rc, out, _ = run("contact", "outcome", contact_id, "--result", "promise_to_pay", "--amount", "100.00",
                     "--on", "2026-12-05", *conn(seeded, "agency-1"))
    assert rc == 0
    _no_json(out)
    assert "result: promise_to_pay: 100.00 on 2026-12-05" in out
    rc, doc, _ = run.json("contact", "open", "C-1", "--channel", "sms", *conn(seeded, "agency-1"))
    assert rc == 0 and doc["channel"] == "sms"  # and with --json, the document


def test_no_command_prints_json_without_json(seeded: Env, run: Run) -> None:
    """A sweep over the commands whose text used to be their JSON, and those with JSON inside their text."""
    seeded.client("agency-1").get_case("C-1", "collection")
    lender, reg = conn(seeded, "lender-a"), conn(seeded, "regulator-1")
    sweep: list[list[Any]] = [
        ["lender", "stage", "C-1", "letter", *lender],
        ["lender", "flag", "C-1", "--legal-hold", *lender],
        ["lender", "assign", "C-3", "--to", "agency-2", "--purpose", "collection", "--until", "2026-12-31",
         "--agreement", "AG-1", "--pia", "PIA-1", *lender],
        ["lender", "recall", "C-3", "--from", "agency-2", *lender],
        ["cases", "get", "C-1", "--purpose", "servicing", *lender],
        ["audit", "query", "--case", "C-1", *reg],
        ["audit", "checkpoint", *reg],
        ["audit", "prove", "0", *reg],
        ["audit", "compliance-report", "--from", "2000-01-01T00:00:00Z", "--to", "2100-01-01T00:00:00Z", *reg],
    ]
    for argv in sweep:
        rc, out, err = run(*argv)
        assert rc == 0, (argv[:3], err)
        _no_json(out)


# ------------------------------------------------------------------ audit checkpoint


def test_audit_checkpoint_prints_the_cosignatures_the_server_returns(seeded: Env, run: Run, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert _verify(seeded, tmp_path)[0] == 0
    line = str(_cosign(seeded, tmp_path, capsys)["cosignature"])
    served = seeded.client("regulator-1").cosigned()
    assert len(served) == 1
    rc, doc, _ = run.json("audit", "checkpoint", *conn(seeded, "regulator-1"))
    assert rc == 0 and set(doc) == {"checkpoint", "cosigned"}
    assert doc["cosigned"] == served and line.strip() in doc["cosigned"][0]
    rc, out, _ = run("audit", "checkpoint", *conn(seeded, "regulator-1"))
    assert rc == 0 and "\ncosigned:\n" in out and line.strip() in out
    _no_json(out)
