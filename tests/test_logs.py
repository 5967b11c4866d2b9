"""Structured logs (issue 27): `serve --log-format json`, no PI in any format, no library noise.

A real `custos serve` in a child process, driven with a demo's worth of
traffic (imports, reads, a search, contacts, a packet fetch, refusals); its
stderr is the log under test.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from custos_client import CustosClientError

from gateway import logs, synth
from tests.conftest import NOTICES, RecordsClient, Served

LINES = [synth.case_line(i, jurisdiction="CN" if i % 2 else "US") for i in range(1, 7)]
SECRETS = [v for line in LINES for v in synth.pi_values(line)]
# A packet fetch may log a line or two of ours; before, fontTools alone wrote about 50 (and fpdf may name glyphs).
PACKET_LINES_MAX = 3
EVENT = re.compile(r"^[a-z][a-z0-9_]*$")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def leaks(text: str) -> list[str]:
    return [v for v in SECRETS if v in text]


def drive(served: Served, ids: Path) -> tuple[str, str]:
    """A demo's worth of calls; returns (the log before the packet fetch, the log just after it)."""
    def client(org: str) -> RecordsClient:
        return RecordsClient(served.addr, ids / org, timeout=30)

    def refused(call: Callable[[], Any]) -> None:
        with pytest.raises(CustosClientError):
            call()

    lender, agency, other, firm = client("lender-a"), client("agency-1"), client("agency-2"), client("lawfirm-1")
    result = lender.import_lines(synth.jsonl([{**line, "notices": dict(NOTICES)} for line in LINES]).splitlines())
    assert result.imported == len(LINES), result
    lender.assign("C-1", "agency-1", "collection", "2099-12-31")
    assert any(v in SECRETS for v in agency.get_case("C-1", "collection").fields.values())  # PI travelled
    lender.get_case("C-2", "servicing")
    lender.list_cases(national_id=LINES[2]["borrower"]["national_id"])
    try:  # inside the contact window or refused for it, by the wall clock: either is traffic
        contact = agency.open_contact("C-1", "call")
        agency.record_outcome(contact.contact_id, "promise_to_pay", "100.00", "2099-12-05")
    except CustosClientError:
        pass
    refused(lambda: other.get_case("C-1", "collection"))      # no mandate
    refused(lambda: lender.get_case("C-1", "nosuch"))          # bad purpose
    refused(lambda: firm.get_packet("C-1"))                    # not escalated yet
    rejected = lender.import_lines([b'{"case_id": "C-99", "borrower": {"full_name": "' + SECRETS[0].encode() + b'"}}'])
    assert rejected.rejected_total == 1
    lender.escalate("C-1", "lawfirm-1")
    before = served.log.read_text()
    assert len(firm.get_packet("C-1")[1]) > 1000  # a packet, with its PDF
    after = served.log.read_text()
    for c in (lender, agency, other, firm):
        c.close()
    return before, after


def stopped(served: Served) -> str:
    """SIGTERM, as an operator stops it, so the stopping lines are in the log too."""
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=30) == 0
    return served.log.read_text()


def test_json_log_lines_parse_name_their_event_and_carry_no_pi(env_dir: Path, served: list[Served]) -> None:
    s = Served(env_dir / "data", extra=["--log-format", "json"])
    served.append(s)
    before, after = drive(s, env_dir / "ids")
    text = stopped(s)
    assert not leaks(text)
    assert "Handshake failed" not in text and "NO_SHARED_CIPHER" not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is one JSON object
    for line in lines:
        assert set(logs._KEYS) <= set(line), line
        assert TIME.match(line["time"]) and EVENT.match(line["event"]), line
        assert line["level"] in ("debug", "info", "warning", "error", "critical")
    events = [line["event"] for line in lines]
    checks = [line for line in lines if line["event"] == "tls_self_check"]
    assert [c["result"] for c in checks] == ["ok"]  # our one line in place of gRPC's handshake failure
    assert "gateway_listening" in events and "gateway_stopped" in events
    listening = lines[events.index("gateway_listening")]
    assert listening["port"] == s.port and listening["org"] is None
    assert len(after.splitlines()) - len(before.splitlines()) <= PACKET_LINES_MAX


def test_text_log_carries_no_pi_no_handshake_and_no_font_noise(env_dir: Path, served: list[Served],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOS_LOG_LEVEL", "DEBUG")  # ours at DEBUG: libraries stay at WARNING all the same
    s = Served(env_dir / "data")
    served.append(s)
    before, after = drive(s, env_dir / "ids")
    text = stopped(s)
    assert not leaks(text)
    assert "Handshake failed" not in text and "NO_SHARED_CIPHER" not in text
    assert "fontTools" not in text
    assert len(after.splitlines()) - len(before.splitlines()) <= PACKET_LINES_MAX
    assert text.count("start-up TLS check") == 1


@pytest.mark.sqlite_only
def test_the_environment_chooses_the_format_and_a_bad_one_is_refused(env_dir: Path, served: list[Served],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(logs.ENV, "xml")
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", str(env_dir / "data"), "--listen",
                          "127.0.0.1:0", "--processes", "1"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "INVALID_ARGUMENT" in out.stderr and "CUSTOS_LOG_FORMAT must be text or json" in out.stderr
    monkeypatch.setenv(logs.ENV, "json")
    s = Served(env_dir / "data")
    served.append(s)
    text = stopped(s)
    assert [json.loads(line)["event"] for line in text.splitlines()][-1] == "gateway_stopped"


@pytest.mark.sqlite_only
def test_the_processes_of_a_supervised_serve_log_json_too(env_dir: Path, served: list[Served]) -> None:
    s = Served(env_dir / "data", extra=["--log-format", "json", "--processes", "2"])
    served.append(s)
    text = stopped(s)
    lines = [json.loads(line) for line in text.splitlines()]  # the supervisor's lines and both processes'
    events = [line["event"] for line in lines]
    assert events.count("tls_self_check") == 2 and events.count("process_serving") == 2
    assert "supervisor_listening" in events and "Handshake failed" not in text


def record(name: str, msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


@pytest.mark.parametrize("formatter", [logs.JsonFormatter(), logs.TextFormatter()], ids=["json", "text"])
def test_a_library_message_is_withheld_and_a_call_named(formatter: logging.Formatter) -> None:
    name = SECRETS[0]
    # fpdf's own words when a font lacks a borrower's characters.
    line = formatter.format(record("fpdf.output", "Font %s is missing the following glyphs: %s", "droid", name))
    assert name not in line and "fpdf.output" in line
    token = logs.CALL.set(("agency-1", "GetCase", "ab" * 16))
    try:
        ours = formatter.format(record("custos.transport", "unexpected %s in RPC", "KeyError",
                                       event="internal_error", error="KeyError"))
    finally:
        logs.CALL.reset(token)
    assert "agency-1" in ours and "GetCase" in ours and "ab" * 16 in ours and "KeyError" in ours
    if isinstance(formatter, logs.JsonFormatter):
        doc = json.loads(ours)
        assert (doc["event"], doc["org"], doc["method"], doc["trace_id"], doc["error"]) == \
            ("internal_error", "agency-1", "GetCase", "ab" * 16, "KeyError")
        assert json.loads(line)["event"] == "library_warning"
