"""Agents and a lender's scope (issue 25).

A client may name the person acting (`custos-agent` metadata; `CustosClient(agent=)`, `--agent`/CUSTOS_AGENT):
it is in every event of that request as `agent`, GetCase's remembered event heads included, and never changes
which organisation acts (invariant 5). A bad one is INVALID_AGENT, audited without its text; a policy may
require one per kind (AGENT_REQUIRED, rule identity.agent, before anything is read). A lender may query the log
and gets only events whose `lender` is itself, also by proof and by sample.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import grpc
import pytest
from custos_client import CustosClient, CustosClientError
from custos_client.v1 import custos_pb2 as pb
from custos_client.v1 import custos_pb2_grpc as pb_grpc
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import cli, synth
from gateway.core.model import EventDraft
from gateway.tlog import merkle
from policies import BUNDLE_DIR
from tests.conftest import Env, RecordsClient, channel


def agent_client(env: Env, org: str, agent: str) -> CustosClient:
    c = RecordsClient(env.addr, env.identity(org), timeout=20, agent=agent)  # its mandates name their records
    env.clients[f"{org}~{agent}"] = c  # closed with the others
    return c


def raw_leaves(env: Env) -> bytes:
    return b"\n".join(leaf for _, leaf in env.client("regulator-1").audit_events())


def since(env: Env) -> int:
    """The sequence number the next event gets."""
    return int(max(seq for seq, _ in env.client("regulator-1").audit_events())) + 1


def refused(fn: Any) -> str:
    with pytest.raises(CustosClientError) as info:
        fn()
    return str(info.value.code)


def test_an_agent_is_in_every_event_of_its_request_and_only_there(seeded: Env) -> None:
    start = since(seeded)
    seeded.clock.current = seeded.clock.current.replace(hour=3)  # 11:00 in Shanghai: inside the contact window
    plain, alice, bob = (seeded.client("agency-1"), agent_client(seeded, "agency-1", "staff-0042"),
                         agent_client(seeded, "agency-1", "staff:b.7"))
    # GetCase remembers its grant with the event's head: each request's own agent goes in front of it at release,
    # whichever client made the grant and in any order.
    for c in (plain, alice, plain, bob, alice, plain):
        assert c.get_case("C-1", "collection").fields
    assert refused(lambda: alice.get_case("C-2", "collection")) == "NO_MANDATE"
    contact = alice.open_contact("C-1", "call")
    alice.record_outcome(contact.contact_id, "no_answer")
    alice.list_cases()
    list(bob.pull_cases("collection"))
    alice.report_payment("C-1", "12.00", "2026-11-29", "RCPT-A")
    lender = agent_client(seeded, "lender-a", "officer-1")
    lender.assign("C-3", "agency-1", "collection", "2026-12-31")

    reg = seeded.client("regulator-1")
    vkey = (seeded.data / "audit.vkey").read_text()
    mine = [(seq, leaf) for seq, leaf in reg.verified_audit_events(vkey, from_seq=start)
            if json.loads(leaf)["org"] in ("agency-1", "lender-a")]
    agents = [(json.loads(leaf)["method"], json.loads(leaf).get("agent")) for _, leaf in mine]
    assert agents[:6] == [("GetCase", None), ("GetCase", "staff-0042"), ("GetCase", None), ("GetCase", "staff:b.7"),
                          ("GetCase", "staff-0042"), ("GetCase", None)]
    rest = agents[6:]
    assert ("GetCase", "staff-0042") in rest and ("OpenContact", "staff-0042") in rest
    assert ("RecordOutcome", "staff-0042") in rest and ("ListCases", "staff-0042") in rest
    assert ("ReportPayment", "staff-0042") in rest and ("AssignCase", "officer-1") in rest
    assert {a for m, a in rest if m == "PullCases"} == {"staff:b.7"} and None not in {a for _, a in rest}
    for _, leaf in mine:  # every leaf is still RFC 8785 with the key in its place (the first)
        event = json.loads(leaf)
        assert merkle.canonical_json(event) == leaf
        if "agent" in event:
            assert leaf.startswith(b'{"agent":')
    # The filter keeps exactly one agent's events.
    assert [json.loads(leaf) for _, leaf in mine if json.loads(leaf).get("agent") == "staff:b.7"] == \
        [e.data for e in reg.audit_query(from_seq=start, agent="staff:b.7")]


def test_an_agent_never_changes_the_organisation(seeded: Env) -> None:
    """An agent string equal to another organisation's id changes nothing but the `agent` key (invariant 5)."""
    plain, posing = seeded.client("agency-1"), agent_client(seeded, "agency-1", "lender-a")
    assert posing.get_case("C-1", "collection") == plain.get_case("C-1", "collection")
    assert refused(lambda: posing.get_case("C-3", "servicing")) == refused(
        lambda: plain.get_case("C-3", "servicing"))
    assert refused(lambda: posing.assign("C-1", "agency-2", "collection", "2026-12-31")) == "WRONG_ORG_KIND"
    assert posing.list_cases() == plain.list_cases()
    events = seeded.events(org="agency-1")[-7:]
    shape = [{k: v for k, v in e.data.items() if k not in ("seq", "time", "trace_id", "agent")} for e in events]
    assert [e.data.get("agent") for e in events] == ["lender-a", None, "lender-a", None, "lender-a", "lender-a", None]
    assert shape[0] == shape[1] and shape[2] == shape[3] and shape[5] == shape[6]
    assert all(e.org == "agency-1" for e in events)
    assert not [e for e in seeded.events(org="lender-a") if e.data.get("agent")]


@pytest.mark.parametrize("agent", ["two words", "x" * 65, "a/b", "ali@example.invalid", "+8613900000001 Synth"])
def test_a_bad_agent_is_refused_and_audited_without_its_text(seeded: Env, agent: str) -> None:
    bad = agent_client(seeded, "agency-1", agent)
    assert refused(lambda: bad.get_case("C-1", "collection")) == "INVALID_AGENT"
    assert refused(lambda: bad.list_cases()) == "INVALID_AGENT"
    denied = [e for e in seeded.events(org="agency-1") if e.decision == "deny"]
    assert [(e.code, e.data["rule"], e.method, e.data.get("agent")) for e in denied[-2:]] == [
        ("INVALID_AGENT", "identity.agent", "GetCase", None), ("INVALID_AGENT", "identity.agent", "ListCases", None)]
    assert not denied[-1].data["fields"]  # refused before anything was read
    assert agent.encode() not in raw_leaves(seeded)
    assert refused(lambda: seeded.client("regulator-1").audit_query(agent=agent)) == "INVALID_AGENT"


def test_an_agent_named_twice_or_not_sendable_is_refused(seeded: Env) -> None:
    agency = seeded.client("agency-1")
    twice = [("custos-agent", "staff-1"), ("custos-agent", "staff-2")]
    assert refused(lambda: agency.get_case("C-1", "collection", metadata=twice)) == "INVALID_AGENT"
    assert b"staff-1" not in raw_leaves(seeded)
    with pytest.raises(CustosClientError) as info:
        CustosClient(seeded.addr, seeded.identity("agency-1"), agent="张伟")  # gRPC cannot carry it: refused here
    assert info.value.code == "INVALID_AGENT"


def _agent_bundle(dest: Path, kind: str) -> Path:
    shutil.copytree(BUNDLE_DIR, dest, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    table = dest / "capabilities.toml"
    text = table.read_text()
    assert text.count(f"[kinds.{kind}]\n") == 1
    table.write_text(text.replace(f"[kinds.{kind}]\n", f"[kinds.{kind}]\nagent_required = true\n"))
    return dest


def test_a_policy_may_require_an_agent_of_a_kind(seeded: Env, tmp_path: Path) -> None:
    seeded.gw.policy_dir = _agent_bundle(tmp_path / "policies", "agency")
    seeded.gw.reload_policies()
    plain, named = seeded.client("agency-1"), agent_client(seeded, "agency-1", "staff-9")
    for _ in range(3):  # the named agent's grant is remembered: a call without one is still refused
        assert named.get_case("C-1", "collection").fields
        assert refused(lambda: plain.get_case("C-1", "collection")) == "AGENT_REQUIRED"
    assert refused(lambda: plain.list_cases()) == "AGENT_REQUIRED"
    assert refused(lambda: list(plain.pull_cases("collection"))) == "AGENT_REQUIRED"
    denied = [e for e in seeded.events(org="agency-1") if e.decision == "deny"]
    assert {(e.code, e.data["rule"]) for e in denied} == {("AGENT_REQUIRED", "identity.agent")}
    assert all(not e.data["fields"] for e in denied)  # nothing was read
    assert [e.case_id for e in denied if e.method == "GetCase"] == ["C-1"] * 3  # the case it named
    # Another kind is not required to: the lender acts without one.
    assert seeded.client("lender-a").get_case("C-1", "servicing").fields
    # Back to the shipped policy: no kind needs one.
    seeded.gw.policy_dir = BUNDLE_DIR
    seeded.gw.reload_policies()
    assert plain.get_case("C-1", "collection").fields


def test_the_cli_names_the_agent_by_option_or_environment(seeded: Env, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    conn = ["--gateway", seeded.addr, "--identity", str(seeded.identity("lender-a")), "--json"]
    assert cli.main(["lender", "stage", "C-3", "letter", *conn, "--agent", "officer-3"]) == 0
    monkeypatch.setenv("CUSTOS_AGENT", "officer-env")
    assert cli.main(["lender", "stage", "C-3", "reminder", *conn]) == 0
    reg = ["--gateway", seeded.addr, "--identity", str(seeded.identity("regulator-1")), "--json"]
    capsys.readouterr()
    # For `audit query`, --agent is the filter; the agent acting is named before the command (or by CUSTOS_AGENT).
    assert cli.main(["--agent", "supervisor-1", "audit", "query", "--org", "lender-a", "--agent", "officer-3",
                     *reg]) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    assert [(e["method"], e["agent"]) for e in events] == [("SetStage", "officer-3")]
    query = seeded.events(org="regulator-1", method="QueryAudit")
    assert [e.data.get("agent") for e in query][-2:] == ["supervisor-1", None]
    assert cli.main(["lender", "stage", "C-3", "letter", *conn, "--agent", "bad agent"]) == 3  # the gateway refuses
    assert "INVALID_AGENT" in capsys.readouterr().err


# ------------------------------------------------------------------ a lender's scope


def _two_lenders(env: Env) -> None:
    """lender-b owns a C-1 too (case ids are each lender's own), reads it and is refused one of its cases."""
    line = synth.case_line(1, seed=99)
    line["borrower"]["borrower_id"] = "B-1"
    line["loan"]["loan_id"] = "BL-91"
    assert env.import_cases("lender-b", [line]).imported == 1
    lender_b = env.client("lender-b")
    lender_b.get_case("C-1", "servicing")
    lender_b.assign("BC-1", "agency-1", "collection", "2026-12-31")
    assert env.client("agency-1").get_case("lender-b/BC-1", "collection").fields
    env.client("lender-a").get_case("C-1", "servicing")
    env.client("agency-1").get_case("C-1", "collection")


def test_a_lender_queries_only_its_own_cases_events(seeded: Env) -> None:
    _two_lenders(seeded)
    lender_a = seeded.client("lender-a")
    every = seeded.events()
    assert any(e.data.get("lender") == "lender-b" for e in every)
    own = [e for e in every if e.data.get("lender") == "lender-a"]
    got = lender_a.audit_query()
    assert got[:len(own)] == own and {e.data.get("lender") for e in got} == {"lender-a"}
    # Its own query is in its scope (and the regulator's queries are not).
    assert got[-1].org == "lender-a" and got[-1].method == "QueryAudit" and got[-1].purpose == "servicing"
    # Asking for another lender's organisation, or a case id another lender also has, gets none of its events:
    # an empty answer, never a refusal (which would tell that the other lender has such a case).
    assert lender_a.audit_query(org_id="lender-b") == []
    assert [e for e in lender_a.audit_query(org_id="agency-1") if e.data["lender"] != "lender-a"] == []
    c1 = lender_a.audit_query(case_id="C-1")
    assert c1 and {e.data["lender"] for e in c1} == {"lender-a"}
    assert {e.data.get("lender") for e in seeded.events(case_id="C-1")} >= {"lender-a", "lender-b"}
    # (its own query naming BC-1 is its event: the only one there)
    assert [e.method for e in lender_a.audit_query(case_id="BC-1")] == ["QueryAudit"]
    # The proven path holds the same scope.
    vkey = (seeded.data / "audit.vkey").read_text()
    proven = lender_a.verified_audit_query(vkey, case_id="C-1")
    assert proven[:len(c1)] == c1 and {e.data["lender"] for e in proven} == {"lender-a"}
    assert lender_a.verified_audit_query(vkey, org_id="lender-b") == []
    # A regulator still sees every lender's events.
    assert {e.data.get("lender") for e in seeded.client("regulator-1").audit_query(case_id="C-1")} >= {"lender-a",
                                                                                                  "lender-b"}
    # Never another lender's event anywhere in what lender-a was sent, lender-b's likewise.
    for org, other in (("lender-a", b'"lender":"lender-b"'), ("lender-b", b'"lender":"lender-a"')):
        assert other not in b"".join(leaf for _, leaf in seeded.client(org).audit_events())


def test_a_lenders_sample_by_sequence_number_holds_its_scope(seeded: Env) -> None:
    _two_lenders(seeded)
    theirs = [e.seq for e in seeded.events() if e.data.get("lender") == "lender-b"]
    mine = [e.seq for e in seeded.events() if e.data.get("lender") == "lender-a"]
    with channel(seeded, "lender-a") as ch:
        stub = pb_grpc.AuditServiceStub(ch)
        got = [ev.seq for batch in stub.QueryAudit(pb.QueryAuditRequest(seqs=theirs + mine[:3], with_proofs=True),
                                                   timeout=20) for ev in batch.events]
    assert got == sorted(mine[:3])


def test_a_lender_may_not_prove_or_cosign_only_query(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    assert refused(lambda: lender.inclusion_proof(0)) == "WRONG_ORG_KIND"
    assert refused(lambda: lender.checkpoint()) == "WRONG_ORG_KIND"
    assert refused(lambda: seeded.client("agency-1").audit_query()) == "WRONG_ORG_KIND"


def test_grpc_status_of_agent_codes() -> None:
    from gateway.core.errors import Code, CustosError
    from gateway.transport.status import to_status

    assert to_status(CustosError(Code.INVALID_AGENT)).code == grpc.StatusCode.INVALID_ARGUMENT
    assert to_status(CustosError(Code.AGENT_REQUIRED)).code == grpc.StatusCode.PERMISSION_DENIED


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.text(), min_size=15, max_size=15), fields=st.lists(st.text(), max_size=4),
       seq=st.integers(min_value=0, max_value=2**62))
def test_the_agent_key_keeps_every_leaf_jcs_also_on_a_remembered_head(texts: list[str], fields: list[str],
                                                                      seq: int) -> None:
    names = ("org", "method", "purpose", "case_id", "borrower_id", "decision", "code", "rule", "time", "trace_id",
             "policy_revision", "lender", "channel", "contact_id", "agent")
    kw: dict[str, Any] = dict(zip(names, texts, strict=True))
    draft = EventDraft(**kw, fields=fields)
    leaf = draft.leaf_bytes(seq)
    assert leaf == merkle.canonical_json(draft.leaf_object(seq))
    assert json.loads(leaf).get("agent", "") == draft.agent
    # A head remembered for many requests (GetCase's grant) holds no agent: the event's own goes in front.
    front, tail = draft.head_parts()
    assert b'"agent"' not in front + tail or '"agent"' in "".join(texts)
    remembered = EventDraft(**kw, fields=fields, head=front + tail)
    assert remembered.leaf_bytes(seq) == leaf
