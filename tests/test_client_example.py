"""The client's examples run as written (issue 27): README's Python client block and docs/python-client.md.

Each is taken from the file as it is, the demo's gateway address and identity
directory replaced by the test gateway's (the one substitution the text tells
the reader to make), and run in a fresh interpreter where the deprecated
dict-style read of a result is an error, so an example cannot lean on it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from gateway import synth
from tests.conftest import Env

ROOT = Path(__file__).resolve().parent.parent
DEMO_GATEWAY = "127.0.0.1:7443"
DEMO_IDENTITIES = "var/demo/identities/"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, re.S | re.M)


def readme_example() -> str:
    section = ROOT.joinpath("README.md").read_text().split("### The Python client", 1)[1]
    return python_blocks(section.split("\n## ", 1)[0])[0]


def run_as_written(code: str, env: Env, cwd: Path) -> list[str]:
    assert DEMO_GATEWAY in code and DEMO_IDENTITIES in code
    code = code.replace(DEMO_GATEWAY, env.addr).replace(DEMO_IDENTITIES, f"{env.root / 'ids'}/")
    # A dict-style read of a result is an error; another library's deprecation is not this test's business.
    out = subprocess.run([sys.executable, "-W", "error:dict-style access to custos_client results:DeprecationWarning",
                          "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.splitlines()


def _one_case_not_placed(env: Env) -> None:
    """C-11, the demo's case not placed with agency-1 (its refusal is the examples' last part)."""
    result = env.import_cases("lender-a", [synth.case_line(11, jurisdiction="CN")])
    assert result.imported == 1


def test_the_readme_example_runs_as_written(seeded: Env, tmp_path: Path) -> None:
    """It prints what the gateway released, counts the work list through item.record, and names the refusal."""
    _one_case_not_placed(seeded)
    stage = seeded.client("agency-1").get_case("C-1", "collection")
    lines = run_as_written(readme_example(), seeded, tmp_path)
    assert lines == [f"C-1 is at stage {stage.stage} with {len(stage.fields)} fields released",
                     "1 cases to work", "refused: NO_MANDATE"]


def test_the_readme_example_counts_every_case_of_the_work_list(seeded: Env, tmp_path: Path) -> None:
    """The first script of issue 27 counted 0: the count is the number of cases mandated, whatever it is."""
    _one_case_not_placed(seeded)
    for case in ("C-2", "C-3"):
        seeded.client("lender-a").assign(case, "agency-1", "collection", "2026-12-31")
    assert run_as_written(readme_example(), seeded, tmp_path)[1] == "3 cases to work"


def test_the_python_client_guide_runs_as_written(seeded: Env, tmp_path: Path) -> None:
    """Every block of the guide, in order, as one script: connect, typed results, a sync that stores its
    cursor, a refusal not retried and an unreachable gateway that is."""
    _one_case_not_placed(seeded)
    blocks = python_blocks(ROOT.joinpath("docs", "python-client.md").read_text())
    assert len(blocks) == 4
    lines = run_as_written("\n\n".join(blocks), seeded, tmp_path)
    rec = seeded.client("agency-1").get_case("C-1", "collection")
    assert lines == [f"C-1 at stage {rec.stage} released under {len(rec.rules)} rule(s)",
                     "released fields: " + ", ".join(sorted(rec.fields)),
                     "1 case(s) to work", "1 case(s) to work after the second pull",
                     "refused: NO_MANDATE PERMISSION_DENIED",
                     "unreachable: UNAVAILABLE retryable"]
    # The work list's cursor was stored where the guide stores it, and it is the one a new pull ends with.
    cursor = (tmp_path / "worklist.cursor").read_text()
    assert cursor and list(seeded.client("agency-1").pull_cases("collection", since=cursor))[-1].cursor == cursor
    # The agent the guide names is recorded in the events its calls caused.
    assert any(e.data.get("agent") == "collector-0042" for e in seeded.events(case_id="C-1"))
