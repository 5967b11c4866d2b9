"""The registry of `custos bureau pull --format` (gateway/cli/formats.py): the parser offers exactly its
entries, and each entry refuses a feed it cannot carry before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli.formats import BUREAU_FORMATS
from gateway.cli.output import CliError
from gateway.cli.parser import build_parser


def test_the_parser_offers_the_registered_formats() -> None:
    assert set(BUREAU_FORMATS) == {"json", "metro2"}
    for name in BUREAU_FORMATS:
        assert build_parser().parse_args(["bureau", "pull", "--format", name]).format == name
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bureau", "pull", "--format", "cdf"])


def test_metro2_carries_only_us_records_and_needs_a_file(tmp_path: Path) -> None:
    metro2 = BUREAU_FORMATS["metro2"]
    with pytest.raises(CliError, match="records of CN, which Metro 2 does not carry") as info:
        metro2.check([{"jurisdiction": "US"}, {"jurisdiction": "CN"}], tmp_path / "out")
    assert info.value.code == "INVALID_ARGUMENT"
    with pytest.raises(CliError, match="--format metro2 needs --out FILE"):
        metro2.check([{"jurisdiction": "US"}], None)
    metro2.check([{"jurisdiction": "US"}], tmp_path / "out")


def test_json_carries_any_jurisdiction_to_stdout() -> None:
    BUREAU_FORMATS["json"].check([{"jurisdiction": "CN"}, {"jurisdiction": "US"}], None)
