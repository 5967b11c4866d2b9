"""The build is locked: every dependency pyproject.toml declares is pinned in requirements.lock, with hashes.

`make venv` installs the lock with `--require-hashes --no-deps`, so a dependency
declared but not locked would fail only on a fresh clone; this catches it in
the working tree, where it was added.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})+)", re.M)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "pyproject.toml", ROOT / "clients" / "python" / "pyproject.toml"):
        project = tomllib.loads(path.read_text())["project"]
        specs = list(project.get("dependencies", []))
        for extra in project.get("optional-dependencies", {}).values():
            specs += extra
        for spec in specs:
            name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec)
            assert name, spec
            names.add(_canonical(name[0]))
            for extra_name in re.findall(r"\[([^\]]+)\]", spec.split(";")[0]):
                # psycopg[binary,pool] installs psycopg-binary and psycopg-pool: both must be locked too.
                names |= {_canonical(f"{name[0]}-{e.strip()}") for e in extra_name.split(",")}
    return names


def test_every_declared_dependency_is_pinned_with_hashes() -> None:
    text = (ROOT / "requirements.lock").read_text()
    pinned = {_canonical(m[1]): m[2] for m in ENTRY.finditer(text)}
    missing = sorted(_declared() - set(pinned))
    assert not missing, f"declared in pyproject.toml but not in requirements.lock (run `make lock`): {missing}"
    # Every requirement line of the lock is an exact pin followed by at least one hash.
    requirement_lines = [ln for ln in text.splitlines() if ln and not ln.startswith((" ", "#"))]
    assert len(requirement_lines) == len(pinned), "a lock line without ==VERSION and --hash"


def test_the_stub_generator_is_locked() -> None:
    text = (ROOT / "requirements.lock").read_text()
    assert re.search(r"^grpcio-tools==\S+ \\$", text, re.M), "the stubs are made by the locked grpcio-tools"
