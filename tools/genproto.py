"""Generate the Python stubs from proto/: the one command (`make proto`).

`--check` generates into a temporary directory and fails when the checked-in
stubs differ, so CI catches a proto change without regenerated code. The stubs
are made by the grpcio-tools that requirements.lock pins: another version writes
other bytes, so the check names the version it ran with when they differ.
"""

from __future__ import annotations

import filecmp
import re
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
DEST = ROOT / "clients" / "python" / "custos_client" / "v1"
PROTOS = ["custos/v1/custos.proto"]
GENERATED = ("custos_pb2.py", "custos_pb2.pyi", "custos_pb2_grpc.py")
LOCK = ROOT / "requirements.lock"


def locked_tools() -> str | None:
    m = re.search(r"^grpcio-tools==(\S+)", LOCK.read_text(), flags=re.M) if LOCK.exists() else None
    return m[1] if m else None


def generate(dest: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for proto in PROTOS:
            rc = protoc.main(["protoc", f"-I{PROTO_ROOT}", f"--python_out={tmp}", f"--pyi_out={tmp}",
                              f"--grpc_python_out={tmp}", proto])
            if rc != 0:
                raise SystemExit(f"protoc failed on {proto}")
        dest.mkdir(parents=True, exist_ok=True)
        for name in GENERATED:
            text = (Path(tmp) / "custos" / "v1" / name).read_text()
            # A relative import, so no top-level `custos` package is needed.
            text = re.sub(r"^from custos\.v1 import (\w+)", r"from . import \1", text, flags=re.M)
            (dest / name).write_text(text)


def main(argv: list[str]) -> int:
    if "--check" in argv:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            stale = [n for n in GENERATED if not (DEST / n).exists() or not filecmp.cmp(Path(tmp) / n, DEST / n,
                                                                                         shallow=False)]
        if stale:
            print(f"generated stubs are stale: {', '.join(stale)}; run `make proto`", file=sys.stderr)
            pinned, running = locked_tools(), version("grpcio-tools")
            if pinned != running:
                print(f"(checked with grpcio-tools {running}; the lock pins {pinned}, and the stubs are made with it)",
                      file=sys.stderr)
            return 1
        print("generated stubs match proto/")
        return 0
    generate(DEST)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
