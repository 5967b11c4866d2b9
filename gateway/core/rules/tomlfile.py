"""Reading policy files so that every problem names its file and line."""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any

from ..errors import PolicyError

MAX_POLICY_FILE_BYTES = 1 << 20
"""No policy file is near this (the shipped ones are a few KiB); it bounds what a wrong path can make us read."""


def read_policy_file(path: Path) -> bytes:
    """The bytes of a policy file: a regular file of at most MAX_POLICY_FILE_BYTES, else a PolicyError.

    A symlink is followed (configuration mounts such as Kubernetes ConfigMaps
    are links), but what it leads to must be a regular file: a device
    (/dev/zero) or a FIFO would be read forever or block. O_NONBLOCK lets a
    FIFO be opened, and so refused, without waiting for a writer.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise PolicyError(str(path), None, f"cannot read file ({type(exc).__name__})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PolicyError(str(path), None, "not a regular file")
        if st.st_size > MAX_POLICY_FILE_BYTES:
            raise PolicyError(str(path), None, f"larger than {MAX_POLICY_FILE_BYTES} bytes")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_POLICY_FILE_BYTES:  # the file may grow after fstat: never read past the limit
            chunk = os.read(fd, MAX_POLICY_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_POLICY_FILE_BYTES:
            raise PolicyError(str(path), None, f"larger than {MAX_POLICY_FILE_BYTES} bytes")
        return b"".join(chunks)
    except OSError as exc:
        raise PolicyError(str(path), None, f"cannot read file ({type(exc).__name__})") from None
    finally:
        os.close(fd)


def load_toml(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a TOML policy file; a syntax error becomes a PolicyError with its line."""
    try:
        text = read_policy_file(path).decode("utf-8")
    except UnicodeDecodeError as exc:
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
    # `^[ \t]*`, not `^\s*`: under re.M, \s also takes the blank lines above a key, and the line found
    # would be the first of them.
    pattern = re.compile(
        rf"^[ \t]*(\[\[?\s*[\w.\"-]*{re.escape(key)}[\w.\"-]*\s*\]\]?|\"?{re.escape(key)}\"?\s*=)", re.M
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
        if line is None:  # the key is not in this block's text: point at the block's header (or nowhere)
            return PolicyError(str(self.path), self.first_line if self.first_line > 1 else None, problem)
        return PolicyError(str(self.path), line + self.first_line - 1, problem)

    def within(self, header: str, index: int) -> FileCtx:
        """The `index`-th `[[header]]` array-of-tables block, up to the next one, so keys are found in it."""
        pattern = re.compile(rf"^[ \t]*\[\[\s*{re.escape(header)}\s*\]\]", re.M)
        starts = [m.start() for m in pattern.finditer(self.text)]
        if index >= len(starts):
            return self
        end = starts[index + 1] if index + 1 < len(starts) else len(self.text)
        first = self.text.count("\n", 0, starts[index]) + self.first_line
        return FileCtx(self.path, self.text[starts[index]:end], first)
