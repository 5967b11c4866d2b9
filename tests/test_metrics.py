"""`custos serve --metrics HOST:PORT` (issue 27): the Prometheus exposition, its families, and no PI in it.

A real `custos serve` in a child process gets a demo's worth of traffic
(imports, reads, a search, a contact, a packet, refusals: `test_logs.drive`),
then its exposition is scraped over HTTP and read with prometheus_client's own
text parser, as Prometheus would read it.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from gateway.core.errors import Code
from gateway.transport.servicers import methods
from tests.conftest import Served
from tests.test_logs import LINES, SECRETS, drive

LISTENING = re.compile(r"Prometheus metrics, plain HTTP, on port (\d+)")
# The record ids a label must never carry, beside the PI values: cases, borrowers, loans (and the rejected line's).
IDS = [line["case_id"] for line in LINES] + [line["borrower"]["borrower_id"] for line in LINES] + \
      [line["loan"]["loan_id"] for line in LINES] + ["C-99"]
FAMILIES = {
    "custos_calls": "counter",
    "custos_refusals": "counter",
    "custos_call_duration_seconds": "histogram",
    "custos_audit_events": "gauge",
    "custos_audit_checkpoint_age_seconds": "gauge",
    "custos_audit_commit_batch_units": "histogram",
    "custos_kek_primary_version": "gauge",
    "custos_kek_data_keys": "gauge",
    "custos_kek_data_keys_to_rewrap": "gauge",
}


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return str(response.read().decode())


def metrics_port(served: Served) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = LISTENING.search(served.log.read_text())
        if found:
            return int(found.group(1))
        time.sleep(0.05)
    raise AssertionError("no metrics_listening line")


def samples(text: str) -> dict[str, list[Sample]]:
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def test_the_exposition_after_a_demo_has_every_family_and_no_pi_or_record_id(env_dir: Path, served: list[Served],
                                                                             backend: str) -> None:
    gw = Served(env_dir / "data", extra=["--metrics", "127.0.0.1:0"])
    served.append(gw)
    port = metrics_port(gw)
    drive(gw, env_dir / "ids")
    time.sleep(1.2)  # the checkpoint job runs every second: the age is there after it has run once
    text = scrape(port)

    leaked = [v for v in SECRETS + IDS if re.search(rf"(?<![\w-]){re.escape(v)}(?![\w-])", text)]
    assert not leaked, f"{len(leaked)} PI values or record ids in the exposition"
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for name, kind in FAMILIES.items():
        assert name in families and families[name].type == kind, name
    assert ("custos_db_pool" in families) == (backend == "postgresql")  # SQLite has no pool

    # Labels only from closed vocabularies: method names, allow/deny, stable codes, KEK versions, pool stats.
    names = {m.name for ms in methods_of().values() for m in ms}
    codes = {c.value for c in Code}
    calls = [s for s in families["custos_calls"].samples if s.name == "custos_calls_total"]
    for s in calls:
        assert set(s.labels) == {"method", "decision", "code"}
        assert s.labels["method"] in names and s.labels["code"] in codes
        assert s.labels["decision"] == ("allow" if s.labels["code"] == "OK" else "deny")
    by = {(s.labels["method"], s.labels["decision"], s.labels["code"]): s.value for s in calls}
    assert by[("ImportCases", "allow", "OK")] == 2  # the demo's import and the one of a rejected line
    assert by[("GetCase", "allow", "OK")] >= 2
    denied: dict[str, float] = {}
    for (_, decision, code), n in by.items():
        if decision == "deny":
            denied[code] = denied.get(code, 0) + n
    assert sum(denied.values()) >= 3  # no mandate, bad purpose, packet before escalation
    refusals = {s.labels["code"]: s.value for s in families["custos_refusals"].samples
                if s.name == "custos_refusals_total"}
    assert refusals == denied
    durations = {s.labels["method"]: s.value for s in families["custos_call_duration_seconds"].samples
                 if s.name == "custos_call_duration_seconds_count"}
    assert durations["GetCase"] == sum(n for (m, _, _), n in by.items() if m == "GetCase")

    # The store's gauges, read at scrape time.
    events = families["custos_audit_events"].samples[0].value
    assert events >= len(LINES) + 5
    assert 0 <= families["custos_audit_checkpoint_age_seconds"].samples[0].value < 5
    batches = {s.name: s.value for s in families["custos_audit_commit_batch_units"].samples}
    assert batches["custos_audit_commit_batch_units_count"] >= 5
    assert families["custos_kek_primary_version"].samples[0].value >= 1
    assert families["custos_kek_data_keys_to_rewrap"].samples[0].value == 0
    assert sum(s.value for s in families["custos_kek_data_keys"].samples) >= 1
    for s in families["custos_kek_data_keys"].samples:
        assert s.labels["version"].isdigit()
    if backend == "postgresql":
        pool = {s.labels["stat"]: s.value for s in families["custos_db_pool"].samples}
        assert pool["pool_max"] >= pool["pool_size"] >= 1


def methods_of() -> dict[str, list]:  # type: ignore[type-arg]
    """The API's methods, as the gateway registers them (the handlers are not called)."""
    return methods(None)  # type: ignore[arg-type]


def free_pair() -> int:
    """A port P with P+1 free too, both on loopback (for the two processes' expositions)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return int(port)
    raise AssertionError("no two consecutive free ports")


def test_each_process_of_a_supervised_serve_has_its_own_port(env_dir: Path, served: list[Served]) -> None:
    port = free_pair()
    gw = Served(env_dir / "data", extra=["--processes", "2", "--metrics", f"127.0.0.1:{port}"])
    served.append(gw)
    deadline = time.monotonic() + 20
    texts: dict[int, str] = {}
    while len(texts) < 2 and time.monotonic() < deadline:
        for p in (port, port + 1):
            try:
                texts[p] = scrape(p)
            except OSError:
                time.sleep(0.1)
    assert set(texts) == {port, port + 1}
    for text in texts.values():
        assert "custos_audit_events" in samples(text)


@pytest.mark.parametrize("value", ["nowhere", "127.0.0.1:99999", "127.0.0.1:"])
def test_a_bad_metrics_address_is_a_usage_error(env_dir: Path, value: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", str(env_dir / "data"), "--processes", "1",
                           "--listen", "127.0.0.1:0", "--metrics", value], capture_output=True, timeout=60)
    assert proc.returncode == 2, proc.stderr[-500:]
    assert b"INVALID_ARGUMENT" in proc.stderr and b"--metrics" in proc.stderr


def test_a_metrics_port_in_use_fails_the_start(env_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", str(env_dir / "data"), "--processes", "1",
                               "--listen", "127.0.0.1:0", "--metrics", f"127.0.0.1:{taken.getsockname()[1]}"],
                              capture_output=True, timeout=60)
    assert proc.returncode != 0 and b"listening on" not in proc.stdout
    assert b"LISTEN_FAILED" in proc.stderr
