"""List the packages whose newest release differs from the lock (`make test-latest`).

Drift is read before the suite runs, so a failure in the newest releases can be
put down to the package that moved rather than guessed at.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", re.M)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(lock: Path) -> dict[str, str]:
    return {canonical(m[1]): m[2] for m in PIN.finditer(lock.read_text())}


def installed(python: str) -> dict[str, str]:
    out = subprocess.run([python, "-m", "pip", "list", "--format=json"], check=True, capture_output=True, text=True)
    return {canonical(d["name"]): d["version"] for d in json.loads(out.stdout)}


def main(argv: list[str]) -> int:
    lock, python = Path(argv[0]), argv[1]
    pins, now = locked(lock), installed(python)
    moved = sorted((n, v, now[n]) for n, v in pins.items() if n in now and now[n] != v)
    new = sorted(n for n in now if n not in pins and n not in ("pip", "custos", "custos-client"))
    print(f"drift against {lock}: {len(moved)} moved, {len(new)} not in the lock")
    for name, was, is_ in moved:
        print(f"  {name}: {was} -> {is_}")
    for name in new:
        print(f"  {name}: new, {now[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
