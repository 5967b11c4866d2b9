"""`audit stats` (issue 25, figures that can be recounted): counts per group over [from, to) at a signed size.

The figures equal a recount of the events (random traffic, both halves of the store's count: the facts derived
with the index and the tail read as leaves); a lender counts only the events naming it; a bad range or key is a
stable code, audited; `--verify` recounts from the verified events and fails, naming the group, when the derived
facts were tampered with; a log written before the facts existed is backfilled when it opens.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from custos_client import AuditEvent, CustosClientError

from gateway import cli, synth
from gateway.core.errors import Code
from gateway.core.model import rfc3339
from gateway.core.rules import auditstats
from tests.conftest import Env, FakeClock, InMemorySpanExporter, build

START = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
KEYSETS = [(), ("org",), ("org", "code"), ("method", "decision"), ("purpose", "channel"), ("lender", "agent"),
           ("day",), ("month", "org"), ("code", "day", "org")]


@pytest.fixture(autouse=True)
def facts_every_index_mark(monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded store derives its facts every 1,024 events; a test's few hundred cross 256 (PostgreSQL's)."""
    from vault.sqlite import auditstore

    monkeypatch.setattr(auditstore, "FACTS_EVERY", 256)


def traffic(env: Env, n: int, seed: int = 7) -> None:
    """`n` random calls over several days: reads allowed and refused, contacts on each channel, lenders' reads."""
    rng = random.Random(seed)
    env.clock.current = START
    agency, lender_a, lender_b = env.client("agency-1"), env.client("lender-a"), env.client("lender-b")
    for _ in range(n):
        env.clock.current += timedelta(minutes=rng.choice((1, 7, 60, 300)))
        pick = rng.random()
        try:
            if pick < 0.35:
                agency.get_case("C-1", "collection")
            elif pick < 0.5:
                agency.get_case(rng.choice(("C-2", "C-3", "BC-1")), "collection")
            elif pick < 0.65:
                agency.open_contact("C-1", rng.choice(("call", "sms", "visit", "letter")))
            elif pick < 0.85:
                lender_a.get_case(rng.choice(("C-1", "C-4")), "servicing")
            else:
                lender_b.get_case("BC-2", "servicing")
        except CustosClientError:
            pass  # refusals are events too


def recount(events: list[AuditEvent], by: tuple[str, ...], start: str, end: str,
            lender: str = "") -> Counter[tuple[str, ...]]:
    """The test's own count, written apart from the one under test."""
    out: Counter[tuple[str, ...]] = Counter()
    for e in events:
        if start <= e.time < end and (not lender or e.data.get("lender") == lender):
            key = tuple(e.time[:10] if k == "day" else e.time[:7] if k == "month" else
                        e.data.get(k, "") for k in by)
            out[key] += 1
    return out


def as_counts(doc: dict[str, Any]) -> Counter[tuple[str, ...]]:
    return Counter({tuple(g.group[k] for k in doc.by): g.count for g in doc.groups})


def audit_sql(env: Env, statement: str) -> None:
    """One statement on the audit store directly (the SQLite audit file, or the PostgreSQL database): tests only."""
    config = json.loads((env.data / "config.json").read_text())
    if config.get("database"):
        import psycopg

        with psycopg.connect(config["database"], autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]
        return
    from vault.crypto import read_key_file
    from vault.sqlite import db

    conn = db.connect(env.data / "audit.db", read_key_file(env.data / "keys" / "db.key"))
    try:
        conn.execute(statement)
    finally:
        conn.close()


def run_cli(env: Env, org: str, *argv: str) -> int:
    return cli.main(["audit", "stats", *argv, "--gateway", env.addr, "--identity", str(env.identity(org)), "--json"])


# ------------------------------------------------------------------ the figures


def test_stats_equal_a_recount_of_the_events_for_random_traffic(seeded: Env) -> None:
    traffic(seeded, 420)  # with the seeding, well past the first index mark: facts and the leaf tail both count
    reg = seeded.client("regulator-1")
    ranges = [(START, START + timedelta(days=40)), (START + timedelta(hours=20), START + timedelta(days=2)),
              (START - timedelta(days=400), START + timedelta(days=400))]
    for lo, hi in ranges:
        start, end = rfc3339(lo), rfc3339(hi)
        for by in KEYSETS:
            doc = reg.audit_stats(start, end, by)
            events = [e for e in reg.audit_query(until=end) if e.seq < doc.size]
            expected = recount(events, by, start, end)
            assert as_counts(doc) == expected, by
            assert doc.total == sum(expected.values()) and doc.by == list(by)
            assert [tuple(g.group[k] for k in by) for g in doc.groups] == sorted(expected)  # a stable order
            assert (doc.from_, doc.to) == (start, end)
            assert doc.checkpoint.split("\n")[1] == str(doc.size)
    # The facts the store derived stand behind most of it: every event below the mark is counted from them.
    assert doc.size > 256


def test_the_call_is_audited_and_counted_at_the_size_it_signs(seeded: Env) -> None:
    seeded.clock.current = START
    reg = seeded.client("regulator-1")
    start, end = rfc3339(START), rfc3339(START + timedelta(days=1))
    doc = reg.audit_stats(start, end, ["org", "method"])
    own = [e for e in seeded.events(org="regulator-1") if e.data.get("method") == "AuditStats"]
    assert [e.data["rule"] for e in own] == [f"supervision.stats:from={start};to={end};by=org,method"]
    assert own[0].seq == doc.size - 1 and own[0].purpose == "supervision"
    assert {"org": "regulator-1", "method": "AuditStats", "count": 1} in doc.to_dict()["groups"]
    assert doc.lender == "" and "lender" not in doc.to_dict()


def test_day_and_month_are_utc_buckets_and_the_range_is_half_open(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    times = [datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(2027, 1, 1, 0, 0, tzinfo=UTC),
             datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC)]
    for t in times:
        seeded.clock.current = t
        lender.get_case("C-1", "servicing")
    reg = seeded.client("regulator-1")
    # [23:59:59, 00:00:01): the event at exactly `to` is left out.
    doc = reg.audit_stats("2026-12-31T23:59:59Z", "2027-01-01T01:00:01+01:00", ["org", "day", "month"])
    assert doc.to_dict()["groups"] == [{"org": "lender-a", "day": "2026-12-31", "month": "2026-12", "count": 1},
                             {"org": "lender-a", "day": "2027-01-01", "month": "2027-01", "count": 1}]
    assert doc.to == "2027-01-01T00:00:01.000000Z"


def test_a_lender_counts_only_the_events_naming_it(seeded: Env) -> None:
    traffic(seeded, 80, seed=3)
    start, end = rfc3339(START - timedelta(days=400)), rfc3339(START + timedelta(days=400))
    for lender in ("lender-a", "lender-b"):
        doc = seeded.client(lender).audit_stats(start, end, ["lender", "org"])
        assert doc.lender == lender and doc.groups
        assert {g.group["lender"] for g in doc.groups} == {lender}
        every = [e for e in seeded.events() if e.seq < doc.size]
        assert as_counts(doc) == recount(every, ("lender", "org"), start, end, lender)
    # The lender's own stats event names it, so it is in its own figures (and only there).
    own = [e for e in seeded.events(org="lender-b") if e.data.get("method") == "AuditStats"]
    assert own and all(e.data["lender"] == "lender-b" and e.purpose == "servicing" for e in own)


@pytest.mark.parametrize(("start", "end", "by", "code"), [
    ("2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z", ["borrower_id"], "INVALID_ARGUMENT"),
    ("2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z", ["org", "org"], "INVALID_ARGUMENT"),
    ("2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z", ["org", ""], "INVALID_ARGUMENT"),
    ("yesterday", "2026-12-02T00:00:00Z", [], "INVALID_TIME"),
    ("2026-12-01T00:00:00", "2026-12-02T00:00:00Z", [], "INVALID_TIME"),  # no zone
    ("", "2026-12-02T00:00:00Z", [], "INVALID_TIME"),
    ("2026-12-02T00:00:00Z", "2026-12-02T00:00:00Z", [], "INVALID_TIME_RANGE"),
    ("2026-12-02T00:00:00Z", "2026-12-01T00:00:00Z", [], "INVALID_TIME_RANGE"),
])
def test_a_bad_range_or_key_is_a_stable_code_and_audited(seeded: Env, start: str, end: str, by: list[str],
                                                          code: str) -> None:
    with pytest.raises(CustosClientError) as info:
        seeded.client("regulator-1").audit_stats(start, end, by)
    assert info.value.code == code and info.value.status == "INVALID_ARGUMENT"
    refused = [e for e in seeded.events(org="regulator-1") if e.decision == "deny"]
    assert [(e.method, e.code) for e in refused][-1:] == [("AuditStats", code)]


def test_an_agency_may_not_ask(seeded: Env) -> None:
    with pytest.raises(CustosClientError) as info:
        seeded.client("agency-1").audit_stats("2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z")
    assert info.value.code == "WRONG_ORG_KIND"


# ------------------------------------------------------------------ --verify


def test_cli_verify_recounts_and_agrees_on_an_honest_log(seeded: Env, capsys: pytest.CaptureFixture[str]) -> None:
    traffic(seeded, 300, seed=11)
    capsys.readouterr()
    start, end = rfc3339(START), rfc3339(START + timedelta(days=60))
    assert run_cli(seeded, "regulator-1", "--from", start, "--to", end, "--by", "org,code,day", "--verify",
                   "--key", str(seeded.data / "audit.vkey")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["by"] == ["org", "code", "day"] and doc["total"] > 256 and doc["size"] > doc["total"]
    assert set(doc) == {"from", "to", "by", "size", "checkpoint", "total", "groups"}


def test_cli_verify_fails_naming_the_group_when_the_derived_facts_were_tampered_with(
        seeded: Env, capsys: pytest.CaptureFixture[str]) -> None:
    traffic(seeded, 300, seed=11)
    start, end = rfc3339(START), rfc3339(START + timedelta(days=60))
    reg = seeded.client("regulator-1")
    honest = reg.audit_stats(start, end, ["org", "decision"])
    # A refusal of the agency's re-labelled as allowed in the table SQL counts: the leaves are untouched.
    audit_sql(seeded, "UPDATE audit_facts SET decision = 'allow' WHERE seq = (SELECT MIN(seq) FROM audit_facts"
                      " WHERE org = 'agency-1' AND decision = 'deny' AND time >= '" + start + "')")
    tampered = reg.audit_stats(start, end, ["org", "decision"])
    assert tampered.groups != honest.groups  # the gateway now states a wrong figure
    capsys.readouterr()
    argv = ["--from", start, "--to", end, "--by", "org,decision", "--verify", "--key", str(seeded.data / "audit.vkey")]
    assert run_cli(seeded, "regulator-1", *argv) == 5  # a failed verification's exit status
    err = capsys.readouterr().err
    assert "STATS_MISMATCH" in err and 'org="agency-1",decision="deny"' in err
    assert "C-" not in err and "B-" not in err  # names groups, never a case or a borrower
    # Without --verify the stated figures are printed as they are: the table is a convenience, --verify the check.
    assert run_cli(seeded, "regulator-1", *argv[:6]) == 0


def test_cli_verify_refuses_figures_under_another_key(seeded: Env, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.vkey"
    other.write_text(_other_vkey())
    capsys.readouterr()
    assert run_cli(seeded, "regulator-1", "--from", rfc3339(START), "--to", rfc3339(START + timedelta(days=1)),
                   "--verify", "--key", str(other)) == 5
    assert "AUDIT_VERIFY_FAILED" in capsys.readouterr().err
    assert run_cli(seeded, "regulator-1", "--from", rfc3339(START), "--to", rfc3339(START + timedelta(days=1)),
                   "--verify") == 2  # a usage error
    assert "INVALID_ARGUMENT" in capsys.readouterr().err


def _other_vkey() -> str:
    """A valid Ed25519 verifier key of another log (signed-note format)."""
    import base64
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    name = "another-log"
    key_hash = hashlib.sha256(name.encode() + b"\n\x01" + raw).digest()[:4]
    encoded = base64.b64encode(b"\x01" + raw).decode()
    return f"{name}+{key_hash.hex()}+{encoded}\n"


def test_cli_verify_for_a_lender_recounts_its_own_events(seeded: Env, capsys: pytest.CaptureFixture[str]) -> None:
    traffic(seeded, 60, seed=5)
    capsys.readouterr()
    assert run_cli(seeded, "lender-a", "--from", rfc3339(START), "--to", rfc3339(START + timedelta(days=30)),
                   "--by", "org,method", "--verify", "--key", str(seeded.data / "audit.vkey")) == 0
    assert json.loads(capsys.readouterr().out)["lender"] == "lender-a"


# ------------------------------------------------------------------ a log written before the facts


def test_a_log_without_facts_is_backfilled_when_it_opens(env_dir: Path) -> None:
    def start_env() -> Env:
        clock, spans = FakeClock(), InMemorySpanExporter()
        return Env(env_dir, build(env_dir / "data", "127.0.0.1:0", clock=clock, span_exporter=spans, workers=4),
                   clock, spans)

    env = start_env()
    try:
        lines = [synth.case_line(i, jurisdiction="CN") for i in (1, 2)]
        env.import_cases("lender-a", lines)
        env.client("lender-a").assign("C-1", "agency-1", "collection", "2026-12-31")
        traffic(env, 300, seed=2)
        start, end = rfc3339(START), rfc3339(START + timedelta(days=60))
        before = env.client("regulator-1").audit_stats(start, end, ["org", "code"])
    finally:
        env.close()
    # As a log of an older release: no facts table, the file's layout one version back.
    pg = bool(json.loads((env_dir / "data" / "config.json").read_text()).get("database"))
    audit_sql(env, "DROP TABLE audit_facts")
    if pg:
        audit_sql(env, "DELETE FROM schema_version WHERE version = 16")
    else:
        audit_sql(env, "UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    env = start_env()
    try:
        after = env.client("regulator-1").audit_stats(start, end, ["org", "code"])
        assert after.groups == before.groups and after.size == before.size + 1
        every = [e for e in env.events() if e.seq < after.size]
        assert as_counts(after) == recount(every, ("org", "code"), start, end)
    finally:
        env.close()


# ------------------------------------------------------------------ the pure count


def test_the_count_reads_absent_keys_as_empty_and_sorts_groups() -> None:
    leaves = [json.dumps(e).encode() for e in (
        {"time": "2026-12-01T10:00:00.000000Z", "org": "b", "code": "OK"},
        {"time": "2026-12-01T11:00:00.000000Z", "org": "a", "code": "OK", "channel": "sms"},
        {"time": "2026-12-02T00:00:00.000000Z", "org": "a", "code": "NO_MANDATE", "channel": 3},
        {"time": "2026-12-03T00:00:00.000000Z", "org": "a", "code": "OK"},  # at `end`: left out
    )]
    counts = auditstats.count(leaves, ("org", "channel", "day"), "2026-12-01T00:00:00.000000Z",
                              "2026-12-03T00:00:00.000000Z")
    assert auditstats.groups(counts, ("org", "channel", "day")) == [
        {"org": "a", "channel": "", "day": "2026-12-02", "count": 1},
        {"org": "a", "channel": "sms", "day": "2026-12-01", "count": 1},
        {"org": "b", "channel": "", "day": "2026-12-01", "count": 1}]
    doc = auditstats.document("x", "y", ("org",), 9, "", auditstats.count(leaves, ("org",), "", "~"))
    assert auditstats.differences(doc, Counter({("a",): 3, ("b",): 1})) == []
    assert auditstats.differences(doc, Counter({("a",): 2, ("b",): 1})) == [
        'org="a": stated 3, recounted 2', "total: stated 4, recounted 3"]
    assert auditstats.stats_keys("org, day") == ("org", "day") and auditstats.stats_keys("") == ()
    assert auditstats.stats_keys("org,nope") == Code.INVALID_ARGUMENT
