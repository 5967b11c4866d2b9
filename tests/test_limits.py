"""gateway/core/rules/limits.py: loading policies/limits.toml, good and bad, with the file and line of a problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core.errors import Code, PolicyError
from gateway.core.rules.limits import CallLimits, ConnectionLimits, Limits, RateSpec, load_limits
from policies import BUNDLE_DIR

KINDS = ("lender", "agency", "law_firm", "bureau", "regulator")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "limits.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_means_the_built_in_defaults(tmp_path: Path) -> None:
    limits = load_limits(tmp_path / "absent.toml", KINDS)
    assert limits == Limits()
    assert limits.rate_for("agency") == RateSpec()


def test_the_shipped_file_loads() -> None:
    limits = load_limits(BUNDLE_DIR / "limits.toml", KINDS)
    assert isinstance(limits.connections, ConnectionLimits) and isinstance(limits.calls, CallLimits)
    assert set(limits.rate_by_kind) <= set(KINDS)


def test_values_are_read_and_a_kind_rate_inherits_what_it_does_not_set(tmp_path: Path) -> None:
    path = _write(tmp_path, """
[connections]
max_connections = 100
idle_timeout_s = 2

[calls]
max_calls_per_org = 8
max_streams_per_org = 2

[rate]
per_second = 10
burst = 20

[rate.kind.bureau]
per_second = 1.5

[lifecycle]
rewrap_batch = 16
rewrap_pause_s = 0
""")
    limits = load_limits(path, KINDS)
    assert limits.connections.max_connections == 100 and limits.connections.idle_timeout_s == 2.0
    assert isinstance(limits.connections.idle_timeout_s, float)
    assert limits.calls == CallLimits(max_calls_per_org=8, max_streams_per_org=2)
    assert limits.rate == RateSpec(10.0, 20.0)
    assert limits.rate_for("bureau") == RateSpec(1.5, 20.0)
    assert limits.rate_for("agency") == RateSpec(10.0, 20.0)
    assert limits.lifecycle.rewrap_batch == 16 and limits.lifecycle.rewrap_pause_s == 0.0


@pytest.mark.parametrize(("text", "line", "problem"), [
    ("[calls]\nmax_calls = 3\n", 2, "[calls]: unknown key 'max_calls'"),
    ("[calls]\nmax_calls_per_org = 2.5\n", 2, "[calls] max_calls_per_org: must be an integer"),
    ("[calls]\nmax_calls_per_org = true\n", 2, "[calls] max_calls_per_org: must be an integer"),
    ("[rate]\nburst = \"many\"\n", 2, "[rate] burst: must be a number"),
    ("[connections]\nmax_connections = 1\n", 2, "[connections] max_connections: must be between 16 and 1e+06"),
    ("[calls]\nunary_deadline_s = 0\n", 2, "[calls] unary_deadline_s: must be between 0.1 and 3600"),
    ("[rate.kind.pawnshop]\nburst = 5\n", 1, "[rate.kind.pawnshop]: unknown organisation kind"),
    ("speed = 3\n", 1, "unknown top-level keys ['speed']"),
    ("connections = 3\n", 1, "[connections] must be a table"),
    ("[calls\n", 1, "TOML syntax"),
])
def test_a_bad_file_names_its_line_and_problem(tmp_path: Path, text: str, line: int, problem: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        load_limits(path, KINDS)
    err = info.value
    assert err.code == Code.POLICY_INVALID
    assert err.path == str(path) and err.line == line
    assert err.problem.startswith(problem), err.problem
