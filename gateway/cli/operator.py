"""Operator commands: they work on a data directory, on this host, without a gateway.

`init`, `ca init|issue`, `org add|disable`, `keys rotate|status|retire`,
`serve`, `stop` and `policy check`. What is decided (an organisation's
registration, whether a key version may be retired) is a use case's; these
functions open the directory, call it, and print.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from gateway import logs
from gateway.core.errors import Code, CustosError, PolicyError
from gateway.core.model import rfc3339
from gateway.core.ports import Vault

from .output import CliError, emit

T = TypeVar("T")


def cmd_init(args: argparse.Namespace) -> None:
    from gateway import pki
    from gateway.tlog.merkle import verifier_key
    from vault import backends, datadir

    root = Path(args.data_dir)
    key_dir = Path(args.key_dir) if args.key_dir else None
    tls = _offline_tls(Path(args.tls)) if args.tls else None
    if tls is not None and args.hostname:
        raise CliError(Code.INVALID_ARGUMENT, "--hostname names go into the server certificate: give them to "
                                           "'custos ca issue --server', not with --tls")
    origin = f"custos.invalid/log/{secrets.token_hex(6)}"
    layout = backends.create(root, {"origin": origin, "created": rfc3339(datetime.now(UTC))}, key_dir,
                             database=args.database)
    if tls is not None:
        ca_crt, server_crt, server_key = tls
        (layout.tls / "ca.crt").write_bytes(ca_crt)
        (layout.tls / "server.crt").write_bytes(server_crt)
        fd = os.open(layout.keys / "server.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(server_key)
    else:
        pki.create_ca(layout.tls / "ca.crt", layout.keys / "ca.key")
        pki.issue_server(layout.tls / "ca.crt", layout.keys / "ca.key", layout.tls / "server.crt",
                         layout.keys / "server.key", args.hostname)
    vkey = verifier_key(origin, datadir.audit_signing_key(layout).public_key())
    layout.vkey.write_text(vkey + "\n")
    datadir.packet_signing_key(layout, origin)  # writes packet.vkey
    emit(args, {"data_dir": str(root), "origin": origin, "verifier_key": str(layout.vkey),
                "key_dir": str(layout.keys), "ca": "offline" if tls is not None else str(layout.keys / "ca.key")},
         lambda d: f"initialised {d['data_dir']}\naudit log origin {d['origin']}\nverifier key {d['verifier_key']}"
                   f"\nkeys in {d['key_dir']}\nCA key: {d['ca']}")


def _offline_tls(directory: Path) -> tuple[bytes, bytes, bytes]:
    """ca.crt, server.crt, server.key from `custos ca issue --server`, checked before anything is created."""
    from gateway import pki

    try:
        ca_crt, server_crt, server_key = ((directory / n).read_bytes() for n in ("ca.crt", "server.crt", "server.key"))
    except OSError:
        raise CliError(Code.IDENTITY_INVALID, "--tls needs ca.crt, server.crt and server.key "
                                           "(from 'custos ca issue --server')") from None
    try:
        pki.check_issued(directory / "ca.crt", server_crt)
    except ValueError as exc:
        raise CustosError(Code.CERT_MISMATCH, f"server.crt: {exc}") from None
    return ca_crt, server_crt, server_key


def cmd_ca_init(args: argparse.Namespace) -> None:
    from gateway import pki

    ca_dir = Path(args.ca_dir)
    if ca_dir.exists() and (not ca_dir.is_dir() or any(ca_dir.iterdir())):
        raise CustosError(Code.DATA_DIR_EXISTS, "the CA directory exists and is not empty")
    ca_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(ca_dir, 0o700)
    pki.create_ca(ca_dir / "ca.crt", ca_dir / "ca.key")
    emit(args, {"ca_dir": str(ca_dir), "certificate": str(ca_dir / "ca.crt")},
         lambda d: f"CA created in {d['ca_dir']}; give {d['certificate']} to 'custos init --tls' via "
                   "'custos ca issue --server'; keep the directory off the gateway host")


def cmd_ca_issue(args: argparse.Namespace) -> None:
    from gateway import pki
    from gateway.core.usecases.admin import is_org_id

    ca_dir = Path(args.ca_dir)
    if not (ca_dir / "ca.key").is_file() or not (ca_dir / "ca.crt").is_file():
        raise CliError(Code.IDENTITY_INVALID, "not a CA directory (run 'custos ca init' first)")
    if bool(args.server) == bool(args.org):
        raise CliError(Code.INVALID_ARGUMENT, "give exactly one of --server or --org ID")
    if args.org and not is_org_id(args.org):
        raise CustosError(Code.INVALID_ORG_ID)
    if args.packet_key and not args.org:
        raise CliError(Code.INVALID_ARGUMENT, "--packet-key goes into an organisation's bundle: give it with --org")
    packet_vkey = _packet_vkey_text(args.packet_key) if args.packet_key else None
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise CliError(Code.IDENTITY_INVALID, "--out directory exists and is not empty")
    if args.server:
        out.mkdir(parents=True, exist_ok=True)
        os.chmod(out, 0o700)
        pki.issue_server(ca_dir / "ca.crt", ca_dir / "ca.key", out / "server.crt", out / "server.key", args.hostname)
        (out / "ca.crt").write_bytes((ca_dir / "ca.crt").read_bytes())
        what = "server certificate"
    else:
        pki.issue_org_bundle(ca_dir / "ca.crt", ca_dir / "ca.key", out, args.org, packet_vkey)
        what = f"certificate for {args.org}" + (" and the packet key" if packet_vkey else "")
    emit(args, {"issued": "server" if args.server else args.org, "out": str(out)},
         lambda d: f"issued {what} into {d['out']}")


def _packet_vkey_text(path: str) -> str:
    """A packet verifier key file's text, checked to be one (a bad file is caught here, not at verification)."""
    from gateway.tlog.merkle import parse_verifier_key

    try:
        text = Path(path).read_text()
        parse_verifier_key(text)
    except (OSError, ValueError):
        raise CliError(Code.INVALID_ARGUMENT, "--packet-key is not a readable verifier key file "
                                              "(DATA_DIR/packet.vkey)") from None
    return text


def _open_vault(data_dir: str) -> Vault:
    from vault.backends import open_vault

    return open_vault(Path(data_dir))


def _on_vault(data_dir: str, work: Callable[[Vault], T]) -> T:
    """`work` on the data directory's open vault, closed whatever happens."""
    vault = _open_vault(data_dir)
    try:
        return work(vault)
    finally:
        vault.close()


def _administration(vault: Vault, policies: str | None = None) -> Any:
    """The operator's use cases; the kinds there are come from the capability table of the bundle the gateway
    serves (`--policies`, default the shipped bundle), the jurisdictions from its conduct files."""
    import getpass

    from gateway.core.model import SystemClock
    from gateway.core.rules.policy import load_bundle
    from gateway.core.usecases.admin import Administration
    from policies import BUNDLE_DIR

    bundle = load_bundle(Path(policies) if policies else BUNDLE_DIR)

    try:
        operator = getpass.getuser()
    except (KeyError, OSError):
        operator = f"uid={os.getuid()}"
    return Administration(vault.reader, vault.audit, SystemClock(), operator, bundle.capabilities, bundle.jurisdictions)


def cmd_org_add(args: argparse.Namespace) -> None:
    from gateway import pki
    from gateway.core.usecases.admin import OrgSpec
    from vault.datadir import Layout

    if bool(args.out) == bool(args.cert):
        raise CliError(Code.INVALID_ARGUMENT, "give --out DIR (issue a certificate here) or --cert FILE "
                                              "(one issued by 'custos ca issue')")
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and any(out.iterdir()):
        raise CliError(Code.IDENTITY_INVALID, "--out directory exists and is not empty")
    spec = OrgSpec(args.id, args.kind, args.name, args.jurisdiction, args.licence_no, args.licence_expires,
                   args.address, args.telephone)
    vault = _open_vault(args.data_dir)
    made: list[Path] = []
    try:
        admin = _administration(vault, args.policies)
        org = admin.validate(spec)
        layout = Layout.of(Path(args.data_dir))

        def identity() -> None:
            if args.cert:
                _check_org_cert(layout.tls / "ca.crt", Path(args.cert), org.id)
                return
            assert out is not None
            if not (layout.keys / "ca.key").is_file():
                raise CustosError(Code.CA_OFFLINE)
            if not out.exists():
                made.append(out)
            # The packet key rides in every bundle: `packet verify --identity` pins it (a data directory from
            # before packets has none until its first start; the bundle then goes without, and says so).
            vkey = layout.packet_vkey.read_text() if layout.packet_vkey.is_file() else None
            pki.issue_org_bundle(layout.tls / "ca.crt", layout.keys / "ca.key", out, org.id, vkey)
            (out / "org.json").write_text(json.dumps({"org_id": org.id, "kind": org.kind}) + "\n")

        admin.register(org, identity)
    except BaseException:
        for directory in made:  # a bundle for an organisation that was not registered is no use to anyone
            shutil.rmtree(directory, ignore_errors=True)
        raise
    finally:
        vault.close()
    bundled = out / pki.PACKET_VKEY if out is not None else None
    if bundled is None or not bundled.is_file():
        bundled = None
    emit(args, {"org_id": args.id, "kind": args.kind, "identity": str(out) if out else str(args.cert),
                "packet_vkey": str(bundled) if bundled else None},
         lambda d: f"registered {d['kind']} {d['org_id']}; identity bundle in {d['identity']}"
                   + ("" if d["packet_vkey"] else
                      f"; give it {Path(args.data_dir) / 'packet.vkey'} (its packet.vkey) for 'packet verify'"))


def _check_org_cert(ca_crt: Path, cert: Path, org_id: str) -> None:
    from gateway import pki

    try:
        issued = pki.check_issued(ca_crt, cert.read_bytes())
    except OSError:
        raise CustosError(Code.IDENTITY_INVALID, "--cert file not readable") from None
    except ValueError as exc:
        raise CustosError(Code.CERT_MISMATCH, str(exc)) from None
    if pki.org_id_of(issued) != org_id:
        raise CustosError(Code.CERT_MISMATCH, "the certificate names another organisation")


def cmd_org_disable(args: argparse.Namespace) -> None:
    _on_vault(args.data_dir, lambda vault: _administration(vault).disable(args.id))
    emit(args, {"org_id": args.id, "disabled": True}, lambda d: f"disabled {d['org_id']}")


# ---- licences (issue 26)
def cmd_org_licence(args: argparse.Namespace) -> None:
    held = _on_vault(args.data_dir, lambda vault: _administration(vault, args.policies).licence(
        args.id, args.region, args.licence_no, args.licence_expires))
    emit(args, {"org_id": args.id, "region": held.region, "licence_no": held.licence_no,
                "licence_expires": held.expires.isoformat()},
         lambda d: f"{d['org_id']} licensed in {d['region']} until {d['licence_expires']}")


def cmd_keys_rotate(args: argparse.Namespace) -> None:
    from vault.datadir import Layout

    keys = Layout.of(Path(args.data_dir)).key_provider()
    previous = keys.kek().primary_version()
    version = keys.rotate_kek()
    emit(args, {"version": version, "previous": previous},
         lambda d: f"KEK version {d['version']} is primary (was {d['previous']}); a running gateway rewraps every"
                   f" data key to it in the background (custos keys status shows progress)")


def _key_rotation(vault: Vault) -> Any:
    from gateway.core.usecases.keys import KeyRotation

    return KeyRotation(vault.kek, vault.reader, vault.audit)


def cmd_keys_status(args: argparse.Namespace) -> None:
    status = _on_vault(args.data_dir, lambda vault: _key_rotation(vault).status())
    doc = {"primary": status.primary,
           "versions": [{"version": v, "data_keys": n, "primary": p} for v, n, p in status.rows],
           "to_rewrap": status.to_rewrap, "missing_versions": status.missing}

    def text(d: dict[str, Any]) -> str:
        lines = [f"primary KEK version {d['primary']}; {d['to_rewrap']} data keys still to rewrap"]
        lines += [f"  version {r['version']}: {r['data_keys']} data keys" + (" (primary)" if r["primary"] else "")
                  for r in d["versions"]]
        if d["missing_versions"]:
            lines.append(f"  MISSING key files for versions {d['missing_versions']}: those data keys cannot be opened")
        return "\n".join(lines)

    emit(args, doc, text)


def cmd_keys_retire(args: argparse.Namespace) -> None:
    from vault.datadir import Layout

    _on_vault(args.data_dir, lambda vault: _key_rotation(vault).prepare_retirement(args.version))
    Layout.of(Path(args.data_dir)).key_provider().retire_kek(args.version)
    emit(args, {"retired": args.version}, lambda d: f"KEK version {d['retired']} destroyed")


def cmd_serve(args: argparse.Namespace) -> None:
    from gateway.transport import processes

    fmt = logs.chosen(args.log_format)
    if fmt is None:
        raise CliError(Code.INVALID_ARGUMENT, f"{logs.ENV} must be text or json")
    os.environ[logs.ENV] = fmt  # the processes of --processes N log the same way
    logs.configure(fmt)
    if not 1 <= args.workers <= 256:
        raise CliError(Code.INVALID_ARGUMENT, "--workers must be 1-256")
    if not 0 <= args.grace <= 600:
        raise CliError(Code.INVALID_ARGUMENT, "--grace must be 0-600 seconds")
    count = processes.usable_cores() if args.processes is None else args.processes
    if not 1 <= count <= 64:
        raise CliError(Code.INVALID_ARGUMENT, "--processes must be 1-64")
    host, _, port_text = args.listen.rpartition(":")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise CliError(Code.INVALID_ARGUMENT, "--listen must be HOST:PORT")
    health_host, _, health_port = (args.health or "").rpartition(":")
    if args.health is not None and (not health_port.isdigit() or int(health_port) > 65535):
        raise CliError(Code.INVALID_ARGUMENT, "--health must be HOST:PORT")
    metrics_host, _, metrics_port = (args.metrics or "").rpartition(":")
    if args.metrics is not None and (not metrics_port.isdigit() or int(metrics_port) + count - 1 > 65535):
        raise CliError(Code.INVALID_ARGUMENT, "--metrics must be HOST:PORT (with --processes N, PORT+N-1 at most 65535)")
    if count > 1:
        supervisor = processes.Supervisor(Path(args.data_dir), host, int(port_text), count, workers=args.workers,
                                          grace=args.grace, policy_dir=Path(args.policies) if args.policies else None,
                                          reflection=args.reflection,
                                          health=(health_host, int(health_port)) if args.health else None,
                                          metrics=(metrics_host, int(metrics_port)) if args.metrics else None)
        supervisor.start()
        supervisor.handle_signals()
        print(f"custos gateway listening on {host}:{supervisor.port}", flush=True)
        logging.getLogger("custos.server").info("%d gateway processes on port %d; supervisor pid %d",
                                                count, supervisor.port, os.getpid(),
                                                extra={"event": "supervisor_listening", "port": supervisor.port,
                                                       "processes": count})
        code = supervisor.run()
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
    from gateway.transport.server import build

    gw = build(Path(args.data_dir), args.listen, policy_dir=Path(args.policies) if args.policies else None,
               workers=args.workers, reuse_port=args.reuse_port, reflection=args.reflection,
               health_listen=args.health, metrics_listen=args.metrics)
    done = stop_on_signals(gw)  # before the line a caller waits for: a SIGTERM right after it stops cleanly
    print(f"custos gateway listening on {host}:{gw.port}", flush=True)
    serve_until_signalled(gw, args.grace, args.supervisor, done)


def cmd_stop(args: argparse.Namespace) -> None:
    from gateway.transport import processes

    if not 0 < args.timeout <= 3600:
        raise CliError(Code.INVALID_ARGUMENT, "--timeout must be 1-3600 seconds")
    pid = processes.stop_server(Path(args.data_dir), args.timeout)
    emit(args, {"stopped": pid}, lambda d: f"stopped the custos serve of {args.data_dir} (pid {d['stopped']})")


def stop_on_signals(gw: Any) -> threading.Event:
    """SIGINT and SIGTERM set the event returned (SIGHUP reloads the policies): installed before the gateway says
    it listens, so a signal sent the moment it does is a clean stop, never the default's kill."""
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    signal.signal(signal.SIGHUP, lambda *_: _reload(gw))
    return done


def serve_until_signalled(gw: Any, grace: float, supervisor: int | None = None,
                          done: threading.Event | None = None) -> None:
    """Serve until SIGINT or SIGTERM (SIGHUP reloads the policies), stop within `grace` + a margin, exit.

    A process of `serve --processes N` also stops when its supervisor is gone. `done`: the event of
    `stop_on_signals`, when the caller installed the handlers already.
    """
    from gateway.transport.processes import watch_parent

    if done is None:
        done = stop_on_signals(gw)
    if supervisor is not None:
        watch_parent(supervisor, done)
    done.wait()
    log = logging.getLogger("custos.server")
    log.info("stopping: calls in flight get %.1f s", grace, extra={"event": "gateway_stopping"})
    clean = gw.stop(grace)
    log.info("stopped%s", "" if clean else " (calls still running were abandoned)",
             extra={"event": "gateway_stopped", "clean": clean})
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # Worker threads stuck on a client must not keep the process alive: everything acknowledged is
    # durable (a caller is answered only after its commit), so nothing is lost by not joining them.
    os._exit(0)


def _reload(gw: Any) -> None:
    """SIGHUP: re-read the policy bundle; a bad one is reported and the running bundle kept."""
    try:
        gw.reload_policies()
    except PolicyError as err:
        logging.getLogger("custos.server").error("policy reload refused, keeping the running bundle: %s",
                                                 err.detail, extra={"event": "policy_reload_refused"})


def cmd_policy_check(args: argparse.Namespace) -> None:
    from gateway.core.rules.policy import load_bundle
    from policies import BUNDLE_DIR

    bundle = load_bundle(Path(args.dir) if args.dir else BUNDLE_DIR)
    emit(args, {"ok": True, "revision": bundle.revision, "rules": [r.id for r in bundle.rules],
                "conduct": sorted(bundle.conduct)},
         lambda d: f"policy bundle ok, revision {d['revision']}, {len(d['rules'])} release rules")

