"""A supervisor's further filters on `audit query` (issue 25, first step): until, decision, code, method, purpose.

Each keeps exactly the events a reader of the log would keep by that key; `--until` leaves out an event at exactly
that time; a bad value is refused with a stable code (never an empty answer that reads as "nothing happened"),
and the verified path (a pinned key) filters the same events and proves each.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from custos_client import CustosClientError

from gateway import cli
from gateway.core.model import rfc3339, stored_time
from tests.conftest import Env


def activity(env: Env) -> list[dict[str, Any]]:
    """agency-1 reads its case, is refused another, at a time of its own; its events, as the regulator sees them."""
    env.clock.current = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    agency = env.client("agency-1")
    agency.get_case("C-1", "collection")
    env.clock.current += timedelta(seconds=1)
    with pytest.raises(CustosClientError):
        agency.get_case("C-2", "collection")
    return env.client("regulator-1").audit_query(org_id="agency-1")


@pytest.mark.parametrize(("key", "value"), [("decision", "allow"), ("decision", "deny"), ("code", "NO_MANDATE"),
                                            ("method", "GetCase"), ("purpose", "collection")])
def test_each_filter_keeps_exactly_the_events_with_its_value(seeded: Env, key: str, value: str) -> None:
    every = activity(seeded)
    got = seeded.client("regulator-1").audit_query(org_id="agency-1", **{key: value})
    assert got and got == [e for e in every if e.data[key] == value]
    assert len(got) < len(every) or key == "purpose"
    vkey = (seeded.data / "audit.vkey").read_text()
    assert seeded.client("regulator-1").verified_audit_query(vkey, org_id="agency-1", **{key: value}) == got


def test_until_leaves_out_the_event_at_exactly_that_time(seeded: Env) -> None:
    every = activity(seeded)
    last = every[-1]
    reg = seeded.client("regulator-1")
    before = reg.audit_query(org_id="agency-1", until=last.time)
    assert before == [e for e in every if e.time < last.time] and last not in before
    just_after = rfc3339(stored_time(last.time) + timedelta(microseconds=1))
    assert reg.audit_query(org_id="agency-1", until=just_after) == [e for e in every if e.time < just_after]
    assert last in reg.audit_query(org_id="agency-1", until=just_after)
    # Both bounds: the half-open range [since, until) holds the one event timed at `since`.
    assert reg.audit_query(org_id="agency-1", since=last.time, until=just_after) == [last]


@pytest.mark.parametrize(("key", "value", "code"), [
    ("until", "yesterday", "INVALID_TIME"), ("decision", "maybe", "INVALID_ARGUMENT"),
    ("code", "NO_SUCH_CODE", "INVALID_ARGUMENT"), ("method", "Get Case", "INVALID_ARGUMENT"),
    ("purpose", "marketing", "UNKNOWN_PURPOSE")])
def test_a_bad_filter_value_is_refused_with_a_stable_code_and_audited(seeded: Env, key: str, value: str,
                                                                      code: str) -> None:
    with pytest.raises(CustosClientError) as info:
        seeded.client("regulator-1").audit_query(**{key: value})
    assert info.value.code == code
    refused = [e for e in seeded.events(org="regulator-1") if e.decision == "deny"]
    assert [e.code for e in refused][-1:] == [code]


def test_cli_audit_query_takes_the_filters(seeded: Env, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    every = activity(seeded)
    capsys.readouterr()
    argv = ["audit", "query", "--org", "agency-1", "--decision", "deny", "--code", "NO_MANDATE", "--method", "GetCase",
            "--until", rfc3339(stored_time(every[-1].time) + timedelta(seconds=1)),
            "--key", str(seeded.data / "audit.vkey"),
            "--gateway", seeded.addr, "--identity", str(seeded.identity("regulator-1")), "--json"]
    assert cli.main(argv) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    until = rfc3339(stored_time(every[-1].time) + timedelta(seconds=1))
    assert events == [e.data for e in every if e.decision == "deny" and e.time < until] and events


def test_contact_events_name_their_channel_and_the_outcome_names_its_contact(seeded: Env) -> None:
    """A call and an SMS on one case are told apart by the log alone, and each outcome names the contact it is
    of, so caps and windows can be recounted from the events (issue 25: events that show conduct)."""
    seeded.clock.current = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai
    agency = seeded.client("agency-1")
    call = agency.open_contact("C-1", "call")
    agency.record_outcome(call.contact_id, "no_answer")
    sms = agency.open_contact("C-1", "sms")
    agency.record_outcome(sms.contact_id, "connected")
    seeded.clock.current = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)  # 23:00 there: outside the window
    with pytest.raises(CustosClientError):
        agency.open_contact("C-1", "call")
    reg = seeded.client("regulator-1")
    opened = [e for e in reg.audit_query(case_id="C-1", method="OpenContact")]
    assert [(e.decision, e.data["channel"], e.data.get("contact_id")) for e in opened] == [
        ("allow", "call", call.contact_id), ("allow", "sms", sms.contact_id), ("deny", "call", None)]
    outcomes = reg.audit_query(case_id="C-1", method="RecordOutcome")
    assert [(e.data["channel"], e.data["contact_id"]) for e in outcomes] == [("call", call.contact_id),
                                                                  ("sms", sms.contact_id)]
    assert [e.data["channel"] for e in reg.audit_query(case_id="C-1", channel="sms")] == ["sms", "sms"]
    vkey = (seeded.data / "audit.vkey").read_text()
    calls = reg.verified_audit_query(vkey, case_id="C-1", channel="call")
    assert calls == [opened[0], outcomes[0], opened[2]]
    with pytest.raises(CustosClientError) as info:
        reg.audit_query(channel="pigeon")
    assert info.value.code == "UNKNOWN_CHANNEL"
    # A read is no contact: its event carries neither key (the leaf keeps its old shape).
    reads = reg.audit_query(case_id="C-1", method="GetCase")
    assert all("channel" not in e and "contact_id" not in e for e in reads)


# ------------------------------------------------------------------ pagination (issue 25)


def _pages(fetch: Any, limit: int) -> tuple[list[tuple[int, bytes]], int]:
    """Every event of a query, read `limit` at a time from each page's `next_from_seq`; and how many pages."""
    got: list[tuple[int, bytes]] = []
    start, pages = 0, 0
    while True:
        page = fetch(from_seq=start, limit=limit)
        events = list(page)
        pages += 1
        assert len(events) <= limit
        got += events
        if not page.next_from_seq:
            return got, pages
        assert len(events) == limit and page.next_from_seq > events[-1][0]
        start = page.next_from_seq


@pytest.mark.parametrize("limit", [1, 2, 3, 1000])
def test_paging_with_a_limit_yields_exactly_the_unpaged_events(seeded: Env, limit: int) -> None:
    """In log order, with filters: each page holds at most `limit`, the pages together exactly the unpaged answer,
    and the last says there is nothing more (no empty page to ask for)."""
    activity(seeded)
    activity(seeded)  # refused and allowed events interleaved with the regulator's own
    reg = seeded.client("regulator-1")
    head = seeded.gw.core.audit.head()[0]
    filters = {"org_id": "agency-1", "method": "GetCase", "until": "2027-01-01T00:00:00Z"}
    every = [(seq, leaf) for seq, leaf in reg.audit_events(**filters) if seq < head]
    assert len(every) >= 4

    got, pages = _pages(lambda **kw: reg.audit_events(**filters, **kw), limit)
    assert got == every and pages == max(1, -(-len(every) // limit))
    denied = [(seq, leaf) for seq, leaf in every if b'"decision":"deny"' in leaf]
    assert _pages(lambda **kw: reg.audit_events(**filters, decision="deny", **kw), limit)[0] == denied
    # The proven path pages the same way (each page checked against its own checkpoint).
    vkey = (seeded.data / "audit.vkey").read_text()
    assert _pages(lambda **kw: reg.verified_audit_events(vkey, **filters, **kw), limit)[0] == every


def test_a_page_ends_exactly_at_the_last_match(seeded: Env) -> None:
    activity(seeded)
    reg = seeded.client("regulator-1")
    every = list(reg.audit_events(org_id="agency-1"))
    page = reg.audit_events(org_id="agency-1", limit=len(every))
    assert list(page) == every and page.next_from_seq == 0  # nothing more: not a pointer to an empty page
    page = reg.audit_events(org_id="agency-1", limit=1)
    assert list(page) == every[:1] and page.next_from_seq == every[1][0]
    assert list(reg.audit_events(org_id="agency-1", limit=0)) == every  # 0: all
    with pytest.raises(CustosClientError) as info:
        list(reg.audit_events(limit=-1))
    assert info.value.code == "INVALID_ARGUMENT"


def test_cli_audit_query_pages_with_limit_and_from_seq(seeded: Env, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    every = activity(seeded)
    conn = ["--gateway", seeded.addr, "--identity", str(seeded.identity("regulator-1")), "--json"]
    capsys.readouterr()
    assert cli.main(["audit", "query", "--org", "agency-1", "--limit", "1", *conn]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["events"] == [e.data for e in every[:1]] and first["next"] == every[1].seq
    assert cli.main(["audit", "query", "--org", "agency-1", "--limit", "5", "--from-seq", str(first["next"]),
                     "--key", str(seeded.data / "audit.vkey"), *conn]) == 0
    rest = json.loads(capsys.readouterr().out)
    assert rest["events"] == [e.data for e in every[1:]] and "next" not in rest


def test_the_agent_filter_is_checked_like_the_header(seeded: Env) -> None:
    reg = seeded.client("regulator-1")
    for bad in ("two words", "x" * 65):
        with pytest.raises(CustosClientError) as info:
            reg.audit_query(agent=bad)
        assert info.value.code == "INVALID_AGENT"
    assert reg.audit_query(agent="nobody-named-so") == []
