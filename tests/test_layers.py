"""The direction of imports between the rooms, as a rule (docs/architecture.md).

Every module under gateway/ and vault/ is parsed (never imported) and each
import it makes anywhere (top level, inside a function, under TYPE_CHECKING)
is held against the rules below. An exception that a later step of issue 23
removes is named in ALLOWED with that step; an allowance no longer needed
fails too, so the list only shrinks.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "vault")

# The core's vocabulary: the words every wing uses (and storage implements); it knows no wing.
VOCABULARY = ("gateway.core.errors", "gateway.core.model", "gateway.core.ports", "gateway.core.importer")
WINGS = ("gateway.core.rules", "gateway.core.usecases", "gateway.core.app")

# The rooms of gateway/cli every other room may use, and those the parser wires together.
CLI_SHARED = ("gateway.cli.output", "gateway.cli.outfiles")
CLI_ROOMS_BELOW_PARSER = ("gateway.cli.operator", "gateway.cli.client", "gateway.cli.offline",
                          "gateway.cli.formats", "gateway.cli.console", "gateway.cli.completion", *CLI_SHARED)

# (the layer, what it must not import, what of that it may import all the same)
RULES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("gateway.tlog", ("gateway", "vault", "grpc"), ("gateway.tlog",)),
    ("gateway.core", ("grpc", "gateway.transport", "vault", "gateway.cli"), ()),
    # The decisions are pure: each other and the vocabulary, nothing of the use cases, the log or storage.
    ("gateway.core.rules", ("gateway", "vault", "grpc"), ("gateway.core.rules", *VOCABULARY)),
    # A feature may use the rules, the vocabulary and the log, never the composition of all features.
    ("gateway.core.usecases", ("gateway.core.app",), ()),
    *((word, WINGS, ()) for word in VOCABULARY),
    # Inside the vocabulary the model is the bottom: the words (ids, rows, the parsed import line, its outcomes,
    # time parsers) that the ports, the line parser and storage share; it names no port and parses no line.
    ("gateway.core.model", ("gateway.core.importer", "gateway.core.ports"), ()),
    ("gateway.core.ports", ("gateway.core.importer",), ()),
    # Storage stores a parsed line (model.ImportedCase) and answers an ImportOutcome; it never parses one.
    ("vault", ("gateway.transport", "gateway.cli", "gateway.core.importer"), ()),
    # The CLI's rooms point one way: parser -> operator, client -> offline -> formats -> output, outfiles.
    # The rooms below the parser never reach up (nor into the package, whose `main` is the top), and offline
    # verification needs no gateway: it imports no client, neither the client room nor `custos_client`.
    ("gateway.cli.parser", ("gateway.cli",), CLI_ROOMS_BELOW_PARSER),
    ("gateway.cli.operator", ("gateway.cli",), CLI_SHARED),
    ("gateway.cli.client", ("gateway.cli",), ("gateway.cli.offline", "gateway.cli.formats", *CLI_SHARED)),
    ("gateway.cli.offline", ("gateway.cli", "custos_client"), ("gateway.cli.formats", *CLI_SHARED)),
    ("gateway.cli.formats", ("gateway.cli",), CLI_SHARED),
    # The console's command around its server (gateway/console, which imports no CLI room).
    ("gateway.cli.console", ("gateway.cli",), CLI_SHARED),
    ("gateway.cli.completion", ("gateway.cli",), ()),  # handed the parser; imports no room
    ("gateway.cli.output", ("gateway.cli",), ()),
    ("gateway.cli.outfiles", ("gateway.cli",), ()),
)

# Who may import the CLI from outside it: the demo runs `custos` commands (`make run`).
CLI_USERS = ("gateway.demo",)

# (importing module, imported name) -> why it is allowed for now, and which step of issue 23 ends it.
ALLOWED: dict[tuple[str, str], str] = {}

# What the log may import besides itself: a verifier or witness needs nothing else installed.
TLOG_THIRD_PARTY = ("cryptography",)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(source: str, module: str, is_package: bool = False) -> Iterator[str]:
    """Each name an import statement binds, fully qualified: `from a.b import c` gives `a.b.c`.

    Relative imports are resolved against `module`, so `from .errors import
    Code` in gateway.core.x is gateway.core.errors.Code.
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")
                if not is_package:
                    package.pop()
                package = package[:len(package) - (node.level - 1)]
                base = ".".join([*package, *([node.module] if node.module else [])])
            yield from (f"{base}.{alias.name}" for alias in node.names)


def modules() -> Iterator[tuple[str, str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield module_name(path), path.read_text(), path


def imports() -> dict[str, set[str]]:
    return {name: set(imported_names(source, name, path.name == "__init__.py")) for name, source, path in modules()}


def violations(found: dict[str, set[str]]) -> set[tuple[str, str]]:
    """(module, imported name) for every import a rule forbids."""
    out = set()
    for module, names in found.items():
        for layer, forbidden, excepted in RULES:
            if not _within(module, layer):
                continue
            for name in names:
                if any(_within(name, f) for f in forbidden) and not any(_within(name, e) for e in excepted):
                    out.add((module, name))
        # Nothing outside the CLI imports it: the command line is the top of the house, not a library.
        if not _within(module, "gateway.cli") and module not in CLI_USERS:
            out.update((module, name) for name in names if _within(name, "gateway.cli"))
    return out


def test_the_rooms_import_only_downwards() -> None:
    broken = violations(imports())
    unexplained = sorted(v for v in broken if v not in ALLOWED)
    assert not unexplained, "imports against the layering (docs/architecture.md):\n" + "\n".join(
        f"  {module} imports {name}" for module, name in unexplained)
    stale = sorted(set(ALLOWED) - broken)
    assert not stale, f"allowances no longer needed, remove them from ALLOWED: {stale}"


def _module_of(name: str, known: set[str]) -> str | None:
    """The known module an imported name lives in (`vault.sqlite.SqliteVault` is `vault.sqlite`)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in known:
            return ".".join(parts[:end])
    return None


def cycles(found: dict[str, set[str]], package: str) -> list[list[str]]:
    """Import circles among the modules of `package`, each as the path that closes it.

    A package importing its own submodules is an edge like any other; a
    submodule's implicit import of its parent package is not counted (Python
    runs the parent first whatever the submodule imports).
    """
    known = {m for m in found if _within(m, package)}
    edges = {m: {t for n in found[m] if (t := _module_of(n, known)) is not None and t != m} for m in known}
    out: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                out.append([*path[path.index(target):], module, target] if target in path else [module, target])
            elif target not in state:
                visit(target, [*path, module])
        state[module] = 2

    for module in sorted(known):
        if module not in state:
            visit(module, [])
    return out


def test_no_import_circle_in_storage() -> None:
    """The backend factory (`vault.backends`) knows both backends; they know `datadir`; nothing leads back."""
    assert cycles(imports(), "vault") == []


def test_the_data_directory_knows_no_backend() -> None:
    """`vault.datadir` is the layout and the files: which store is behind them is `vault.backends`'s."""
    found = imports()["vault.datadir"]
    backends = sorted(n for n in found if _within(n, "vault.sqlite") or _within(n, "vault.postgres")
                      or _within(n, "vault.backends"))
    assert backends == []


def test_a_circle_is_found() -> None:
    found = {"vault.datadir": {"vault.sqlite.SqliteVault"}, "vault.sqlite": {"vault.datadir.Layout", "vault.sqlite.db"},
             "vault.sqlite.db": set(), "vault.backends": {"vault.sqlite.SqliteVault", "vault.datadir"}}
    assert cycles(found, "vault") == [["vault.datadir", "vault.sqlite", "vault.datadir"]]
    found["vault.datadir"] = set()
    assert cycles(found, "vault") == []


def test_the_log_needs_only_the_standard_library_and_cryptography() -> None:
    found = imports()
    for module in (m for m in found if _within(m, "gateway.tlog")):
        for name in found[module]:
            top = name.split(".", 1)[0]
            assert (top in sys.stdlib_module_names or top in TLOG_THIRD_PARTY or top == "__future__"
                    or _within(name, "gateway.tlog")), f"{module} imports {name}"


def test_every_room_is_read() -> None:
    """The rules hold of modules that are found, and of imports that are seen (a rule over nothing holds)."""
    found = imports()
    for layer, _, _ in RULES:
        assert any(_within(m, layer) for m in found), layer
    assert "gateway.tlog.merkle.Frontier" in found["vault.groupcommit"]
    assert "gateway.core.errors.Code" in found["gateway.core.usecases.supervision"]  # `from ..errors import Code`
    assert "gateway.tlog.merkle.Frontier" in found["gateway.tlog.tiles"]
    assert "gateway.core.rules.access" in found["gateway.core.rules.decisions"]  # `from . import access`
    assert "gateway.core.model.Org" in found["gateway.core.rules.decisions"]  # `from ..model import ...`
    assert "gateway.core.rules.policy.PolicyBundle" in found["gateway.core.usecases.context"]
    assert "gateway.core.usecases.reads.Reads" in found["gateway.core.app"]
    assert "gateway.core.model.ImportedCase" in found["gateway.core.ports"]
    assert "gateway.core.model.ImportOutcome" in found["vault.sqlite.store"]
    assert "gateway.cli.operator" in found["gateway.cli.parser"]  # `from . import client, offline, operator`
    assert "gateway.cli.output.emit" in found["gateway.cli.offline"]
    assert "gateway.cli" in found["gateway.demo"]


@pytest.mark.parametrize(("module", "source", "is_package", "bad"), [
    ("gateway.tlog.tiles", "from gateway.core.errors import Code", False, "gateway.core.errors.Code"),
    ("gateway.tlog.tiles", "def f():\n    import grpc\n", False, "grpc"),
    ("gateway.tlog", "from .. import cli", True, "gateway.cli"),
    ("gateway.tlog.verify", "from ..core import errors", False, "gateway.core.errors"),
    ("gateway.core.usecases.reads", "from vault.sqlite import SqliteVault", False, "vault.sqlite.SqliteVault"),
    ("gateway.core.usecases.reads", "from gateway.transport import status", False, "gateway.transport.status"),
    ("gateway.core.usecases.reads", "from grpc import StatusCode", False, "grpc.StatusCode"),
    ("gateway.core.rules.decisions", "from ..usecases.reads import Reads", False, "gateway.core.usecases.reads.Reads"),
    ("gateway.core.rules.policy", "from gateway.core.app import Core", False, "gateway.core.app.Core"),
    ("gateway.core.rules", "from ..usecases import context", True, "gateway.core.usecases.context"),
    ("gateway.core.rules.conduct", "from gateway.tlog.merkle import Frontier", False, "gateway.tlog.merkle.Frontier"),
    ("gateway.core.rules.access", "from gateway.formats import metro2", False, "gateway.formats.metro2"),
    ("gateway.core.usecases.reads", "from ..app import Core", False, "gateway.core.app.Core"),
    ("gateway.core.usecases", "from .. import app", True, "gateway.core.app"),
    ("gateway.core.model", "from .rules.policy import PolicyBundle", False, "gateway.core.rules.policy.PolicyBundle"),
    ("gateway.core.ports", "from .usecases.reads import Grant", False, "gateway.core.usecases.reads.Grant"),
    ("gateway.core.importer", "def f():\n    from .app import Core\n", False, "gateway.core.app.Core"),
    ("gateway.core.errors", "from gateway.core.rules import access", False, "gateway.core.rules.access"),
    ("vault.keys", "from gateway import cli", False, "gateway.cli"),
    ("vault.records", "from gateway.core.importer import ImportedCase", False, "gateway.core.importer.ImportedCase"),
    ("vault.postgres.store", "def f():\n    from gateway.core import importer\n", False, "gateway.core.importer"),
    ("gateway.core.ports", "from .importer import ImportedCase", False, "gateway.core.importer.ImportedCase"),
    ("gateway.core.model", "from .importer import parse_line", False, "gateway.core.importer.parse_line"),
    ("gateway.core.model", "from .ports import Vault", False, "gateway.core.ports.Vault"),
    ("vault.sqlite.store", "from gateway.transport.calls import Gate", False, "gateway.transport.calls.Gate"),
    ("gateway.transport.server", "from gateway.cli import serve_until_signalled", False,
     "gateway.cli.serve_until_signalled"),
    ("gateway.formats.metro2", "def f():\n    from gateway.cli.formats import BUREAU_FORMATS\n", False,
     "gateway.cli.formats.BUREAU_FORMATS"),
    ("gateway.packets", "from gateway import cli", True, "gateway.cli"),
    ("gateway.cli.operator", "from .parser import build_parser", False, "gateway.cli.parser.build_parser"),
    ("gateway.cli.client", "from . import operator", False, "gateway.cli.operator"),
    ("gateway.cli.offline", "from .client import DEFAULT_SAMPLE", False, "gateway.cli.client.DEFAULT_SAMPLE"),
    ("gateway.cli.offline", "from custos_client import CustosClient", False, "custos_client.CustosClient"),
    ("gateway.cli.formats", "from .offline import verify_bundle", False, "gateway.cli.offline.verify_bundle"),
    ("gateway.cli.output", "from .outfiles import write_private", False, "gateway.cli.outfiles.write_private"),
    ("gateway.cli.parser", "from gateway.cli import main", False, "gateway.cli.main"),
])
def test_a_forbidden_import_is_found(module: str, source: str, is_package: bool, bad: str) -> None:
    """The checker itself: each rule catches an import against it, however it is written."""
    names = set(imported_names(source, module, is_package))
    assert violations({module: names}) == {(module, bad)}


@pytest.mark.parametrize(("module", "source"), [
    ("gateway.tlog.tiles", "from .merkle import Frontier\nimport hashlib\nfrom cryptography import x509"),
    ("gateway.core.usecases.supervision", "from gateway.tlog.proofs import StoredTree\nfrom ..errors import Code"),
    ("vault.groupcommit", "from gateway.core.model import EventDraft"),
    ("gateway.core.rules.decisions", "from . import access\nfrom ..errors import Code\nfrom ..model import Org\n"
                                     "from ..ports import CaseReader\nfrom ..model import ID_RE"),
    ("gateway.core.usecases.reads", "from .context import Context\nfrom ..rules.decisions import decide_read\n"
                                    "from ..errors import Code\nfrom gateway.tlog.proofs import NodeCache"),
    ("gateway.core.app", "from .usecases.reads import Reads"),
    ("gateway.demo", "from gateway import cli"),
    ("gateway.cli", "from .parser import build_parser\nfrom .output import fail"),
    ("gateway.cli.parser", "from . import client, offline, operator\nfrom .formats import BUREAU_FORMATS"),
    ("gateway.cli.client", "from .offline import verify_bundle\nfrom .output import emit\nfrom custos_client import X"),
    ("gateway.cli.offline", "from .output import emit\nfrom gateway.tlog import tiles\nfrom gateway import packets"),
    ("gateway.core.ports", "from .model import ImportedCase, ImportOutcome, Org"),
    ("vault.records", "from gateway.core.model import ImportedCase"),
    ("gateway.core.usecases.lender", "from ..importer import parse_line\nfrom ..model import ImportOutcome"),
])
def test_an_allowed_import_is_not_flagged(module: str, source: str) -> None:
    assert violations({module: set(imported_names(source, module))}) == set()


def test_importing_storage_leaves_the_environment_alone() -> None:
    """`vault` imports the core, so it runs gateway/__init__.py: that must not set gRPC's TLS policy; the transport
    (and the CLI, before its client) does, before any grpc import."""
    script = ("import os, sys\n"
              "import vault.datadir, vault.sqlite, vault.postgres, vault.groupcommit, gateway.core.app\n"
              "print('grpc' in sys.modules, os.environ.get('GRPC_SSL_CIPHER_SUITES', ''))\n"
              "import gateway.cli\n"
              "print('grpc' in sys.modules, os.environ.get('GRPC_SSL_CIPHER_SUITES', ''))\n")
    environ = {k: v for k, v in os.environ.items() if k != "GRPC_SSL_CIPHER_SUITES"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=environ,
                         cwd=ROOT)
    storage, cli = out.stdout.splitlines()
    assert storage == "False ", out.stderr[-2000:]
    assert cli.startswith("False ECDHE-"), cli  # set by the CLI's first import, before anything loads grpc
