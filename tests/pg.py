"""A throwaway PostgreSQL server for the tests: Debian's binaries, loopback only, an unprivileged user.

PostgreSQL refuses to run as root, so when the tests run as root the cluster
belongs to the `postgres` account (or `nobody`) and its commands run as that
user. The server listens on 127.0.0.1 and a socket in its own directory, with
trust authentication for that address only, and is stopped (immediate) and
removed when the session ends. Where the binaries are missing the PostgreSQL
tests are skipped with a loud reason, except under CI=true, where that is a
failure.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def binaries() -> Path | None:
    for candidate in [os.environ.get("CUSTOS_PG_BIN", ""), *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]:
        if candidate and (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                try:
                    self.user = pwd.getpwnam(name)
                    break
                except KeyError:
                    continue
            if self.user is None:
                raise RuntimeError("running as root and no unprivileged user (postgres, nobody) to run PostgreSQL")
        self.root = Path(tempfile.mkdtemp(prefix="custos-pg-"))
        os.chmod(self.root, 0o755)
        self.data = self.root / "data"
        self.port = _free_port()
        self.superuser = "custos_admin"
        self.log = self.root / "server.log"
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {"PATH": f"{self.bindir}:/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(self.root)}
        if self.user is None:
            return subprocess.run(list(argv), capture_output=True, text=True, check=check, env=env, cwd=self.root,
                                  timeout=120)
        return subprocess.run(list(argv), capture_output=True, text=True, check=check, env=env, cwd=self.root,
                              timeout=120, user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])

    def start(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.superuser, "-E", "UTF8",
                  "--auth-local=trust", "--auth-host=trust", "--no-instructions")
        self.resume()
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.1)

    def pause(self) -> None:
        """Stop the server, keeping its data (an outage); `resume` starts it again on the same port."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root}"
                " -c fsync=on -c synchronous_commit=on -c max_connections=200 -c shared_buffers=32MB")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w",
                  "-t", "60", "start")

    def url(self, database: str) -> str:
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(statement)

    def create_database(self, name: str, template: str = "template0") -> str:
        self.sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    def checkpoint(self) -> None:
        """Flush everything to the data files (so a scan of them sees what was written)."""
        self.sql("CHECKPOINT")

    def pg_dump(self, database: str) -> bytes:
        dump = shutil.which("pg_dump") or str(self.bindir / "pg_dump")
        out = subprocess.run([dump, "-h", "127.0.0.1", "-p", str(self.port), "-U", self.superuser, database],
                             capture_output=True, check=True, timeout=120)
        return out.stdout

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
