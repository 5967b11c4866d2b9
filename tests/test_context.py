"""gateway/core/usecases/context.py: the pure helpers every feature shares (times, dates, flags, local today)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from gateway.core.model import TIME_RANGE, CaseRow, parse_date, parse_time
from gateway.core.usecases.context import (
    Context,
    _conduct_state,
    _flag_text,
)


def _case(timezone: str) -> CaseRow:
    return CaseRow("lender-a", "C-1", "B-1", "L-1", "CN", timezone, "letter", "open",
                   True, False, False, False, False, True, True)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-03-01T10:00:00Z", datetime(2026, 3, 1, 10, tzinfo=UTC)),
    ("2026-03-01T18:00:00+08:00", datetime(2026, 3, 1, 10, tzinfo=UTC)),
    ("2026-03-01T10:00:00", None),                 # no offset: refused, never guessed
    ("yesterday", None),
    ("", None),
    ("1899-12-31T23:59:59Z", None),                # outside TIME_RANGE
    ("9999-12-31T23:59:59-23:59", None),
    ("2026-03-01T10:00:00Z" + " " * 30, None),     # longer than any RFC 3339 time
])
def test_parse_time_takes_rfc_3339_with_an_offset_within_range(text: str, expected: datetime | None) -> None:
    assert parse_time(text) == expected
    parsed = parse_time(text)
    assert parsed is None or (parsed.tzinfo is UTC and TIME_RANGE[0] <= parsed < TIME_RANGE[1])


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-02-28", date(2026, 2, 28)), ("2026-02-29", None), ("20260228", None), ("2026-02-28T00:00", None),
])
def test_parse_date_takes_only_a_calendar_date(text: str, expected: date | None) -> None:
    assert parse_date(text) == expected


def test_flag_text_and_the_conduct_view() -> None:
    assert (_flag_text(True), _flag_text(False), _flag_text("letter"), _flag_text(3)) == ("true", "false", "letter", "3")
    state = _conduct_state(_case("Asia/Shanghai"))
    assert (state.case_id, state.borrower_key, state.stage, state.disputed) == ("C-1", "B-1", "letter", True)


def test_local_today_is_the_case_s_own_date() -> None:
    now = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)
    assert Context.local_today(_case("Asia/Shanghai"), now) == date(2026, 3, 2)
    assert Context.local_today(_case("America/New_York"), now) == date(2026, 3, 1)
