"""gateway/formats/subject_report.py without a gateway: how events become the report and its table.

(tests/test_subject_report.py runs the report end to end through a gateway.)
"""

from __future__ import annotations

from typing import Any

from gateway.formats.subject_report import build, one, table


def _event(seq: int, lender: str | None, **kw: Any) -> dict[str, Any]:
    base = {"seq": seq, "time": f"2026-01-0{seq}T00:00:00Z", "org": "agency-x", "method": "GetCase",
            "purpose": "collection", "case_id": "C-1", "rule": "r", "decision": "allow", "code": "OK",
            "borrower_id": "B-1"}
    if lender is not None:
        base["report_lender"] = lender
    return {**base, **kw}


EVENTS = [
    _event(1, "lender-a", fields=["phone", "full_name"]),
    _event(2, "lender-a", fields=["phone"], org="law-y", purpose="litigation"),
    _event(3, "lender-a", decision="deny", code="NO_MANDATE", org="agency-z"),
    _event(4, "lender-a", decision="deny", code="NO_MANDATE", borrower_id=""),
    _event(5, "lender-a", method="SetStage", rule="stage:letter"),
    _event(6, "lender-b", fields=["email"]),
    _event(7, None, decision="deny", code="CASE_NOT_FOUND"),
]


def test_one_lender_s_report_sorts_releases_refusals_and_actions() -> None:
    report = build("B-1", "lender-a", EVENTS)
    assert report["lender"] == "lender-a"
    assert report["recipients"] == {"agency-x": ["full_name", "phone"], "law-y": ["phone"]}
    assert [r["seq"] for r in report["releases"]] == [1, 2]
    assert [(r["seq"], r["code"], r["resolved"]) for r in report["refusals"]] == \
        [(3, "NO_MANDATE", True), (4, "NO_MANDATE", False)]
    assert [(r["seq"], r["method"]) for r in report["actions"]] == [(5, "SetStage")]
    assert [r["seq"] for r in report["unattributed"]] == [7]  # written before events named their lender
    assert "email" not in str(report["recipients"])  # lender-b's events stay out


def test_without_a_lender_each_lender_s_borrower_is_apart() -> None:
    report = build("B-1", "", EVENTS)
    assert [r["lender"] for r in report["lenders"]] == ["lender-a", "lender-b"]
    assert report["lenders"][1]["recipients"] == {"agency-x": ["email"]}
    empty = build("B-1", "", [])
    assert empty["lenders"] == [] and empty["unattributed"] == []
    assert table(empty) == "Access report for borrower B-1: no lender's borrower"


def test_the_table_has_every_section_and_says_none_when_empty() -> None:
    text = table(build("B-1", "lender-a", EVENTS))
    assert text.startswith("Access report for borrower B-1 of lender-a\n")
    assert "  agency-x: full_name, phone" in text
    assert "  2026-01-03T00:00:00Z  agency-z  collection  C-1  NO_MANDATE  r" in text
    assert "  2026-01-05T00:00:00Z  agency-x  SetStage: stage:letter  C-1" in text
    assert "not attributable to one lender" in text
    quiet = table(one("B-9", "", []))
    assert quiet.startswith("Access report for borrower B-9 of the calling lender")
    assert quiet.count("  none") == 3 and "  nobody" in quiet
