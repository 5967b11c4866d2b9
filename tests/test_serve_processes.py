"""`custos serve --processes N`: N processes on one port keep every promise of one (issue 13).

The processes are real: `custos serve --processes 2` in a child process, as
an operator runs it. Which process serves a connection is the kernel's
choice (SO_REUSEPORT), so a test that needs a client on a given process
opens connections until the kernel's table (/proc/net/tcp) shows one there.
Every test is bounded in time and count.
"""

from __future__ import annotations

import base64
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from custos_client import CustosClient, CustosClientError, PullRecord, PullRemoved

from gateway import synth
from gateway.core.errors import CustosError as GatewayError
from gateway.tlog.proofcheck import verify_inclusion
from gateway.tlog.verify import verify_log
from gateway.transport.processes import Supervisor, Worker
from tests.conftest import NOTICES, Served, race


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def established_peers(pid: int, port: int) -> set[int]:
    """Remote ports of the connections process `pid` has accepted on `port`."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return set()
    peers = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            local, remote, state, inode = cols[1], cols[2], cols[3], cols[9]
            if state == "01" and inode in inodes and int(local.rsplit(":", 1)[1], 16) == port:
                peers.add(int(remote.rsplit(":", 1)[1], 16))
    return peers


class Group:
    """A `serve --processes 2` and clients placed on one process or the other."""

    def __init__(self, served: Served, ids: Path) -> None:
        self.served = served
        self.ids = ids
        self.clients: list[CustosClient] = []
        deadline = time.monotonic() + 30
        while len(self.workers()) < 2:
            assert time.monotonic() < deadline, "the processes did not start"
            time.sleep(0.1)

    def workers(self) -> list[int]:
        return children(self.served.proc.pid)

    def client_on(self, pid: int, org: str, probe: str = "C-1") -> CustosClient:
        """A client whose connection the process `pid` accepted (at most 64 tries: 2^-64 of failing by chance)."""
        for _ in range(64):
            before = established_peers(pid, self.served.port)
            client = CustosClient(self.served.addr, self.ids / org, timeout=30)
            self.clients.append(client)
            try:
                client.get_case(probe, "collection")
            except CustosClientError:
                pass  # the connection is what counts, not the answer
            if established_peers(pid, self.served.port) - before:
                return client
        raise AssertionError("no connection reached the process")

    def close(self) -> None:
        for client in self.clients:
            client.close()


@pytest.fixture
def group(env_dir: Path, served: list[Served]) -> Iterator[Group]:
    one = Served(env_dir / "data", extra=["--processes", "2", "--workers", "16"])
    served.append(one)
    g = Group(one, env_dir / "ids")
    yield g
    g.close()


def daytime_zone() -> str:
    """A zone where it is now between 10:00 and 20:00, so the contact window admits a call whenever the test runs."""
    for zone in ("Asia/Shanghai", "Europe/Berlin", "America/New_York", "America/Los_Angeles", "Pacific/Auckland",
                 "Asia/Kolkata", "America/Sao_Paulo", "Pacific/Honolulu"):
        if 10 <= datetime.now(ZoneInfo(zone)).hour < 20:
            return zone
    raise AssertionError("no zone in daytime")  # the eight zones cover every hour


def import_and_assign(addr: str, ids: Path, lines: list[dict[str, object]], grants: list[tuple[str, str]]) -> None:
    """Import the lines (each with the notices an agency's contact needs, as the fixtures' cases have) and grant."""
    lines = [line if "notices" in line else {**line, "notices": dict(NOTICES)} for line in lines]
    with CustosClient(addr, ids / "lender-a", timeout=30) as lender:
        assert lender.import_lines(synth.jsonl(lines).splitlines()).imported == len(lines)
        for case, org in grants:
            lender.assign(case, org, "collection", "2099-12-31", agreement="AG-1", pia="PIA-1")


def test_two_processes_on_one_port_both_serve_one_log(group: Group, env_dir: Path) -> None:
    import_and_assign(group.served.addr, group.ids, [synth.case_line(i) for i in range(1, 5)],
                      [(f"C-{i}", "agency-1") for i in range(1, 5)])
    first, second = group.workers()
    regulator_on_second = group.client_on(second, "regulator-1")
    for pid in (first, second):
        agency = group.client_on(pid, "agency-1")
        for i in range(1, 5):
            assert agency.get_case(f"C-{i}", "collection").case_id == f"C-{i}"
    # The reads through `first`, then through `second`: the second process signs a tree that holds them all.
    size = int(regulator_on_second.checkpoint().splitlines()[1])
    with CustosClient(group.served.addr, group.ids / "regulator-1", timeout=60) as reg:
        events = [e for e in reg.audit_query(org_id="agency-1") if e.method == "GetCase"]
        note = reg.checkpoint()
        log = verify_log(reg.audit_events(), note, (env_dir / "data" / "audit.vkey").read_text())
    allowed = [e for e in events if e.decision == "allow"]
    assert len(allowed) >= 8  # and the placement probes' reads of C-1
    assert size > max(int(e.seq) for e in allowed)
    seqs = [int(e.seq) for e in events]
    assert seqs == sorted(set(seqs))  # one sequence, no number twice
    assert log.size > size


def test_a_process_proves_events_another_process_appended(group: Group) -> None:
    """The checkpoint of one process, the proof from the other: one tree, whichever process answers."""
    import_and_assign(group.served.addr, group.ids, [synth.case_line(1)], [("C-1", "agency-1")])
    first, second = group.workers()
    on_first, on_second = group.client_on(first, "regulator-1"), group.client_on(second, "regulator-1")
    group.client_on(first, "agency-1").get_case("C-1", "collection")
    note = on_first.checkpoint()
    size = int(note.splitlines()[1])
    root = base64.b64decode(note.splitlines()[2])
    proof = on_second.inclusion_proof(size - 1, size)
    assert proof.tree_size == size and proof.root == root
    assert verify_inclusion(size - 1, size, proof.leaf_hash, proof.proof, root)


def test_caps_hold_and_a_recall_is_enforced_across_processes(group: Group) -> None:
    """Twelve simultaneous calls to one borrower from both processes: exactly three get the number."""
    zone = daytime_zone()
    lines = [dict(synth.case_line(i, jurisdiction="CN", borrower=1), timezone=zone) for i in (1, 2)]
    import_and_assign(group.served.addr, group.ids, lines, [("C-1", "agency-1"), ("C-2", "agency-2")])
    a, b = group.workers()
    targets = [(group.client_on(a, "agency-1"), "C-1"), (group.client_on(b, "agency-2"), "C-2"),
               (group.client_on(b, "agency-1"), "C-1"), (group.client_on(a, "agency-2"), "C-2")]
    results = race([functools.partial(client.open_contact, case, "call") for client, case in targets * 3])
    assert sorted(results) == ["CONTACT_CAP_REACHED"] * 9 + ["ok"] * 3

    # A recall through process a; process b has served warm reads of the case from its own cache.
    reader = group.client_on(b, "agency-1")
    for _ in range(3):
        assert reader.get_case("C-1", "collection").case_id == "C-1"
    assert group.client_on(a, "lender-a").recall("C-1", "agency-1").recalled == 1
    with pytest.raises(CustosClientError) as info:
        reader.get_case("C-1", "collection")
    assert info.value.code == "MANDATE_RECALLED"


def test_kill_minus_nine_of_one_process_loses_no_acknowledged_event(group: Group, env_dir: Path) -> None:
    import_and_assign(group.served.addr, group.ids, [synth.case_line(i) for i in range(1, 21)],
                      [(f"C-{i}", "agency-1") for i in range(1, 21)])
    victim, survivor = group.workers()
    clients = [group.client_on(victim, "agency-1"), group.client_on(survivor, "agency-1"),
               group.client_on(victim, "agency-1"), group.client_on(survivor, "agency-1")]
    acknowledged: list[str] = []
    stop = threading.Event()

    def burst(client: CustosClient) -> None:
        i = 0
        while not stop.is_set():
            case = f"C-{1 + i % 20}"
            i += 1
            try:
                client.get_case(case, "collection")
                acknowledged.append(case)
            except CustosClientError:
                time.sleep(0.05)

    threads = [threading.Thread(target=burst, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    time.sleep(1.5)
    os.kill(victim, signal.SIGKILL)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(acknowledged) > 20
    # The supervisor starts another process in its place, and it serves.
    deadline = time.monotonic() + 60
    while True:
        workers = group.workers()
        if len(workers) == 2 and victim not in workers:
            break
        assert time.monotonic() < deadline, workers
        time.sleep(0.2)
    replacement = next(p for p in workers if p != survivor)
    assert group.client_on(replacement, "agency-1").get_case("C-1", "collection").case_id == "C-1"
    with CustosClient(group.served.addr, group.ids / "regulator-1", timeout=60) as reg:
        events = [e for e in reg.audit_query(org_id="agency-1")
                  if e.method == "GetCase" and e.decision == "allow"]
        note = reg.checkpoint()
        assert verify_log(reg.audit_events(), note, (env_dir / "data" / "audit.vkey").read_text()).size > 0
    seen: dict[str, int] = {}
    for e in events:
        seen[str(e.case_id)] = seen.get(str(e.case_id), 0) + 1
    for case in set(acknowledged):
        assert seen.get(case, 0) >= acknowledged.count(case), case


def test_a_pull_cursor_from_one_process_resumes_on_the_other(group: Group) -> None:
    """Cursors are positions in the store: a pull begun on one process ends on the other, nothing twice or lost."""
    import_and_assign(group.served.addr, group.ids, [synth.case_line(i) for i in range(1, 7)],
                      [(f"C-{i}", "agency-1") for i in range(1, 7)])
    first, second = group.workers()
    whole = [i.record.case_id for i in group.client_on(first, "agency-1").pull_cases("collection")
             if isinstance(i, PullRecord)]
    assert sorted(whole) == [f"C-{i}" for i in range(1, 7)]
    stream = group.client_on(first, "agency-1").pull_cases("collection")
    begun = [next(stream) for _ in range(2)]
    stream.close()
    rest = list(group.client_on(second, "agency-1").pull_cases("collection", begun[-1].cursor))
    assert [i.record.case_id for i in begun + rest if isinstance(i, PullRecord)] == whole
    # A recall through the first process is a removal in the second's next pull.
    group.client_on(first, "lender-a").recall("C-3", "agency-1")
    after = list(group.client_on(second, "agency-1").pull_cases("collection", rest[-1].cursor))
    assert [(i.case_id, i.code) for i in after if isinstance(i, PullRemoved)] == [("C-3", "MANDATE_RECALLED")]


def _gone(pids: list[int], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{p}").exists() and "zombie" not in _state(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def _state(pid: int) -> str:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line
    except OSError:
        pass
    return "zombie"


def stop_cli(data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "stop", str(data), "--timeout", "30"],
                          capture_output=True, text=True, timeout=60)


def test_sigterm_to_the_supervisor_stops_every_process(group: Group, env_dir: Path) -> None:
    workers = group.workers()
    group.close()
    group.served.proc.send_signal(signal.SIGTERM)
    assert group.served.proc.wait(timeout=30) == 0
    assert _gone(workers, 10)
    out = stop_cli(env_dir / "data")
    assert out.returncode != 0 and "error: NOT_SERVING" in out.stderr


def test_custos_stop_stops_every_process_and_frees_the_directory(env_dir: Path, served: list[Served]) -> None:
    one = Served(env_dir / "data", extra=["--processes", "2", "--workers", "16"])
    served.append(one)
    workers = Group(one, env_dir / "ids").workers()
    # While it serves, a second server of the directory is refused, naming the supervisor.
    second = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", str(env_dir / "data"), "--listen",
                             "127.0.0.1:0", "--processes", "2"], capture_output=True, text=True, timeout=60)
    assert second.returncode != 0
    assert f"error: DATA_DIR_IN_USE: another custos serve already holds this data directory (held by pid " \
           f"{one.proc.pid})" in second.stderr
    out = stop_cli(env_dir / "data")
    assert out.returncode == 0, out.stderr
    assert f"(pid {one.proc.pid})" in out.stdout
    assert one.proc.wait(timeout=10) == 0
    assert _gone(workers, 5)
    # Free again: it serves anew.
    again = Served(env_dir / "data", extra=["--processes", "2", "--workers", "16"])
    served.append(again)
    with CustosClient(again.addr, env_dir / "ids" / "lender-a", timeout=30) as lender:
        assert isinstance(lender.list_cases(), list)


def test_processes_whose_supervisor_was_killed_stop_on_their_own(group: Group, env_dir: Path) -> None:
    workers = group.workers()
    group.close()
    group.served.proc.send_signal(signal.SIGKILL)
    group.served.proc.wait(timeout=10)
    assert _gone(workers, 15)
    out = stop_cli(env_dir / "data")
    assert "error: NOT_SERVING" in out.stderr  # nothing left holding the directory


class FakeSupervisor(Supervisor):
    """The supervisor with its processes replaced by `script` (each gets its index as argv[1])."""

    script = ""

    def _spawn(self, index: int) -> Worker:
        proc = subprocess.Popen([sys.executable, "-c", self.script, str(index)], stdout=subprocess.PIPE)
        return Worker(index, proc)


def test_a_process_that_cannot_start_fails_the_serve_and_frees_the_directory(env_dir: Path) -> None:
    FakeSupervisor.script = "import sys; sys.exit(3)"
    sup = FakeSupervisor(env_dir / "data", "127.0.0.1", 0, 2, workers=16, grace=1.0)
    with pytest.raises(GatewayError) as info:
        sup.start()
    assert info.value.code == "SERVE_FAILED"
    assert stop_cli(env_dir / "data").returncode != 0  # nothing holds the directory any more


def test_processes_that_keep_dying_are_restarted_a_bounded_number_of_times(env_dir: Path) -> None:
    FakeSupervisor.script = ("import sys, time; print('custos gateway listening on 127.0.0.1:1', flush=True);"
                             " time.sleep(0.3); sys.exit(1)")
    sup = FakeSupervisor(env_dir / "data", "127.0.0.1", 0, 2, workers=16, grace=1.0)
    sup.start()
    started = time.monotonic()
    assert sup.run() == 1
    assert time.monotonic() - started < 30
    assert stop_cli(env_dir / "data").returncode != 0


def test_a_bad_policy_bundle_is_refused_before_any_process_starts(env_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", str(env_dir / "data"), "--listen",
                          "127.0.0.1:0", "--processes", "2", "--policies", str(tmp_path / "policies")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "error: POLICY_INVALID" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_port_in_use_is_a_clear_error(env_dir: Path, processes: str) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", str(env_dir / "data"), "--listen",
                              f"127.0.0.1:{port}", "--processes", processes], capture_output=True, text=True,
                             timeout=120)
    assert out.returncode != 0 and "error: LISTEN_FAILED" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("argv", [["--listen", "127.0.0.1:70000"], ["--listen", "nohost"], ["--processes", "0"],
                                  ["--processes", "65"]])
def test_bad_serve_arguments_are_clear_errors(env_dir: Path, argv: list[str]) -> None:
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", str(env_dir / "data"), *argv],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "error: INVALID_ARGUMENT" in out.stderr and "Traceback" not in out.stderr


def test_a_change_through_one_process_is_seen_by_the_others_warm_cache_at_once(group: Group) -> None:
    """Per-case invalidation across processes (issue 24): process b drops C-1's entries, not C-2's, and serves
    every read after a change through process a from the changed rows."""
    import_and_assign(group.served.addr, group.ids, [synth.case_line(i) for i in (1, 2)],
                      [("C-1", "agency-1"), ("C-2", "agency-1")])
    a, b = group.workers()
    reader, lender = group.client_on(b, "agency-1"), group.client_on(a, "lender-a")
    stage = lender.get_case("C-1", "servicing").stage
    for _ in range(3):
        for case in ("C-1", "C-2"):
            assert reader.get_case(case, "collection").case_id == case
    lender.set_stage("C-1", "early_warning")
    with pytest.raises(CustosClientError) as info:
        reader.get_case("C-1", "collection")
    assert info.value.code == "STAGE_NOT_ALLOWED"
    assert reader.get_case("C-2", "collection").stage == stage
    lender.set_stage("C-1", stage)
    assert reader.get_case("C-1", "collection").stage == stage
    lender.set_flags("C-2", cease_contact=True)
    assert reader.get_case("C-2", "collection")  # still released; and C-1 as it was
    assert reader.get_case("C-1", "collection").stage == stage


def test_a_payment_confirmed_through_one_process_is_seen_by_the_others_warm_cache_at_once(group: Group) -> None:
    """The living account across processes (issue 24): a payment reported and confirmed through process a is in
    the amount due process b releases on its next read, its cache warm; the other case's is as it was."""
    import_and_assign(group.served.addr, group.ids, [synth.case_line(i) for i in (1, 2)],
                      [("C-1", "agency-1"), ("C-2", "agency-1")])
    a, b = group.workers()
    reader = group.client_on(b, "agency-1")
    for _ in range(3):
        due = {case: reader.get_case(case, "collection").fields["amount_due"] for case in ("C-1", "C-2")}
    reported = group.client_on(a, "agency-1").report_payment("C-1", "2.50", "2026-12-01", "PROC-1")
    group.client_on(a, "lender-a").confirm_payment(reported.payment_id)
    assert Decimal(reader.get_case("C-1", "collection").fields["amount_due"]) == Decimal(due["C-1"]) - Decimal("2.50")
    assert reader.get_case("C-2", "collection").fields["amount_due"] == due["C-2"]
