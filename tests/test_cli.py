"""The `custos` command (DESIGN.md §9), run in-process against a real gateway.

Contract: client commands take --gateway/--identity (or CUSTOS_GATEWAY /
CUSTOS_IDENTITY); --json prints exactly one JSON document on stdout; a failure
exits non-zero with `error: CODE: message` on stderr (and with --json
`{"error": {"code", "message"}}` on stdout), never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

from gateway import cli, synth
from policies import BUNDLE_DIR
from tests.conftest import Env

REMINDER = {"full_name", "phone", "amount_due", "days_past_due", "due_on", "product", "lender_name", "national_id"}


@pytest.fixture(autouse=True)
def _no_env_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUSTOS_GATEWAY", raising=False)
    monkeypatch.delenv("CUSTOS_IDENTITY", raising=False)


class Run:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        rc = cli.main(list(argv))
        out = self.capsys.readouterr()
        assert "Traceback" not in out.err and "Traceback" not in out.out
        return rc, out.out, out.err

    def json(self, *argv: str) -> tuple[int, Any, str]:
        rc, out, err = self(*argv, "--json")
        lines = [ln for ln in out.splitlines() if ln.strip()]
        assert len(lines) == 1, f"--json must print one JSON document, got {out!r}"
        return rc, json.loads(lines[0]), err


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(capsys)


def conn(env: Env, org: str) -> list[str]:
    return ["--gateway", env.addr, "--identity", str(env.identity(org))]


def assert_error(rc: int, doc: Any, err: str, code: str) -> None:
    assert rc != 0
    assert set(doc) == {"error"} and doc["error"]["code"] == code and doc["error"]["message"], doc
    assert err.startswith(f"error: {code}: "), err


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


# ------------------------------------------------------------------ cases


def test_cases_list_as_agency_shows_only_its_mandated_case(seeded: Env, run: Run) -> None:
    rc, doc, _ = run.json("cases", "list", *conn(seeded, "agency-1"))
    assert rc == 0
    assert set(doc) == {"cases"}
    assert [c["case_id"] for c in doc["cases"]] == ["C-1"]
    c = doc["cases"][0]
    assert c["stage"] == "reminder" and c["purpose"] == "collection" and c["until"] == "2026-12-31"
    rc, doc, _ = run.json("cases", "list", *conn(seeded, "agency-2"))
    assert rc == 0 and doc == {"cases": []}


def test_cases_list_as_lender_shows_only_its_own(seeded: Env, run: Run) -> None:
    rc, doc, _ = run.json("cases", "list", *conn(seeded, "lender-b"))
    assert rc == 0
    assert sorted(c["case_id"] for c in doc["cases"]) == ["BC-1", "BC-2"]


def test_cases_get_prints_fields_in_one_order_every_time(seeded: Env, run: Run) -> None:
    """A protobuf map has no order on the wire: the client sorts the released fields by name, so the same call
    prints the same bytes (a diff of two runs shows what changed, not a reshuffle)."""
    outs = []
    for _ in range(3):
        rc, out, _ = run("cases", "get", "C-1", "--purpose", "servicing", "--json", *conn(seeded, "lender-a"))
        assert rc == 0
        outs.append(out)
        names = list(json.loads(out)["fields"])
        assert names == sorted(names) and len(names) > 3
    assert outs[0] == outs[1] == outs[2]


def test_cases_get_collection_gives_the_reminder_field_set(seeded: Env, run: Run) -> None:
    full = seeded.client("lender-a").get_case("C-1", "servicing").fields
    rc, doc, _ = run.json("cases", "get", "C-1", "--purpose", "collection", *conn(seeded, "agency-1"))
    assert rc == 0
    assert {"case_id", "purpose", "fields"} <= set(doc)
    assert doc["case_id"] == "C-1" and doc["purpose"] == "collection" and doc["stage"] == "reminder"
    f = doc["fields"]
    assert set(f) == REMINDER
    assert full["phone"].startswith("+86") and len(full["phone"]) == 14
    assert f["phone"] == full["phone"][:6] + "****" + full["phone"][-4:]
    assert f["national_id"] == full["national_id"][-4:]
    assert f["full_name"] == full["full_name"]
    out = json.dumps(doc, ensure_ascii=False)
    for secret in (full["phone"], full["national_id"], full["bank_account"], full["home_address"]):
        assert secret not in out


def test_cases_get_without_mandate(seeded: Env, run: Run) -> None:
    rc, doc, err = run.json("cases", "get", "C-1", "--purpose", "collection", *conn(seeded, "agency-2"))
    assert_error(rc, doc, err, "NO_MANDATE")
    # Without --json: nothing on stdout, the same line on stderr.
    rc, out, err = run("cases", "get", "C-1", "--purpose", "collection", *conn(seeded, "agency-2"))
    assert rc != 0 and out == "" and err.startswith("error: NO_MANDATE: ")


@pytest.mark.parametrize(
    "argv, code",
    [
        (["cases", "get", "C-1", "--purpose", "marketing"], "UNKNOWN_PURPOSE"),
        (["cases", "get", "C" * 10_000, "--purpose", "servicing"], "INVALID_CASE_ID"),
        (["cases", "get", "BC-1", "--purpose", "servicing"], "CASE_NOT_FOUND"),
        (["lender", "stage", "C-1", "collections"], "UNKNOWN_STAGE"),
        (["lender", "assign", "C-1", "--to", "bureau-1", "--purpose", "collection", "--until", "2026-12-31"],
         "PURPOSE_KIND_MISMATCH"),
        (["lender", "assign", "C-1", "--to", "agency-2", "--purpose", "collection", "--until", "2026-12-31",
          "--label", "shared"], "UNKNOWN_LABEL"),
        (["lender", "assign", "C-1", "--to", "agency-2", "--purpose", "collection", "--until", "31.12.2026"],
         "INVALID_DATE"),
    ],
)
def test_lender_command_errors_carry_their_code(seeded: Env, run: Run, argv: list[str], code: str) -> None:
    rc, doc, err = run.json(*argv, *conn(seeded, "lender-a"))
    assert_error(rc, doc, err, code)
    assert seeded.client("lender-a").get_case("C-1", "servicing").stage == "reminder"


def test_lender_stage_and_assign_succeed(seeded: Env, run: Run) -> None:
    rc, doc, _ = run.json("lender", "stage", "C-1", "letter", *conn(seeded, "lender-a"))
    assert rc == 0 and doc["stage"] == "letter" and doc["case_id"] == "C-1"
    rc, doc, _ = run.json("lender", "assign", "C-3", "--to", "agency-2", "--purpose", "collection", "--until",
                          "2026-12-31", "--agreement", "AG-1", "--pia", "PIA-1", *conn(seeded, "lender-a"))
    assert rc == 0 and doc["org_id"] == "agency-2" and doc["label"] == "entrusted"
    assert [c.case_id for c in seeded.client("agency-2").list_cases()] == ["C-3"]


# ------------------------------------------------------------------ import


def test_lender_import_reports_per_line(env: Env, run: Run, tmp_path: Path) -> None:
    good = synth.case_line(1)
    bad = synth.case_line(2)
    bad["loan"]["principal"] = 123.4
    path = tmp_path / "cases.jsonl"
    path.write_bytes(synth.jsonl([good, bad]))
    rc, doc, _ = run.json("lender", "import", str(path), *conn(env, "lender-a"))
    assert rc == 0
    assert doc["imported"] == 1
    assert len(doc["rejected"]) == 1
    rej = doc["rejected"][0]
    assert set(rej) == {"line", "code", "reason"}
    assert rej["line"] == 2 and rej["code"] == "IMPORT_INVALID_FIELD" and "loan.principal" in rej["reason"]
    text = json.dumps(doc, ensure_ascii=False)
    for value in synth.pi_values(bad) + synth.pi_values(good):
        assert value not in text
    assert env.client("lender-a").get_case("C-1", "servicing").fields["full_name"] == good["borrower"]["full_name"]


def test_lender_import_crlf_and_blank_lines(env: Env, run: Run, tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_bytes(synth.jsonl([synth.case_line(1)]).replace(b"\n", b"\r\n") + b"\r\n\n"
                     + synth.jsonl([synth.case_line(2)]))
    rc, doc, _ = run.json("lender", "import", str(path), *conn(env, "lender-a"))
    assert rc == 0 and doc == {"imported": 2, "rejected": []}


def test_lender_import_missing_file(env: Env, run: Run, tmp_path: Path) -> None:
    missing = tmp_path / "no-such.jsonl"
    rc, doc, err = run.json("lender", "import", str(missing), *conn(env, "lender-a"))
    assert rc != 0 and doc["error"]["code"] and err.startswith(f"error: {doc['error']['code']}: ")
    rc, doc, err = run.json("lender", "import", str(tmp_path), *conn(env, "lender-a"))
    assert rc != 0 and doc["error"]["code"]


def test_lender_import_as_agency_is_refused(env: Env, run: Run, tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_bytes(synth.jsonl([synth.case_line(1)]))
    rc, doc, err = run.json("lender", "import", str(path), *conn(env, "agency-1"))
    assert_error(rc, doc, err, "WRONG_ORG_KIND")
    assert env.client("lender-a").list_cases() == []


# ------------------------------------------------------------------ connection settings


def test_environment_variables_replace_flags(seeded: Env, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOS_GATEWAY", seeded.addr)
    monkeypatch.setenv("CUSTOS_IDENTITY", str(seeded.identity("agency-1")))
    rc, doc, _ = run.json("cases", "list")
    assert rc == 0 and [c["case_id"] for c in doc["cases"]] == ["C-1"]
    rc, doc, _ = run.json("cases", "get", "C-1", "--purpose", "collection")
    assert rc == 0 and set(doc["fields"]) == REMINDER
    # A flag wins over the environment.
    rc, doc, _ = run.json("cases", "list", "--identity", str(seeded.identity("agency-2")))
    assert rc == 0 and doc == {"cases": []}


def test_no_gateway_given(run: Run) -> None:
    rc, doc, err = run.json("cases", "list")
    assert_error(rc, doc, err, "INVALID_ARGUMENT")


def test_unreadable_identity(seeded: Env, run: Run, tmp_path: Path) -> None:
    rc, doc, err = run.json("cases", "list", "--gateway", seeded.addr, "--identity", str(tmp_path / "none"))
    assert_error(rc, doc, err, "IDENTITY_INVALID")


def test_gateway_not_running(env: Env, run: Run) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, doc, err = run.json("cases", "list", "--gateway", f"127.0.0.1:{port}", "--identity",
                            str(env.identity("agency-1")))
    assert_error(rc, doc, err, "UNAVAILABLE")


# ------------------------------------------------------------------ operator commands


def test_init_refuses_an_existing_directory(run: Run, tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.mkdir()
    (target / "keep.txt").write_text("operator notes\n")
    (target / "sub").mkdir()
    (target / "sub" / "x.bin").write_bytes(b"\x00\x01")
    before = tree_digest(target)
    rc, doc, err = run.json("init", str(target))
    assert_error(rc, doc, err, "DATA_DIR_EXISTS")
    assert tree_digest(target) == before


def test_init_refuses_a_live_data_directory(env: Env, run: Run) -> None:
    before = tree_digest(env.data / "keys")
    rc, doc, err = run.json("init", str(env.data))
    assert_error(rc, doc, err, "DATA_DIR_EXISTS")
    assert tree_digest(env.data / "keys") == before
    assert env.client("lender-a").list_cases() == []


def test_init_creates_a_data_directory(run: Run, tmp_path: Path) -> None:
    rc, doc, _ = run.json("init", str(tmp_path / "fresh"))
    assert rc == 0
    assert Path(doc["verifier_key"]).read_text().startswith("custos.invalid/log/")
    assert ((tmp_path / "fresh" / "keys" / "kek-1.key").stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize(
    "extra, code",
    [
        (["--id", "x-1", "--kind", "pawnshop", "--name", "X"], "UNKNOWN_KIND"),
        (["--id", "x-1", "--kind", "agency", "--name", "X"], "INVALID_ARGUMENT"),
        (["--id", "x-1", "--kind", "agency", "--name", "X", "--licence-no", "L9"], "INVALID_ARGUMENT"),
        (["--id", "x-1", "--kind", "agency", "--name", "X", "--licence-no", "L9", "--licence-expires", "2099-02-30"],
         "INVALID_DATE"),
        (["--id", "x-1", "--kind", "law_firm", "--name", "X"], "INVALID_ARGUMENT"),
        (["--id", "x-1", "--kind", "lender", "--name", "X", "--jurisdiction", "MARS"], "UNKNOWN_JURISDICTION"),
        (["--id", "bad id!", "--kind", "lender", "--name", "X"], "INVALID_ORG_ID"),
        (["--id", "x-1\n", "--kind", "lender", "--name", "X"], "INVALID_ORG_ID"),
        (["--id", "agency-1", "--kind", "agency", "--name", "X", "--licence-no", "L9", "--licence-expires",
          "2099-01-01"], "ORG_EXISTS"),
    ],
)
def test_org_add_refuses_bad_input(env: Env, run: Run, tmp_path: Path, extra: list[str], code: str) -> None:
    out_dir = tmp_path / "ident"
    rc, doc, err = run.json("org", "add", str(env.data), *extra, "--out", str(out_dir))
    assert_error(rc, doc, err, code)
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_org_add_takes_the_jurisdictions_of_the_bundle(env: Env, run: Run, tmp_path: Path) -> None:
    """An organisation may be in a jurisdiction the bundle (`--policies`) has a conduct file for, no other."""
    policies = tmp_path / "policies"
    shutil.copytree(BUNDLE_DIR, policies, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    (policies / "conduct" / "us.toml").unlink()
    (policies / "conduct" / "eu.toml").unlink()  # issue 26: the shipped bundle also has the EU
    add = ["org", "add", str(env.data), "--kind", "lender", "--name", "X"]
    rc, doc, err = run.json(*add, "--id", "x-1", "--jurisdiction", "US", "--policies", str(policies),
                            "--out", str(tmp_path / "x-1"))
    assert_error(rc, doc, err, "UNKNOWN_JURISDICTION")
    refusal = [e for e in env.events(org="x-1") if e.method == "OperatorOrgAdd"]
    assert [(e.decision, e.code, e.data["rule"].split(";", 1)[1]) for e in refusal] == [
        ("deny", "UNKNOWN_JURISDICTION", "known: CN")]
    rc, doc, _ = run.json(*add, "--id", "x-2", "--jurisdiction", "CN", "--policies", str(policies),
                          "--out", str(tmp_path / "x-2"))
    assert rc == 0, doc
    rc, doc, _ = run.json(*add, "--id", "x-3", "--jurisdiction", "US", "--out", str(tmp_path / "x-3"))
    assert rc == 0, doc  # the shipped bundle has us.toml


def test_org_disable_then_requests_are_refused(seeded: Env, run: Run) -> None:
    rc, doc, _ = run.json("org", "disable", str(seeded.data), "--id", "agency-1")
    assert rc == 0 and doc == {"org_id": "agency-1", "disabled": True}
    rc, doc, err = run.json("cases", "list", *conn(seeded, "agency-1"))
    assert_error(rc, doc, err, "ORG_DISABLED")
    rc, doc, err = run.json("cases", "get", "C-1", "--purpose", "collection", *conn(seeded, "agency-1"))
    assert_error(rc, doc, err, "ORG_DISABLED")
    denied = [e for e in seeded.events(org="agency-1") if e.decision == "deny"]
    assert [e.code for e in denied] == ["ORG_DISABLED", "ORG_DISABLED"]
    # Other organisations are unaffected.
    assert seeded.client("lender-a").get_case("C-1", "servicing").case_id == "C-1"


def test_org_disable_unknown(env: Env, run: Run) -> None:
    rc, doc, err = run.json("org", "disable", str(env.data), "--id", "agency-404")
    assert_error(rc, doc, err, "ORG_NOT_FOUND")


def test_operator_command_on_a_missing_data_dir(run: Run, tmp_path: Path) -> None:
    rc, doc, err = run.json("org", "disable", str(tmp_path / "nothing"), "--id", "agency-1")
    assert_error(rc, doc, err, "DATA_DIR_INVALID")


# ------------------------------------------------------------------ audit


def test_audit_verify_as_regulator(seeded: Env, run: Run) -> None:
    seeded.client("agency-1").get_case("C-1", "collection")
    rc, doc, _ = run.json("audit", "verify", "--key", str(seeded.data / "audit.vkey"), *conn(seeded, "regulator-1"))
    assert rc == 0
    assert doc["verified"] is True
    assert isinstance(doc["size"], int) and doc["size"] >= 10
    assert doc["root"]


def test_audit_verify_as_agency_is_refused(seeded: Env, run: Run) -> None:
    rc, doc, err = run.json("audit", "verify", "--key", str(seeded.data / "audit.vkey"), *conn(seeded, "agency-1"))
    assert_error(rc, doc, err, "WRONG_ORG_KIND")


def test_audit_verify_with_the_wrong_key_fails(seeded: Env, run: Run, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert cli.main(["init", str(other)]) == 0
    rc, doc, err = run.json("audit", "verify", "--key", str(other / "audit.vkey"), *conn(seeded, "regulator-1"))
    assert_error(rc, doc, err, "AUDIT_VERIFY_FAILED")


def test_audit_query_as_regulator_and_agency(seeded: Env, run: Run) -> None:
    rc, doc, _ = run.json("audit", "query", "--case", "C-1", *conn(seeded, "regulator-1"))
    assert rc == 0 and doc["events"]
    for e in doc["events"]:
        assert {"seq", "time", "org", "method", "purpose", "case_id", "borrower_id", "fields", "decision", "code",
                "policy_revision", "trace_id"} <= set(e)
        assert e["case_id"] in ("C-1", "")
    rc, doc, err = run.json("audit", "query", *conn(seeded, "agency-1"))
    assert_error(rc, doc, err, "WRONG_ORG_KIND")  # a lender may query its own cases' events (test_agents.py)
    rc, doc, err = run.json("audit", "query", "--since", "yesterday", *conn(seeded, "regulator-1"))
    assert_error(rc, doc, err, "INVALID_TIME")


def test_serve_refuses_a_damaged_data_directory_or_policy_bundle(env_dir: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Ugly start-up cases fail with a stable code and no traceback, before anything listens."""
    data = env_dir / "data"
    bad_policies = tmp_path / "policies"
    bad_policies.mkdir()
    shutil.copy(BUNDLE_DIR / "capabilities.toml", bad_policies)  # a sound table: the release file is what is wrong
    (bad_policies / "release.toml").write_text("[[release]]\nid = 'x'\npurpose = 'collection'\nto = ['agency']\n"
                                               "stages = ['reminder']\n[release.fields]\nbank_account = 'plain'\n")
    assert cli.main(["serve", str(data), "--listen", "127.0.0.1:0", "--policies", str(bad_policies)]) == 1
    err = capsys.readouterr().err
    assert "error: POLICY_INVALID: " in err and "release.toml:7" in err and "Traceback" not in err

    kek = data / "keys" / "kek-1.key"
    kek.write_text(kek.read_text()[:20])  # truncated key file
    assert cli.main(["serve", str(data), "--listen", "127.0.0.1:0"]) == 1
    err = capsys.readouterr().err
    assert "error: DATA_DIR_INVALID: " in err and "Traceback" not in err

    assert cli.main(["serve", str(tmp_path / "nowhere"), "--listen", "127.0.0.1:0"]) == 1
    assert "error: DATA_DIR_INVALID: " in capsys.readouterr().err


def test_output_cut_short_by_the_reader_is_no_traceback(tmp_path: Path) -> None:
    """`custos ... | head`: the CLI stops quietly with the shell's SIGPIPE status, never a traceback."""
    import subprocess
    import sys

    proc = subprocess.run(f"{sys.executable} -m gateway.cli policy check --json | head -c 1",
                          shell=True, capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent.parent)
    assert "Traceback" not in proc.stderr
    big = subprocess.run([sys.executable, "-c", (
        "import sys, gateway.cli as c\n"
        "class Gone:\n"
        "    def write(self, s): raise BrokenPipeError\n"
        "    def flush(self): pass\n"
        "    def fileno(self): return sys.__stdout__.fileno()\n"
        "sys.stdout = Gone()\n"
        "sys.exit(c.main(['policy', 'check', '--json']))\n")], capture_output=True, text=True, timeout=60,
        cwd=Path(__file__).parent.parent)
    assert big.returncode == 141 and "Traceback" not in big.stderr


def test_version_names_the_installed_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"custos {version('custos')} (proto custos.v1)"
