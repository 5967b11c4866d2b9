"""Files the CLI writes that can hold personal data: created new, owner-only, never through a link.

Every such writer (`lender subject-export`, `cases pull --out`, `bureau pull
--out`, `packet get`) goes through `private_output`. The data is written to a
temporary file with a random name in the destination's directory, created
with O_EXCL (so neither a stale file nor a planted symlink is ever opened),
fsynced, and only then put under its final name:

- without --force by `link(2)`, which fails if the name exists, so an existing
  file (or a link, or one created meanwhile) is never replaced;
- with --force by `rename(2)`, which replaces a symlink at the name itself,
  not the file it points to.

Either way the final file is the one we created, mode 0600, and whole.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from gateway.core.errors import Code, CustosError

PRIVATE_MODE = 0o600


def check_output(out: Path, force: bool) -> None:
    """Refuse before any PI is fetched (and audited as released) if it could not be written under `out`."""
    try:
        st = os.lstat(out)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CustosError(Code.INVALID_ARGUMENT, f"--out cannot be checked ({type(exc).__name__})") from None
    if stat.S_ISDIR(st.st_mode):
        raise CustosError(Code.OUTPUT_EXISTS, "it is a directory, which --force does not replace")
    if not force:
        raise CustosError(Code.OUTPUT_EXISTS)


def _publish(tmp: str, out: Path, force: bool) -> None:
    if force:
        os.replace(tmp, out)  # replaces a link at `out`, never its target
        return
    try:
        os.link(tmp, out, follow_symlinks=False)
    except FileExistsError:
        raise CustosError(Code.OUTPUT_EXISTS) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
            raise
        # A file system without hard links: check again and rename; the window is from here to the rename.
        check_output(out, force=False)
        os.replace(tmp, out)
        return
    os.unlink(tmp)


def _sync_dir(directory: Path) -> None:
    """The new name is durable once its directory is synced (best effort: not every file system allows it)."""
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def private_output(out: Path, force: bool = False) -> Iterator[BinaryIO]:
    """A new owner-only file to write; it appears under `out` only if the block ends without an exception."""
    check_output(out, force)
    directory = out.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=directory)
    except OSError as exc:
        raise CustosError(Code.INVALID_ARGUMENT, f"--out cannot be written ({type(exc).__name__})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), PRIVATE_MODE)  # mkstemp's 0600, whatever the umask
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        _publish(tmp, out, force)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _sync_dir(directory)


def write_private(out: Path, data: bytes, force: bool = False) -> None:
    """`data` into a new owner-only file at `out` (see the module's docstring)."""
    with private_output(out, force) as fh:
        fh.write(data)
