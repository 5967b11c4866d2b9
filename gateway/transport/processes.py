"""`custos serve --processes N`: N whole gateways on one port, one supervisor, one stop.

One Python process cannot use a second core (the GIL), so the gateway runs
as N processes, each a complete `custos serve --processes 1` listening on the
same port with SO_REUSEPORT: the kernel spreads connections over them. They
share nothing in memory. What one process of a gateway promises, N keep,
because every guarantee already lives in the store: the audit sequence is
the database's (on the embedded store each commit holds the directory's
write lock, `vault.datadir.WriteLock`), contact caps are counted inside the
commit that records the contact, and each process's row cache is checked
against the store's change counter on every request, so a recall through
one process is enforced by the others for every request that starts after
it. Rate limits stay per process, as with replicas (docs/decisions.md).

The supervisor holds the directory's serve lock and hands the same open file
to each process, starts them, restarts one that dies (a `kill -9` loses no
acknowledged event: a caller is answered only after its commit), forwards
SIGHUP (reload the policies) and SIGTERM (stop), and exits when they have
stopped. `custos stop DATA_DIR` sends it SIGTERM and waits for the lock.
Processes whose supervisor is gone stop on their own (`watch_parent`).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from gateway.core.errors import Code, CustosError
from gateway.core.rules.policy import load_bundle
from policies import BUNDLE_DIR
from vault.backends import open_vault
from vault.datadir import ServeLock

log = logging.getLogger("custos.server")

READY_TIMEOUT_S = 120.0  # a process's start-up: open the store, catch the tree up, bind, the TLS check
RESTARTS_ALLOWED = 5  # restarts within RESTART_WINDOW_S before the supervisor gives up and stops all
RESTART_WINDOW_S = 60.0
KILL_MARGIN_S = 5.0  # beyond a process's own bounded stop (grace + its margin) before it is killed
PARENT_CHECK_S = 0.5


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), which is what `--processes` defaults to."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to host:port with SO_REUSEPORT and never listening: it fixes the port (0: one is chosen)
    for the processes to share, and keeps it for a restarted one, while taking no connection itself."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host.strip("[]") or "0.0.0.0", port,
                                                          type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError:
        raise CustosError(Code.INVALID_ARGUMENT, "--listen is not an address this machine has") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
    except OSError:
        sock.close()
        raise CustosError(Code.LISTEN_FAILED) from None
    return sock


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen[bytes]  # its stdout is a pipe: the first line says it listens
    ready: bool = False


class Supervisor:
    """Starts N gateway processes on one port and keeps them running until told to stop."""

    def __init__(self, data_dir: Path, host: str, port: int, count: int, *, workers: int, grace: float,
                 policy_dir: Path | None = None, reflection: bool = False,
                 health: tuple[str, int] | None = None, metrics: tuple[str, int] | None = None) -> None:
        self.data_dir = data_dir
        self.host = host
        self.count = count
        self.grace = grace
        # `--metrics HOST:PORT`: process i serves its own exposition on PORT+i (PORT 0: each any free port), no
        # aggregation: each is a target of its own, and a restarted process takes its index's port again.
        self.metrics = metrics
        self.worker_args = ["--workers", str(workers), "--grace", str(grace),
                            *(["--policies", str(policy_dir)] if policy_dir else []),
                            *(["--reflection"] if reflection else [])]
        load_bundle(policy_dir or BUNDLE_DIR)  # a bad bundle is refused here, as by one process, before any starts
        self.lock = ServeLock.take(data_dir)
        self._stop = threading.Event()
        self._workers: list[Worker] = []
        self._restarts: deque[float] = deque()
        self._sock: socket.socket | None = None
        self._health_sock: socket.socket | None = None  # `--health`: shared the same way, each process answers
        self.port = port
        try:
            # Migrations and the tree's catch-up run here, once, not in N processes racing each other.
            open_vault(data_dir, "").close()
            self._sock = reserve_port(host, port)
            self.port = int(self._sock.getsockname()[1])
            if health is not None:
                self._health_sock = reserve_port(*health)
                self.worker_args += ["--health", f"{health[0]}:{self._health_sock.getsockname()[1]}"]
        except BaseException:
            self.close()
            raise

    def _spawn(self, index: int) -> Worker:
        argv = [sys.executable, "-m", "gateway.cli", "serve", str(self.data_dir),
                "--listen", f"{self.host}:{self.port}", "--processes", "1", "--reuse-port",
                "--supervisor", str(os.getpid()), *self.worker_args]
        if self.metrics is not None:
            host, port = self.metrics
            argv += ["--metrics", f"{host}:{port + index if port else 0}"]
        env = dict(os.environ, **{ServeLock.ENV: str(self.lock.fd)})
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, pass_fds=(self.lock.fd,), env=env)
        return Worker(index, proc)

    def start(self) -> None:
        """Start every process and wait until each listens; if one cannot, stop the rest and fail."""
        self._workers = [self._spawn(i) for i in range(self.count)]
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(w.ready for w in self._workers):
            failed = [w for w in self._workers if not w.ready and w.proc.poll() is not None]
            if failed or time.monotonic() > deadline:
                self.stop_all()
                self.close()
                raise CustosError(Code.SERVE_FAILED, "see the process's own error above")
            self._poll_ready(0.2)

    def _poll_ready(self, timeout: float) -> None:
        waiting = {w.proc.stdout: w for w in self._workers if not w.ready and w.proc.stdout is not None}
        if not waiting:
            return
        readable, _, _ = select.select(list(waiting), [], [], timeout)
        for stream in readable:
            worker = waiting[stream]
            line = stream.readline().decode(errors="replace")
            if "listening on" in line:
                worker.ready = True
                threading.Thread(target=_drain, args=(stream,), daemon=True).start()
                log.info("gateway process %d of %d (pid %d) serving", worker.index + 1, self.count, worker.proc.pid,
                         extra={"event": "process_serving"})

    def handle_signals(self) -> None:
        """SIGTERM/SIGINT stop all, SIGHUP is passed on: installed before the supervisor says it listens, so a
        signal sent the moment it does is a clean stop, never the default's kill."""
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self._signal_all(signal.SIGHUP))

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (stop all) or too many restarts; SIGHUP is passed on. The exit code."""
        self.handle_signals()
        code = 0
        while not self._stop.wait(0.2):
            self._poll_ready(0)
            for i, worker in enumerate(self._workers):
                status = worker.proc.poll()
                if status is None:
                    continue
                if not self._may_restart():
                    log.error("gateway processes keep exiting (%d restarts within %.0f s); stopping all",
                              RESTARTS_ALLOWED, RESTART_WINDOW_S, extra={"event": "processes_failing"})
                    self._stop.set()
                    code = 1
                    break
                log.warning("gateway process %d (pid %d) exited with status %d; starting another",
                            worker.index + 1, worker.proc.pid, status, extra={"event": "process_exited"})
                if worker.proc.stdout is not None and not worker.ready:
                    worker.proc.stdout.close()
                self._workers[i] = self._spawn(worker.index)
        self.stop_all()
        self.close()
        return code

    def _may_restart(self) -> bool:
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > RESTART_WINDOW_S:
            self._restarts.popleft()
        if len(self._restarts) >= RESTARTS_ALLOWED:
            return False
        self._restarts.append(now)
        return True

    def _signal_all(self, sig: int) -> None:
        for worker in self._workers:
            if worker.proc.poll() is None:
                try:
                    worker.proc.send_signal(sig)
                except ProcessLookupError:
                    pass

    def stop_all(self) -> None:
        """SIGTERM to every process; each stops within its grace and margin, or is killed after KILL_MARGIN_S."""
        from gateway.transport.server import STOP_MARGIN_S

        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.grace + STOP_MARGIN_S + KILL_MARGIN_S
        for worker in self._workers:
            try:
                worker.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("gateway process %d (pid %d) did not stop; killing it", worker.index + 1, worker.proc.pid,
                          extra={"event": "process_killed"})
                worker.proc.kill()
                worker.proc.wait()

    def close(self) -> None:
        for sock in (self._sock, self._health_sock):
            if sock is not None:
                sock.close()
        self._sock = self._health_sock = None
        self.lock.release()


def _drain(stream: IO[bytes]) -> None:
    """A process's stdout after its first line: copied on, so it can never fill the pipe and block."""
    try:
        for chunk in iter(lambda: stream.read1(4096), b""):  # type: ignore[attr-defined]
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
    except (OSError, ValueError):
        pass


def watch_parent(parent: int, stop: threading.Event) -> None:
    """In a supervised process: stop when the supervisor is gone (even by kill -9), never run orphaned."""
    def run() -> None:
        while not stop.wait(PARENT_CHECK_S):
            if os.getppid() != parent:
                log.error("the supervisor (pid %d) is gone; stopping", parent, extra={"event": "supervisor_gone"})
                stop.set()

    threading.Thread(target=run, name="custos-parent", daemon=True).start()


def stop_server(data_dir: Path, timeout: float) -> int:
    """SIGTERM to the server holding `data_dir`, then wait until every one of its processes has let go."""
    pid = ServeLock.holder(data_dir)
    if pid is None:
        raise CustosError(Code.NOT_SERVING)
    if pid > 0:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass  # its processes are stopping on their own (watch_parent)
    deadline = time.monotonic() + timeout
    while ServeLock.holder(data_dir) is not None:
        if time.monotonic() > deadline:
            raise CustosError(Code.STOP_TIMEOUT)
        time.sleep(0.1)
    return pid
