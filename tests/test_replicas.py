"""Many replicas, one log: two gateways on one PostgreSQL database keep every promise of one.

Each replica is a gateway on its own copy of the data directory (same keys,
same database URL), as an operator runs them. What must hold across them:
one audit sequence and tree, contact caps serialised per borrower, and a
recall (or any change) committed through one replica enforced by the other
for every request that starts after it.
"""

from __future__ import annotations

import functools
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from custos_client import CustosClient, CustosClientError, Feed
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway import cli, synth
from gateway.tlog.verify import verify_log
from gateway.transport.server import Gateway, build
from tests.conftest import Env, FakeClock, Served, race

pytestmark = pytest.mark.postgresql_only


@dataclass
class Replicas:
    one: Env
    two: Env

    def client(self, replica: Env, org: str) -> CustosClient:
        return replica.client(org)


@pytest.fixture
def replicas(env_dir: Path) -> Iterator[Replicas]:
    second = env_dir.parent / "replica-2"
    shutil.copytree(env_dir, second)
    clock = FakeClock()
    gws: list[Gateway] = []
    try:
        gws.append(build(env_dir / "data", "127.0.0.1:0", clock=clock, workers=16))
        gws.append(build(second / "data", "127.0.0.1:0", clock=clock, workers=16))
        one = Env(env_dir, gws[0], clock, InMemorySpanExporter())
        two = Env(second, gws[1], clock, InMemorySpanExporter())
        lines = [synth.case_line(1, jurisdiction="CN", borrower=1), synth.case_line(2, jurisdiction="CN", borrower=1)]
        assert one.import_cases("lender-a", lines).imported == 2
        lender = one.client("lender-a")
        lender.assign("C-1", "agency-1", "collection", "2026-12-31")
        two.client("lender-a").assign("C-2", "agency-2", "collection", "2026-12-31")
        yield Replicas(one, two)
        for c in (*one.clients.values(), *two.clients.values()):
            c.close()
    finally:
        for gw in gws:
            gw.stop(0)


def test_concurrent_contacts_through_both_replicas_stay_under_the_cap(replicas: Replicas) -> None:
    """Twelve simultaneous call attempts, two agencies, two replicas, one borrower: exactly three get the number."""
    targets = [(replicas.one, "agency-1", "C-1"), (replicas.two, "agency-2", "C-2"),
               (replicas.two, "agency-1", "C-1"), (replicas.one, "agency-2", "C-2")]
    results = race([functools.partial(replica.client(org).open_contact, case, "call")
                    for replica, org, case in targets * 3])
    assert sorted(results) == ["CONTACT_CAP_REACHED"] * 9 + ["ok"] * 3


def test_a_recall_through_one_replica_is_enforced_by_the_other_at_once(replicas: Replicas) -> None:
    """Replica two serves warm reads on its unchecked cache; a change through replica one ends them at once.

    Each read after the change is refused, and the log holds no allow event for
    it: the stale decision's event was refused at the commit, never written.
    """
    agency_two = replicas.two.client("agency-1")
    other_two = replicas.two.client("agency-2")
    for _ in range(3):  # warm: the second replica has served these reads before, from its row cache
        assert agency_two.get_case("C-1", "collection").case_id == "C-1"
        assert other_two.get_case("C-2", "collection").case_id == "C-2"
    assert replicas.one.client("lender-a").recall("C-1", "agency-1").recalled == 1
    recalled_at = replicas.one.gw.vault.audit.head()[0]
    with pytest.raises(CustosClientError) as info:
        agency_two.get_case("C-1", "collection")
    assert info.value.code == "MANDATE_RECALLED"
    after = [e for e in replicas.one.client("regulator-1").audit_query(case_id="C-1")
             if e.seq >= recalled_at and e.method == "GetCase"]
    assert [(e.method, e.decision, e.code) for e in after] == [("GetCase", "deny", "MANDATE_RECALLED")]
    # The same for a stage change and a flag.
    replicas.one.client("lender-a").set_stage("C-2", "early_warning")
    with pytest.raises(CustosClientError) as info:
        other_two.get_case("C-2", "collection")
    assert info.value.code == "STAGE_NOT_ALLOWED"


def test_an_org_disabled_through_one_replica_is_refused_by_the_other_at_once(replicas: Replicas) -> None:
    agency_two = replicas.two.client("agency-2")
    for _ in range(3):
        assert agency_two.get_case("C-2", "collection").case_id == "C-2"
    # The operator's command, on replica one's data directory (as on its host), while both serve.
    assert cli.main(["org", "disable", str(replicas.one.data), "--id", "agency-2"]) == 0
    with pytest.raises(CustosClientError) as info:
        agency_two.get_case("C-2", "collection")
    assert info.value.code == "ORG_DISABLED"


def test_an_org_registered_through_one_replica_is_admitted_by_the_other_at_once(replicas: Replicas) -> None:
    """Replica two has cached that agency-x does not exist; the registration through replica one still counts."""
    with pytest.raises(CustosClientError) as info:
        replicas.two.client("lender-a").assign("C-1", "agency-x", "collection", "2026-12-31")
    assert info.value.code == "ORG_NOT_FOUND"
    ids = replicas.one.root / "ids" / "agency-x"
    assert cli.main(["org", "add", str(replicas.one.data), "--id", "agency-x", "--kind", "agency", "--name", "X",
                     "--licence-no", "LX", "--licence-expires", "2027-12-31", "--out", str(ids)]) == 0
    with CustosClient(replicas.two.addr, ids, timeout=20) as agency, pytest.raises(CustosClientError) as info:
        agency.get_case("C-1", "collection")
    assert info.value.code == "NO_MANDATE"  # admitted: known, enabled, licensed; it just holds no mandate


def test_the_bureau_feed_is_one_sequence_across_replicas(replicas: Replicas) -> None:
    """Pulls through either replica continue one cursor: nothing repeated, nothing skipped."""
    lender = replicas.one.client("lender-a")
    for case in ("C-1", "C-2"):
        lender.assign(case, "bureau-1", "credit_reporting", "2027-06-30")
        lender.record_notice(case, "2026-11-01")
    first = replicas.one.client("bureau-1").pull_feed("")
    assert sorted(r.case_id for r in first.records) == ["C-1", "C-2"] and first.cursor == "f2"
    assert replicas.two.client("bureau-1").pull_feed(first.cursor) == Feed([], [], "f2")
    replicas.two.client("lender-a").set_flags("C-2", disputed=True)
    changed = replicas.two.client("bureau-1").pull_feed(first.cursor)
    assert [(r.case_id, r.seq, r.fields["compliance_condition"]) for r in changed.records] == [("C-2", 3, "XB")]
    assert replicas.one.client("bureau-1").pull_feed(changed.cursor) == Feed([], [], "f3")


def test_one_log_verifies_through_either_replica_with_one_root(replicas: Replicas) -> None:
    for _ in range(5):
        replicas.one.client("agency-1").get_case("C-1", "collection")
        replicas.two.client("agency-2").get_case("C-2", "collection")
    vkey = (replicas.one.data / "audit.vkey").read_text()
    results = []
    for replica in (replicas.one, replicas.two):
        reg = replica.client("regulator-1")
        results.append(verify_log(reg.audit_events(), reg.checkpoint(), vkey))
    # Each checkpoint covers the events up to its size; the later one extends the earlier.
    first, second = results
    assert second.size >= first.size > 10
    events = replicas.one.client("regulator-1").audit_query()
    assert [e.seq for e in events] == list(range(len(events)))
    orgs = {e.org for e in events if e.method == "GetCase"}
    assert orgs == {"agency-1", "agency-2"}
    # With nothing written in between, both replicas sign the same tree: the same size, root and note.
    assert replicas.one.gw.vault.audit.head() == replicas.two.gw.vault.audit.head()
    assert replicas.one.client("regulator-1").checkpoint() == replicas.two.client("regulator-1").checkpoint()


def test_kill_minus_nine_during_a_read_burst_loses_no_acknowledged_event(env_dir: Path, served: list[Served]) -> None:
    second = env_dir.parent / "replica-2"
    shutil.copytree(env_dir, second)
    one = Served(env_dir / "data", extra=["--workers", "16"])
    served.append(one)
    two = Served(second / "data", extra=["--workers", "16"])
    served.append(two)
    ids = env_dir / "ids"
    with CustosClient(one.addr, ids / "lender-a", timeout=30) as lender:
        assert lender.import_lines(synth.jsonl([synth.case_line(i) for i in range(1, 21)]).splitlines()).imported \
            == 20
        for i in range(1, 21):
            lender.assign(f"C-{i}", "agency-1", "collection", "2026-12-31", agreement="AG-1", pia="PIA-1")
    acknowledged: list[str] = []
    stop = threading.Event()

    def burst() -> None:
        with CustosClient(one.addr, ids / "agency-1", timeout=5) as agency:
            i = 0
            while not stop.is_set():
                case = f"C-{1 + i % 20}"
                i += 1
                try:
                    agency.get_case(case, "collection")
                    acknowledged.append(case)
                except CustosClientError:
                    if one.proc.poll() is not None:
                        return

    threads = [threading.Thread(target=burst) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    one.proc.send_signal(signal.SIGKILL)
    one.proc.wait(timeout=10)
    stop.set()
    for t in threads:
        t.join(timeout=20)
    assert len(acknowledged) > 20
    # Through the surviving replica: every read the client saw succeed has its allow event.
    with CustosClient(two.addr, ids / "regulator-1", timeout=60) as reg:
        events = [e for e in reg.audit_query(org_id="agency-1") if e.method == "GetCase" and e.decision == "allow"]
        note = reg.checkpoint()
        assert verify_log(reg.audit_events(), note, (env_dir / "data" / "audit.vkey").read_text()).size > 0
    seen: dict[str, int] = {}
    for e in events:
        seen[e.case_id] = seen.get(e.case_id, 0) + 1
    for case in set(acknowledged):
        assert seen.get(case, 0) >= acknowledged.count(case), case
    # And the killed replica comes back on the same database.
    restarted = Served(env_dir / "data", extra=["--workers", "16"])
    served.append(restarted)
    with CustosClient(restarted.addr, ids / "agency-1", timeout=10) as agency:
        assert agency.get_case("C-1", "collection").case_id == "C-1"


def test_an_erasure_through_one_replica_leaves_the_other_no_cached_key(replicas: Replicas) -> None:
    """Replica two has the borrower's rows and unwrapped data key warm in its cache; the erasure ends them."""
    lender_two = replicas.two.client("lender-a")
    for _ in range(3):
        assert lender_two.get_case("C-1", "servicing").fields["full_name"]
        assert replicas.two.client("agency-1").get_case("C-1", "collection").fields
    assert replicas.one.client("lender-a").erase("B-1").state == "erased"
    rec = lender_two.get_case("C-1", "servicing")
    assert rec.erasure == "erased" and "full_name" not in rec.fields
    with pytest.raises(CustosClientError) as info:
        replicas.two.client("agency-1").get_case("C-1", "collection")
    assert info.value.code == "ERASED"


def test_a_change_through_one_replica_ends_the_others_stale_grant_and_only_that_cases(
        replicas: Replicas, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-case invalidation keeps the replicas' promise (issue 24).

    Replica two serves C-1 and C-2 warm, on its unchecked view. A stage change of
    C-1 through replica one: replica two's next read of C-1 is decided on its
    remembered grant, whose allow event the commit refuses (StaleView), and is
    decided again and refused; C-2 is still served from its cached grant.
    """
    from gateway.core.ports import StaleView

    agency_two, other_two = replicas.two.client("agency-1"), replicas.two.client("agency-2")
    for _ in range(3):
        assert agency_two.get_case("C-1", "collection").case_id == "C-1"
        assert other_two.get_case("C-2", "collection").case_id == "C-2"
    core = replicas.two.gw.core
    decided: list[str] = []
    stale: list[str] = []
    decide, release = core._grant, core._release

    def counted_grant(caller: Any, case_ref: str, purpose: str, now: Any) -> Any:
        decided.append(case_ref)
        return decide(caller, case_ref, purpose, now)

    def counted_release(caller: Any, grant: Any, purpose: str, now: Any, view: int | None) -> Any:
        try:
            return release(caller, grant, purpose, now, view)
        except StaleView:
            stale.append(grant.case.case_id)
            raise

    monkeypatch.setattr(core, "_grant", counted_grant)
    monkeypatch.setattr(core, "_release", counted_release)
    replicas.one.client("lender-a").set_stage("C-1", "early_warning")
    changed_at = replicas.one.gw.vault.audit.head()[0]
    with pytest.raises(CustosClientError) as info:
        agency_two.get_case("C-1", "collection")
    assert info.value.code == "STAGE_NOT_ALLOWED"
    assert stale == ["C-1"] and decided == ["C-1"]
    after = [e for e in replicas.one.client("regulator-1").audit_query(case_id="C-1")
             if e.seq >= changed_at and e.method == "GetCase"]
    assert [(e.decision, e.code) for e in after] == [("deny", "STAGE_NOT_ALLOWED")]
    for _ in range(3):
        assert other_two.get_case("C-2", "collection").case_id == "C-2"
    assert decided == ["C-1"] and stale == ["C-1"]  # C-2's grant outlived the change to C-1


def test_a_payment_confirmed_through_one_replica_is_seen_by_the_others_warm_cache_at_once(replicas: Replicas) -> None:
    """The living account on replicas (issue 24): agency-1 reports a payment through replica one, the lender
    confirms it through replica one, and replica two's next read of the case (its cache warm) releases the new
    amount due; the other case's figure is as it was."""
    agency_two, other_two = replicas.two.client("agency-1"), replicas.two.client("agency-2")
    for _ in range(3):
        due = agency_two.get_case("C-1", "collection").fields["amount_due"]
        other = other_two.get_case("C-2", "collection").fields["amount_due"]
    paid = "1.25"
    reported = replicas.one.client("agency-1").report_payment("C-1", paid, "2026-11-29", "RPL-1")
    replicas.one.client("lender-a").confirm_payment(reported.payment_id)
    assert Decimal(agency_two.get_case("C-1", "collection").fields["amount_due"]) == Decimal(due) - Decimal(paid)
    assert other_two.get_case("C-2", "collection").fields["amount_due"] == other
