"""Error codes are named constants: an unknown code is a programming error, caught here and by mypy."""

from __future__ import annotations

import ast
from pathlib import Path

import grpc
import pytest

from gateway.core.errors import CATALOGUE, Category, Code, CustosError
from gateway.transport.status import GRPC_CODE, to_status

ROOT = Path(__file__).resolve().parents[1]


def test_every_code_but_ok_has_a_catalogue_entry_and_a_status() -> None:
    assert set(Code) - {Code.OK} == set(CATALOGUE)
    assert set(GRPC_CODE) == set(Category)
    for code in CATALOGUE:
        status = to_status(CustosError(code))
        assert isinstance(status.code, grpc.StatusCode) and status.details == CATALOGUE[code].message


def test_an_unknown_code_is_a_programming_error_not_a_silent_internal() -> None:
    with pytest.raises(ValueError, match="no catalogue entry"):
        CustosError("NO_SUCH_CODE")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        CustosError(Code.OK)  # OK is a decision, never an error


def test_no_code_is_spelled_as_a_string_literal_in_the_code_base() -> None:
    """Every code in gateway/ and vault/ is written Code.X, so a typo cannot pass as a new code."""
    names = {c.value for c in Code}
    offenders = []
    for path in [*(ROOT / "gateway").rglob("*.py"), *(ROOT / "vault").rglob("*.py")]:
        if path == ROOT / "gateway" / "core" / "errors.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names \
                    and id(node) not in docstrings:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert offenders == []
