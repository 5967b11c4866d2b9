"""gateway/core/model.py: the audit leaf written key by key is exactly RFC 8785 of the event, and times sort as text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway.core.model import FLAGS, CaseRow, EventDraft, rfc3339
from gateway.tlog.merkle import canonical_json


def _draft(**kw: object) -> EventDraft:
    base: dict[str, object] = dict(org="agency-x", method="GetCase", purpose="collection", case_id="C-1",
                                   borrower_id="B-1", decision="allow", code="OK", rule="r", time="t",
                                   trace_id="abc", fields=["phone", "full_name"], policy_revision="rev")
    base.update(kw)
    return EventDraft(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("draft", [
    _draft(),
    _draft(lender="lender-a"),
    _draft(fields=[], rule='quote " backslash \\ tab \t nul \x00 é 合成 \u2028'),
    _draft(case_id="", borrower_id="", decision="deny", code="NO_MANDATE"),
])
def test_the_leaf_is_the_canonical_json_of_the_event(draft: EventDraft) -> None:
    assert draft.leaf_bytes(42) == canonical_json(draft.leaf_object(42))
    front, tail = draft.head_parts()
    assert draft.head_bytes() == front + tail


def test_a_leaf_has_a_lender_key_only_when_the_event_names_one() -> None:
    assert b'"lender"' not in _draft().leaf_bytes(1)
    assert b'"lender":"lender-a"' in _draft(lender="lender-a").leaf_bytes(1)


def test_a_precomputed_head_is_used_as_is() -> None:
    draft = _draft()
    draft.head = _draft(org="other").head_bytes()
    assert draft.leaf_bytes(1) == _draft(org="other").leaf_bytes(1)


def test_rfc3339_is_fixed_width_utc_and_sorts_as_time_does() -> None:
    t = datetime(2026, 3, 1, 18, 0, tzinfo=timezone(timedelta(hours=8)))
    assert rfc3339(t) == "2026-03-01T10:00:00.000000Z"
    times = [datetime(2026, 3, 1, 10, 0, 0, us, tzinfo=UTC) for us in (0, 5, 999_999)]
    texts = [rfc3339(x) for x in times]
    assert sorted(texts) == texts and len({len(x) for x in texts}) == 1


def test_case_flags_lists_the_set_flags_in_order() -> None:
    case = CaseRow("lender-a", "C-1", "B-1", "L-1", "CN", "Asia/Shanghai", "letter", "open",
                   True, False, False, True, True, True, True)
    assert case.flags() == ["disputed", "lost_contact", "legal_hold"]
    assert set(case.flags()) <= set(FLAGS)
