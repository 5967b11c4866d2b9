"""Shared fixtures: a data directory with organisations, and a real gateway on loopback.

The organisations and their identity bundles are made once per session; every
test gets its own copy of that directory, so each starts from an empty,
freshly keyed database without paying for key and certificate generation.
"""

from __future__ import annotations

# isort: off
import gateway.transport  # noqa: F401 - first: it sets gRPC's TLS 1.2 cipher list before anything imports grpc
# isort: on
import json
import os
import shutil
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from custos_client import AssignResult, AuditEvent, CustosClient, Escalation, ImportResult, Mandate
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway import cli, synth
from gateway.transport.server import Gateway, build
from tests.pg import PgServer, binaries

ORGS: list[tuple[str, str, list[str]]] = [
    ("lender-a", "lender", ["--address", "1 Test Plaza, Testville, NY 10001", "--telephone", "(212) 555-0100"]),
    ("lender-b", "lender", []),
    ("agency-1", "agency", ["--licence-no", "L1", "--licence-expires", "2099-12-31"]),
    ("agency-2", "agency", ["--licence-no", "L2", "--licence-expires", "2099-12-31"]),
    ("agency-b", "agency", ["--licence-no", "LB", "--licence-expires", "2099-12-31"]),
    ("agency-old", "agency", ["--licence-no", "LO", "--licence-expires", "2020-01-01"]),
    ("lawfirm-1", "law_firm", ["--licence-no", "BAR1", "--licence-expires", "2099-12-31"]),
    ("lawfirm-2", "law_firm", ["--licence-no", "BAR2", "--licence-expires", "2099-12-31"]),
    ("bureau-1", "bureau", []),
    ("regulator-1", "regulator", []),
]


class FakeClock:
    """A clock tests can move; starts at a fixed weekday morning, UTC."""

    def __init__(self, now: datetime | None = None) -> None:
        self.current = now or datetime(2026, 11, 30, 2, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **kw: float) -> None:
        self.current += timedelta(**kw)


BACKENDS = ("sqlite", "postgresql")
# Fixtures that give a test a data directory, and so a storage backend: such a test runs once per backend
# unless it (or its module) is marked sqlite_only (it looks at SQLite's own files or internals).
BACKEND_FIXTURES = {"env", "seeded", "env_dir"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: looks at the embedded store's files or internals")
    config.addinivalue_line("markers", "postgresql_only: replicas, or PostgreSQL's own files")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if BACKEND_FIXTURES & set(metafunc.fixturenames):
        backends = list(BACKENDS)
        if metafunc.definition.get_closest_marker("sqlite_only"):
            backends = ["sqlite"]
        elif metafunc.definition.get_closest_marker("postgresql_only"):
            backends = ["postgresql"]
        metafunc.parametrize("backend", backends, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the session (tests/pg.py); skipped loudly without binaries, failed under CI."""
    bindir = binaries()
    if bindir is None:
        message = ("PostgreSQL binaries (initdb, pg_ctl) not found: the PostgreSQL tests DID NOT RUN. "
                   "Install Debian's postgresql package, or set CUSTOS_PG_BIN.")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        warnings.warn(message, stacklevel=1)
        pytest.skip(message)
    server = PgServer(bindir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _make_template(root: Path, database: str | None) -> Path:
    data = root / "data"
    assert cli.main(["init", str(data), *(["--database", database] if database else [])]) == 0
    for org_id, kind, extra in ORGS:
        assert cli.main(["org", "add", str(data), "--id", org_id, "--kind", kind, "--name", f"Org {org_id}",
                         "--out", str(root / "ids" / org_id), *extra]) == 0
    return root


@pytest.fixture(scope="session")
def template_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_template(tmp_path_factory.mktemp("template"), None)


@pytest.fixture(scope="session")
def pg_template_dir(tmp_path_factory: pytest.TempPathFactory, pg_server: PgServer) -> Path:
    """The same organisations in a template database, which each test copies (CREATE DATABASE ... TEMPLATE)."""
    pg_server.create_database("custos_template")
    return _make_template(tmp_path_factory.mktemp("pg-template"), pg_server.url("custos_template"))


_databases = iter(range(1, 1 << 30))


@pytest.fixture
def env_dir(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Path:
    """A private copy of the template: DATA_DIR at ./data, identity bundles at ./ids/ORG (and, on PostgreSQL,
    a private copy of the template database)."""
    dest = tmp_path / "env"
    if backend == "sqlite":
        shutil.copytree(request.getfixturevalue("template_dir"), dest)
        return dest
    server: PgServer = request.getfixturevalue("pg_server")
    shutil.copytree(request.getfixturevalue("pg_template_dir"), dest)
    name = f"custos_test_{next(_databases)}"
    url = server.create_database(name, template="custos_template")
    # Dropped when the test ends (connections of a gateway still up are ended), so the cluster stays small.
    request.addfinalizer(lambda: server.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    config = json.loads((dest / "data" / "config.json").read_text())
    config["database"] = url
    (dest / "data" / "config.json").write_text(json.dumps(config) + "\n")
    return dest


# The references of the agreement and impact assessment a mandate names (issue 26: CN requires both, PIPL Art. 21,
# 55). The tests' client names them unless a test passes its own ("" names none).
AGREEMENT, PIA = "AG-TEST-1", "PIA-TEST-1"


def with_records(line: bytes) -> bytes:
    """A placement line naming the test references where it names none of its own."""
    try:
        doc = json.loads(line)
    except ValueError:  # a test's malformed line stays as it is
        return line
    if not isinstance(doc, dict) or "case_id" not in doc:
        return line
    doc.setdefault("agreement", AGREEMENT)
    doc.setdefault("pia", PIA)
    return json.dumps(doc).encode() + (b"\n" if line.endswith(b"\n") else b"")


class RecordsClient(CustosClient):
    """The client the tests use: its mandates name the test references by default (see AGREEMENT)."""

    def assign(self, case_id: str, org_id: str, purpose: str, until: str, label: str = "", commission: str = "",
               agreement: str | None = None, pia: str | None = None) -> Mandate:
        return super().assign(case_id, org_id, purpose, until, label, commission,
                              AGREEMENT if agreement is None else agreement, PIA if pia is None else pia)

    def escalate(self, case_id: str, law_firm: str, until: str = "", agreement: str | None = None,
                 pia: str | None = None) -> Escalation:
        return super().escalate(case_id, law_firm, until, AGREEMENT if agreement is None else agreement,
                                PIA if pia is None else pia)

    def assign_lines(self, lines: Iterable[bytes], records: bool = True) -> AssignResult:
        return super().assign_lines((with_records(line) for line in lines) if records else lines)
# The notices before collection every imported fixture case holds unless its line says otherwise (issue 26).
NOTICES = {"validation": "2020-01-01", "outsourcing": "2020-01-01"}


@dataclass
class Env:
    root: Path
    gw: Gateway
    clock: FakeClock
    spans: InMemorySpanExporter
    clients: dict[str, CustosClient] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.gw.port}"

    def client(self, org: str) -> CustosClient:
        if org not in self.clients:
            self.clients[org] = RecordsClient(self.addr, self.root / "ids" / org, timeout=20)
        return self.clients[org]

    def identity(self, org: str) -> Path:
        return self.root / "ids" / org

    def import_cases(self, lender: str, lines: list[dict[str, Any]]) -> ImportResult:
        """Import `lines`; each without a "notices" key gets the notices an agency's contact needs (issue 26:
        validation, outsourcing) given on 2020-01-01, so contacts are gated only where a test says so."""
        lines = [line if "notices" in line else {**line, "notices": dict(NOTICES)} for line in lines]
        return self.client(lender).import_lines(synth.jsonl(lines).splitlines())

    def events(self, **filters: Any) -> list[AuditEvent]:
        """The regulator's audit query; `org=` is accepted for `org_id=`."""
        if "org" in filters:
            filters["org_id"] = filters.pop("org")
        return self.client("regulator-1").audit_query(**filters)

    def close(self) -> None:
        for c in self.clients.values():
            c.close()
        self.gw.stop(0)


@pytest.fixture
def env(env_dir: Path) -> Iterator[Env]:
    clock = FakeClock()
    spans = InMemorySpanExporter()
    gw = build(env_dir / "data", "127.0.0.1:0", clock=clock, span_exporter=spans, workers=8)
    e = Env(env_dir, gw, clock, spans)
    try:
        yield e
    finally:
        e.close()


@pytest.fixture
def seeded(env: Env) -> Env:
    """lender-a owns C-1..C-6 (C-1/C-2 share borrower B-1), lender-b owns BC-1..BC-2; agency-1 holds C-1."""
    lines = [synth.case_line(1, jurisdiction="CN", borrower=1), synth.case_line(2, jurisdiction="CN", borrower=1)]
    lines += [synth.case_line(i, jurisdiction="CN" if i % 2 else "US") for i in range(3, 7)]
    result = env.import_cases("lender-a", lines)
    assert result.imported == 6, result
    env.import_cases("lender-b", [synth.case_line(i, lender_prefix="B", seed=99) for i in (1, 2)])
    env.client("lender-a").assign("C-1", "agency-1", "collection", "2026-12-31")
    return env


@pytest.fixture
def escalated(seeded: Env) -> Env:
    """C-1 (CN, borrower B-1, mandated to agency-1) escalated to lawfirm-1, with some contact history first."""
    seeded.clock.current = seeded.clock.current.replace(hour=3)  # 11:00 in Shanghai: inside the window
    contact = seeded.client("agency-1").open_contact("C-1", "call")
    seeded.client("agency-1").record_outcome(contact.contact_id, "promise_to_pay", "100.00", "2026-12-05")
    seeded.client("lender-a").escalate("C-1", "lawfirm-1")
    return seeded


# ------------------------------------------------------------------ limits, raw calls, served processes


def policy_bundle(dest: Path, limits: dict[str, dict[str, Any]]) -> Path:
    """A copy of the shipped bundle whose limits.toml sets `limits` ({section: {key: value}}, "rate.kind.agency" too)."""
    from policies import BUNDLE_DIR

    shutil.copytree(BUNDLE_DIR, dest, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    path = dest / "limits.toml"
    path.write_text(_merge_toml(path.read_text(), limits))
    return dest


def _merge_toml(base: str, limits: dict[str, dict[str, Any]]) -> str:
    """Override keys in their sections of `base`; sections it lacks are appended."""
    out: list[str] = []
    section = ""
    pending = {s: dict(v) for s, v in limits.items()}
    for line in base.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            out += [f"{k} = {json.dumps(v)}" for k, v in pending.pop(section, {}).items()]
            section = stripped.strip("[]")
        elif "=" in stripped and not stripped.startswith("#"):
            key = stripped.split("=", 1)[0].strip()
            if key in pending.get(section, {}):
                line = f"{key} = {json.dumps(pending[section].pop(key))}"
        out.append(line)
    out += [f"{k} = {json.dumps(v)}" for k, v in pending.pop(section, {}).items()]
    for s, values in pending.items():
        out.append(f"[{s}]")
        out += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return "\n".join(out) + "\n"


def channel(env: Env, org: str) -> grpc.Channel:
    """A bare mTLS channel as `org`, for calls the typed client will not make (raw bytes, half-open calls)."""
    ident = env.identity(org)
    creds = grpc.ssl_channel_credentials((ident / "ca.crt").read_bytes(), (ident / "client.key").read_bytes(),
                                         (ident / "client.crt").read_bytes())
    return grpc.secure_channel(env.addr, creds)


class Served:
    """`custos serve` in a child process (SIGTERM, rlimits, memory), stopped when the test ends."""

    def __init__(self, data: Path, *, policies: Path | None = None, nofile: int | None = None,
                 extra: list[str] | None = None) -> None:
        import resource
        import subprocess
        import sys

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        extra = list(extra or [])
        if "--processes" not in extra:
            extra += ["--processes", "1"]  # the process under test is this one (its memory, its signals)
        argv = [sys.executable, "-m", "gateway.cli", "serve", str(data), "--listen", "127.0.0.1:0", *extra]
        if policies is not None:
            argv += ["--policies", str(policies)]
        self.log = data.parent / f"serve-{os.getpid()}-{id(self)}.log"
        self._log = open(self.log, "wb")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._log, preexec_fn=limit)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().decode()
        if "listening on" not in first:
            self.stop()
            raise RuntimeError(f"custos serve did not start: {first!r} {self.log.read_text()[-2000:]}")
        self.port = int(first.rsplit(":", 1)[1])

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def vm_kib(self, field_name: str) -> int:
        """VmRSS / VmHWM of the server process, in KiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
        raise KeyError(field_name)

    def stop(self) -> None:
        import signal as sig

        if self.proc.poll() is None:
            self.proc.send_signal(sig.SIGKILL)
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def race(calls: list[Callable[[], object]], timeout: float = 60.0) -> list[str]:
    """Run every call at once (a barrier releases them together); each one's outcome: "ok" or its error code."""
    import threading

    from custos_client import CustosClientError

    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(calls))

    def attempt(call: Callable[[], object]) -> None:
        barrier.wait()
        try:
            call()
            outcome = "ok"
        except CustosClientError as err:
            outcome = err.code
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=attempt, args=(call,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    return results


@pytest.fixture
def served() -> Iterator[list[Served]]:
    """Register Served instances here; they are killed at the end of the test."""
    procs: list[Served] = []
    try:
        yield procs
    finally:
        for p in procs:
            p.stop()


def store_sql(env: Env | Path, statement: str) -> None:
    """Run one statement on the data directory's case store directly, as another process would (tests only)."""
    data = env.data if isinstance(env, Env) else env
    config = json.loads((data / "config.json").read_text())
    if config.get("database"):
        import psycopg

        with psycopg.connect(config["database"], autocommit=True) as conn:
            conn.execute(statement.replace("= 1", "= true"))  # type: ignore[arg-type]
        return
    from vault.crypto import read_key_file
    from vault.sqlite import db

    conn = db.connect(data / "custos.db", read_key_file(data / "keys" / "db.key"))
    try:
        conn.execute(statement)
    finally:
        conn.close()
