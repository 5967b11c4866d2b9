"""Invariant 8: bad input of any kind gets a clear error with a stable code; nothing stored is lost.

Imports mix good and bad lines (every bad line is rejected on its own with its
line number, a stable code and a reason that names the field but never the
value); bad requests get a catalogue code, are audited as denials, and leave
what is stored exactly as it was.
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from custos_client import CustosClientError

from gateway import synth
from gateway.core import app
from gateway.core.model import Caller
from policies import BUNDLE_DIR
from tests.conftest import Env

Line = dict[str, Any]


def line(i: int, mutate: Callable[[Line], None] | None = None, **kw: Any) -> Line:
    """Synthetic import line i, optionally changed in place by `mutate`."""
    doc = synth.case_line(i, **kw)
    if mutate is not None:
        mutate(doc)
    return doc


def raw(doc: Line) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


def servicing(env: Env, case_id: str, org: str = "lender-a") -> dict[str, Any]:
    rec: dict[str, Any] = env.client(org).get_case(case_id, "servicing")
    return rec


def refused(fn: Callable[[], Any]) -> CustosClientError:
    with pytest.raises(CustosClientError) as info:
        fn()
    return info.value


def denials(env: Env, org: str, method: str) -> list[dict[str, Any]]:
    return [e for e in env.events(org=org) if e.method == method and e.decision == "deny"]


def _set(path: str, value: Any) -> Callable[[Line], None]:
    def mutate(doc: Line) -> None:
        *parents, last = path.split(".")
        target = doc
        for p in parents:
            target = target[p]
        target[last] = value

    return mutate


def _drop(path: str) -> Callable[[Line], None]:
    def mutate(doc: Line) -> None:
        *parents, last = path.split(".")
        target = doc
        for p in parents:
            target = target[p]
        del target[last]

    return mutate


# ------------------------------------------------------------------ the mixed import


def test_mixed_import_rejects_each_bad_line_and_imports_the_good_ones(env: Env) -> None:
    good = [line(101), line(102), line(104)]
    truncated_src = line(120)
    dup_case = line(101, _set("loan.loan_id", "L-DUP-999"))
    dup_case["borrower"]["full_name"] = "Dupe Synth00101 Overwrite"
    dup_loan = line(103, _set("loan.loan_id", "L-102"))
    # (raw bytes, expected code or None for a good/skipped line, the field the reason must name, source line)
    entries: list[tuple[bytes, str | None, str, Line | None]] = [
        (raw(good[0]), None, "", good[0]),                                                        # 1
        (b"{this is not json}", "IMPORT_INVALID_JSON", "", None),                                 # 2
        (raw(truncated_src)[: len(raw(truncated_src)) // 2], "IMPORT_INVALID_JSON", "", truncated_src),  # 3
        (b'{"case_id": "C-9\xff\xfe", "stage": "reminder"}', "IMPORT_INVALID_JSON", "", None),     # 4
        (b'[{"case_id": "C-105"}]', "IMPORT_INVALID_FIELD", "object", None),                     # 5
        (raw(l6 := line(106, _set("loan.principal", 123.4))), "IMPORT_INVALID_FIELD", "loan.principal", l6),  # 6
        (raw(l7 := line(107, _set("consent", "yes"))), "IMPORT_INVALID_FIELD", "consent", l7),    # 7
        (raw(l8 := line(108, _set("consent.third_party_sharing", "yes"))), "IMPORT_INVALID_FIELD",
         "consent.third_party_sharing", l8),                                                       # 8
        (raw(l9 := line(109, _set("stage", 5))), "IMPORT_INVALID_FIELD", "stage", l9),           # 9
        (raw(l10 := line(110, _set("stage", "collections"))), "UNKNOWN_STAGE", "stage", l10),    # 10
        # An unknown key is named by its position, never by its text (a key may be anything, PI too).
        (raw(l11 := line(111, _set("nickname", "Synthy"))), "IMPORT_INVALID_FIELD", "key 8 of 8", l11),  # 11
        (raw(l12 := line(112, _drop("borrower.phone"))), "IMPORT_INVALID_FIELD", "borrower.phone", l12),  # 12
        (raw(l13 := line(113, _set("borrower.phone", "0139-SYNTH-77"))), "IMPORT_INVALID_FIELD",
         "borrower.phone", l13),                                                                   # 13
        (raw(l14 := line(114, _set("loan.due_on", "2026-02-30"))), "IMPORT_INVALID_FIELD", "loan.due_on", l14),  # 14
        (raw(l15 := line(115, _set("timezone", "Mars/Base"))), "IMPORT_INVALID_FIELD", "timezone", l15),  # 15
        (raw(l16 := line(116, _set("borrower.full_name", "Synthname" * 11_112))), "IMPORT_INVALID_FIELD",
         "borrower.full_name", l16),                                                               # 16
        (raw(l17 := line(117, _set("loan.contract_text", "S" * (1 << 20)))), "IMPORT_LINE_TOO_LONG", "", l17),  # 17
        (b"", None, "", None),                                                                     # 18 empty
        (raw(good[1]), None, "", good[1]),                                                        # 19
        (raw(dup_case), "CASE_EXISTS", "case_id", dup_case),                                      # 20
        (raw(dup_loan), "LOAN_EXISTS", "loan.loan_id", dup_loan),                                 # 21
        (b"   \t ", None, "", None),                                                               # 22 blank
        (raw(good[2]), None, "", good[2]),                                                        # 23
    ]
    assert len(raw(l16)) < (1 << 20) < len(raw(l17)) < (2 << 20) - 4096

    result = env.client("lender-a").import_lines(iter([e[0] for e in entries]))

    assert result.imported == 3
    expected = [(n, code) for n, (_, code, _, _) in enumerate(entries, start=1) if code is not None]
    assert [(r.line, r.code) for r in result.rejected] == expected
    assert result.rejected_total == len(expected)
    for r in result.rejected:
        field = entries[r.line - 1][2]
        assert r.reason, r
        if field:
            assert field in r.reason, r

    # No reason carries a value: no PI of any line, no bad value.
    text = json.dumps(result.to_dict(), ensure_ascii=False)
    for _, _, _, src in entries:
        if src is not None:
            for value in synth.pi_values(synth.case_line(int(src["case_id"].split("-")[1]))):
                assert value not in text
    for bad_value in ("0139-SYNTH-77", "Mars/Base", "collections", "2026-02-30", "123.4", "Synthname", "Synthy",
                      "L-DUP-999", "Dupe Synth"):
        assert bad_value not in text, bad_value

    # Good lines are readable in full by their lender; rejected ones left nothing behind.
    for doc in good:
        rec = servicing(env, doc["case_id"])
        assert rec.fields["full_name"] == doc["borrower"]["full_name"]
        assert rec.fields["phone"] == doc["borrower"]["phone"]
        assert rec.fields["loan_id"] == doc["loan"]["loan_id"]
    # The duplicate case line changed nothing of the case it collided with.
    assert servicing(env, "C-101").fields["full_name"] == good[0]["borrower"]["full_name"]
    assert servicing(env, "C-101").fields["loan_id"] == "L-101"
    listed = {c.case_id for c in env.client("lender-a").list_cases()}
    assert listed == {"C-101", "C-102", "C-104"}
    for case_id in ("C-103", "C-106", "C-110", "C-116", "C-117"):
        assert refused(functools.partial(servicing, env, case_id)).code == "CASE_NOT_FOUND"

    # Every rejected line is an audited denial with its code.
    codes = sorted(e.code for e in denials(env, "lender-a", "ImportCases"))
    assert codes == sorted(code for _, code in expected)


def test_rejections_do_not_depend_on_batch_boundaries(env: Env) -> None:
    """A duplicate in a later batch is still caught, and line numbers run across batches."""
    n = app.IMPORT_BATCH + 10
    lines = [raw(line(i)) for i in range(1, n + 1)]
    lines.append(raw(line(5, _set("loan.loan_id", "L-NEW-5"))))       # dup case id, batch 2
    lines.append(raw(line(n + 1, _set("loan.loan_id", "L-7"))))      # dup loan id, batch 2
    result = env.client("lender-a").import_lines(iter(lines))
    assert result.imported == n
    assert [(r.line, r.code) for r in result.rejected] == [(n + 1, "CASE_EXISTS"), (n + 2, "LOAN_EXISTS")]


def test_the_jurisdictions_an_import_takes_are_the_conduct_files_loaded(env: Env, tmp_path: Path) -> None:
    """A case must be in a jurisdiction the bundle has conduct rules for (PolicyBundle.jurisdictions): with
    us.toml gone a US line is refused, with the same code as any unknown one and a reason listing what remains."""
    lines = [line(1, jurisdiction="CN"), line(2, jurisdiction="US"), line(3, jurisdiction="MARS")]
    shipped = env.import_cases("lender-a", lines)
    assert shipped.imported == 2
    assert [(r.line, r.code, r.reason) for r in shipped.rejected] == [
        (3, "IMPORT_INVALID_FIELD", "jurisdiction: must be one of CN, EU, US")]

    policies = tmp_path / "policies"
    shutil.copytree(BUNDLE_DIR, policies, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    (policies / "conduct" / "us.toml").unlink()
    env.gw.policy_dir = policies
    env.gw.reload_policies()
    result = env.import_cases("lender-a", [line(4, jurisdiction="CN"), line(5, jurisdiction="US")])
    assert result.imported == 1
    assert [(r.line, r.code, r.reason) for r in result.rejected] == [
        (2, "IMPORT_INVALID_FIELD", "jurisdiction: must be one of CN, EU")]
    assert servicing(env, "C-4").case_id == "C-4"
    assert refused(lambda: servicing(env, "C-5")).code == "CASE_NOT_FOUND"


def test_json_edge_cases_are_rejected_cleanly(env: Env) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    control = raw(line(131, _set("borrower.full_name", "Synth\x00Name")))
    nan = raw(line(132)).replace(b'"amount_due": "', b'"amount_due": NaN, "x": "')
    entries = [deep, control, nan, b"null", b'"just a string"', b"42"]
    result = env.client("lender-a").import_lines(iter(entries))
    assert result.imported == 0
    codes = {r.line: r.code for r in result.rejected}
    assert codes[1] == "IMPORT_INVALID_JSON"
    assert codes[2] == "IMPORT_INVALID_FIELD"
    assert codes[3] in ("IMPORT_INVALID_JSON", "IMPORT_INVALID_FIELD")
    for n in (4, 5, 6):
        assert codes[n] in ("IMPORT_INVALID_JSON", "IMPORT_INVALID_FIELD")
    assert len(codes) == 6


@pytest.mark.parametrize("path", ["case_id", "borrower.borrower_id", "loan.loan_id"])
def test_ids_with_a_trailing_newline_are_rejected(env: Env, path: str) -> None:
    """Ids are 1-64 of [A-Za-z0-9._:-]; "C-7\\n" is not one (a `$` anchor lets it through)."""
    value = {"case_id": "C-7", "borrower.borrower_id": "B-7", "loan.loan_id": "L-7"}[path] + "\n"
    result = env.client("lender-a").import_lines(iter([raw(line(7, _set(path, value)))]))
    assert result.imported == 0, f"id {value!r} was stored"
    assert [(r.line, r.code) for r in result.rejected] == [(1, "IMPORT_INVALID_FIELD")]
    assert path in result.rejected[0].reason
    assert env.client("lender-a").list_cases() == []


@pytest.mark.parametrize("doc", [b"[1, 2]", b"null", b'"text"', b"42", b"true"])
def test_a_line_that_is_not_an_object_gets_a_reason_naming_what_is_wrong(env: Env, doc: bytes) -> None:
    result = env.client("lender-a").import_lines(iter([doc]))
    [rej] = result.rejected
    assert rej.code in ("IMPORT_INVALID_JSON", "IMPORT_INVALID_FIELD")
    assert "object" in rej.reason
    # The reason names its subject; an empty field path (": must be an object") names nothing.
    assert not rej.reason.startswith(":"), rej.reason


def test_unencodable_text_is_rejected_per_line_not_the_whole_import(env: Env) -> None:
    r"""A JSON escape for a lone surrogate ("\ud800") is valid JSON and valid UTF-8 on the wire, but
    the text it decodes to cannot be encoded for storage. It must be rejected as that line's problem,
    and the good lines around it imported."""
    lone = raw(line(141)).replace(b'"full_name": "', b'"full_name": "\\ud800', 1)
    lines = [raw(line(140)), lone, raw(line(142))]
    result = env.client("lender-a").import_lines(iter(lines))
    assert result.imported == 2, result
    assert [(r.line, r.code) for r in result.rejected] == [(2, "IMPORT_INVALID_FIELD")]
    assert "borrower.full_name" in result.rejected[0].reason
    assert servicing(env, "C-140").fields["full_name"] == line(140)["borrower"]["full_name"]


def test_a_line_larger_than_a_transport_message_is_rejected_per_line(env: Env) -> None:
    """A 3 MiB line is bad input like any other: it is rejected with IMPORT_LINE_TOO_LONG and its line
    number, and the good lines before and after it are imported."""
    huge = raw(line(151, _set("loan.contract_text", "S" * (3 << 20))))
    lines = [raw(line(150)), huge, raw(line(152))]
    try:
        result = env.client("lender-a").import_lines(iter(lines))
    except CustosClientError as err:
        pytest.fail(f"the whole import failed on one oversized line: {err.code} ({err.status})")
    assert result.imported == 2
    assert [(r.line, r.code) for r in result.rejected] == [(2, "IMPORT_LINE_TOO_LONG")]


# ------------------------------------------------------------------ stored data stays intact


def test_stored_data_intact_after_bad_imports_and_bad_requests(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    before = servicing(seeded, "C-1")
    before_c2 = servicing(seeded, "C-2")
    cases_before = lender.list_cases()
    agency_before = seeded.client("agency-1").get_case("C-1", "collection")

    original = synth.case_line(1, jurisdiction="CN", borrower=1)
    # Bad imports aimed at the stored case and borrower.
    attacks = [
        line(1, _set("borrower.full_name", "Overwritten Synth Name"), jurisdiction="CN", borrower=1),  # dup case
        line(60, _set("loan.loan_id", "L-1"), jurisdiction="CN", borrower=1),                          # dup loan
        line(61, _set("stage", "collections"), jurisdiction="CN", borrower=1),
        line(62, _set("borrower.phone", "not-a-phone"), jurisdiction="CN", borrower=1),
        line(63, _set("loan.principal", 1.5), jurisdiction="CN", borrower=1),
    ]
    lines = [raw(a) for a in attacks] + [raw(original)[:40], b"\xff\xfe\xfd", b"[]"]
    result = lender.import_lines(iter(lines))
    assert result.imported == 0
    assert [r.code for r in result.rejected] == [
        "CASE_EXISTS", "LOAN_EXISTS", "UNKNOWN_STAGE", "IMPORT_INVALID_FIELD", "IMPORT_INVALID_FIELD",
        "IMPORT_INVALID_JSON", "IMPORT_INVALID_JSON", "IMPORT_INVALID_FIELD",
    ]

    # Bad requests of every kind.
    bad_calls: list[tuple[Callable[[], Any], str]] = [
        (lambda: lender.set_stage("C-1", "collections"), "UNKNOWN_STAGE"),
        (lambda: lender.set_stage("C-1", ""), "UNKNOWN_STAGE"),
        (lambda: lender.assign("C-1", "agency-2", "marketing", "2026-12-31"), "UNKNOWN_PURPOSE"),
        (lambda: lender.assign("C-1", "agency-2", "collection", "31/12/2026"), "INVALID_DATE"),
        (lambda: lender.assign("C-1", "bureau-1", "collection", "2026-12-31"), "PURPOSE_KIND_MISMATCH"),
        (lambda: lender.get_case("C-1", "marketing"), "UNKNOWN_PURPOSE"),
        (lambda: lender.get_case("C" * 10_000, "servicing"), "INVALID_CASE_ID"),
        (lambda: lender.recall("C-1", "no such org!"), "INVALID_ORG_ID"),
    ]
    for call, code in bad_calls:
        assert refused(call).code == code

    assert servicing(seeded, "C-1") == before
    assert servicing(seeded, "C-2") == before_c2
    assert lender.list_cases() == cases_before
    assert seeded.client("agency-1").get_case("C-1", "collection") == agency_before
    assert seeded.client("agency-2").list_cases() == []


# ------------------------------------------------------------------ bad requests


@pytest.fixture
def no_consent(seeded: Env) -> Env:
    doc = synth.case_line(40)
    doc["consent"]["third_party_sharing"] = False
    assert seeded.import_cases("lender-a", [doc]).imported == 1
    return seeded


@pytest.mark.parametrize(
    "case, org, purpose, until, label, code, status",
    [
        ("C-1", "agency-2", "marketing", "2026-12-31", "", "UNKNOWN_PURPOSE", "INVALID_ARGUMENT"),
        ("C-1", "agency-2", "collection", "2026-02-30", "", "INVALID_DATE", "INVALID_ARGUMENT"),
        ("C-1", "agency-2", "collection", "next week", "", "INVALID_DATE", "INVALID_ARGUMENT"),
        ("C-1", "agency-2", "collection", "", "", "INVALID_DATE", "INVALID_ARGUMENT"),
        ("C-1", "agency-2", "collection", "2026-11-29", "", "UNTIL_IN_PAST", "INVALID_ARGUMENT"),
        ("C-1", "agency-nowhere", "collection", "2026-12-31", "", "ORG_NOT_FOUND", "NOT_FOUND"),
        ("C-1", "agency 2; drop", "collection", "2026-12-31", "", "INVALID_ORG_ID", "INVALID_ARGUMENT"),
        ("C-1", "bureau-1", "collection", "2026-12-31", "", "PURPOSE_KIND_MISMATCH", "INVALID_ARGUMENT"),
        ("C-1", "agency-2", "litigation", "2026-12-31", "", "PURPOSE_KIND_MISMATCH", "INVALID_ARGUMENT"),
        ("C-1", "agency-2", "collection", "2026-12-31", "shared", "UNKNOWN_LABEL", "INVALID_ARGUMENT"),
        ("C-40", "agency-2", "collection", "2026-12-31", "provided", "CONSENT_REQUIRED", "FAILED_PRECONDITION"),
    ],
)
def test_bad_assign_is_refused_audited_and_grants_nothing(
    no_consent: Env, case: str, org: str, purpose: str, until: str, label: str, code: str, status: str
) -> None:
    env = no_consent
    err = refused(lambda: env.client("lender-a").assign(case, org, purpose, until, label))
    assert (err.code, err.status) == (code, status)
    assert until not in err.message or not until
    ev = denials(env, "lender-a", "AssignCase")
    assert [e.code for e in ev] == [code]
    assert ev[0].case_id == case
    # Nothing was granted: agency-2 still holds no case.
    assert env.client("agency-2").list_cases() == []
    assert refused(lambda: env.client("agency-2").get_case(case, "collection")).code == "NO_MANDATE"


def test_provided_with_consent_and_entrusted_without_consent_are_granted(no_consent: Env) -> None:
    """Control for the CONSENT_REQUIRED case: the refusal is about the label, not the case."""
    lender = no_consent.client("lender-a")
    assert lender.assign("C-40", "agency-2", "collection", "2026-12-31", "entrusted").label == "entrusted"
    assert lender.assign("C-3", "agency-2", "collection", "2026-12-31", "provided").label == "provided"


def test_unknown_stage_is_refused_and_stage_unchanged(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    for stage in ("collections", "REMINDER", "reminder ", "litigation;", "x" * 5000):
        err = refused(functools.partial(lender.set_stage, "C-1", stage))
        assert (err.code, err.status) == ("UNKNOWN_STAGE", "INVALID_ARGUMENT")
    assert servicing(seeded, "C-1").stage == "reminder"
    assert {c.case_id: c.stage for c in lender.list_cases()}["C-1"] == "reminder"
    ev = denials(seeded, "lender-a", "SetStage")
    assert [e.code for e in ev] == ["UNKNOWN_STAGE"] * 5
    assert all(e.case_id == "C-1" for e in ev)
    # The agency still reads at the reminder stage.
    assert "home_address" not in seeded.client("agency-1").get_case("C-1", "collection").fields


@pytest.mark.parametrize("org, purpose", [("agency-1", "collection"), ("lender-a", "servicing")])
@pytest.mark.parametrize("case_id", ["C" * 10_000, "", "C 1", "C-1\n", "C-1\x00", "Ç-1", "C-1;DROP"])
def test_bad_case_id_is_invalid_case_id(seeded: Env, org: str, purpose: str, case_id: str) -> None:
    err = refused(lambda: seeded.client(org).get_case(case_id, purpose))
    assert (err.code, err.status) == ("INVALID_CASE_ID", "INVALID_ARGUMENT")
    assert case_id not in err.message or not case_id
    ev = denials(seeded, org, "GetCase")
    assert [e.code for e in ev] == ["INVALID_CASE_ID"]
    assert case_id not in json.dumps([e.data for e in ev]) or not case_id


@pytest.mark.parametrize("org", ["agency-1", "lender-a"])
@pytest.mark.parametrize("purpose", ["marketing", "", "Collection", "collection ", "p" * 10_000])
def test_unknown_purpose_is_refused_and_audited(seeded: Env, org: str, purpose: str) -> None:
    err = refused(lambda: seeded.client(org).get_case("C-1", purpose))
    assert (err.code, err.status) == ("UNKNOWN_PURPOSE", "INVALID_ARGUMENT")
    ev = denials(seeded, org, "GetCase")
    assert [(e.code, e.case_id) for e in ev] == [("UNKNOWN_PURPOSE", "C-1")]
    assert ev[0].data["fields"] == []


# ------------------------------------------------------------------ streaming


def test_core_import_consumes_lines_in_bounded_batches(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    total = 1_000
    yielded = 0

    def source() -> Iterator[tuple[int, bytes]]:
        nonlocal yielded
        for i in range(1, total + 1):
            yielded += 1
            yield i, raw(synth.case_line(i))

    audit = env.gw.core.audit
    real_run = audit.run
    seen_at_call: list[int] = []
    done_before_call: list[int] = []
    processed = 0

    def recording_run(work: Any) -> Any:
        nonlocal processed
        seen_at_call.append(yielded)
        done_before_call.append(processed)
        out = real_run(work)
        if isinstance(out, tuple) and len(out) == 3 and isinstance(out[2], list):
            processed += out[0] + out[1] + len(out[2])
        return out

    monkeypatch.setattr(audit, "run", recording_run)
    progress = list(env.gw.core.import_cases(Caller(org_id="lender-a", method="ImportCases"), source()))
    monkeypatch.undo()
    result = progress[-1]

    assert result.done and result.imported == total and result.through_line == total
    assert result.rejected == [] and result.rejected_total == 0
    # One progress message per durable batch, each counting exactly what was stored so far.
    assert [p.imported for p in progress[:-1]] == sorted(p.imported for p in progress[:-1])
    assert len(progress) - 1 == -(-total // app.IMPORT_BATCH)
    assert len(seen_at_call) >= -(-total // app.IMPORT_BATCH)
    lookahead = [seen - done for seen, done in zip(seen_at_call, done_before_call, strict=True)]
    assert max(lookahead) <= app.IMPORT_BATCH, lookahead
    assert processed == total
    # And what was streamed is stored: first, middle and last line read back.
    for i in (1, 500, 1000):
        assert servicing(env, f"C-{i}").fields["full_name"] == synth.case_line(i)["borrower"]["full_name"]

