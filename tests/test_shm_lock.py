"""The embedded store keeps SQLite's lock on its WAL index while serving, so no other process resets the index.

SQLite knows that no process has a database open, and that it may truncate
and rebuild the WAL index (`-shm`), when it can take a write lock on one byte
of that file (the DMS slot). A POSIX lock belongs to the process, and closing
*any* descriptor of the file drops all of them: the gateway once did that
(the commit watch opened and closed the file), and `custos keys status` run
beside a serving gateway then truncated the index under it (SIGBUS, and two
views of the WAL).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import Env

pytestmark = pytest.mark.sqlite_only

DMS = 128  # (22 + 8) * 4 + 8: the byte after SQLite's eight shm lock slots (os_unix.c UNIX_SHM_DMS)

PROBE = f"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, {DMS})
except OSError:
    print("held")
else:
    print("free")
"""


def _dms(shm: str) -> str:
    return subprocess.run([sys.executable, "-c", PROBE, shm], capture_output=True, text=True, check=True).stdout.strip()


def test_the_serving_process_holds_the_wal_index_lock_and_another_process_leaves_it_alone(
        seeded: Env) -> None:
    shm = str(seeded.data / "custos.db-shm")
    assert _dms(shm) == "held"
    seeded.client("lender-a").get_case("C-1", "servicing")
    subprocess.run([sys.executable, "-m", "gateway.cli", "keys", "status", str(seeded.data)], check=True,
                   capture_output=True)
    assert _dms(shm) == "held"
    assert seeded.client("lender-a").get_case("C-1", "servicing").fields["full_name"]
