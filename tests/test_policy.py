"""The policy bundle: loading, validation that names file and line, transforms, the compiled release table.

DESIGN.md §3: policies are declarative files, validated when loaded (a bad file
stops start-up with a message naming the file, line and problem), carrying a
revision hash; agencies never get bank_account, a full national_id or
emergency_contacts; a field not named by a rule is not released.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway import cli
from gateway.core.errors import PolicyError
from gateway.core.model import ALL_FIELDS, NEVER_TO_AGENCY, STAGES
from gateway.core.rules.policy import Transform, apply_transform, load_bundle
from gateway.core.rules.tomlfile import MAX_POLICY_FILE_BYTES
from policies import BUNDLE_DIR

MARK = "# BROKEN"

REMINDER = {"full_name", "phone", "amount_due", "days_past_due", "due_on", "product", "lender_name", "national_id"}
LETTER = REMINDER | {"home_address"}
FIELD_VISIT = LETTER | {"work_address", "employer"}
LITIGATION = {"full_name", "national_id", "date_of_birth", "home_address", "phone", "loan_id", "product", "currency",
              "principal", "outstanding", "amount_due", "originated_on", "due_on", "repayments", "contract_text",
              "contact_history",
              # the ledger as recorded and a filing's dates (issue 24)
              "interest", "fees", "first_delinquency_on", "last_payment_on", "limitation_date"}
CREDIT = {"national_id", "full_name", "date_of_birth", "loan_id", "status", "outstanding", "amount_due",
          "first_delinquency_on", "last_payment_on", "disputed",
          # what the furnishing formats need beyond DESIGN.md §3's list (policies/release.toml says why)
          "home_address", "currency", "originated_on", "principal", "negative_notice_on", "consent", "days_past_due",
          "product"}  # Metro 2 Account Type of the lender's own loan

KEY = b"k" * 32


@pytest.fixture
def bundle_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "policies"
    shutil.copytree(BUNDLE_DIR, dest, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return dest


# ------------------------------------------------------------------ loading and revision


def test_shipped_bundle_loads_with_a_stable_revision(bundle_copy: Path) -> None:
    a, b = load_bundle(BUNDLE_DIR), load_bundle(BUNDLE_DIR)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", a.revision)
    assert a.revision == b.revision
    assert [r.id for r in a.rules] == ["collection.reminder", "collection.letter", "collection.field_visit",
                                       "litigation.packet", "credit_reporting.furnish", "servicing.owner"]
    assert set(a.conduct) == {"CN", "US", "EU"}
    # A byte-identical copy elsewhere has the same revision: it depends on content, not location.
    assert load_bundle(bundle_copy).revision == a.revision


@pytest.mark.parametrize("rel", ["release.toml", "conduct/cn.toml", "conduct/us.toml"])
def test_revision_changes_when_any_policy_file_changes(bundle_copy: Path, rel: str) -> None:
    before = load_bundle(bundle_copy).revision
    path = bundle_copy / rel
    path.write_text(path.read_text() + "\n# a comment changes the bytes, so the revision\n")
    after = load_bundle(bundle_copy).revision
    assert after != before and after.startswith("sha256:")
    assert load_bundle(bundle_copy).revision == after


def test_cli_policy_check_accepts_the_shipped_bundle(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert cli.main(["policy", "check", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["revision"] == load_bundle(BUNDLE_DIR).revision


# ------------------------------------------------------------------ broken bundles


def in_rule(rule_id: str, old: str, new: str) -> Callable[[str], str]:
    """Replace the first line equal to `old` after the line `id = "rule_id"`."""

    def edit(text: str) -> str:
        lines = text.split("\n")
        start = lines.index(f'id = "{rule_id}"')
        for i in range(start, len(lines)):
            if lines[i] == old:
                lines[i] = new
                return "\n".join(lines)
        raise AssertionError(f"{old!r} not in rule {rule_id}")

    return edit


def after_in_rule(rule_id: str, anchor: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        lines = text.split("\n")
        start = lines.index(f'id = "{rule_id}"')
        i = lines.index(anchor, start)
        lines.insert(i + 1, new)
        return "\n".join(lines)

    return edit


def appended(rule: str) -> Callable[[str], str]:
    return lambda text: text.rstrip("\n") + "\n\n" + rule.strip("\n") + "\n"


def extra_agency_rule(field_line: str) -> Callable[[str], str]:
    return appended(f"""
[[release]]
id = "collection.extra"
purpose = "collection"
to = ["agency"]
stages = ["letter"]
[release.fields]
{field_line}
""")


def whole_file(text: str) -> Callable[[str], str]:
    return lambda _old: text


BREAKS: dict[str, tuple[str, Callable[[str], str], str]] = {
    # name: (file, edit, a word the problem must contain)
    "toml syntax": ("release.toml", in_rule("collection.letter", 'home_address = "plain"',
                                            f'home_address = = "plain"  {MARK}'), "TOML"),
    "toml unterminated string": ("release.toml", in_rule("collection.field_visit", 'employer = "plain"',
                                                         f'employer = "plain  {MARK}'), "TOML"),
    "unknown field": ("release.toml", in_rule("collection.field_visit", 'employer = "plain"',
                                              f'shoe_size = "plain"  {MARK}'), "shoe_size"),
    "unknown transform, first rule": ("release.toml", in_rule("collection.reminder", 'due_on = "plain"',
                                                              f'due_on = "blur"  {MARK}'), "blur"),
    "unknown transform, later rule": ("release.toml", in_rule("litigation.packet", 'due_on = "plain"',
                                                              f'due_on = "blur"  {MARK}'), "blur"),
    "unknown stage, first rule": ("release.toml", in_rule("collection.reminder",
                                                          'stages = ["reminder", "letter", "field_visit"]',
                                                          f'stages = ["reminder", "collections"]  {MARK}'),
                                  "collections"),
    "unknown stage, later rule": ("release.toml", in_rule("collection.letter", 'stages = ["letter", "field_visit"]',
                                                          f'stages = ["letter", "feild_visit"]  {MARK}'),
                                  "feild_visit"),
    "unknown purpose": ("release.toml", in_rule("collection.letter", 'purpose = "collection"',
                                                f'purpose = "marketing"  {MARK}'), "marketing"),
    "unknown kind": ("release.toml", in_rule("collection.letter", 'to = ["agency"]',
                                             f'to = ["agency", "debt_buyer"]  {MARK}'), "debt_buyer"),
    "unknown rule key": ("release.toml", after_in_rule("collection.letter", 'to = ["agency"]',
                                                       f'colour = "red"  {MARK}'), "colour"),
    "bank_account to agency": ("release.toml", after_in_rule("collection.reminder", 'national_id = "last4"',
                                                             f'bank_account = "redact"  {MARK}'), "bank_account"),
    "plain national_id to agency": ("release.toml", in_rule("collection.reminder", 'national_id = "last4"',
                                                            f'national_id = "plain"  {MARK}'), "national_id"),
    "emergency_contacts to agency": ("release.toml", after_in_rule("collection.letter", 'home_address = "plain"',
                                                                   f'emergency_contacts = "pseudonym"  {MARK}'),
                                     "emergency_contacts"),
    "masked national_id to agency in a later rule": ("release.toml",
                                                     extra_agency_rule(f'national_id = "mask"  {MARK}'),
                                                     "national_id"),
    "bank_account to agency in a later rule": ("release.toml", extra_agency_rule(f'bank_account = "plain"  {MARK}'),
                                               "bank_account"),
    "duplicate rule id": ("release.toml", in_rule("collection.letter", 'id = "collection.letter"',
                                                  f'id = "collection.reminder"  {MARK}'), "duplicate"),
    "wrong type: owner_only": ("release.toml", in_rule("servicing.owner", "owner_only = true",
                                                       f'owner_only = "yes"  {MARK}'), "owner_only"),
    "wrong type: keep_last": ("release.toml", in_rule("collection.reminder",
                                                      'phone = { transform = "mask", keep_first = 6, keep_last = 4 }',
                                                      f'phone = {{ transform = "mask", keep_first = 6, '
                                                      f'keep_last = "4" }}  {MARK}'), "keep_last"),
    "wrong type: stages, later rule": ("release.toml", in_rule("collection.field_visit", 'stages = ["field_visit"]',
                                                               f"stages = 5  {MARK}"), "stages"),
    "wrong type: id": ("release.toml", in_rule("collection.letter", 'id = "collection.letter"',
                                               f"id = 7  {MARK}"), "id"),
    "conduct: bad window time": ("conduct/cn.toml", lambda t: t.replace('start = "08:00"',
                                                                        f'start = "25:00"  {MARK}', 1), "start"),
    "conduct: unknown key": ("conduct/us.toml", lambda t: t.replace('end = "21:00"',
                                                                    f'end = "21:00"\nfinish = "22:00"  {MARK}', 1),
                             "finish"),
}


def expected_line(text: str) -> int:
    return next(n for n, ln in enumerate(text.split("\n"), start=1) if MARK in ln)


def break_bundle(root: Path, rel: str, edit: Callable[[str], str]) -> tuple[Path, int]:
    path = root / rel
    text = edit(path.read_text())
    path.write_text(text)
    return path, expected_line(text)


@pytest.mark.parametrize("name", list(BREAKS))
def test_broken_bundle_names_file_and_line(bundle_copy: Path, name: str) -> None:
    rel, edit, word = BREAKS[name]
    path, line = break_bundle(bundle_copy, rel, edit)
    with pytest.raises(PolicyError) as info:
        load_bundle(bundle_copy)
    err = info.value
    assert err.code == "POLICY_INVALID"
    assert Path(err.path) == path
    assert word.lower() in err.problem.lower(), err.problem
    assert err.line == line, f"{name}: reported line {err.line}, the problem is on line {line}: {err.problem}"


@pytest.mark.parametrize("name", ["toml syntax", "unknown field", "duplicate rule id", "bank_account to agency",
                                  "conduct: bad window time"])
def test_cli_policy_check_reports_file_and_line(bundle_copy: Path, name: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    rel, edit, _ = BREAKS[name]
    path, line = break_bundle(bundle_copy, rel, edit)
    assert cli.main(["policy", "check", str(bundle_copy)]) != 0
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith("error: POLICY_INVALID: "), out.err
    assert f"{path}:{line}:" in out.err
    assert "Traceback" not in out.err


def test_cli_policy_check_json_error(bundle_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    rel, edit, _ = BREAKS["unknown transform, first rule"]
    path, line = break_bundle(bundle_copy, rel, edit)
    assert cli.main(["policy", "check", "--json", str(bundle_copy)]) != 0
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert doc["error"]["code"] == "POLICY_INVALID"
    assert f"{path}:{line}:" in doc["error"]["message"]


@pytest.mark.parametrize(
    "name, text",
    [
        ("release entries are not tables", 'release = ["collection.reminder"]\n'),
        ("release is a string", 'release = "everything"\n'),
        ("fields is not a table", '[[release]]\nid = "x"\npurpose = "collection"\nto = ["agency"]\n'
                                  'stages = ["letter"]\nfields = "full_name"\n'),
        ("empty file", ""),
        ("not UTF-8", "\udcff"),
    ],
)
def test_structurally_wrong_release_file_is_a_policy_error(bundle_copy: Path, name: str, text: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = bundle_copy / "release.toml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(PolicyError) as info:
        load_bundle(bundle_copy)
    assert Path(info.value.path) == path
    assert cli.main(["policy", "check", str(bundle_copy)]) != 0
    assert capsys.readouterr().err.startswith(f"error: POLICY_INVALID: {path}")


def test_missing_files_are_policy_errors(tmp_path: Path, bundle_copy: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_bundle(tmp_path / "nowhere")
    assert "nowhere" in info.value.path
    (bundle_copy / "release.toml").unlink()
    with pytest.raises(PolicyError) as info:
        load_bundle(bundle_copy)
    assert info.value.path.endswith("release.toml")


def _plant(bundle: Path, rel: str, kind: str) -> Path:
    """Put at `rel` a file no policy reader may read to its end: a link to /dev/zero, a FIFO, or one byte too many."""
    path = bundle / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    if kind == "devzero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    else:  # valid TOML (a comment), so only the size can refuse it
        path.write_bytes(b"#" * MAX_POLICY_FILE_BYTES + b"\n")
    return path


def _custos(*argv: str, timeout: float = 30) -> tuple[subprocess.CompletedProcess[str], float]:
    """The CLI in a child bounded in time and memory, so a reader that never stops fails the test, not the machine."""

    # The cap is set by the child itself (preexec_fn is unsafe in a process with threads, as pytest's is).
    boot = ("import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
            "sys.argv[0] = 'custos'; runpy.run_module('gateway.cli', run_name='__main__')")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", boot, *argv], capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - start


# `extra/notes.toml` is read by no loader, only hashed into the revision: that read is bounded as well.
@pytest.mark.parametrize("rel", ["release.toml", "conduct/cn.toml", "extra/notes.toml"])
@pytest.mark.parametrize("kind", ["devzero", "fifo", "oversized"])
def test_policy_check_refuses_a_file_it_could_read_forever(bundle_copy: Path, rel: str, kind: str) -> None:
    path = _plant(bundle_copy, rel, kind)
    proc, took = _custos("policy", "check", str(bundle_copy), "--json")
    assert proc.returncode == 1 and took < 20, (proc.returncode, took)
    error = json.loads(proc.stdout)["error"]
    problem = "larger than 1048576 bytes" if kind == "oversized" else "not a regular file"
    assert error["code"] == "POLICY_INVALID" and error["message"] == f"{path}: {problem}"
    assert "Traceback" not in proc.stderr
    with pytest.raises(PolicyError) as info:
        load_bundle(bundle_copy)
    assert info.value.path == str(path)


@pytest.mark.parametrize("kind", ["devzero", "fifo", "oversized"])
def test_gateway_start_up_refuses_such_a_bundle(bundle_copy: Path, template_dir: Path, tmp_path: Path,
                                               kind: str) -> None:
    data = tmp_path / "env"
    shutil.copytree(template_dir, data)
    path = _plant(bundle_copy, "release.toml", kind)
    proc, took = _custos("serve", str(data / "data"), "--listen", "127.0.0.1:0", "--policies", str(bundle_copy))
    assert proc.returncode == 1 and took < 20, (proc.returncode, took)
    problem = "larger than 1048576 bytes" if kind == "oversized" else "not a regular file"
    assert f"error: POLICY_INVALID: {path}: {problem}\n" in proc.stderr
    assert "Traceback" not in proc.stderr and "listening" not in proc.stdout


def test_a_symlinked_policy_file_to_a_regular_file_is_accepted(bundle_copy: Path, tmp_path: Path) -> None:
    """Configuration mounts (a Kubernetes ConfigMap) are links to regular files: those are read, and hash the same."""
    before = load_bundle(bundle_copy).revision
    real = tmp_path / "elsewhere.toml"
    shutil.move(bundle_copy / "release.toml", real)
    (bundle_copy / "release.toml").symlink_to(real)
    assert load_bundle(bundle_copy).revision == before


def test_no_agency_rule_in_the_shipped_bundle_releases_a_forbidden_field() -> None:
    bundle = load_bundle(BUNDLE_DIR)
    for (kind, _purpose, _stage), decision in bundle._table.items():
        if kind != "agency":
            continue
        for name, t in decision.fields.items():
            forbidden = NEVER_TO_AGENCY.get(name)
            assert not forbidden or ("*" not in forbidden and t.name not in forbidden), (name, t)


# ------------------------------------------------------------------ transforms


def test_mask_of_a_cn_phone() -> None:
    t = Transform("mask", keep_first=6, keep_last=4)
    assert apply_transform(t, "+8613812345678", KEY, "agency-1") == "+86138****5678"


def test_shipped_phone_transform_gives_the_design_mask() -> None:
    t = load_bundle(BUNDLE_DIR).release("agency", "collection", "reminder").fields["phone"]
    assert apply_transform(t, "+8613812345678", KEY, "agency-1") == "+86138****5678"
    assert apply_transform(t, "+15550000123", KEY, "agency-1") == "+155****0123"  # never fewer than 4 masked


@pytest.mark.parametrize("n", range(0, 21))
@pytest.mark.parametrize("keep", [(6, 4), (0, 4), (2, 2), (32, 32), (0, 0)])
def test_mask_never_shows_more_than_it_may(n: int, keep: tuple[int, int]) -> None:
    value = "".join(chr(ord("a") + i % 26) for i in range(n))
    out = apply_transform(Transform("mask", *keep), value, KEY, "agency-1")
    assert len(out) == n
    masked = out.count("*")
    assert masked >= min(4, n), (value, out)
    # Whatever is shown is the value's own characters at their own positions.
    assert all(o == "*" or o == v for o, v in zip(out, value, strict=True))
    if n >= 4 + keep[0] + keep[1]:
        assert out == value[: keep[0]] + "*" * (n - keep[0] - keep[1]) + value[n - keep[1]:]


def test_short_value_keeps_at_least_four_masked() -> None:
    t = Transform("mask", keep_first=6, keep_last=4)
    assert apply_transform(t, "12345", KEY, "x") == "****5"
    assert apply_transform(t, "123", KEY, "x") == "***"
    assert apply_transform(t, "12345678", KEY, "x") == "****5678"


def test_last4_year_only_redact() -> None:
    assert apply_transform(Transform("last4"), "900000001123456789X", KEY, "a") == "789X"
    assert apply_transform(Transform("year_only"), "1990-03-07", KEY, "a") == "1990"
    assert apply_transform(Transform("redact"), "SYNTHACCT0000000001", KEY, "a") == "[redacted]"
    assert apply_transform(Transform("plain"), "x", KEY, "a") == "x"


def test_pseudonym_is_per_recipient_and_stable() -> None:
    t = Transform("pseudonym")
    value = "900000001123456789"
    a1 = apply_transform(t, value, KEY, "agency-1")
    a1_again = apply_transform(t, value, KEY, "agency-1")
    a2 = apply_transform(t, value, KEY, "agency-2")
    assert a1 == a1_again
    assert a1 != a2
    assert value not in a1 and value not in a2
    assert apply_transform(t, value + "0", KEY, "agency-1") != a1
    assert apply_transform(t, value, b"o" * 32, "agency-1") != a1
    assert a1.startswith("psn_") and len(a1) > 16


# ------------------------------------------------------------------ the compiled release table


@pytest.mark.parametrize("stage, expected", [("reminder", REMINDER), ("letter", LETTER), ("field_visit", FIELD_VISIT)])
def test_agency_collection_field_sets(stage: str, expected: set[str]) -> None:
    d = load_bundle(BUNDLE_DIR).release("agency", "collection", stage)
    assert d.allowed and d.code == "OK"
    assert set(d.fields) == expected
    assert d.fields["phone"] == Transform("mask", 6, 4)
    assert d.fields["national_id"].name == "last4"
    assert all(t.name == "plain" for n, t in d.fields.items() if n not in ("phone", "national_id"))
    assert d.rules[0] == "collection.reminder"


@pytest.mark.parametrize("stage", ["early_warning", "litigation"])
def test_agency_collection_denied_outside_its_stages(stage: str) -> None:
    d = load_bundle(BUNDLE_DIR).release("agency", "collection", stage)
    assert not d.allowed and d.code == "STAGE_NOT_ALLOWED" and d.fields == {}


@pytest.mark.parametrize("purpose", ["servicing", "litigation", "credit_reporting", "supervision", "marketing"])
def test_agency_other_purposes_not_allowed(purpose: str) -> None:
    bundle = load_bundle(BUNDLE_DIR)
    for stage in STAGES:
        d = bundle.release("agency", purpose, stage)
        assert not d.allowed and d.code == "PURPOSE_NOT_ALLOWED" and d.fields == {}


def test_other_parties_field_sets() -> None:
    bundle = load_bundle(BUNDLE_DIR)
    lit = bundle.release("law_firm", "litigation", "litigation")
    assert lit.allowed and set(lit.fields) == LITIGATION
    assert bundle.release("law_firm", "litigation", "letter").code == "STAGE_NOT_ALLOWED"
    for stage in STAGES:
        assert set(bundle.release("bureau", "credit_reporting", stage).fields) == CREDIT
        serv = bundle.release("lender", "servicing", stage)
        assert serv.allowed and {"bank_account", "emergency_contacts", "national_id"} <= set(serv.fields)
        # "everything it owns" (DESIGN §3): every field the model knows, the living account's too (issue 24)
        assert set(serv.fields) == set(ALL_FIELDS) - {"case_id"}, set(ALL_FIELDS) - set(serv.fields)
        reg = bundle.release("regulator", "supervision", stage)
        assert not reg.allowed and reg.fields == {}
