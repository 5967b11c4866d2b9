"""gateway/synth.py: synthetic cases are deterministic, obviously fake, unique per index and valid import lines."""

from __future__ import annotations

import json

import pytest

from gateway.core.importer import parse_line
from gateway.core.model import JURISDICTIONS
from gateway.synth import case_line, jsonl, pi_values


def test_the_same_seed_gives_the_same_line_and_another_seed_another() -> None:
    assert case_line(4) == case_line(4)
    assert case_line(4, seed=8) != case_line(4)
    assert case_line(1)["jurisdiction"] == "CN" and case_line(3)["jurisdiction"] == "US"
    assert case_line(3, jurisdiction="CN")["timezone"] == "Asia/Shanghai"


@pytest.mark.parametrize("i", [0, 1, 2, 29, 30, 31, 99, 12345])
def test_every_line_parses_as_an_import_line(i: int) -> None:
    line = case_line(i, lender_prefix="P", stage="letter")
    case = parse_line(json.dumps(line, ensure_ascii=False).encode(), jurisdictions=JURISDICTIONS)
    assert case.case_id == f"PC-{i}" and case.borrower_id == f"PB-{i}" and case.stage == "letter"


def test_values_are_marked_fake_and_unique_per_borrower() -> None:
    cn, us = case_line(1), case_line(3)
    assert cn["borrower"]["full_name"].startswith("合成") and "Synth" in us["borrower"]["full_name"]
    assert all(v.endswith(".invalid") for v in [cn["borrower"]["email"], us["borrower"]["email"]])
    first, second = pi_values(case_line(10)), pi_values(case_line(11))
    assert len(first) == 9 and not set(first) & set(second)
    # Two cases of one borrower share the borrower's values.
    assert pi_values(case_line(5, borrower=7, jurisdiction="US")) == pi_values(case_line(6, borrower=7, jurisdiction="US"))


def test_jsonl_is_one_utf8_line_per_case() -> None:
    data = jsonl([case_line(1), case_line(2)])
    lines = data.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3
    assert json.loads(lines[0]) == case_line(1) and "合成".encode() in lines[0]
