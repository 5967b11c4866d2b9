"""The client's vocabulary: its codes are the gateway's, its error has its own name, its results have shapes.

The client is a separate distribution and never imports the gateway, so its
list of codes is a copy; the first test keeps the copy equal to the catalogue.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import typing
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


def test_the_most_used_calls_declare_their_result_types() -> None:
    def returns(name: str) -> Any:
        return typing.get_type_hints(getattr(CustosClient, name))["return"]

    assert returns("get_case") is results.CaseRecord
    assert returns("import_lines") is results.ImportResult and returns("import_file") is results.ImportResult
    assert returns("update_lines") is results.UpdateResult and returns("update_file") is results.UpdateResult
    assert returns("pull_feed") is results.Feed
    assert returns("inclusion_proof") is results.InclusionProof
    assert returns("pull_cases") == Iterator[results.PullItem]


def _shape(value: dict[str, Any], shape: Any) -> bool:
    """Exactly the keys of the TypedDict: every required key, no other."""
    return shape.__required_keys__ <= set(value) <= shape.__required_keys__ | shape.__optional_keys__


def test_what_the_calls_return_has_exactly_the_declared_keys(seeded: Env, tmp_path: Path) -> None:
    lender, agency = seeded.client("lender-a"), seeded.client("agency-1")
    rec = agency.get_case("C-1", "collection")
    assert _shape(dict(rec), results.CaseRecord) and rec["fields"]
    items = list(agency.pull_cases("collection"))
    # The record of a work-list item is nested under "record" (issue 27): the item has no "fields" of its own.
    assert [sorted(i) for i in items] == [["cursor", "record"], ["cursor", "end"]]
    assert _shape(dict(items[0]), results.PullRecord) and _shape(dict(items[1]), results.PullEnd)
    assert _shape(dict(items[0]["record"]), results.PulledCase)  # type: ignore[typeddict-item]
    assert items[0]["record"]["case_id"] == "C-1"  # type: ignore[typeddict-item]
    lender.recall("C-1", "agency-1")
    removed = list(agency.pull_cases("collection", since=items[-1]["cursor"]))
    assert _shape(dict(removed[0]), results.PullRemoved) and removed[0]["removed"] == "C-1"  # type: ignore[typeddict-item]

    path = tmp_path / "cases.jsonl"
    path.write_bytes(synth.jsonl([synth.case_line(7, jurisdiction="CN"), {"case_id": "bad id!"}]))
    imported = lender.import_file(path)
    assert _shape(dict(imported), results.ImportResult) and imported["imported"] == 1
    assert [_shape(dict(r), results.Rejected) for r in imported["rejected"]] == [True]
    updates = tmp_path / "updates.jsonl"
    updates.write_text('{"case_id": "C-7", "as_of": "2026-11-29T10:00:00Z", "loan": {"amount_due": "1.00"}}\n'
                       '{"case_id": "C-7", "as_of": "2026-11-28T10:00:00Z", "loan": {"amount_due": "2.00"}}\n')
    updated = lender.update_file(updates)
    assert _shape(dict(updated), results.UpdateResult) and updated["updated"] == 1
    assert [(r["code"], _shape(dict(r), results.Rejected)) for r in updated["rejected"]] == [("STALE_UPDATE", True)]

    lender.assign("C-3", "bureau-1", "credit_reporting", "2027-06-30")
    lender.record_notice("C-3", "2026-11-29")
    feed = seeded.client("bureau-1").pull_feed("")
    assert _shape(dict(feed), results.Feed) and [r["case_id"] for r in feed["records"]] == ["C-3"]

    proof = seeded.client("regulator-1").inclusion_proof(0)
    assert _shape(dict(proof), results.InclusionProof) and isinstance(proof["root"], bytes)
