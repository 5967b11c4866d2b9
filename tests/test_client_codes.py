"""The client's vocabulary: its codes are the gateway's, its error has its own name, its results have shapes.

The client is a separate distribution and never imports the gateway, so its
list of codes is a copy; the first test keeps the copy equal to the catalogue.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import typing
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import custos_client
import pytest
from custos_client import ClientCode, Code, CustosClient, CustosClientError, results

from gateway import synth
from gateway.core import errors as server
from tests.conftest import Env

CLIENT = Path(custos_client.__file__).resolve().parent


def test_the_clients_codes_are_the_gateways_catalogue() -> None:
    assert server.Code is Code  # one list: the gateway's catalogue keys on the client's codes
    assert set(Code) - {Code.OK} == set(server.CATALOGUE)
    # what only the client raises is never a code the gateway could send
    assert not {c.value for c in ClientCode} & {c.value for c in server.Code}


def test_the_client_package_imports_nothing_of_the_gateway() -> None:
    """Statically (every module of the package) and at run time (a fresh interpreter)."""
    offenders = []
    for path in CLIENT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in {"gateway", "vault", "policies"}]
    assert offenders == []
    out = subprocess.run([sys.executable, "-c", "import sys, custos_client, custos_client.codes, custos_client.results;"
                          "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gateway', 'vault')))"],
                         capture_output=True, text=True, timeout=60, cwd=CLIENT.parent)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-2000:]


def test_the_clients_error_is_named_apart_and_keeps_its_attributes() -> None:
    assert CustosClientError.__name__ != server.CustosError.__name__
    assert not issubclass(CustosClientError, server.CustosError) and not issubclass(server.CustosError,
                                                                                     CustosClientError)
    err = CustosClientError(Code.NO_MANDATE, "no active mandate", "PERMISSION_DENIED", {"cursor": "c1"})
    assert (err.code, err.message, err.status, err.progress) == ("NO_MANDATE", "no active mandate",
                                                                 "PERMISSION_DENIED", {"cursor": "c1"})
    assert type(err.code) is str and err.code == Code.NO_MANDATE and str(err) == "NO_MANDATE: no active mandate"
    assert issubclass(custos_client.AuditVerifyError, CustosClientError)


def test_the_old_name_still_works_for_one_release_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match="CustosClientError"):
        from custos_client import CustosError
    assert CustosError is CustosClientError
    with pytest.warns(DeprecationWarning):
        assert custos_client.client.CustosError is CustosClientError
    with pytest.raises(AttributeError):
        custos_client.NoSuchName  # noqa: B018 - the module's __getattr__ answers only the old name


def test_every_public_call_declares_a_typed_result() -> None:
    """No public call of the client returns Any or a bare dict where a dataclass exists (issue 27)."""
    untyped = []
    for name, fn in vars(CustosClient).items():
        if name.startswith("_") or not callable(fn):
            continue
        hint = typing.get_type_hints(fn)["return"]
        if hint is Any or typing.get_origin(hint) is dict or hint is dict:
            untyped.append(name)
        elif typing.get_origin(hint) is list and typing.get_args(hint)[0] is not str \
                and not issubclass(typing.get_args(hint)[0], results.Result):
            untyped.append(name)
    assert untyped == []

    def returns(name: str) -> Any:
        return typing.get_type_hints(getattr(CustosClient, name))["return"]

    assert returns("get_case") is results.CaseRecord
    assert returns("import_lines") is results.ImportResult and returns("import_file") is results.ImportResult
    assert returns("update_lines") is results.UpdateResult and returns("update_file") is results.UpdateResult
    assert returns("pull_feed") is results.Feed
    assert returns("inclusion_proof") is results.InclusionProof
    assert returns("pull_cases") == Iterator[results.PullItem]
    assert returns("audit_query") == list[results.AuditEvent]


def test_the_results_are_frozen_slotted_dataclasses_exported_from_the_package() -> None:
    import dataclasses

    classes = [c for c in vars(results).values() if isinstance(c, type) and issubclass(c, results.Result)]
    assert len(classes) > 40
    for cls in classes:
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, cls  # type: ignore[attr-defined]
        assert "__slots__" in vars(cls), cls
        assert getattr(custos_client, cls.__name__) is cls
    rec = results.CaseRecord("C-1", "collection", "reminder", {"product": "loan"}, ["r"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.stage = "litigation"  # type: ignore[misc]


def test_reading_a_result_like_a_dict_still_works_for_one_release_with_a_deprecation_warning() -> None:
    item = results.PullRecord(results.PulledCase("C-1", "lender-a", "collection", "reminder", {"product": "loan"},
                                                 []), "c1")
    with pytest.warns(DeprecationWarning, match="dict-style access"):
        assert item["record"]["fields"] == {"product": "loan"}
    with pytest.warns(DeprecationWarning, match="dict-style access"):
        assert "record" in item


def test_to_dict_gives_the_cli_json_shapes() -> None:
    """The old dict shapes exactly: optional keys left out when empty, renamed keys, flat feed records."""
    assert results.CaseRecord("C-1", "p", "s", {}, []).to_dict() == {"case_id": "C-1", "purpose": "p", "stage": "s",
                                                                     "fields": {}, "rules": []}
    assert results.CaseRecord("C-1", "p", "s", {}, [], "2027-01-01").to_dict()["erasure"] == "2027-01-01"
    assert results.PullRemoved("C-1", "lender-a", "MANDATE_ENDED", "c2").to_dict() == {
        "removed": "C-1", "lender_id": "lender-a", "code": "MANDATE_ENDED", "cursor": "c2"}
    assert results.PullEnd("c3").to_dict() == {"cursor": "c3", "end": True}
    assert results.FeedRecord(1, "C-1", "L-1", "US", {"balance": "10.00"}).to_dict() == {
        "seq": 1, "case_id": "C-1", "loan_id": "L-1", "jurisdiction": "US", "balance": "10.00"}
    assert list(results.ConsistencyProof(1, 2, b"a", b"b", []).to_dict()) == ["from", "to", "from_root", "to_root",
                                                                              "proof"]
    rejected = results.PaymentDecision("P-1", "rejected", "C-1", "t", org="agency-1")
    assert rejected.to_dict() == {"payment_id": "P-1", "status": "rejected", "case_id": "C-1", "decided_at": "t"}
    assert results.Plan("PL-1", "C-1", "proposed", instalments=[results.Instalment("2027-01-01", "5")]).to_dict() \
        == {"plan_id": "PL-1", "case_id": "C-1", "status": "proposed",
            "instalments": [{"on": "2027-01-01", "amount": "5"}]}


def test_what_the_calls_return_is_typed_and_read_by_attribute(seeded: Env, tmp_path: Path) -> None:
    lender, agency = seeded.client("lender-a"), seeded.client("agency-1")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # nothing here reads a result like a dict
        rec = agency.get_case("C-1", "collection")
        assert isinstance(rec, results.CaseRecord) and rec.case_id == "C-1" and rec.fields
        items = list(agency.pull_cases("collection"))
        # The record of a work-list item is a field (issue 27): counting the cases is counting the PullRecords.
        assert [type(i) for i in items] == [results.PullRecord, results.PullEnd]
        first = items[0]
        assert isinstance(first, results.PullRecord) and isinstance(first.record, results.PulledCase)
        assert (first.record.case_id, first.record.lender_id) == ("C-1", "lender-a") and first.record.fields
        lender.recall("C-1", "agency-1")
        removed = list(agency.pull_cases("collection", since=items[-1].cursor))
        assert isinstance(removed[0], results.PullRemoved) and removed[0].case_id == "C-1"

        path = tmp_path / "cases.jsonl"
        path.write_bytes(synth.jsonl([synth.case_line(7, jurisdiction="CN"), {"case_id": "bad id!"}]))
        imported = lender.import_file(path)
        assert isinstance(imported, results.ImportResult) and imported.imported == 1
        assert [type(r) for r in imported.rejected] == [results.Rejected]
        updates = tmp_path / "updates.jsonl"
        updates.write_text('{"case_id": "C-7", "as_of": "2026-11-29T10:00:00Z", "loan": {"amount_due": "1.00"}}\n'
                           '{"case_id": "C-7", "as_of": "2026-11-28T10:00:00Z", "loan": {"amount_due": "2.00"}}\n')
        updated = lender.update_file(updates)
        assert isinstance(updated, results.UpdateResult) and updated.updated == 1
        assert [r.code for r in updated.rejected] == [Code.STALE_UPDATE]

        lender.assign("C-3", "bureau-1", "credit_reporting", "2027-06-30")
        lender.record_notice("C-3", "2026-11-29")
        feed = seeded.client("bureau-1").pull_feed("")
        assert isinstance(feed, results.Feed) and [r.case_id for r in feed.records] == ["C-3"]
        assert all(isinstance(r.fields, dict) for r in feed.records)

        proof = seeded.client("regulator-1").inclusion_proof(0)
        assert isinstance(proof, results.InclusionProof) and isinstance(proof.root, bytes)
        events = seeded.client("regulator-1").audit_query(case_id="C-1")
        assert events and all(isinstance(e, results.AuditEvent) and e.case_id == "C-1" for e in events)
        assert events[0].to_dict() == events[0].data and events[0].data["seq"] == events[0].seq


def test_the_error_code_compares_with_the_exported_codes(seeded: Env) -> None:
    with pytest.raises(CustosClientError) as caught:
        seeded.client("agency-2").get_case("C-1", "collection")
    assert caught.value.code == Code.NO_MANDATE and caught.value.code in set(Code)
    assert custos_client.Code is Code and custos_client.ClientCode is ClientCode


def test_retryable_is_exactly_what_the_cli_exits_4_for() -> None:
    """One answer to "retry?" for a script and a program: every code of the catalogue, as the gateway sends it
    (with its category's gRPC status), and the transport's own failures (no code of the gateway's)."""
    from gateway.cli.output import EXIT_UNAVAILABLE, exit_status

    sent = [(code, spec.category.value.upper()) for code, spec in server.CATALOGUE.items()]
    unreached = [("UNAVAILABLE", "UNAVAILABLE"), ("DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED"),
                 ("CANCELLED", "CANCELLED")]
    for code, status in sent + unreached:
        err = CustosClientError(code, "m", status)
        assert err.retryable == (exit_status(code, status) == EXIT_UNAVAILABLE), code
    assert CustosClientError(Code.SHUTTING_DOWN, "m", "UNAVAILABLE").retryable
    assert not CustosClientError(Code.NO_MANDATE, "m", "PERMISSION_DENIED").retryable
    assert not CustosClientError(Code.RATE_LIMITED, "m", "RESOURCE_EXHAUSTED").retryable
    assert not CustosClientError(ClientCode.IMPORT_READ_FAILED, "m").retryable
