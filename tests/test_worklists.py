"""Streamed work lists: `cases pull` and the PullCases RPC (issue 13).

What must hold: exactly the cases mandated to the caller, each minimised as
GetCase would release it, each release with its own audit event; with a
cursor, only what changed after it (a recall, a stage change, a lapse or an
erasure as `removed`); an interrupted pull resumed from any message's cursor,
across a restart, with no repeats and no gaps.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from custos_client import CustosClientError, PullEnd, PullRecord, PullRemoved

from gateway import cli, synth
from gateway.core.usecases import worklists
from gateway.transport.server import build
from tests.conftest import Env


def pull(env: Env, org: str, since: str = "", purpose: str = "collection") -> tuple[list[dict[str, Any]], str]:
    """Every message but the last, and the last cursor."""
    items = list(env.client(org).pull_cases(purpose, since))
    assert isinstance(items[-1], PullEnd)
    return items[:-1], items[-1].cursor


def records(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i.record.case_id: i.record for i in items if isinstance(i, PullRecord)}


@pytest.fixture
def portfolio(env: Env) -> Env:
    """lender-a: C-1..C-8; agency-1 holds C-1..C-5 for collection, agency-2 holds C-6; lender-b's BC-1 to agency-1."""
    lines = [synth.case_line(1, jurisdiction="CN", borrower=1), synth.case_line(2, jurisdiction="CN", borrower=1)]
    lines += [synth.case_line(i, jurisdiction="CN") for i in range(3, 9)]
    assert env.import_cases("lender-a", lines).imported == 8
    env.import_cases("lender-b", [synth.case_line(1, lender_prefix="B", seed=99, jurisdiction="CN")])
    lender = env.client("lender-a")
    for i in range(1, 6):
        lender.assign(f"C-{i}", "agency-1", "collection", "2026-12-31")
    lender.assign("C-6", "agency-2", "collection", "2026-12-31")
    env.client("lender-b").assign("BC-1", "agency-1", "collection", "2026-12-31")
    return env


def test_a_pull_releases_exactly_the_mandated_cases_as_get_case_would(portfolio: Env) -> None:
    items, cursor = pull(portfolio, "agency-1")
    got = records(items)
    assert sorted(got) == ["BC-1", "C-1", "C-2", "C-3", "C-4", "C-5"]
    assert all(not isinstance(i, PullRemoved) for i in items)  # a first pull lists what the caller may read, nothing else
    assert {i.record.case_id: i.record.lender_id for i in items}["BC-1"] == "lender-b"
    agency = portfolio.client("agency-1")
    for case_id, rec in got.items():
        ref = f"lender-b/{case_id}" if case_id.startswith("B") else case_id
        direct = agency.get_case(ref, "collection")
        assert rec.fields == direct.fields and rec.stage == direct.stage and rec.rules == direct.rules
    # Minimised: a collection agency at reminder gets neither the bank account nor the full national id.
    assert all("bank_account" not in r.fields and len(r.fields["national_id"]) == 4 for r in got.values())
    # The other agency gets its own only.
    assert sorted(records(pull(portfolio, "agency-2")[0])) == ["C-6"]
    assert cursor.startswith("w")


def test_each_release_has_its_own_audit_event(portfolio: Env) -> None:
    items, _ = pull(portfolio, "agency-1")
    events = [e for e in portfolio.events(org="agency-1") if e.method == "PullCases"]
    allowed = [e for e in events if e.decision == "allow" and e.case_id]
    assert sorted(e.case_id for e in allowed) == sorted(records(items))
    for e in allowed:
        rec = records(items)[e.case_id]
        assert e.purpose == "collection" and sorted(e.data["fields"]) == sorted(rec.fields)
    # And the request itself.
    assert [e.data["rule"] for e in events if not e.case_id] == ["worklist.pull:from=0"]


def test_with_a_cursor_only_what_changed_comes_and_what_ended_is_removed(portfolio: Env) -> None:
    _, cursor = pull(portfolio, "agency-1")
    assert pull(portfolio, "agency-1", cursor)[0] == []  # nothing changed: nothing sent, nothing audited
    lender = portfolio.client("lender-a")
    lender.set_stage("C-2", "letter")  # more fields released
    lender.recall("C-3", "agency-1")
    lender.set_stage("C-4", "early_warning")  # a stage agencies may not see
    lender.set_stage("C-6", "letter")  # another agency's case
    portfolio.import_cases("lender-a", [synth.case_line(9, jurisdiction="CN")])  # not mandated to anyone
    items, cursor2 = pull(portfolio, "agency-1", cursor)
    assert sorted(records(items)) == ["C-2"]
    assert "home_address" in records(items)["C-2"].fields
    removed = {i.case_id: i.code for i in items if isinstance(i, PullRemoved)}
    assert removed == {"C-3": "MANDATE_RECALLED", "C-4": "STAGE_NOT_ALLOWED"}
    assert pull(portfolio, "agency-1", cursor2)[0] == []
    # A new mandate, and the case back at a stage it may see: both come again.
    lender.assign("C-8", "agency-1", "collection", "2026-12-31")
    lender.set_stage("C-4", "reminder")
    assert sorted(records(pull(portfolio, "agency-1", cursor2)[0])) == ["C-4", "C-8"]


def test_a_loan_change_sends_its_case_again_and_a_key_rotation_sends_nothing(
        portfolio: Env, capsys: pytest.CaptureFixture[str]) -> None:
    _, cursor = pull(portfolio, "agency-1")
    portfolio.client("lender-a").record_notice("C-3", "2026-11-20")  # the loan's row changes
    items, cursor = pull(portfolio, "agency-1", cursor)
    assert sorted(records(items)) == ["C-3"]
    # A KEK rotation rewraps every data key: the values are the same, so nothing is sent again.
    assert cli.main(["keys", "rotate", str(portfolio.data), "--json"]) == 0
    capsys.readouterr()
    while portfolio.gw.core.rewrap_step(100):
        pass
    assert pull(portfolio, "agency-1", cursor)[0] == []


def test_an_erased_borrowers_cases_are_removed(portfolio: Env) -> None:
    _, cursor = pull(portfolio, "agency-1")
    portfolio.client("lender-a").erase("B-1")
    items, _ = pull(portfolio, "agency-1", cursor)
    assert {i.case_id: i.code for i in items if isinstance(i, PullRemoved)} == {"C-1": "ERASED", "C-2": "ERASED"}
    assert records(items) == {}


def test_a_mandate_past_its_end_is_removed_once_marked_lapsed(portfolio: Env) -> None:
    _, cursor = pull(portfolio, "agency-1")
    portfolio.client("lender-a").assign("C-8", "agency-1", "collection", "2026-12-01")
    items, cursor = pull(portfolio, "agency-1", cursor)
    assert sorted(records(items)) == ["C-8"]
    portfolio.clock.advance(days=2)  # 2026-12-02: over in Shanghai, not yet a change in the feed
    assert portfolio.gw.core.lapse_mandates() == 0  # a day's margin: the last day may still run somewhere
    with pytest.raises(CustosClientError) as info:
        portfolio.client("agency-1").get_case("C-8", "collection")
    assert info.value.code == "MANDATE_EXPIRED"  # the read is refused at once, whatever the feed says
    portfolio.clock.advance(days=1)
    assert portfolio.gw.core.lapse_mandates() == 1
    items, _ = pull(portfolio, "agency-1", cursor)
    assert [(i.case_id, i.code) for i in items if isinstance(i, PullRemoved)] == [("C-8", "MANDATE_EXPIRED")]


def test_an_interrupted_pull_resumes_after_a_restart_without_repeats_or_gaps(
        portfolio: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worklists, "PULL_PAGE", 2)  # several pages, so the break falls between two
    whole = [i.record.case_id for i in pull(portfolio, "agency-1")[0]]
    stream: Iterator[dict[str, Any]] = portfolio.client("agency-1").pull_cases("collection")
    first = [next(stream) for _ in range(3)]
    stream.close()  # the agency's process dies mid-pull
    portfolio.close()
    gw = build(portfolio.data, "127.0.0.1:0", clock=portfolio.clock, workers=8)
    portfolio.gw, portfolio.clients = gw, {}
    rest, _ = pull(portfolio, "agency-1", first[-1].cursor)
    resumed = [i.record.case_id for i in first] + [i.record.case_id for i in rest]
    assert resumed == whole and len(set(resumed)) == len(resumed)


def test_a_change_during_a_pull_is_in_the_next_one(portfolio: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worklists, "PULL_PAGE", 2)
    stream = portfolio.client("agency-1").pull_cases("collection")
    seen = [next(stream)]
    portfolio.client("lender-a").set_stage("C-5", "letter")  # while the pull runs
    seen += list(stream)
    cursor = seen[-1].cursor
    # C-5 came before its change, or its change moved it past this pull's end: either way it is in the next.
    sent = sorted(i.record.case_id for i in seen if isinstance(i, PullRecord))
    assert sent in (["BC-1", "C-1", "C-2", "C-3", "C-4", "C-5"], ["BC-1", "C-1", "C-2", "C-3", "C-4"])
    nxt = records(pull(portfolio, "agency-1", cursor)[0])
    assert sorted(nxt) == ["C-5"] and "home_address" in nxt["C-5"].fields


def test_a_new_policy_bundle_makes_every_case_a_change(portfolio: Env) -> None:
    _, cursor = pull(portfolio, "agency-1")
    position, _tag = worklists.parse_cursor(cursor) or ((0, "", ""), "")
    stale = worklists.cursor_of(position, worklists.bundle_tag("another revision"))
    assert sorted(records(pull(portfolio, "agency-1", stale)[0])) == ["BC-1", "C-1", "C-2", "C-3", "C-4", "C-5"]


@pytest.mark.parametrize("since", ["nonsense", "w1~zzzzzzzzzzzz", "w99999999~000000000000", "f3",
                                   "w1~000000000000~lender-a/C 1", "x" * 5000])
def test_a_cursor_that_was_never_handed_out_is_refused(portfolio: Env, since: str) -> None:
    with pytest.raises(CustosClientError) as info:
        pull(portfolio, "agency-1", since)
    assert info.value.code == "INVALID_CURSOR"


@pytest.mark.parametrize(("org", "purpose", "code"), [("agency-1", "gossip", "UNKNOWN_PURPOSE"),
                                                      ("lender-a", "servicing", "PURPOSE_NOT_ALLOWED"),
                                                      ("agency-old", "collection", "LICENCE_EXPIRED")])
def test_who_may_not_pull_is_refused_and_audited(portfolio: Env, org: str, purpose: str, code: str) -> None:
    with pytest.raises(CustosClientError) as info:
        pull(portfolio, org, purpose=purpose)
    assert info.value.code == code
    denied = [e for e in portfolio.events(org=org) if e.method == "PullCases"]
    assert [e.decision for e in denied] == ["deny"] and denied[0].code == code


def test_cases_pull_on_the_command_line_writes_an_owner_only_document_and_resumes(
        portfolio: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "worklist.json"
    argv = ["--gateway", portfolio.addr, "--identity", str(portfolio.identity("agency-1"))]
    assert cli.main(["cases", "pull", "--purpose", "collection", "--out", str(out), "--json", *argv]) == 0
    summary = json.loads(capsys.readouterr().out)
    doc = json.loads(out.read_text())
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert doc["complete"] is True and summary["records"] == len(doc["records"]) == 6
    assert sorted(r["case_id"] for r in doc["records"]) == ["BC-1", "C-1", "C-2", "C-3", "C-4", "C-5"]
    portfolio.client("lender-a").recall("C-1", "agency-1")
    assert cli.main(["cases", "pull", "--purpose", "collection", "--since", doc["cursor"], *argv]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["records"] == [] and again["removed"] == [{"case_id": "C-1", "lender_id": "lender-a",
                                                            "code": "MANDATE_RECALLED"}]
    assert cli.main(["cases", "pull", "--purpose", "collection", "--since", "bogus", *argv]) == 3  # refused
    err = capsys.readouterr().err
    assert "error: INVALID_CURSOR" in err and "Traceback" not in err and "resume" not in err  # nothing arrived


def test_a_broken_pull_on_the_command_line_keeps_what_arrived_and_names_the_cursor(
        portfolio: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The stream breaks after the first page: the file holds that page, complete is false, and resuming from the
    cursor it names brings exactly the rest."""
    from custos_client import client as client_module

    monkeypatch.setattr(worklists, "PULL_PAGE", 2)
    from gateway.transport import servicers

    monkeypatch.setattr(servicers, "PULL_MESSAGE_ITEMS", 2)
    real = client_module.CustosClient.pull_cases

    def breaking(self: Any, purpose: str, since: str = "", timeout: float = 3600) -> Iterator[dict[str, Any]]:
        for n, item in enumerate(real(self, purpose, since, timeout)):
            if n == 2:
                raise CustosClientError("UNAVAILABLE", "the connection was lost", progress={"cursor": item.cursor})
            yield item

    out = tmp_path / "worklist.json"
    argv = ["--gateway", portfolio.addr, "--identity", str(portfolio.identity("agency-1"))]
    monkeypatch.setattr(client_module.CustosClient, "pull_cases", breaking)
    assert cli.main(["cases", "pull", "--purpose", "collection", "--out", str(out), *argv]) == 4  # the gateway went away
    err = capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert doc["complete"] is False and len(doc["records"]) == 2
    assert f"resume with --since {doc['cursor']}" in err and "Traceback" not in err
    monkeypatch.setattr(client_module.CustosClient, "pull_cases", real)
    assert cli.main(["cases", "pull", "--purpose", "collection", "--since", doc["cursor"], *argv]) == 0
    rest = json.loads(capsys.readouterr().out)
    got = [r["case_id"] for r in doc["records"]] + [r["case_id"] for r in rest["records"]]
    assert sorted(got) == ["BC-1", "C-1", "C-2", "C-3", "C-4", "C-5"] and len(set(got)) == len(got)
