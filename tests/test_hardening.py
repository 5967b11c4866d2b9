"""Hardening: no client can starve the gateway, no input reaches INTERNAL (issue 8, findings 1, 5, 6, 9-11).

Each test plays one finding as an attacker would and checks what another
organisation sees meanwhile, what the attacker gets (a stable code), and what
the audit log records. Servers here run in-process with small limits so the
tests stay short; `test_processes.py` has the findings that need a process of
their own (descriptors, SIGTERM, memory).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from custos_client import CustosClient, CustosClientError
from custos_client.v1 import custos_pb2 as pb

from gateway import cli, pki, synth
from gateway.core.model import EventDraft
from gateway.transport.server import Gateway, build
from tests.conftest import Env, FakeClock, channel, policy_bundle

GET_CASE = "/custos.v1.CaseService/GetCase"
QUERY_AUDIT = "/custos.v1.AuditService/QueryAudit"
IMPORT = "/custos.v1.LenderService/ImportCases"


@pytest.fixture
def limited(env_dir: Path, tmp_path: Path) -> Iterator[Callable[..., Env]]:
    """A gateway on `env_dir` with some limits overridden: limited(calls={...}, rate={...}, workers=N)."""
    made: list[Env] = []

    def make(workers: int = 16, **limits: dict[str, Any]) -> Env:
        policies = policy_bundle(tmp_path / f"policies-{len(made)}", {k.replace("__", "."): v
                                                                     for k, v in limits.items()})
        clock = FakeClock()
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        gw = build(env_dir / "data", "127.0.0.1:0", clock=clock, policy_dir=policies, workers=workers)
        e = Env(env_dir, gw, clock, InMemorySpanExporter())
        made.append(e)
        return e

    try:
        yield make
    finally:
        for e in made:
            e.close()


def seed(env: Env) -> None:
    lines = [synth.case_line(i) for i in range(1, 5)]
    assert env.import_cases("lender-a", lines).imported == 4
    env.client("lender-a").assign("C-1", "agency-1", "collection", "2026-12-31")


class HalfOpen:
    """Calls that send their headers and then never a message (or stop after `first` messages)."""

    def __init__(self, ch: grpc.Channel, path: str, n: int, first: list[bytes] | None = None,
                 streaming_response: bool = False) -> None:
        self.release = threading.Event()
        self.calls: list[Any] = []
        for _ in range(n):
            gen = self._requests(list(first or []))
            if streaming_response:
                self.calls.append(ch.stream_stream(path)(gen, timeout=30))
            else:
                self.calls.append(ch.stream_unary(path).future(gen, timeout=30))

    def _requests(self, first: list[bytes]) -> Iterator[bytes]:
        yield from first
        self.release.wait(30)

    def close(self) -> None:
        self.release.set()
        for c in self.calls:
            c.cancel()


def code_of(fut: Any, timeout: float = 10) -> str:
    """The stable code a raw call ended with (from ErrorInfo, or the CODE: prefix the watchdog sends)."""
    from custos_client.client import _translate

    try:
        fut.result(timeout=timeout)
    except grpc.RpcError as err:
        return _translate(err).code
    return "OK"


def answered_quickly(client: CustosClient, case: str = "C-2", within: float = 3.0) -> float:
    t0 = time.monotonic()
    client.timeout = within
    assert client.get_case(case, "servicing").case_id == case
    return time.monotonic() - t0


def eventually(probe: Callable[[], list[Any]], count: int, within: float = 5.0) -> list[Any]:
    """`probe()` once it returns at least `count` items (events are written just after a call is dropped)."""
    deadline = time.monotonic() + within
    while True:
        found = probe()
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def denials(env: Env, org: str = "", code: str = "") -> list[dict[str, Any]]:
    return [e for e in env.events() if e.decision == "deny" and (not org or e.org == org)
            and (not code or e.code == code)]


# ------------------------------------------------------------------ 1. worker starvation


def test_half_open_calls_of_a_disabled_org_hold_no_worker(limited: Callable[..., Env]) -> None:
    env = limited(workers=8, calls={"first_message_timeout_s": 30})
    seed(env)
    assert cli.main(["org", "disable", str(env.data), "--id", "agency-1"]) == 0
    ch = channel(env, "agency-1")
    attack = HalfOpen(ch, GET_CASE, 24)
    try:
        # Twenty-four half-open calls on eight workers, and another organisation is answered at once.
        for _ in range(5):
            assert answered_quickly(env.client("lender-a")) < 3.0
        assert {code_of(c) for c in attack.calls} == {"ORG_DISABLED"}
    finally:
        attack.close()
        ch.close()
    assert len(denials(env, "agency-1", "ORG_DISABLED")) == 24


def test_an_org_holding_calls_half_open_gets_only_its_share(limited: Callable[..., Env]) -> None:
    env = limited(workers=8, calls={"max_calls_per_org": 3, "first_message_timeout_s": 1.0})
    seed(env)
    ch = channel(env, "agency-1")
    attack = HalfOpen(ch, GET_CASE, 12)
    try:
        for _ in range(5):
            assert answered_quickly(env.client("lender-a")) < 3.0
        codes = sorted(code_of(c) for c in attack.calls)
        # Three held until the first-message timeout dropped them, the rest refused at once.
        assert codes == ["CONCURRENCY_LIMITED"] * 9 + ["REQUEST_TIMEOUT"] * 3
    finally:
        attack.close()
        ch.close()
    assert len(denials(env, "agency-1", "CONCURRENCY_LIMITED")) == 9
    assert len(eventually(lambda: denials(env, "agency-1", "REQUEST_TIMEOUT"), 3)) == 3
    # Its own share is free again: agency-1's next read works.
    assert env.client("agency-1").get_case("C-1", "collection").case_id == "C-1"


def test_stalled_import_streams_are_capped_and_dropped(limited: Callable[..., Env]) -> None:
    env = limited(workers=8, calls={"max_streams_per_org": 2, "stream_idle_timeout_s": 1.0})
    seed(env)
    ch = channel(env, "lender-b")
    one_line = pb.LineChunk(lines=[pb.ImportLine(line_no=1, raw=synth.jsonl([synth.case_line(1, lender_prefix="B")]).strip())])
    attack = HalfOpen(ch, IMPORT, 20, first=[one_line.SerializeToString()], streaming_response=True)
    try:
        for _ in range(5):
            assert answered_quickly(env.client("lender-a")) < 3.0
        codes = sorted(_stream_code(c) for c in attack.calls)
        assert codes == ["CONCURRENCY_LIMITED"] * 18 + ["STREAM_IDLE"] * 2
    finally:
        attack.close()
        ch.close()
    # The two dropped imports are audited as interrupted; the unfinished batch was not stored.
    interrupted = eventually(lambda: [e for e in denials(env, "lender-b", "STREAM_IDLE")
                                      if e.method == "ImportCases"], 2)
    assert len(interrupted) == 2 and all(e.data["rule"].startswith("import.interrupted") for e in interrupted)
    assert env.client("lender-b").list_cases() == []


def _stream_code(call: Any) -> str:
    from custos_client.client import _translate

    try:
        for _ in call:
            pass
    except grpc.RpcError as err:
        return _translate(err).code
    return "OK"


def test_audit_streams_whose_client_stops_reading_are_dropped(limited: Callable[..., Env]) -> None:
    env = limited(workers=8, calls={"max_streams_per_org": 3, "stream_idle_timeout_s": 1.0})
    seed(env)
    # A log long enough that an unread stream fills gRPC's flow-control window and blocks.
    pad = [EventDraft(org="lender-a", method="Pad", purpose="", case_id="C-1", borrower_id="B-1", decision="allow",
                      code="OK", rule="pad:" + "x" * 400, time="2026-11-30T02:00:00.000000Z", trace_id="0" * 32)
           for _ in range(30_000)]
    env.gw.core.audit.append(pad)
    ch = channel(env, "regulator-1")
    request = pb.QueryAuditRequest().SerializeToString()
    streams = [ch.unary_stream(QUERY_AUDIT)(request, timeout=30) for _ in range(12)]
    try:
        time.sleep(0.5)
        for _ in range(5):
            assert answered_quickly(env.client("lender-a")) < 3.0
        time.sleep(2.0)  # past the idle limit: the three held streams are blocked on their unread responses
        codes = sorted(_stream_code(s) for s in streams)
        assert codes == ["CONCURRENCY_LIMITED"] * 9 + ["STREAM_IDLE"] * 3
    finally:
        for s in streams:
            s.cancel()
        ch.close()
    # The regulator is served again once its stalled streams are gone.
    assert env.client("regulator-1").checkpoint().startswith("custos.invalid/log/")


def test_a_unary_call_has_a_server_side_deadline(limited: Callable[..., Env], monkeypatch: pytest.MonkeyPatch) -> None:
    env = limited(calls={"unary_deadline_s": 0.5})
    seed(env)
    real = env.gw.core.get_case

    def slow(*args: Any) -> Any:
        time.sleep(1.5)
        return real(*args)

    monkeypatch.setattr(env.gw.core, "get_case", slow)
    with pytest.raises(CustosClientError) as info:
        env.client("agency-1").get_case("C-1", "collection")
    assert (info.value.code, info.value.status) == ("CALL_DEADLINE", "DEADLINE_EXCEEDED")


# ------------------------------------------------------------------ 5. undecodable requests


def _methods() -> list[tuple[str, bool, bool]]:
    return [(f"/{s.full_name}/{m.name}", m.client_streaming, m.server_streaming)
            for s in pb.DESCRIPTOR.services_by_name.values() for m in s.methods]


@pytest.mark.parametrize("path, client_streaming, server_streaming", _methods())
def test_undecodable_requests_get_a_stable_code_and_are_audited(seeded: Env, caplog: pytest.LogCaptureFixture,
                                                                path: str, client_streaming: bool,
                                                                server_streaming: bool) -> None:
    org = {"LenderService": "lender-a", "CaseService": "agency-1", "AuditService": "regulator-1",
           "PacketService": "lawfirm-1", "BureauService": "bureau-1"}[path.split(".")[2].split("/")[0]]
    ch = channel(seeded, org)
    garbage = b"\xff\xff\xff\xff\x0f"
    from custos_client.client import _translate

    try:
        if client_streaming:
            call = ch.stream_stream(path)(iter([garbage]), timeout=10)
            with pytest.raises(grpc.RpcError) as info:
                list(call)
        elif server_streaming:
            with pytest.raises(grpc.RpcError) as info:
                list(ch.unary_stream(path)(garbage, timeout=10))
        else:
            with pytest.raises(grpc.RpcError) as info:
                ch.unary_unary(path)(garbage, timeout=10)
    finally:
        ch.close()
    err = _translate(info.value)
    assert (err.code, err.status) == ("MALFORMED_REQUEST", "INVALID_ARGUMENT")
    method = path.rsplit("/", 1)[1]
    assert [e.method for e in denials(seeded, org, "MALFORMED_REQUEST")] == [method]
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    # The server goes on answering.
    assert seeded.client("lender-a").get_case("C-1", "servicing").case_id == "C-1"


def test_a_unary_call_without_a_message_is_malformed(seeded: Env) -> None:
    ch = channel(seeded, "agency-1")
    try:
        fut = ch.stream_unary(GET_CASE).future(iter([]), timeout=10)
        assert code_of(fut) == "MALFORMED_REQUEST"
    finally:
        ch.close()


# ------------------------------------------------------------------ 6. times at the calendar's edge


EDGE_TIMES = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00",
              "9999-12-31T23:59:59.999999+00:00", "1899-12-31T23:59:59Z", "2026-13-01T00:00:00Z", "now"]


@pytest.mark.parametrize("when", EDGE_TIMES)
def test_times_at_the_calendars_edge_are_refused_and_audited(seeded: Env, when: str) -> None:
    with pytest.raises(CustosClientError) as info:
        seeded.client("lender-a").explain("agency-1", "C-1", "collection", when)
    assert (info.value.code, info.value.status) == ("INVALID_TIME", "INVALID_ARGUMENT")
    with pytest.raises(CustosClientError) as info:
        seeded.client("regulator-1").audit_query(since=when)
    assert info.value.code == "INVALID_TIME"
    assert {e.method for e in denials(seeded, code="INVALID_TIME")} == {"Explain", "QueryAudit"}


def test_a_time_inside_the_range_still_works(seeded: Env) -> None:
    e = seeded.client("lender-a").explain("agency-1", "C-1", "collection", "2026-11-30T10:00:00+08:00")
    assert e.decision == "allow"
    assert seeded.client("regulator-1").audit_query(since="1900-01-01T00:00:00Z")


# ------------------------------------------------------------------ 9. one server per data directory


def test_a_second_server_on_one_data_directory_refuses_to_start(env: Env) -> None:
    from gateway.core.errors import CustosError as CoreError

    with pytest.raises(CoreError) as info:
        build(env.data, "127.0.0.1:0")
    assert info.value.code == "DATA_DIR_IN_USE"
    assert str(__import__("os").getpid()) in info.value.message
    # The first one is unharmed.
    assert env.client("regulator-1").checkpoint()


def test_the_lock_goes_with_the_server(env_dir: Path) -> None:
    gw: Gateway = build(env_dir / "data", "127.0.0.1:0")
    gw.stop(0)
    again = build(env_dir / "data", "127.0.0.1:0")
    again.stop(0)


# ------------------------------------------------------------------ 10. rate limits


def test_rate_limits_are_per_organisation_and_audited(limited: Callable[..., Env]) -> None:
    env = limited(rate__kind__agency={"per_second": 2, "burst": 5})
    seed(env)
    env.client("lender-a").assign("C-2", "agency-2", "collection", "2026-12-31")
    results: list[str] = []
    for _ in range(25):
        try:
            env.client("agency-1").get_case("C-1", "collection")
            results.append("OK")
        except CustosClientError as err:
            assert err.status == "RESOURCE_EXHAUSTED"
            results.append(err.code)
    assert results[:5] == ["OK"] * 5
    limited_calls = results.count("RATE_LIMITED")
    assert limited_calls >= 18
    # Another agency has its own bucket, and lenders their own rate: neither is slowed.
    assert env.client("agency-2").get_case("C-2", "collection").case_id == "C-2"
    for _ in range(30):
        assert answered_quickly(env.client("lender-a"), within=2.0) < 2.0
    # Every refusal is in the log: the first of each window at once, the rest as a count.
    time.sleep(1.6)
    events = denials(env, "agency-1", "RATE_LIMITED")

    def count(e: dict[str, Any]) -> int:
        return int(e.data["rule"].split("repeated=")[1]) if "repeated=" in e.data["rule"] else 1

    assert sum(count(e) for e in events) == limited_calls
    assert all(e.data["rule"].startswith("rate:agency") for e in events)
    # The bucket refills.
    time.sleep(1.0)
    assert env.client("agency-1").get_case("C-1", "collection").case_id == "C-1"


def test_a_limits_file_with_a_bad_value_stops_the_bundle(tmp_path: Path) -> None:
    from gateway.core.errors import PolicyError
    from gateway.core.rules.policy import load_bundle

    for section, values, problem in [
        ("calls", {"max_calls_per_org": 0}, "max_calls_per_org: must be between"),
        ("calls", {"unary_deadline_s": "soon"}, "unary_deadline_s: must be a number"),
        ("rate", {"bursts": 5}, "unknown key 'bursts'"),
        ("rate.kind.wizard", {"per_second": 5}, "unknown organisation kind"),
    ]:
        bundle = policy_bundle(tmp_path / f"p-{len(list(tmp_path.iterdir()))}", {section: values})
        with pytest.raises(PolicyError) as info:
            load_bundle(bundle)
        assert info.value.path.endswith("limits.toml") and problem in info.value.problem, info.value.problem
        assert info.value.line is not None


# ------------------------------------------------------------------ 11. denials before identity


def test_a_certificate_with_two_uri_sans_is_refused_and_audited(seeded: Env, tmp_path: Path) -> None:
    out = tmp_path / "two"
    out.mkdir()
    pki.issue(seeded.data / "tls" / "ca.crt", seeded.data / "keys" / "ca.key", out / "client.crt", out / "client.key",
              cn="two", uris=[pki.ORG_URI_PREFIX + "lender-a", "urn:custos:org:regulator-1"])
    (out / "ca.crt").write_bytes((seeded.data / "tls" / "ca.crt").read_bytes())
    with CustosClient(seeded.addr, out, timeout=5) as c, pytest.raises(CustosClientError) as info:
        c.get_case("C-1", "servicing")
    assert (info.value.code, info.value.status) == ("UNKNOWN_ORG", "UNAUTHENTICATED")
    (event,) = [e for e in denials(seeded, code="UNKNOWN_ORG")]
    assert event.org == "" and event.method == "GetCase" and event.data["rule"].startswith("identity:cert=")


# ------------------------------------------------------------------ 3, 4, 7. imports


def _chunk(line_no: int, raw: bytes) -> bytes:
    """One frame of the import stream: a chunk holding one line."""
    return pb.LineChunk(lines=[pb.ImportLine(line_no=line_no, raw=raw)]).SerializeToString()


def _import_raw(env: Env, lines: list[bytes]) -> dict[str, Any]:
    return env.client("lender-a").import_lines(iter(lines))


def test_one_bad_line_never_sinks_the_stream(env: Env) -> None:
    """A huge integer, zone names that are directories or junk, a lone surrogate in a key: each one line."""
    good = [synth.case_line(i) for i in (1, 2, 3)]
    huge = synth.case_line(4)
    raw_huge = synth.jsonl([huge]).strip().replace(b'"stage"', b'"x": ' + b"9" * 5000 + b', "stage"')
    zones = [synth.jsonl([dict(synth.case_line(10 + i), timezone=z)]).strip()
             for i, z in enumerate(["America", "US", "Etc", "../../etc/passwd", "Asia/Shanghai\x00", "a" * 60, ""])]
    surrogate = synth.jsonl([synth.case_line(5)]).strip().replace(b'"stage"', b'"\\ud800Synth\\udfff": 1, "stage"')
    surrogate_value = synth.jsonl([synth.case_line(6)]).strip().replace(b'"reminder"', b'"\\udc80"')
    float_huge = synth.jsonl([synth.case_line(7)]).strip().replace(b'"stage"', b'"y": 1e999999, "stage"')
    lines = [synth.jsonl([good[0]]).strip(), raw_huge, *zones, surrogate, surrogate_value, float_huge,
             synth.jsonl([good[1]]).strip(), synth.jsonl([good[2]]).strip()]
    result = _import_raw(env, lines)
    assert result.imported == 3, result
    by_line = {r.line: r for r in result.rejected}
    assert sorted(by_line) == list(range(2, 2 + 1 + len(zones) + 3))
    assert by_line[2].code == "IMPORT_INVALID_JSON" and "number" in by_line[2].reason
    for n in range(3, 3 + len(zones)):
        assert by_line[n].code == "IMPORT_INVALID_FIELD" and by_line[n].reason.startswith("timezone"), by_line[n]
    for r in result.rejected:
        r.reason.encode("utf-8")  # always serialisable text
        assert "Synth" not in r.reason and "\ud800" not in r.reason
    # Every line, good or bad, is in the log.
    assert len([e for e in env.events(org="lender-a") if e.method == "ImportCases"]) == len(lines)


def test_rejections_never_echo_a_key(env: Env) -> None:
    pi_key = synth.case_line(1)["borrower"]["phone"]
    line = synth.jsonl([synth.case_line(1)]).strip().replace(b'"stage"', f'"{pi_key}": 1, "stage"'.encode())
    result = _import_raw(env, [line])
    (r,) = result.rejected
    assert pi_key not in r.reason and "key 4 of 8" in r.reason, r
    # A near miss of a known name gets a hint in our own words.
    typo = synth.jsonl([synth.case_line(2)]).strip().replace(b'"stage"', b'"consnet": {}, "stage"')
    result = _import_raw(env, [typo])
    assert 'did you mean "consent"' in result.rejected[0].reason


@pytest.mark.parametrize("method", [IMPORT, "/custos.v1.LenderService/AssignCases"])
def test_frames_of_a_line_per_message_client_are_refused_not_taken_for_an_empty_import(env: Env, method: str) -> None:
    """ImportCases once took a message per line; such frames decode as chunks without lines."""
    frames = [pb.ImportLine(line_no=1, raw=synth.jsonl([synth.case_line(1)]).strip()).SerializeToString()]
    ch = channel(env, "lender-a")
    try:
        with pytest.raises(grpc.RpcError) as info:
            list(ch.stream_stream(method)(iter(frames), timeout=30))
    finally:
        ch.close()
    from custos_client.client import _translate

    assert _translate(info.value).code == "MALFORMED_REQUEST"
    assert env.client("lender-a").list_cases() == []


def test_a_broken_frame_mid_stream_stores_whole_batches_and_the_client_learns_the_count(env: Env) -> None:
    from gateway.core import app

    n = app.IMPORT_BATCH + 40
    frames = [_chunk(i, synth.jsonl([synth.case_line(i)]).strip()) for i in range(1, n + 1)]
    frames.append(b"\xff\xff\xff\xff\x0f")  # not a LineChunk
    frames += [_chunk(n + 2, synth.jsonl([synth.case_line(n + 2)]).strip())]
    ch = channel(env, "lender-a")
    progress: list[pb.ImportProgress] = []
    try:
        with pytest.raises(grpc.RpcError) as info:
            for raw in ch.stream_stream(IMPORT)(iter(frames), timeout=60):
                progress.append(pb.ImportProgress.FromString(raw))
    finally:
        ch.close()
    from custos_client.client import _translate

    assert _translate(info.value).code == "MALFORMED_REQUEST"
    # The first batch was durable and said so; the unfinished batch was dropped whole.
    assert [(p.through_line, p.imported, p.done) for p in progress] == [(app.IMPORT_BATCH, app.IMPORT_BATCH, False)]
    stored = {c.case_id for c in env.client("lender-a").list_cases()}
    assert stored == {f"C-{i}" for i in range(1, app.IMPORT_BATCH + 1)}
    (event,) = [e for e in env.events(org="lender-a") if e.code == "MALFORMED_REQUEST"]
    assert event.data["rule"] == f"import.interrupted:through_line={app.IMPORT_BATCH};dropped_lines=40"
    # Sending the whole file again is safe: what was stored is reported, nothing is stored twice.
    again = env.client("lender-a").import_lines(iter([synth.jsonl([synth.case_line(i)]).strip()
                                                       for i in range(1, n + 1)]))
    assert (again.imported, again.already_imported, again.rejected) == (40, app.IMPORT_BATCH, [])
    # A changed line for a stored case is still a rejection, not an overwrite.
    changed = synth.case_line(1)
    changed["loan"]["amount_due"] = "1.00"
    result = env.client("lender-a").import_lines(iter([synth.jsonl([changed]).strip()]))
    assert [r.code for r in result.rejected] == ["CASE_EXISTS"]


def test_the_typed_client_reports_what_was_stored_when_a_stream_breaks(env: Env) -> None:
    from gateway.core import app

    def lines() -> Iterator[bytes]:
        for i in range(1, app.IMPORT_BATCH + 11):
            yield synth.jsonl([synth.case_line(i)]).strip()
        raise OSError("the file went away")

    with pytest.raises(CustosClientError) as info:
        env.client("lender-a").import_lines(lines())
    # Every whole line read before the failure is stored, and the error says exactly that.
    n = app.IMPORT_BATCH + 10
    assert info.value.code == "IMPORT_READ_FAILED"
    assert info.value.progress is not None
    assert (info.value.progress["imported"], info.value.progress["through_line"]) == (n, n)
    assert len(env.client("lender-a").list_cases()) == n
