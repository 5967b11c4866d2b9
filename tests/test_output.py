"""gateway/cli/output.py: how the CLI prints documents and errors, and what a broken import says was stored."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from gateway.cli.output import EXIT_USAGE, CliError, ImportBroken, b64, emit, fail, key_text


def test_emit_prints_json_one_line_human_or_plain_lines(capsys: pytest.CaptureFixture[str]) -> None:
    doc = {"name": "合成", "n": 1}
    emit(argparse.Namespace(json=True), doc)
    emit(argparse.Namespace(json=False), doc, lambda d: f"n={d['n']}")
    emit(argparse.Namespace(), doc)
    out = capsys.readouterr().out.split("\n", 2)
    assert json.loads(out[0]) == doc and "合成" in out[0]
    assert out[1] == "n=1"
    assert out[2] == "name: 合成\nn: 1\n"  # without --json and without a text of its own: never JSON


def test_fail_writes_the_code_to_stderr_and_with_json_a_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert fail(None, "INVALID_ARGUMENT", "bad flag") == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "error: INVALID_ARGUMENT: bad flag\n"
    fail(argparse.Namespace(json=True), "NO_MANDATE", "no mandate", {"rule": "mandate"})
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"error": {"code": "NO_MANDATE", "message": "no mandate", "rule": "mandate"}}
    assert captured.err == "error: NO_MANDATE: no mandate\n"


def test_a_broken_import_says_what_was_stored_and_that_resending_is_safe() -> None:
    progress = {"through_line": 40, "imported": 30, "already_imported": 5, "rejected_total": 5, "other": 1}
    err = ImportBroken("UNAVAILABLE", "the stream broke", progress)
    assert isinstance(err, CliError) and err.code == "UNAVAILABLE"
    assert err.stored == {"through_line": 40, "imported": 30, "already_imported": 5, "rejected_total": 5}
    assert err.message == ("the stream broke (lines 1-40 are decided and stored (30 imported, 5 already there, "
                           "5 rejected); sending the file again is safe)")
    nothing = ImportBroken("UNAVAILABLE", "the stream broke", {**progress, "through_line": 0})
    assert "nothing was stored" in nothing.message


def test_key_text_and_b64(tmp_path: Path) -> None:
    path = tmp_path / "k.vkey"
    path.write_text("name+00000000+AAAA\n")
    assert key_text(str(path)) == "name+00000000+AAAA\n"
    (tmp_path / "bin").write_bytes(b"\xff\xfe")
    for bad in (tmp_path / "absent", tmp_path / "bin"):
        with pytest.raises(CliError) as info:
            key_text(str(bad))
        assert info.value.code == "INVALID_ARGUMENT" and info.value.message == "--key file not readable"
    assert b64(b"\x00\x01") == "AAE="
