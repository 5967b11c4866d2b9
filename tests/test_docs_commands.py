"""The party guides' commands, run as written (issue 27: "docs for every party, each with commands a test runs").

Every ```console block of a guide is run, in order, against one real gateway
per guide: `make run`'s demo (gateway/demo.py: its organisations, identity
bundles under $DEMO/identities/, its cases and mandates), served on loopback
with a clock set to a weekday afternoon in Shanghai and a morning in New York
(13:30 UTC today), so the contact windows of both jurisdictions are open. The
operators' guide makes its own data directory and serve instead.

The convention (each guide says it at its top):

- a line `$ custos ...` is a command; a line ending in `\\` continues on the next;
- the lines after it, up to the next `$ `, are its output (stdout, then stderr);
  no lines: the output is not checked. `...` in a line matches any text; a line
  that is `...` alone matches any number of lines; runs of blanks match blanks;
- output that is a JSON document is shown indented (the CLI prints one line) and
  compared as JSON: "..." matches any value, a key "..." allows other keys, a
  last element "..." allows more elements;
- `$NAME` in a command is a placeholder: the ones the guide's top sets
  (`NAME=`), or one bound by an earlier output, where `$NAME` stands for the
  id, cursor or port printed there (the reader copies it);
- `$ echo $?` shows the exit status of the command before it; a command whose
  status is not 0 must be followed by it, so every failure a guide shows is one
  it says;
- `$ export NAME=VALUE` sets a variable (CUSTOS_IDENTITY, CUSTOS_AGENT, ...) for
  the commands after it;
- `$ custos serve ... [2> FILE] &` starts a gateway in the background (the
  operators' guide); its first line of output is checked; `custos stop` ends it.
"""

from __future__ import annotations

# isort: off
import gateway.transport  # noqa: F401 - first: gRPC's TLS policy before anything imports grpc
# isort: on
import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway import cli, demo
from gateway.transport.server import Gateway, build

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DEMO_GUIDES = ["agencies.md", "law-firms.md", "bureaus.md", "regulators.md"]
GUIDES = [*DEMO_GUIDES, "operators.md"]
PLACEHOLDER = re.compile(r"\$([A-Z][A-Z0-9_]*)")
CAPTURE = r"[^\s\"',;()\[\]{}]+"


def _options(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of the command line, so a guide names flags in full (argparse would take a prefix)."""
    found: set[str] = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _options(sub)
    return found


OPTIONS = _options(cli.build_parser())


# ------------------------------------------------------------------ reading a guide


@dataclass
class Step:
    line: int  # 1-based line of the command in the guide
    command: str
    output: list[str] = field(default_factory=list)


def steps(text: str) -> list[Step]:
    """The commands of every ```console block, in order, each with the output the guide shows under it."""
    found: list[Step] = []
    lines = text.splitlines()
    inside, begun, i = False, False, 0
    while i < len(lines):
        raw = lines[i]
        if raw.startswith("```"):
            inside, begun = (raw.strip() == "```console" if not inside else False), False
            i += 1
            continue
        if inside:
            if not begun and not raw.startswith("$ "):
                raise AssertionError(f"line {i + 1}: a console block must start with a `$ ` command")
            begun = True
            if raw.startswith("$ "):
                start, command = i + 1, raw[2:]
                while command.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    command = command[:-1] + " " + lines[i].strip().removeprefix("> ")
                found.append(Step(start, command))
            elif found and not found[-1].output and not raw.strip():
                pass  # a blank line right after a command is not output
            else:
                found[-1].output.append(raw)
        i += 1
    for step in found:
        while step.output and not step.output[-1].strip():
            step.output.pop()
    return found


# ------------------------------------------------------------------ matching an output


def _pattern(text: str, bound: dict[str, str], new: list[str]) -> str:
    """A regex for one line (or string) of shown output: `...` any text, `$NAME` a bound value or a capture."""
    out, pos = [], 0
    for m in re.finditer(r"\.\.\.|\$([A-Z][A-Z0-9_]*)|\s+", text):
        out.append(re.escape(text[pos:m.start()]))
        token, name = m.group(0), m.group(1)
        if token == "...":
            out.append(".*?")
        elif name is None:
            out.append(r"\s+")
        elif name in bound:
            out.append(re.escape(bound[name]))
        elif name in new:
            out.append(f"(?P={name})")
        else:
            new.append(name)
            out.append(f"(?P<{name}>{CAPTURE})")
        pos = m.end()
    out.append(re.escape(text[pos:]))
    return "".join(out)


def match_text(shown: list[str], actual: str, bound: dict[str, str]) -> dict[str, str] | None:
    """The captures if `actual` is what `shown` shows (None if not)."""
    new: list[str] = []
    parts = []
    for line in shown:
        parts.append(r"(?:[^\n]*\n)*?" if line.strip() == "..." else _pattern(line.strip(), bound, new) + r"[ \t]*\n")
    text = "".join(ln.strip() + "\n" for ln in actual.strip("\n").splitlines()) if actual.strip() else ""
    m = re.fullmatch("".join(parts), text)
    return None if m is None else {k: v for k, v in m.groupdict().items() if v is not None}


def match_json(shown: Any, actual: Any, bound: dict[str, str], got: dict[str, str]) -> bool:
    if shown == "...":
        return True
    if isinstance(shown, dict):
        if not isinstance(actual, dict):
            return False
        keys = set(shown) - {"..."}
        if ("..." not in shown and set(actual) != keys) or not keys <= set(actual):
            return False
        return all(match_json(shown[k], actual[k], bound, got) for k in keys)
    if isinstance(shown, list):
        if not isinstance(actual, list):
            return False
        more = bool(shown) and shown[-1] == "..."
        items = shown[:-1] if more else shown
        if len(actual) < len(items) or (not more and len(actual) != len(items)):
            return False
        return all(match_json(s, a, bound, got) for s, a in zip(items, actual, strict=False))
    if isinstance(actual, int) and not isinstance(actual, bool) and isinstance(shown, str) and "$" in shown:
        actual = str(actual)  # a number bound as $NAME (an event's seq), used as text by the commands after it
    if isinstance(shown, str) and isinstance(actual, str):
        new: list[str] = []
        m = re.fullmatch(_pattern(shown, {**bound, **got}, new), actual, re.DOTALL)
        if m is None:
            return False
        got.update({k: v for k, v in m.groupdict().items() if v is not None})
        return True
    return bool(shown == actual and type(shown) is type(actual))


def match(shown: list[str], stdout: str, stderr: str, bound: dict[str, str]) -> dict[str, str] | None:
    """Output shown as a JSON document is compared with stdout as JSON; any other, line by line with both."""
    if shown and (shown[0].strip() in ("{", "[") or shown[0].lstrip().startswith('{"')):
        try:
            # A bare $NAME where a value goes (a number, such as an event's seq) is read as the pattern "$NAME".
            expected = json.loads(re.sub(r"([:\[,]\s*)\$([A-Z][A-Z0-9_]*)", r'\1"$\2"', "\n".join(shown)))
            actual = json.loads(stdout)
        except ValueError:
            return None
        got: dict[str, str] = {}
        return got if match_json(expected, actual, bound, got) else None
    return match_text(shown, stdout + stderr, bound)


# ------------------------------------------------------------------ running a guide


class Background:
    """`custos serve ... &`: a child process, killed when the guide's test ends if no `custos stop` ended it."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], stderr: Path | None) -> str:
        argv = [sys.executable, "-m", "gateway.cli", *argv]
        if stderr is None:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
        else:
            with open(stderr, "wb") as err:  # the child keeps its own descriptor
                proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, cwd=ROOT)
        self.procs.append(proc)
        assert proc.stdout is not None
        return proc.stdout.readline().decode()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()


class Reader:
    """Runs a guide's steps as a reader would, keeping its variables and the last exit status."""

    def __init__(self, name: str, variables: dict[str, str], capsys: pytest.CaptureFixture[str],
                 monkeypatch: pytest.MonkeyPatch, background: Background) -> None:
        self.name = name
        self.vars = dict(variables)
        self.capsys = capsys
        self.monkeypatch = monkeypatch
        self.background = background
        self.status: int | None = None  # the last command's, until an `echo $?` shows it

    def where(self, step: Step) -> str:
        return f"docs/{self.name}:{step.line}: $ {step.command}"

    def expand(self, word: str, step: Step) -> str:
        def one(m: re.Match[str]) -> str:
            if m.group(1) not in self.vars:
                raise AssertionError(f"{self.where(step)}\n  ${m.group(1)} is neither set at the guide's top "
                                     f"nor bound by an earlier output")
            return self.vars[m.group(1)]

        return PLACEHOLDER.sub(one, word)

    def run(self, step: Step) -> None:
        words = shlex.split(step.command, comments=True)
        if words == ["echo", "$?"]:
            assert self.status is not None, f"{self.where(step)}: no command before it"
            stdout, stderr, self.status = f"{self.status}\n", "", None
        else:
            if self.status:
                raise AssertionError(f"{self.where(step)}: the command before it exited {self.status}, "
                                     f"which the guide does not show (`$ echo $?`)")
            stdout, stderr = self.execute(words, step)
        if step.output:
            got = match(step.output, stdout, stderr, self.vars)
            if got is None:
                raise AssertionError(f"{self.where(step)}\n--- the guide shows:\n" + "\n".join(step.output)
                                     + f"\n--- custos printed (stdout):\n{stdout}--- (stderr):\n{stderr}"
                                     f"--- exit status {self.status}")
            self.vars.update(got)

    def execute(self, words: list[str], step: Step) -> tuple[str, str]:
        if words[0] == "export":
            for assignment in words[1:]:
                name, _, value = assignment.partition("=")
                self.vars[name] = self.expand(value, step)
                self.monkeypatch.setenv(name, self.vars[name])
            self.status = 0
            return "", ""
        assert words[0] == "custos", f"{self.where(step)}: only custos, export and `echo $?` are run"
        argv = [self.expand(w, step) for w in words[1:]]
        if argv and argv[-1] == "&":
            argv, stderr = argv[:-1], None
            if len(argv) > 2 and argv[-2] == "2>":
                argv, stderr = argv[:-2], Path(argv[-1])
            elif argv and argv[-1].startswith("2>"):
                argv, stderr = argv[:-1], Path(argv[-1][2:])
            self.status = 0
            return self.background.start(argv, stderr), ""
        unknown = [w for w in argv if w.startswith("--") and w.split("=", 1)[0] not in OPTIONS]
        assert not unknown, f"{self.where(step)}: {unknown} is no option of custos (nor an abbreviation we accept)"
        self.capsys.readouterr()
        try:
            self.status = cli.main(argv)
        except SystemExit as done:  # `custos --version` exits from the parser, as the installed command does
            self.status = done.code if isinstance(done.code, int) else 1
        out = self.capsys.readouterr()
        assert "Traceback" not in out.err, f"{self.where(step)}: a traceback\n{out.err}"
        return out.out, out.err


def run_guide(name: str, text: str, variables: dict[str, str], capsys: pytest.CaptureFixture[str],
              monkeypatch: pytest.MonkeyPatch, background: Background) -> int:
    """Every step of `text`; the number of steps run (a guide with none fails)."""
    head = re.split(r"^```console$", text, maxsplit=1, flags=re.MULTILINE)[0]
    used = {m.group(1) for step in steps(text) for m in PLACEHOLDER.finditer(step.command)}
    for supplied in sorted(used & set(variables)):
        assert f"{supplied}=" in head, f"docs/{name}: ${supplied} is used but its top does not set {supplied}="
    reader = Reader(name, variables, capsys, monkeypatch, background)
    done = 0
    for step in steps(text):
        reader.run(step)
        done += 1
    if reader.status:
        raise AssertionError(f"docs/{name}: the last command exited {reader.status}, which the guide does not show")
    return done


# ------------------------------------------------------------------ the demo a guide runs on


class DemoClock:
    """Today at 13:30 UTC and ticking: 21:30 in Shanghai and 08:30 (EST) in New York, both in their contact
    windows (CN 08:00-22:00, US 08:00-21:00), so a guide's contacts are decided by its rules, not the hour."""

    def __init__(self) -> None:
        start = datetime.combine(datetime.now(UTC).date(), time(13, 30), UTC)
        self.offset = start - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make run`'s organisations and identity bundles, made once (keys and certificates are the slow part)."""
    data = tmp_path_factory.mktemp("demo-template") / "demo"
    demo.create(data)
    return data


@pytest.fixture
def background() -> Iterator[Background]:
    bg = Background()
    try:
        yield bg
    finally:
        bg.stop()


def dates() -> dict[str, str]:
    """The date placeholders every guide's top sets with `date -u`."""
    today = datetime.now(UTC).date()
    return {"TODAY": today.isoformat(), "YESTERDAY": (today - timedelta(days=1)).isoformat(),
            "IN_A_WEEK": (today + timedelta(days=7)).isoformat(),
            "IN_5_WEEKS": (today + timedelta(days=35)).isoformat(),
            "MONTH": today.strftime("%Y-%m"), "DAY_START": f"{today.isoformat()}T00:00:00Z",
            "DAY_END": f"{(today + timedelta(days=1)).isoformat()}T00:00:00Z"}


@pytest.mark.parametrize("name", DEMO_GUIDES)
def test_guide_commands_run_as_written_on_the_demo(name: str, demo_template: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch, background: Background) -> None:
    data = tmp_path / "demo"
    shutil.copytree(demo_template, data)
    for var in ("CUSTOS_GATEWAY", "CUSTOS_IDENTITY", "CUSTOS_AGENT", "CUSTOS_LOG_FORMAT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    gw: Gateway = build(data, "127.0.0.1:0", clock=DemoClock(), workers=16)
    try:
        gateway_addr = f"127.0.0.1:{gw.port}"
        demo.seed(gateway_addr, data)
        monkeypatch.setenv("CUSTOS_GATEWAY", gateway_addr)
        variables = {"DEMO": str(data), "CUSTOS_GATEWAY": gateway_addr, **dates()}
        assert run_guide(name, (DOCS / name).read_text(), variables, capsys, monkeypatch, background) >= 5
    finally:
        gw.stop(0)


def test_operators_guide_commands_run_as_written(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch, background: Background) -> None:
    for var in ("CUSTOS_GATEWAY", "CUSTOS_IDENTITY", "CUSTOS_AGENT", "CUSTOS_LOG_FORMAT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    variables = {"SITE": str(site), **dates()}
    assert run_guide("operators.md", (DOCS / "operators.md").read_text(), variables, capsys, monkeypatch,
                     background) >= 5


# ------------------------------------------------------------------ the convention itself: a wrong guide fails


def test_a_guide_with_a_flag_that_does_not_exist_fails(capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    text = "```console\n$ custos policy check --no-such-flag\npolicy bundle ok, revision ..., ... release rules\n```\n"
    with pytest.raises(AssertionError, match="no option of custos"):
        run_guide("broken.md", text, {}, capsys, monkeypatch, Background())
    # The same without output shown: the exit status alone fails it.
    text = "```console\n$ custos policy check --no-such-flag\n```\n"
    with pytest.raises(AssertionError, match="no option of custos"):
        run_guide("broken.md", text, {}, capsys, monkeypatch, Background())
    # A flag argparse would take as an abbreviation is not one a guide may show.
    text = "```console\n$ custos keys status --js\n```\n"
    with pytest.raises(AssertionError, match="no option of custos"):
        run_guide("broken.md", text, {}, capsys, monkeypatch, Background())


def test_a_guide_showing_an_output_the_cli_does_not_print_fails(capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    good = "```console\n$ custos policy check\npolicy bundle ok, revision $REV, ... release rules\n```\n"
    assert run_guide("good.md", good, {}, capsys, monkeypatch, Background()) == 1
    for wrong in ("policy bundle fine, revision ..., ... release rules",  # a word the CLI does not print
                  "policy bundle ok",                                    # a line cut short
                  '{\n  "ok": true,\n  "rules": "..."\n}'):              # JSON where text is printed
        text = f"```console\n$ custos policy check\n{wrong}\n```\n"
        with pytest.raises(AssertionError, match="the guide shows"):
            run_guide("wrong.md", text, {}, capsys, monkeypatch, Background())
    # JSON: a missing key, an extra key, a wrong value each fail; "..." as a key allows the others.
    shown = ['{"ok": true, "revision": "...", "rules": "...", "conduct": "..."}',
             '{"ok": true, "...": "..."}']
    for doc in shown:
        assert run_guide("json.md", f"```console\n$ custos policy check --json\n{doc}\n```\n", {}, capsys,
                         monkeypatch, Background()) == 1
    for doc in ('{"ok": true, "revision": "..."}', '{"ok": false, "...": "..."}',
                '{"ok": true, "revision": "...", "rules": "...", "conduct": "...", "more": 1}'):
        with pytest.raises(AssertionError, match="the guide shows"):
            run_guide("json.md", f"```console\n$ custos policy check --json\n{doc}\n```\n", {}, capsys,
                      monkeypatch, Background())


def test_a_failure_the_guide_does_not_show_fails_and_one_it_shows_passes(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    shown = (f"```console\n$ custos keys status {missing}\nerror: DATA_DIR_INVALID: ...\n$ echo $?\n1\n```\n")
    assert run_guide("fails.md", shown, {}, capsys, monkeypatch, Background()) == 2
    hidden = f"```console\n$ custos keys status {missing}\nerror: DATA_DIR_INVALID: ...\n```\n"
    with pytest.raises(AssertionError, match="exited 1, which the guide does not show"):
        run_guide("fails.md", hidden, {}, capsys, monkeypatch, Background())
    with pytest.raises(AssertionError, match="the guide shows"):  # the wrong status shown
        run_guide("fails.md", shown.replace("\n1\n", "\n3\n"), {}, capsys, monkeypatch, Background())


def test_a_placeholder_the_guide_does_not_set_fails(capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    text = "Set-up: nothing.\n\n```console\n$ custos keys status $DEMO\n```\n"
    with pytest.raises(AssertionError, match="does not set DEMO="):
        run_guide("unset.md", text, {"DEMO": "/tmp/x"}, capsys, monkeypatch, Background())
    with pytest.raises(AssertionError, match=r"\$NOWHERE is neither set"):
        run_guide("unset.md", "```console\n$ custos keys status $NOWHERE\n```\n", {}, capsys, monkeypatch,
                  Background())


def test_every_party_guide_is_run_and_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in GUIDES:
        text = (DOCS / name).read_text()
        assert "```console" in text, f"docs/{name} has no commands the test runs"
        assert f"docs/{name}" in readme, f"README.md does not link docs/{name}"
    proto = (ROOT / "proto" / "custos" / "v1" / "custos.proto").read_text()
    services = re.findall(r"^service (\w+)", proto, re.MULTILINE)
    assert len(services) == 5
    for service in services:
        assert service in readme, f"README.md does not name {service}"
