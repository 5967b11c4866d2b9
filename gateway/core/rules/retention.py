"""Retention: when a borrower's personal data must be shredded, by the `[retention]` table of each jurisdiction.

Pure. A borrower is due once every one of its cases is settled or closed and
each case's retention period has run: `years` from its closure (CN: the period
the lender states for its processing, PIPL Art. 19), or from the later of its
closure and the last collection activity on it (US: the record-keeping period
of Reg F §1006.100, three years after the last collection activity). A legal
hold on any case keeps the borrower (it is reported as held). The audit log is
never purged: its events hold no personal data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from ..model import CaseRow, stored_time

RETENTION_STARTS = ("closure", "last_activity")


@dataclass(frozen=True)
class RetentionRules:
    years: int
    start: str  # closure | last_activity


@dataclass(frozen=True)
class RetentionVerdict:
    due_on: date | None   # the first day the borrower's data may be shredded; None while a case is open
    rule: str             # the rule that set that day, e.g. "CN.retention:3y_after_closure"
    held: tuple[str, ...]  # cases under legal hold

    def due(self, today: date) -> bool:
        return self.due_on is not None and today >= self.due_on and not self.held


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def _day(stamp: str | None) -> date | None:
    try:
        return stored_time(stamp).date() if stamp else None
    except ValueError:
        return None


def borrower_retention(rules_for: Callable[[str], RetentionRules], cases: Sequence[CaseRow],
                       last_activity: Callable[[CaseRow], str | None]) -> RetentionVerdict:
    """The day a borrower's cases let its data go, and why; `last_activity(case)`: its last contact's time."""
    held = tuple(c.case_id for c in cases if c.legal_hold)
    latest: tuple[date, str] | None = None
    for case in cases:
        closed = _day(case.closed_at)
        if case.status == "open" or closed is None:
            return RetentionVerdict(None, "retention:case_open", held)
        rules = rules_for(case.jurisdiction)
        start = closed
        if rules.start == "last_activity":
            activity = _day(last_activity(case))
            start = max(start, activity) if activity else start
        end = _add_years(start, rules.years)
        if latest is None or end > latest[0]:
            latest = (end, f"{case.jurisdiction}.retention:{rules.years}y_after_{rules.start}")
    if latest is None:
        return RetentionVerdict(None, "retention:no_case", held)
    return RetentionVerdict(latest[0], latest[1], held)
