"""Signed litigation packets: what a law firm receives, how anyone checks it, and when it is refused."""

from __future__ import annotations

import io
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from custos_client import CustosError

from gateway import cli, packets, synth
from gateway.core.errors import Code
from gateway.core.errors import CustosError as CoreError
from gateway.core.litigation import ledger_summary
from gateway.transport.server import build
from tests.conftest import Env


def packet(env: Env, case: str, org: str = "lawfirm-1") -> bytes:
    _, data = env.client(org).get_packet(case)
    return data


def vkey(env: Env) -> str:
    return (env.data / "packet.vkey").read_text()


def refused(env: Env, case: str, org: str = "lawfirm-1") -> str:
    with pytest.raises(CustosError) as info:
        env.client(org).get_packet(case)
    return info.value.code


def failure(data: bytes, key: str | None) -> str:
    with pytest.raises(CoreError) as info:
        packets.verify(data, key)
    assert info.value.code == Code.PACKET_INVALID
    return str(info.value.message)


@pytest.fixture
def escalated(seeded: Env) -> Env:
    """C-1 (CN, borrower B-1) escalated to lawfirm-1, with some contact history first."""
    seeded.clock.current = seeded.clock.current.replace(hour=3)  # 11:00 in Shanghai: inside the window
    contact = seeded.client("agency-1").open_contact("C-1", "call")
    seeded.client("agency-1").record_outcome(contact["contact_id"], "promise_to_pay")
    seeded.client("lender-a").escalate("C-1", "lawfirm-1")
    return seeded


def test_a_packet_round_trip_holds_every_item_and_verifies(escalated: Env) -> None:
    data = packet(escalated, "C-1")
    result = packets.verify(data, vkey(escalated))
    m = result.manifest
    assert result.key_pinned and m["recipient"] == "lawfirm-1" and m["case_id"] == "C-1" and m["lender"] == "lender-a"
    names = [i["name"] for i in m["items"]]
    assert names == ["record.json", "ledger.json", "contract.txt", "contacts.json", "service_address.json",
                     "summary.pdf"]
    line = synth.case_line(1, jurisdiction="CN", borrower=1)
    record = json.loads(result.items["record.json"])
    assert record["full_name"] == line["borrower"]["full_name"]
    assert record["national_id"] == line["borrower"]["national_id"]
    assert "bank_account" not in record and "emergency_contacts" not in record  # not in the litigation field set
    ledger = json.loads(result.items["ledger.json"])
    assert ledger["principal"] == line["loan"]["principal"] and ledger["repayments"] == line["loan"]["repayments"]
    assert ledger["summary"] == ledger_summary(line["loan"]["principal"], line["loan"]["outstanding"],
                                               line["loan"]["amount_due"], line["loan"]["repayments"])
    assert result.items["contract.txt"].decode() == line["loan"]["contract_text"]
    contacts = json.loads(result.items["contacts.json"])
    assert [(c["channel"], c["result"]) for c in contacts] == [("call", "promise_to_pay")]
    assert json.loads(result.items["service_address.json"])["service_address"] == line["borrower"]["home_address"]
    # The release is one audit event with every field and the packet id.
    events = [e for e in escalated.events(case_id="C-1") if e["method"] == "GetPacket"]
    assert len(events) == 1 and events[0]["decision"] == "allow"
    assert events[0]["fields"] == m["fields"] and m["packet_id"] in events[0]["rule"]
    assert "contract_text" in m["fields"] and "contact_history" in m["fields"]


def test_the_pdf_summary_states_the_ledger_totals(escalated: Env) -> None:
    from pypdf import PdfReader

    result = packets.verify(packet(escalated, "C-1"), vkey(escalated))
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(result.items["summary.pdf"])).pages)
    summary = json.loads(result.items["ledger.json"])["summary"]
    for key in ("principal", "repaid", "interest_and_fees", "outstanding", "amount_due"):
        assert summary[key] in text, key
    assert result.manifest["packet_id"] in text and "lawfirm-1" in text


def test_one_flipped_byte_anywhere_fails_and_names_the_part(escalated: Env) -> None:
    data = packet(escalated, "C-1")
    key = vkey(escalated)
    line_end = data.index(b"\n")
    size = int(data[:line_end].split(b" ")[1])
    manifest = json.loads(data[line_end + 1:line_end + 1 + size])
    regions: list[tuple[int, int, str]] = [(0, line_end + 1, "header"), (line_end + 1, line_end + 1 + size, "manifest")]
    offset = line_end + 1 + size
    for item in manifest["items"]:
        regions.append((offset, offset + item["size"], item["name"]))
        offset += item["size"]
    assert offset == len(data)
    rnd = random.Random(5)
    for start, end, name in regions:
        positions = {start, end - 1, *(rnd.randrange(start, end) for _ in range(6))}
        for pos in positions:
            flipped = bytearray(data)
            flipped[pos] ^= 0x01
            message = failure(bytes(flipped), key)
            if name in ("header", "manifest"):
                assert any(w in message for w in ("header", "manifest", "signature")), (pos, message)
            else:
                assert f"item {name} is altered" in message, (pos, name, message)
    assert "truncated" in failure(data[:-10], key)
    assert "after the last item" in failure(data + b"x", key)


def test_a_packet_signed_by_another_key_fails(escalated: Env, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gateway.core.merkle import verifier_key

    data = packet(escalated, "C-1")
    other = Ed25519PrivateKey.generate()
    assert "another key" in failure(data, verifier_key("custos.invalid/other/packets", other.public_key()))
    # Re-signed by someone else with their own key named inside: self-consistent, but not the gateway's key.
    forged = packets.verify(data, None)
    items = [packets.Item(i["name"], i["type"], forged.items[i["name"]]) for i in forged.manifest["items"]]
    meta = {k: v for k, v in forged.manifest.items() if k not in ("format", "key", "items")}
    meta["recipient"] = "lawfirm-2"
    resigned = packets.assemble(meta, items, other, "custos.invalid/other/packets")
    assert not packets.verify(resigned, None).key_pinned
    assert "another key" in failure(resigned, vkey(escalated))
    # The audit key is not the packet key either.
    assert "another key" in failure(data, (escalated.data / "audit.vkey").read_text())


def test_packet_cli_get_and_verify(escalated: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = escalated.root / "ids" / "lawfirm-1"
    out = tmp_path / "C-1.packet"
    argv = ["--gateway", escalated.addr, "--identity", str(ids), "--json"]
    assert cli.main(["packet", "get", "C-1", "--out", str(out), *argv]) == 0
    got = json.loads(capsys.readouterr().out)
    assert out.stat().st_mode & 0o777 == 0o600 and got["bytes"] == out.stat().st_size
    assert cli.main(["packet", "verify", str(out), "--key", str(escalated.data / "packet.vkey"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verified"] and doc["key_pinned"] and doc["packet_id"] == got["packet_id"]
    assert doc["recipient"] == "lawfirm-1" and len(doc["items"]) == 6
    assert cli.main(["packet", "verify", str(out)]) == 0
    assert "give --key" in capsys.readouterr().out
    raw = bytearray(out.read_bytes())
    raw[-100] ^= 0xFF  # inside the PDF, the last item
    out.write_bytes(bytes(raw))
    assert cli.main(["packet", "verify", str(out), "--key", str(escalated.data / "packet.vkey"), "--json"]) != 0
    err = json.loads(capsys.readouterr().out)["error"]
    assert err["code"] == "PACKET_INVALID" and "summary.pdf" in err["message"]
    assert cli.main(["packet", "verify", str(tmp_path / "missing"), "--json"]) != 0
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "INVALID_ARGUMENT"


def test_the_packet_is_refused_exactly_where_the_litigation_read_is(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    cases: list[tuple[str, str, dict[str, Any]]] = []
    assert refused(seeded, "C-1") == "NO_MANDATE"  # before escalation
    lender.escalate("C-1", "lawfirm-1")
    assert refused(seeded, "C-1", "lawfirm-2") == "NO_MANDATE"  # another firm's case
    assert refused(seeded, "C-1", "agency-1") == "WRONG_ORG_KIND"
    lender.set_flags("C-1", disputed=True)
    cases.append(("C-1", "DISPUTED", {}))
    us = synth.case_line(50, jurisdiction="US")
    us["loan"]["limitation_date"] = "2026-11-01"
    seeded.import_cases("lender-a", [us])
    lender.escalate("C-50", "lawfirm-1")
    cases.append(("C-50", "LIMITATION_EXPIRED", {}))
    lender.escalate("C-3", "lawfirm-1")
    lender.recall("C-3", "lawfirm-1")
    cases.append(("C-3", "MANDATE_RECALLED", {}))
    for case, code, _ in cases:
        assert refused(seeded, case) == code
        with pytest.raises(CustosError) as info:
            seeded.client("lawfirm-1").get_case(case, "litigation")
        assert info.value.code == code
        denial = [e for e in seeded.events(case_id=case) if e["method"] == "GetPacket"][-1]
        assert (denial["decision"], denial["code"]) == ("deny", code)
    lender.set_flags("C-1", disputed=False)
    assert packets.verify(packet(seeded, "C-1"), vkey(seeded)).manifest["case_id"] == "C-1"


@pytest.mark.sqlite_only  # the key is made at start-up only for the embedded store (replicas must share one)
def test_a_data_directory_from_before_packets_gets_its_key_at_start_up(env_dir: Path) -> None:
    data = env_dir / "data"
    (data / "keys" / "packet.key").unlink()
    (data / "packet.vkey").unlink()
    gw = build(data, "127.0.0.1:0")
    try:
        assert (data / "keys" / "packet.key").stat().st_mode & 0o777 == 0o600
        assert (data / "packet.vkey").read_text().split("+")[0].endswith("/packets")
    finally:
        gw.stop(0)


@pytest.mark.postgresql_only
def test_a_replica_without_the_packet_key_refuses_packets_rather_than_sign_with_its_own(env_dir: Path) -> None:
    from custos_client import CustosClient

    second = env_dir.parent / "replica-without-key"
    shutil.copytree(env_dir, second)
    (second / "data" / "keys" / "packet.key").unlink()
    gw = build(second / "data", "127.0.0.1:0")
    try:
        assert not (second / "data" / "keys" / "packet.key").exists()
        with CustosClient(f"127.0.0.1:{gw.port}", second / "ids" / "lawfirm-1", timeout=20) as firm, \
                pytest.raises(CustosError) as info:
            firm.get_packet("C-1")
        assert info.value.code == "KEYS_UNAVAILABLE"
    finally:
        gw.stop(0)
