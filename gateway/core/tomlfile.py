"""Reading policy files so that every problem names its file and line."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from .errors import PolicyError


def load_toml(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a TOML policy file; a syntax error becomes a PolicyError with its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(str(path), None, f"cannot read file ({type(exc).__name__})") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = int(match.group(1)) if match else None
        problem = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise PolicyError(str(path), line, f"TOML syntax: {problem}") from None


def line_of(text: str, key: str, occurrence: int = 0) -> int | None:
    """Best-effort line of the `occurrence`-th assignment or header naming `key`.

    tomllib keeps no positions, so semantic errors locate themselves by
    searching the text for the key they concern.
    """
    pattern = re.compile(
        rf"^\s*(\[\[?\s*[\w.\"-]*{re.escape(key)}[\w.\"-]*\s*\]\]?|\"?{re.escape(key)}\"?\s*=)", re.M
    )
    for i, match in enumerate(pattern.finditer(text)):
        if i == occurrence:
            return text.count("\n", 0, match.start()) + 1
    return None


class FileCtx:
    """Raises PolicyErrors located in one file, or in one block of it (see `within`)."""

    def __init__(self, path: Path, text: str, first_line: int = 1) -> None:
        self.path = path
        self.text = text
        self.first_line = first_line

    def fail(self, problem: str, key: str | None = None, occurrence: int = 0) -> PolicyError:
        line = line_of(self.text, key, occurrence) if key else None
        if line is None and self.first_line > 1:
            line = self.first_line
        return PolicyError(str(self.path), None if line is None else line + self.first_line - 1, problem)

    def within(self, header: str, index: int) -> FileCtx:
        """The `index`-th `[[header]]` array-of-tables block, up to the next one, so keys are found in it."""
        pattern = re.compile(rf"^\s*\[\[\s*{re.escape(header)}\s*\]\]", re.M)
        starts = [m.start() for m in pattern.finditer(self.text)]
        if index >= len(starts):
            return self
        end = starts[index + 1] if index + 1 < len(starts) else len(self.text)
        first = self.text.count("\n", 0, starts[index]) + self.first_line
        return FileCtx(self.path, self.text[starts[index]:end], first)
