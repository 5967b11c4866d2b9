"""KEK rotation while serving: a new version, a background rewrap of every data key, retiring the old one (issue 12)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from custos_client import CustosClient, CustosClientError

from gateway import cli, synth
from tests.conftest import Env, Served, policy_bundle
from vault.crypto import FileKekProvider


def _usage(data: Path, capsys: pytest.CaptureFixture[str]) -> dict[int, int]:
    assert cli.main(["keys", "status", str(data), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    return {r["version"]: r["data_keys"] for r in doc["versions"]}


def _wait_rewrapped(data: Path, capsys: pytest.CaptureFixture[str], version: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        usage = _usage(data, capsys)
        if all(n == 0 for v, n in usage.items() if v != version):
            return
        time.sleep(0.2)
    raise AssertionError(f"rewrap did not finish: {usage}")


def test_rotation_under_reads_and_imports_fails_nothing_and_the_old_version_retires(
        seeded: Env, capsys: pytest.CaptureFixture[str]) -> None:
    data = seeded.data
    assert _usage(data, capsys) == {1: 7}  # lender-a: B-1, B-3..B-6; lender-b: two
    failures: list[str] = []
    stop = threading.Event()
    imported: list[str] = []

    def reads() -> None:
        with CustosClient(seeded.addr, seeded.identity("lender-a"), timeout=20) as c:
            while not stop.is_set():
                for i in range(1, 7):
                    try:
                        assert c.get_case(f"C-{i}", "servicing").fields["full_name"]
                    except (CustosClientError, AssertionError) as exc:
                        failures.append(f"read C-{i}: {exc}")

    def imports() -> None:
        with CustosClient(seeded.addr, seeded.identity("lender-a"), timeout=20) as c:
            n = 100
            while not stop.is_set():
                try:
                    got = c.import_lines(synth.jsonl([synth.case_line(n, jurisdiction="CN")]).splitlines())
                    if got.imported != 1:
                        failures.append(f"import {n}: {got['rejected']}")
                    imported.append(f"C-{n}")
                except CustosClientError as exc:
                    failures.append(f"import {n}: {exc}")
                n += 1
                time.sleep(0.02)

    threads = [threading.Thread(target=reads), threading.Thread(target=imports)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        assert cli.main(["keys", "rotate", str(data), "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == {"version": 2, "previous": 1}
        _wait_rewrapped(data, capsys, 2)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert failures == [] and len(imported) > 3
    _wait_rewrapped(data, capsys, 2)  # what was imported during the rotation too
    assert cli.main(["keys", "retire", str(data), "--version", "2", "--json"]) != 0  # the primary
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "KEY_IN_USE"
    assert cli.main(["keys", "retire", str(data), "--version", "1", "--json"]) == 0
    capsys.readouterr()
    assert not (data / "keys" / "kek-1.key").exists()
    lender = seeded.client("lender-a")
    for case in ["C-1", "C-2", "C-3", "C-4", "C-5", "C-6", *imported]:
        assert lender.get_case(case, "servicing").fields["full_name"], case
    assert cli.main(["keys", "retire", str(data), "--version", "7", "--json"]) != 0
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "KEY_VERSION_NOT_FOUND"


def test_retiring_a_version_still_in_use_is_refused(seeded: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert seeded.gw.rewrapper is not None
    seeded.gw.rewrapper.stop()  # hold the rewrap back, so version 1 is certainly still in use
    data = seeded.data
    assert cli.main(["keys", "rotate", str(data), "--json"]) == 0
    capsys.readouterr()
    assert cli.main(["keys", "retire", str(data), "--version", "1", "--json"]) != 0
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "KEY_IN_USE"
    assert (data / "keys" / "kek-1.key").exists()
    generation = seeded.gw.vault.reader()._generation()
    time.sleep(FileKekProvider.RECHECK_S + 0.1)  # the gateway looks at its key directory again within this
    assert seeded.gw.core.rewrap_step(3) == 3 and _usage(data, capsys) == {1: 4, 2: 3}  # bounded batches
    while seeded.gw.core.rewrap_step(100):
        pass
    assert _usage(data, capsys) == {1: 0, 2: 7}
    # The rewrap left every row cache alone (a cached older wrapping opens the same key)...
    assert seeded.gw.vault.reader()._generation() == generation
    assert cli.main(["keys", "retire", str(data), "--version", "1", "--json"]) == 0
    capsys.readouterr()
    assert seeded.gw.vault.reader()._generation() > generation  # ...until the version is retired
    assert seeded.client("lender-a").get_case("C-1", "servicing").fields["full_name"]


@pytest.mark.sqlite_only
def test_kill_minus_nine_during_the_rewrap_loses_no_key_and_the_rewrap_resumes(
        env: Env, served: list[Served], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = env.data
    lines = [synth.case_line(i, jurisdiction="CN") for i in range(1, 301)]
    assert env.import_cases("lender-a", lines).imported == 300
    env.close()
    slow = policy_bundle(tmp_path / "policies", {"lifecycle": {"rewrap_batch": 4, "rewrap_pause_s": 0.05}})
    gw = Served(data, policies=slow)
    served.append(gw)
    assert cli.main(["keys", "rotate", str(data), "--json"]) == 0
    capsys.readouterr()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        usage = _usage(data, capsys)
        if usage.get(2, 0) >= 20:
            break
        time.sleep(0.1)
    gw.proc.kill()  # SIGKILL, mid-rewrap
    gw.proc.wait(timeout=10)
    usage = _usage(data, capsys)
    assert usage[1] > 0 and usage[2] > 0 and usage[1] + usage[2] == 300  # killed half-way, nothing lost
    again = Served(data)
    served.append(again)
    with CustosClient(again.addr, env.identity("lender-a"), timeout=20) as lender:
        for i in range(1, 301, 7):
            assert lender.get_case(f"C-{i}", "servicing").fields["full_name"]  # either version opens
    _wait_rewrapped(data, capsys, 2, timeout=60)
    with CustosClient(again.addr, env.identity("lender-a"), timeout=20) as lender:
        for i in range(1, 301):
            assert lender.get_case(f"C-{i}", "servicing").fields["full_name"], i
