"""The packet's PDF summary draws every character it prints with a font it embeds, or the packet is refused.

A machine without fonts-droid-fallback used to print a Chinese borrower's name as
glyph indexes ("00016") with no warning; now the fetch is refused with
PDF_FONT_MISSING, audited, and no packet file is written.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest
from custos_client import CustosClientError

from gateway import cli, packets, synth
from tests.conftest import Env

LATIN = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # Debian fonts-dejavu-core
CJK = Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf")  # Debian fonts-droid-fallback


def fonts_dir(root: Path, *fonts: Path) -> Path:
    """A font directory holding only `fonts` (links to the Debian files)."""
    root.mkdir()
    for font in fonts:
        if not font.is_file():
            pytest.skip(f"{font} is not installed (Debian fonts-dejavu-core, fonts-droid-fallback; .ci/run installs them)")
        (root / font.name).symlink_to(font)
    return root


def chinese_name() -> str:
    name = str(synth.case_line(1, jurisdiction="CN", borrower=1)["borrower"]["full_name"])
    assert any(ord(c) > 0x2E80 for c in name), "C-1's synthetic borrower must have a Chinese name for these tests"
    return name


def test_without_the_cjk_font_a_chinese_name_refuses_the_packet_audited(
        escalated: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chinese_name()
    monkeypatch.delenv("CUSTOS_PDF_FONT", raising=False)
    monkeypatch.setenv("CUSTOS_PDF_FONT_DIRS", str(fonts_dir(tmp_path / "fonts", LATIN)))
    with pytest.raises(CustosClientError) as info:
        escalated.client("lawfirm-1").get_packet("C-1")
    assert info.value.code == "PDF_FONT_MISSING"
    assert info.value.status == "FAILED_PRECONDITION"
    name = chinese_name()
    assert not any(c in str(info.value) for c in name)  # neither the name nor any character of it
    events = [e for e in escalated.events(case_id="C-1") if e.method == "GetPacket"]
    assert [(e.decision, e.code) for e in events] == [("deny", "PDF_FONT_MISSING")]
    assert not events[0].data["fields"]  # nothing released


def test_without_the_cjk_font_the_cli_writes_no_packet_file(
        escalated: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CUSTOS_PDF_FONT", raising=False)
    monkeypatch.setenv("CUSTOS_PDF_FONT_DIRS", str(fonts_dir(tmp_path / "fonts", LATIN)))
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "C-1.packet"
    argv = ["--gateway", escalated.addr, "--identity", str(escalated.root / "ids" / "lawfirm-1"), "--json"]
    capsys.readouterr()
    rc = cli.main(["packet", "get", "C-1", "--out", str(out), *argv])
    got = capsys.readouterr()
    assert rc == 3 and json.loads(got.out)["error"]["code"] == "PDF_FONT_MISSING"
    assert "Traceback" not in got.err
    assert list(outdir.iterdir()) == []  # no packet, no partial or temporary file


def test_with_no_truetype_font_at_all_a_chinese_name_is_refused_not_printed_as_question_marks(
        escalated: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUSTOS_PDF_FONT", raising=False)
    monkeypatch.setenv("CUSTOS_PDF_FONT_DIRS", str(fonts_dir(tmp_path / "fonts")))
    with pytest.raises(CustosClientError) as info:
        escalated.client("lawfirm-1").get_packet("C-1")
    assert info.value.code == "PDF_FONT_MISSING"


def test_with_the_fonts_present_the_summary_embeds_them_and_its_text_holds_the_name(
        escalated: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pypdf import PdfReader

    monkeypatch.delenv("CUSTOS_PDF_FONT", raising=False)
    monkeypatch.setenv("CUSTOS_PDF_FONT_DIRS", str(fonts_dir(tmp_path / "fonts", LATIN, CJK)))
    _, data = escalated.client("lawfirm-1").get_packet("C-1")
    verified = packets.verify(data, (escalated.data / "packet.vkey").read_text())
    summary = verified.items["summary.pdf"]
    record = json.loads(verified.items["record.json"])
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(summary)).pages)
    assert record["full_name"] == chinese_name() and chinese_name() in text
    assert record["home_address"] in text.replace("\n", "")
    (tmp_path / "summary.pdf").write_bytes(summary)
    fonts = subprocess.run(["pdffonts", str(tmp_path / "summary.pdf")], capture_output=True, text=True, check=False)
    if fonts.returncode == 0:  # poppler-utils, where installed: both fonts embedded (subsets)
        embedded = [line for line in fonts.stdout.splitlines()[2:] if " yes " in line]
        assert len(embedded) >= 2, fonts.stdout
    events = [e for e in escalated.events(case_id="C-1") if e.method == "GetPacket"]
    assert [(e.decision, e.code) for e in events] == [("allow", "OK")]
