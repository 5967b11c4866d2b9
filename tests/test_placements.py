"""Bulk placement (`lender assign --file`) and termination (`lender recall --all --from ORG`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from custos_client import CustosClientError

from gateway import cli, synth
from tests.conftest import Env


def line(case: str, to: str = "agency-2", purpose: str = "collection", until: str = "2026-12-31", **kw: Any) -> bytes:
    """A placement line; it names the agreement and impact assessment CN requires (issue 26) unless `kw` does."""
    return json.dumps({"case_id": case, "to": to, "purpose": purpose, "until": until, "agreement": "AG-1",
                       "pia": "PIA-1", **kw}).encode()


def test_a_placement_file_grants_the_good_lines_and_names_each_bad_one(seeded: Env) -> None:
    lines = [
        line("C-3"), line("C-4", "bureau-1", "credit_reporting", "2027-06-30"), b"",
        line("C-5", label="provided"),
        b"{not json", line("C-404"), line("BC-1"), line("C-3", "lawfirm-404"), line("C-3", "bureau-1"),
        line("C-3", until="2026-11-01"), line("C-3", until="31/12/2026"), line("C-3", purpose="marketing"),
        line("C-3", label="borrowed"), json.dumps({"case_id": "C-3", "to": "agency-2"}).encode(),
        json.dumps({"case_id": "C-3", "to": "agency-2", "purpose": "collection", "until": "2026-12-31",
                    "extra": 1}).encode(),
        json.dumps({"case_id": 3, "to": "agency-2", "purpose": "collection", "until": "2026-12-31"}).encode(),
        line("C-3", "bad id!"),
    ]
    result = seeded.client("lender-a").assign_lines(lines)
    assert result.assigned == 3 and result.through_line == len(lines)
    codes = {r.line: r.code for r in result.rejected}
    assert codes == {5: "IMPORT_INVALID_JSON", 6: "CASE_NOT_FOUND", 7: "CASE_NOT_FOUND", 8: "ORG_NOT_FOUND",
                     9: "PURPOSE_KIND_MISMATCH", 10: "UNTIL_IN_PAST", 11: "INVALID_DATE", 12: "UNKNOWN_PURPOSE",
                     13: "UNKNOWN_LABEL", 14: "IMPORT_INVALID_FIELD", 15: "IMPORT_INVALID_FIELD",
                     16: "IMPORT_INVALID_FIELD", 17: "INVALID_ORG_ID"}
    for r in result.rejected:
        assert "C-3" not in r.reason and "agency-2" not in r.reason  # reasons never quote the line
    assert seeded.client("agency-2").get_case("C-3", "collection").case_id == "C-3"
    assert seeded.client("agency-2").get_case("C-5", "collection").case_id == "C-5"
    grants = [e for e in seeded.events(org="lender-a") if e.method == "AssignCases" and e.decision == "allow"]
    assert sorted(e.case_id for e in grants) == ["C-3", "C-4", "C-5"]
    denials = [e for e in seeded.events(org="lender-a") if e.method == "AssignCases" and e.decision == "deny"]
    assert len(denials) == 13


def test_the_same_mandate_twice_in_one_file_leaves_the_later_one_live(seeded: Env) -> None:
    result = seeded.client("lender-a").assign_lines([line("C-3", until="2026-12-15"), line("C-3", until="2026-12-31")])
    assert result.assigned == 2
    reader = seeded.gw.vault.reader()
    reader.refresh()
    live = [m.until.isoformat() for m in reader.mandates_for("agency-2", "C-3") if m.recalled_at is None]
    assert live == ["2026-12-31"]


def test_a_provided_placement_needs_consent_as_a_single_assign_does(seeded: Env) -> None:
    no_consent = synth.case_line(70, jurisdiction="CN")
    no_consent["consent"]["third_party_sharing"] = False
    seeded.import_cases("lender-a", [no_consent])
    result = seeded.client("lender-a").assign_lines([line("C-70", label="provided")])
    assert [r.code for r in result.rejected] == ["CONSENT_REQUIRED"]
    with pytest.raises(CustosClientError) as info:
        seeded.client("lender-a").assign("C-70", "agency-2", "collection", "2026-12-31", "provided")
    assert info.value.code == "CONSENT_REQUIRED"


def test_recall_all_ends_every_mandate_of_a_terminated_agency_on_this_lenders_cases_only(seeded: Env) -> None:
    a, b = seeded.client("lender-a"), seeded.client("lender-b")
    a.assign_lines([line(f"C-{i}") for i in range(3, 7)])
    b.assign("BC-1", "agency-2", "collection", "2026-12-31")
    assert a.recall_all("agency-2").recalled == 4
    for i in range(3, 7):
        with pytest.raises(CustosClientError) as info:
            seeded.client("agency-2").get_case(f"C-{i}", "collection")
        assert info.value.code == "MANDATE_RECALLED"
    assert seeded.client("agency-2").get_case("BC-1", "collection").case_id == "BC-1"  # another lender's
    ended = [e for e in seeded.events(org="lender-a") if e.method == "RecallAll"]
    assert sorted(e.case_id for e in ended) == [f"C-{i}" for i in range(3, 7)]
    assert a.recall_all("agency-2").recalled == 0
    for org, code in (("agency-404", "ORG_NOT_FOUND"), ("bad id!", "INVALID_ORG_ID")):
        with pytest.raises(CustosClientError) as info:
            a.recall_all(org)
        assert info.value.code == code
    with pytest.raises(CustosClientError) as info:
        seeded.client("agency-1").recall_all("agency-2")
    assert info.value.code == "WRONG_ORG_KIND"


def test_the_cli_forms(seeded: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    placements = tmp_path / "placements.jsonl"
    placements.write_bytes(line("C-3") + b"\n" + line("C-404") + b"\n")
    argv = ["--gateway", seeded.addr, "--identity", str(seeded.identity("lender-a")), "--json"]
    assert cli.main(["lender", "assign", "--file", str(placements), *argv]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["assigned"] == 1 and doc["rejected"] == [{"line": 2, "code": "CASE_NOT_FOUND",
                                                          "reason": "case_id: no such case"}]
    assert cli.main(["lender", "recall", "--all", "--from", "agency-2", *argv]) == 0
    assert json.loads(capsys.readouterr().out)["recalled"] == 1
    for bad in (["lender", "assign", "C-3", "--file", str(placements)], ["lender", "assign", "C-3"],
                ["lender", "recall", "C-3", "--all", "--from", "agency-2"], ["lender", "recall", "--from", "agency-2"],
                ["lender", "assign", "--file", str(tmp_path / "missing")]):
        assert cli.main([*bad, *argv]) != 0
        assert json.loads(capsys.readouterr().out)["error"]["code"] == "INVALID_ARGUMENT"
