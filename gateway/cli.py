"""The `custos` command (DESIGN.md §9).

Operator commands work on a data directory; client commands reach a gateway
with an identity bundle. Every failure prints `error: CODE: message` on stderr
(with --json, `{"error": {...}}` on stdout) and exits non-zero; no traceback.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gateway.transport  # noqa: F401 - first: gRPC's TLS policy, before main imports the client (and grpc)
from gateway.core.errors import Code, CustosError, PolicyError
from gateway.core.model import FLAGS, rfc3339
from gateway.core.ports import UnitOfWork, Vault
from gateway.outfiles import check_output, private_output, write_private

EXIT_ERROR = 1
FORCE_HELP = "replace an existing --out file (the new one is still 0600; a symlink there is replaced, not followed)"


class CliError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _emit(args: argparse.Namespace, doc: Any, human: Callable[[Any], str] | None = None) -> None:
    if getattr(args, "json", False):
        print(json.dumps(doc, ensure_ascii=False))
    elif human is not None:
        print(human(doc))
    else:
        print(json.dumps(doc, ensure_ascii=False, indent=2))


# ---------------------------------------------------------------- operator commands


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
    if key_dir is not None and (key_dir.resolve() == root.resolve() or root.resolve() in key_dir.resolve().parents):
        raise CliError(Code.INVALID_ARGUMENT, "--key-dir must be outside the data directory")
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
    _emit(args, {"data_dir": str(root), "origin": origin, "verifier_key": str(layout.vkey),
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
    _emit(args, {"ca_dir": str(ca_dir), "certificate": str(ca_dir / "ca.crt")},
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
    _emit(args, {"issued": "server" if args.server else args.org, "out": str(out)},
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


def _administration(vault: Vault, policies: str | None = None) -> Any:
    """The operator's use cases; the kinds there are come from the capability table of the bundle the gateway
    serves (`--policies`, default the shipped bundle)."""
    import getpass

    from gateway.core.model import SystemClock
    from gateway.core.rules.policy import load_bundle
    from gateway.core.usecases.admin import Administration
    from policies import BUNDLE_DIR

    capabilities = load_bundle(Path(policies) if policies else BUNDLE_DIR).capabilities

    try:
        operator = getpass.getuser()
    except (KeyError, OSError):
        operator = f"uid={os.getuid()}"
    return Administration(vault.reader, vault.audit, SystemClock(), operator, capabilities)


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
    _emit(args, {"org_id": args.id, "kind": args.kind, "identity": str(out) if out else str(args.cert),
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
    vault = _open_vault(args.data_dir)
    try:
        _administration(vault).disable(args.id)
    finally:
        vault.close()
    _emit(args, {"org_id": args.id, "disabled": True}, lambda d: f"disabled {d['org_id']}")


def cmd_keys_rotate(args: argparse.Namespace) -> None:
    from vault.datadir import Layout

    keys = Layout.of(Path(args.data_dir)).key_provider()
    previous = keys.kek().primary_version()
    version = keys.rotate_kek()
    _emit(args, {"version": version, "previous": previous},
          lambda d: f"KEK version {d['version']} is primary (was {d['previous']}); a running gateway rewraps every"
                    f" data key to it in the background (custos keys status shows progress)")


def _key_usage(vault: Vault) -> tuple[list[int], int, dict[int, int]]:
    """(versions that exist, the primary, data keys per version) of an open data directory."""
    kek = vault.kek
    return kek.versions(), kek.primary_version(), vault.reader().kek_usage()


def cmd_keys_status(args: argparse.Namespace) -> None:
    vault = _open_vault(args.data_dir)
    try:
        versions, primary, usage = _key_usage(vault)
    finally:
        vault.close()
    rows = [{"version": v, "data_keys": usage.get(v, 0), "primary": v == primary}
            for v in sorted(set(versions) | set(usage))]
    missing = sorted(set(usage) - set(versions))
    doc = {"primary": primary, "versions": rows, "to_rewrap": sum(n for v, n in usage.items() if v != primary),
           "missing_versions": missing}

    def text(d: dict[str, Any]) -> str:
        lines = [f"primary KEK version {d['primary']}; {d['to_rewrap']} data keys still to rewrap"]
        lines += [f"  version {r['version']}: {r['data_keys']} data keys" + (" (primary)" if r["primary"] else "")
                  for r in d["versions"]]
        if d["missing_versions"]:
            lines.append(f"  MISSING key files for versions {d['missing_versions']}: those data keys cannot be opened")
        return "\n".join(lines)

    _emit(args, doc, text)


def cmd_keys_retire(args: argparse.Namespace) -> None:
    from vault.datadir import Layout

    vault = _open_vault(args.data_dir)
    try:
        versions, primary, usage = _key_usage(vault)
        if args.version not in versions:
            raise CliError(Code.KEY_VERSION_NOT_FOUND, f"no KEK version {args.version}")
        if args.version == primary or usage.get(args.version, 0):
            raise CliError(Code.KEY_IN_USE, f"KEK version {args.version} is primary or still wraps "
                                            f"{usage.get(args.version, 0)} data keys (custos keys status)")
        # Every row cache goes first (a cached row may still show a rewrapped key's older wrapping), in the
        # database, so no process opens a key with this version once its file is gone.
        def touch(repo: UnitOfWork) -> tuple[None, list[Any]]:
            repo.touch_generation()
            return None, []

        vault.audit.run(touch)
    finally:
        vault.close()
    Layout.of(Path(args.data_dir)).key_provider().retire_kek(args.version)
    _emit(args, {"retired": args.version}, lambda d: f"KEK version {d['retired']} destroyed")


def cmd_serve(args: argparse.Namespace) -> None:
    from gateway.transport import processes

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
    if count > 1:
        supervisor = processes.Supervisor(Path(args.data_dir), host, int(port_text), count, workers=args.workers,
                                          grace=args.grace, policy_dir=Path(args.policies) if args.policies else None)
        supervisor.start()
        print(f"custos gateway listening on {host}:{supervisor.port}", flush=True)
        logging.getLogger("custos.server").info("%d gateway processes on port %d; supervisor pid %d",
                                                count, supervisor.port, os.getpid())
        code = supervisor.run()
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
    from gateway.transport.server import build

    gw = build(Path(args.data_dir), args.listen, policy_dir=Path(args.policies) if args.policies else None,
               workers=args.workers, reuse_port=args.reuse_port)
    print(f"custos gateway listening on {host}:{gw.port}", flush=True)
    serve_until_signalled(gw, args.grace, args.supervisor)


def cmd_stop(args: argparse.Namespace) -> None:
    from gateway.transport import processes

    if not 0 < args.timeout <= 3600:
        raise CliError(Code.INVALID_ARGUMENT, "--timeout must be 1-3600 seconds")
    pid = processes.stop_server(Path(args.data_dir), args.timeout)
    _emit(args, {"stopped": pid}, lambda d: f"stopped the custos serve of {args.data_dir} (pid {d['stopped']})")


def serve_until_signalled(gw: Any, grace: float, supervisor: int | None = None) -> None:
    """Serve until SIGINT or SIGTERM (SIGHUP reloads the policies), stop within `grace` + a margin, exit.

    A process of `serve --processes N` also stops when its supervisor is gone.
    """
    from gateway.transport.processes import watch_parent

    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    signal.signal(signal.SIGHUP, lambda *_: _reload(gw))
    if supervisor is not None:
        watch_parent(supervisor, done)
    done.wait()
    log = logging.getLogger("custos.server")
    log.info("stopping: calls in flight get %.1f s", grace)
    clean = gw.stop(grace)
    log.info("stopped%s", "" if clean else " (calls still running were abandoned)")
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
                                                 err.detail)


def cmd_policy_check(args: argparse.Namespace) -> None:
    from gateway.core.rules.policy import load_bundle
    from policies import BUNDLE_DIR

    bundle = load_bundle(Path(args.dir) if args.dir else BUNDLE_DIR)
    _emit(args, {"ok": True, "revision": bundle.revision, "rules": [r.id for r in bundle.rules],
                 "conduct": sorted(bundle.conduct)},
          lambda d: f"policy bundle ok, revision {d['revision']}, {len(d['rules'])} release rules")


# ---------------------------------------------------------------- client commands


def _client(args: argparse.Namespace) -> Any:
    from custos_client import CustosClient

    gateway = args.gateway or os.environ.get("CUSTOS_GATEWAY")
    identity = args.identity or os.environ.get("CUSTOS_IDENTITY")
    if not gateway or not identity:
        raise CliError(Code.INVALID_ARGUMENT, "give --gateway HOST:PORT and --identity DIR (or CUSTOS_GATEWAY, "
                                           "CUSTOS_IDENTITY)")
    return CustosClient(gateway, identity)


def cmd_import(args: argparse.Namespace) -> None:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(Code.INVALID_ARGUMENT, "import file not found")
    from custos_client import CustosError as ClientError

    with _client(args) as c:
        try:
            result = c.import_file(path)
        except ClientError as err:
            if err.progress is not None:
                raise ImportBroken(err.code, err.message, err.progress) from None
            raise
    doc = {"imported": result["imported"], "rejected": result["rejected"]}
    if result["already_imported"]:
        doc["already_imported"] = result["already_imported"]
    if result["rejected_total"] > len(result["rejected"]):
        doc["rejected_total"] = result["rejected_total"]
    _emit(args, doc, lambda d: "\n".join(
        [f"imported {d['imported']}" + (f", {d['already_imported']} already imported" if "already_imported" in d
                                        else "")]
        + [f"rejected line {r['line']}: {r['code']}: {r['reason']}" for r in d["rejected"]]))


class ImportBroken(CliError):
    """The import stream broke: the error says so, and what the gateway had confirmed as stored."""

    def __init__(self, code: str, message: str, progress: dict[str, Any]) -> None:
        stored = {k: progress[k] for k in ("through_line", "imported", "already_imported", "rejected_total")}
        if stored["through_line"]:
            what = (f"lines 1-{stored['through_line']} are decided and stored ({stored['imported']} imported, "
                    f"{stored['already_imported']} already there, {stored['rejected_total']} rejected)")
        else:
            what = "nothing was stored"
        super().__init__(code, f"{message} ({what}; sending the file again is safe)")
        self.stored = stored


def cmd_assign(args: argparse.Namespace) -> None:
    if args.file:
        if args.case or args.to or args.purpose or args.until or args.label:
            raise CliError(Code.INVALID_ARGUMENT, "--file takes every placement from the file: give no CASE, "
                                                  "--to, --purpose, --until or --label with it")
        _assign_file(args)
        return
    if not (args.case and args.to and args.purpose and args.until):
        raise CliError(Code.INVALID_ARGUMENT, "give CASE --to ORG --purpose PURPOSE --until YYYY-MM-DD, "
                                              "or --file PLACEMENTS.jsonl")
    with _client(args) as c:
        _emit(args, c.assign(args.case, args.to, args.purpose, args.until, args.label or ""))


def _assign_file(args: argparse.Namespace) -> None:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(Code.INVALID_ARGUMENT, "placement file not found")
    from custos_client import CustosError as ClientError

    with _client(args) as c, open(path, "rb") as fh:
        try:
            result = c.assign_lines(fh)
        except ClientError as err:
            if err.progress is not None:
                done = err.progress
                raise CliError(err.code, f"{err.message} (lines 1-{done['through_line']} are decided: "
                                         f"{done['assigned']} assigned; sending the file again is safe)") from None
            raise
    doc: dict[str, Any] = {"assigned": result["assigned"], "rejected": result["rejected"]}
    if result["rejected_total"] > len(result["rejected"]):
        doc["rejected_total"] = result["rejected_total"]
    _emit(args, doc, lambda d: "\n".join(
        [f"assigned {d['assigned']}"] + [f"rejected line {r['line']}: {r['code']}: {r['reason']}"
                                          for r in d["rejected"]]))


def cmd_recall(args: argparse.Namespace) -> None:
    if args.all == bool(args.case):
        raise CliError(Code.INVALID_ARGUMENT, "give CASE --from ORG, or --all --from ORG")
    with _client(args) as c:
        if args.all:
            _emit(args, c.recall_all(args.from_org), lambda d: f"{d['recalled']} mandates of {d['org_id']} ended")
        else:
            _emit(args, c.recall(args.case, args.from_org))


def cmd_escalate(args: argparse.Namespace) -> None:
    with _client(args) as c:
        _emit(args, c.escalate(args.case, args.to, args.until or ""),
              lambda d: f"{d['case_id']}: litigation, mandated to {d['mandate']['org_id']} until "
                        f"{d['mandate']['until']}; mandates ended: {', '.join(d['recalled']) or 'none'}")


def cmd_erase(args: argparse.Namespace) -> None:
    if args.cancel and args.grace is not None:
        raise CliError(Code.INVALID_ARGUMENT, "give --grace DAYS or --cancel, not both")
    if args.grace is not None and not 1 <= args.grace <= 3650:
        raise CliError(Code.INVALID_ARGUMENT, "--grace is 1 to 3650 days")
    with _client(args) as c:
        _emit(args, c.erase(args.borrower, args.grace or 0, args.cancel), _receipt_text)


def _receipt_text(d: dict[str, Any]) -> str:
    """The erasure receipt as a lender hands it to the borrower."""
    head = f"Erasure receipt: borrower {d['borrower_id']} of {d['lender']}"
    if d["state"] == "pending":
        return "\n".join([head, f"  scheduled at {d['at']}, to be performed {d['due']}",
                          f"  cases: {', '.join(d['cases'])}",
                          "  nothing is released to any other party meanwhile", f"  audit event: {d['audit_seq']}"])
    if d["state"] == "cancelled":
        return "\n".join([head, f"  scheduled erasure cancelled at {d['at']}", f"  audit event: {d['audit_seq']}"])
    lines = [head, f"  erased at {d['at']} ({d['reason']})", f"  cases: {', '.join(d['cases'])}",
             "  destroyed: " + "; ".join(d["destroyed"]),
             f"  mandates ended: {', '.join(d['mandates_ended']) or 'none'}",
             f"  audit event: {d['audit_seq']} (verifiable in the Custos audit log)"]
    return "\n".join(lines)


def cmd_subject_export(args: argparse.Namespace) -> None:
    """The borrower's own data and who received what of it, in one file for the lender to hand over."""
    from gateway.formats import subject_report

    out = Path(args.out)
    check_output(out, args.force)  # before the borrower's data is fetched (and audited as read)
    with _client(args) as c:
        cases = c.subject_data(args.borrower)
        events = c.subject_events(args.borrower, "")
    own = next((str(e["report_lender"]) for e in events if e.get("report_lender")), "")  # the calling lender
    doc = {"borrower_id": args.borrower, "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
           "cases": cases, "disclosures": subject_report.one(args.borrower, own, events)}
    write_private(out, (json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode(), args.force)
    d = doc["disclosures"]
    _emit(args, {"out": str(out), "cases": len(cases), "releases": len(d["releases"]), "refusals": len(d["refusals"])},
          lambda s: f"subject export of {args.borrower} written to {s['out']}: {s['cases']} cases, "
                    f"{s['releases']} releases, {s['refusals']} refused attempts (owner-only file: it holds PI)")


def cmd_purge(args: argparse.Namespace) -> None:
    if not args.dry_run:
        raise CliError(Code.INVALID_ARGUMENT, "the purge runs inside the gateway on its schedule; --dry-run lists "
                                              "what is due and why")
    with _client(args) as c:
        plan = c.purge_plan()

    def text(d: dict[str, Any]) -> str:
        lines = [f"{len(d['due'])} borrowers due for shredding, {len(d['held'])} kept by a legal hold"]
        lines += [f"  due   {i['borrower_id']} ({', '.join(i['cases'])}) since {i['due_on']}: {i['rule']}"
                  for i in d["due"]]
        lines += [f"  held  {i['borrower_id']} ({', '.join(i['cases'])}) since {i['due_on']}: {i['rule']};"
                  f" legal hold on {', '.join(i['held_by'])}" for i in d["held"]]
        return "\n".join(lines)

    _emit(args, plan, text)


def cmd_consent(args: argparse.Namespace) -> None:
    values = {"yes": True, "no": False, None: None}
    third, credit = values[args.third_party_sharing], values[args.credit_reporting]
    if third is None and credit is None:
        raise CliError(Code.INVALID_ARGUMENT, "give --third-party-sharing yes|no and/or --credit-reporting yes|no")
    with _client(args) as c:
        _emit(args, c.set_consent(args.case, third, credit),
              lambda d: f"{d['case_id']}: third-party sharing {'yes' if d['third_party_sharing'] else 'no'}, "
                        f"credit reporting {'yes' if d['credit_reporting'] else 'no'} (as of {d['changed_at']})"
                        + (f"; provided mandates ended: {', '.join(d['mandates_ended'])}" if d["mandates_ended"]
                           else ""))


def cmd_notice(args: argparse.Namespace) -> None:
    with _client(args) as c:
        _emit(args, c.record_notice(args.case, args.on),
              lambda d: f"{d['case_id']}: prior notice of negative reporting on {d['negative_notice_on']}")


def cmd_stage(args: argparse.Namespace) -> None:
    with _client(args) as c:
        _emit(args, c.set_stage(args.case, args.stage))


def cmd_flag(args: argparse.Namespace) -> None:
    flags = {name: getattr(args, name) for name in FLAGS if getattr(args, name) is not None}
    with _client(args) as c:
        _emit(args, c.set_flags(args.case, args.status, **flags))


def cmd_explain(args: argparse.Namespace) -> None:
    with _client(args) as c:
        e = c.explain(args.org, args.case, args.purpose, args.at or "")

    def human(d: dict[str, Any]) -> str:
        lines = [f"{d['decision'].upper()} ({d['code']}) for {d['org_id']} on {d['case_id']} under {d['purpose']}"]
        lines += [f"  release {f['field']} as {f['transform']}  [rule {f['rule']}]" for f in d["fields"]]
        lines += [f"  rule: {r}" for r in d["rules"]] + [f"  note: {n}" for n in d["notes"]]
        lines.append(f"  policy revision {d['policy_revision']}")
        return "\n".join(lines)

    _emit(args, e, human)


def cmd_contact_open(args: argparse.Namespace) -> None:
    with _client(args) as c:
        _emit(args, c.open_contact(args.case, args.channel, args.party))


def cmd_contact_outcome(args: argparse.Namespace) -> None:
    with _client(args) as c:
        _emit(args, c.record_outcome(args.contact_id, args.result))


def cmd_cases_list(args: argparse.Namespace) -> None:
    with _client(args) as c:
        cases = c.list_cases(args.national_id or "", args.phone or "")
    _emit(args, {"cases": cases}, lambda d: "\n".join(
        f"{x['case_id']}\t{x['stage']}\t{x['status']}\t{x['purpose']}\t{x['until']}" for x in d["cases"]) or
        "no cases")


def cmd_cases_get(args: argparse.Namespace) -> None:
    with _client(args) as c:
        rec = c.get_case(args.case, args.purpose)
    _emit(args, {"case_id": rec["case_id"], "purpose": rec["purpose"], "stage": rec["stage"],
                 "fields": rec["fields"], "rules": rec["rules"],
                 **({"erasure": rec["erasure"]} if rec.get("erasure") else {})})


def cmd_cases_pull(args: argparse.Namespace) -> None:
    """The work list as one JSON document, {"records", "removed", "cursor"}, on stdout or (0600) in --out.

    Records are written as they arrive, so memory stays bounded whatever the
    portfolio. If the pull breaks, what arrived is kept with the cursor after
    it and "complete": false, and the error says to resume from that cursor.
    """
    from custos_client import CustosError as ClientError

    out = Path(args.out) if args.out else None
    removed: list[dict[str, Any]] = []
    count, cursor, complete, received = 0, args.since or "", False, False
    failure: CliError | None = None
    with private_output(out, args.force) if out else nullcontext(None) as fh:
        def write(text: str) -> None:
            if fh is None:
                sys.stdout.write(text)
            else:
                fh.write(text.encode())

        write('{"records": [')
        try:
            with _client(args) as c:
                for item in c.pull_cases(args.purpose, args.since or ""):
                    cursor, received = item["cursor"], True
                    if "record" in item:
                        write((",\n" if count else "\n") + json.dumps(item["record"], ensure_ascii=False))
                        count += 1
                    elif "removed" in item:
                        removed.append({"case_id": item["removed"], "lender_id": item["lender_id"],
                                        "code": item["code"]})
                    else:
                        complete = True
        except ClientError as err:
            # The cursor after the last item written out, which is the one the document ends with; the file
            # is still put in place (it says "complete": false), so what arrived is kept.
            what = f"; what arrived is kept: resume with --since {cursor}" if received else ""
            failure = CliError(err.code, err.message + what)
        finally:
            write("\n], " + json.dumps({"removed": removed, "cursor": cursor, "complete": complete},
                                       ensure_ascii=False)[1:] + "\n")
            if fh is None:
                sys.stdout.flush()
    if failure is not None:
        raise failure
    if out is not None:
        _emit(args, {"records": count, "removed": len(removed), "cursor": cursor, "out": str(out)},
              lambda d: f"{d['records']} records, {d['removed']} removed, written to {d['out']};"
                        f" next --since {d['cursor']}")


def cmd_audit_query(args: argparse.Namespace) -> None:
    filters = {"case_id": args.case or "", "org_id": args.org or "", "borrower_id": args.borrower or "",
               "since": args.since or ""}
    vkey = _key_text(args.key) if args.key else None
    with _client(args) as c:
        # With a pinned key every event is checked against a signed checkpoint by its inclusion proof, and
        # all of them before any is printed.
        events = c.verified_audit_query(vkey, **filters) if vkey is not None else c.audit_query(**filters)
    _emit(args, {"events": events}, lambda d: "\n".join(json.dumps(e, ensure_ascii=False) for e in d["events"]))


def cmd_audit_checkpoint(args: argparse.Namespace) -> None:
    if args.size is not None and args.size <= 0:
        raise CliError(Code.INVALID_ARGUMENT, "--size is 1 or more")
    with _client(args) as c:
        note = c.checkpoint(args.size or 0)
    _emit(args, {"checkpoint": note}, lambda d: d["checkpoint"].rstrip("\n"))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def cmd_audit_prove(args: argparse.Namespace) -> None:
    from gateway.tlog.proofcheck import verify_inclusion

    if args.seq < 0 or (args.size is not None and args.size <= 0):
        raise CliError(Code.INVALID_ARGUMENT, "SEQ is 0 or more and --size 1 or more")
    with _client(args) as c:
        p = c.inclusion_proof(args.seq, args.size or 0)
    if not verify_inclusion(p["index"], p["tree_size"], p["leaf_hash"], p["proof"], p["root"]):
        raise CliError(Code.AUDIT_VERIFY_FAILED, "the gateway's inclusion proof does not lead to its root")
    _emit(args, {"index": p["index"], "tree_size": p["tree_size"], "leaf_hash": _b64(p["leaf_hash"]),
                 "root": _b64(p["root"]), "proof": [_b64(h) for h in p["proof"]]},
          lambda d: f"event {d['index']} is in the tree of {d['tree_size']} events with root {d['root']} "
                    f"({len(d['proof'])} hashes; compare the root with a signed checkpoint of that size)")


def cmd_audit_consistency(args: argparse.Namespace) -> None:
    from gateway.tlog.proofcheck import verify_consistency

    if args.first <= 0 or (args.to is not None and args.to < args.first):
        raise CliError(Code.INVALID_ARGUMENT, "--from is 1 or more, and --to at least --from")
    with _client(args) as c:
        p = c.consistency_proof(args.first, args.to or 0)
    if not verify_consistency(p["from"], p["to"], p["from_root"], p["to_root"], p["proof"]):
        raise CliError(Code.AUDIT_VERIFY_FAILED, "the gateway's consistency proof does not verify")
    _emit(args, {"from": p["from"], "to": p["to"], "from_root": _b64(p["from_root"]), "to_root": _b64(p["to_root"]),
                 "proof": [_b64(h) for h in p["proof"]]},
          lambda d: f"the tree of {d['from']} events is a prefix of the tree of {d['to']} ({len(d['proof'])} hashes)")


def cmd_audit_subject_report(args: argparse.Namespace) -> None:
    from gateway.formats import subject_report

    with _client(args) as c:
        events = c.subject_events(args.borrower, args.lender or "")
    report = subject_report.build(args.borrower, args.lender or "", events)
    _emit(args, report, subject_report.table)


def _key_text(path: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, ValueError):  # ValueError: not UTF-8 text
        raise CliError(Code.INVALID_ARGUMENT, "--key file not readable") from None


def cmd_audit_cosigner_key(args: argparse.Namespace) -> None:
    from gateway.tlog.cosign import Cosigner

    out = Path(args.out)
    try:
        signer = Cosigner.generate(args.name)
    except ValueError as exc:
        raise CliError(Code.INVALID_ARGUMENT, str(exc)) from None
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(signer.private_text() + "\n")
    vkey_path = out.with_name(out.name + ".vkey")
    vkey_path.write_text(signer.vkey() + "\n")
    _emit(args, {"key": str(out), "vkey": str(vkey_path), "verifier_key": signer.vkey()},
          lambda d: f"cosigner key in {d['key']} (0600, keep it offline); publish {d['vkey']}")


def cmd_audit_cosign(args: argparse.Namespace) -> None:
    import time

    from gateway.tlog.cosign import Cosigner

    try:
        signer = Cosigner.parse(Path(args.key).read_text())
    except (OSError, ValueError):
        raise CliError(Code.INVALID_ARGUMENT, "--key is not a cosigner key file (custos audit cosigner-key)") from None
    try:
        state = json.loads(Path(args.state).read_text())
        note = str(state["checkpoint"])
    except (OSError, ValueError, KeyError, TypeError):
        raise CliError(Code.INVALID_ARGUMENT, "--state holds no verified checkpoint: run custos audit verify "
                                              "--state FILE first") from None
    line = signer.cosign(note, int(time.time()))
    with _client(args) as c:
        size = c.cosign(note, line, signer.vkey())
    _emit(args, {"cosigned": size, "cosigner": signer.name, "cosignature": line},
          lambda d: f"cosigned the checkpoint of {d['cosigned']} events as {d['cosigner']}")


def cmd_audit_export(args: argparse.Namespace) -> None:
    from gateway.tlog import tiles

    out = Path(args.out)
    if out.exists():
        raise CliError(Code.INVALID_ARGUMENT, "--out exists: give a new directory")
    with _client(args) as c:
        note, vkey = c.checkpoint_and_key()
        try:
            size, root = tiles.write_bundle(out, note, vkey, (leaf for _, leaf in c.audit_events()))
        except (tiles.BundleError, ValueError) as exc:
            raise CustosError(Code.AUDIT_VERIFY_FAILED, str(exc)) from None
    _emit(args, {"out": str(out), "size": size, "root": _b64(root)},
          lambda d: f"exported {d['size']} events to {d['out']} (root {d['root']}); check it with: "
                    f"custos audit verify --bundle {d['out']} --key {d['out']}/audit.vkey")


DEFAULT_SAMPLE = 64  # earlier events an incremental verify re-checks by proof (docs/regulators.md)


def cmd_audit_verify(args: argparse.Namespace) -> None:
    from gateway.tlog.verify import VerifyError, resume_from, sample_seqs, verify_log

    if args.sample < 0:
        raise CliError(Code.INVALID_ARGUMENT, "--sample is 0 or more")
    vkey = _key_text(args.key)
    if args.bundle:
        from gateway.tlog import tiles

        try:
            check = tiles.verify_bundle(Path(args.bundle), vkey)
        except tiles.BundleError as exc:
            raise CustosError(Code.AUDIT_VERIFY_FAILED, str(exc)) from None
        _emit(args, {"verified": True, "bundle": args.bundle, "size": check.size, "origin": check.origin,
                     "root": _b64(check.root)},
              lambda d: f"bundle verified: {d['size']} events, root {d['root']}")
        return
    state = None
    state_path = Path(args.state) if args.state else None
    if state_path and state_path.exists():
        try:
            state = json.loads(state_path.read_text())
        except ValueError:
            raise CliError(Code.INVALID_ARGUMENT, "--state file is not valid JSON") from None
    with _client(args) as c:
        note = c.checkpoint()
        if args.full and state is not None:
            state = {k: v for k, v in state.items() if k != "frontier"}  # re-read every event, still pinned
        start = resume_from(state)

        def consistency(first: int, second: int) -> list[bytes]:
            return list(c.consistency_proof(first, second)["proof"])

        try:
            result = verify_log(c.audit_events(from_seq=start), note, vkey, state, consistency, c.cosigned())
        except VerifyError as exc:
            raise CustosError(Code.AUDIT_VERIFY_FAILED, str(exc)) from None
        # An incremental run reads only the new events; a random sample of those verified before is re-read
        # and checked by proof against the root just verified, so an edit in place there is found too.
        sampled = c.check_sample(sample_seqs(start, args.sample), result.size, result.root) if start else 0
    if state_path:
        tmp = state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result.state()) + "\n")
        tmp.replace(state_path)
    doc = {"verified": True, "read": result.read, "sampled": sampled, **result.state()}
    _emit(args, doc, lambda d: f"audit log verified: {d['size']} events, root {d['root']} "
                               f"({d['read']} event{'' if d['read'] == 1 else 's'} read this run"
                               + (f", {d['sampled']} earlier ones re-checked by proof" if d["sampled"] else "")
                               + ")")


def cmd_packet_get(args: argparse.Namespace) -> None:
    out = Path(args.out)
    check_output(out, args.force)  # before the packet is released (and audited)
    with _client(args) as c:
        packet_id, data = c.get_packet(args.case)
    write_private(out, data, args.force)
    _emit(args, {"packet_id": packet_id, "case_id": args.case, "out": str(out), "bytes": len(data),
                 "sha256": hashlib.sha256(data).hexdigest()},
          lambda d: f"packet {d['packet_id']} for {d['case_id']} written to {d['out']} ({d['bytes']} bytes)")


def _pinned_packet_key(args: argparse.Namespace) -> tuple[str, str]:
    """The packet key to verify against, and where it came from: --key, else the identity bundle's packet.vkey.

    Never the key the packet names for itself: anyone can sign a packet with a
    key of their own and name it, so without a pinned key nothing is verified.
    """
    from gateway import pki

    if args.key:
        return _key_text(args.key), str(args.key)
    identity = args.identity or os.environ.get("CUSTOS_IDENTITY")
    if not identity:
        raise CustosError(Code.PACKET_KEY_REQUIRED)
    path = Path(identity) / pki.PACKET_VKEY
    try:
        return path.read_text(), str(path)
    except (OSError, ValueError):
        raise CustosError(Code.PACKET_KEY_REQUIRED, "the identity bundle holds no readable packet.vkey: "
                                                    "copy the gateway's DATA_DIR/packet.vkey into it") from None


def cmd_packet_verify(args: argparse.Namespace) -> None:
    from gateway import packets

    try:
        data = Path(args.file).read_bytes()
    except OSError:
        raise CliError(Code.INVALID_ARGUMENT, "the packet file is not readable") from None
    vkey, source = _pinned_packet_key(args)
    m = packets.verify(data, vkey, args.recipient).manifest
    doc = {"verified": True, "key_pinned": True, "key_source": source, "key": m["key"],
           "recipient_checked": args.recipient is not None,
           **{k: m[k] for k in ("packet_id", "recipient", "lender", "case_id", "jurisdiction", "issued_at",
                                "fields")},
           "items": [{"name": i["name"], "type": i["type"], "size": i["size"], "sha256": i["sha256"]}
                     for i in m["items"]]}

    def human(d: dict[str, Any]) -> str:
        lines = [f"packet {d['packet_id']} verified: case {d['case_id']} of {d['lender']}, released to "
                 f"{d['recipient']} at {d['issued_at']}",
                 f"fields: {', '.join(d['fields'])}"]
        lines += [f"  {i['name']:<22} {i['size']:>8} bytes  sha256 {i['sha256']}" for i in d["items"]]
        lines.append(f"signed by {d['key'].split('+')[0]} (pinned: {d['key_source']})")
        lines.append(f"recipient {d['recipient']} " + ("checked" if d["recipient_checked"] else
                     "not checked (give --recipient ORG to require it)"))
        return "\n".join(lines)

    _emit(args, doc, human)


def cmd_bureau_pull(args: argparse.Namespace) -> None:
    from gateway.formats import metro2

    out = Path(args.out) if args.out else None
    if out is not None:
        check_output(out, args.force)  # before the feed is pulled (and audited as furnished)
    with _client(args) as c:
        feed = c.pull_feed(args.since or "")
    records = feed["records"]
    if args.format == "metro2":
        other = sorted({r["jurisdiction"] for r in records} - {"US"})
        if other:
            raise CliError(Code.INVALID_ARGUMENT, f"the feed holds records of {', '.join(other)}, which Metro 2 does "
                                                  f"not carry: pull them with --format json (same --since)")
        if out is None:
            raise CliError(Code.INVALID_ARGUMENT, "--format metro2 needs --out FILE (the cursor goes to stdout)")
        by_lender, unfit = metro2.files(records, datetime.now(UTC))
        withheld = feed["withheld"] + unfit
        # One file per lender (a Metro 2 file has one header, one furnisher): FILE itself when the pull holds one
        # lender's records (or none), FILE.LENDER next to it for each when it holds several.
        if len(by_lender) <= 1:
            written = {lender: out for lender in by_lender} or {"": out}
            contents = by_lender or {"": metro2.file([], datetime.now(UTC))}
        else:
            written = {lender: out.with_name(f"{out.name}.{lender}") for lender in by_lender}
            contents = by_lender
        for lender, data in contents.items():
            write_private(written[lender], data, args.force)
        written_records = len(records) - len(unfit)
        doc = {"records": written_records, "cursor": feed["cursor"], "out": str(out), "format": "metro2",
               "files": [{"lender": lender, "out": str(path), "records": (len(contents[lender]) // metro2.RECORD) - 2}
                         for lender, path in written.items()],
               "withheld": withheld}
        _emit(args, doc, lambda d: f"{d['records']} records written to {', '.join(f['out'] for f in d['files'])} "
                                   f"(Metro 2); {len(d['withheld'])} withheld"
                                   + "".join(f"\n  withheld {w['case_id']}: {w['code']}" for w in d["withheld"])
                                   + f"\nnext --since {d['cursor']}")
        return
    if out is None:
        print(json.dumps(feed, ensure_ascii=False))
        return
    write_private(out, (json.dumps(feed, ensure_ascii=False) + "\n").encode(), args.force)
    _emit(args, {"records": len(records), "cursor": feed["cursor"], "out": str(out), "format": "json"},
          lambda d: f"{d['records']} records written to {d['out']}; next --since {d['cursor']}")


# ---------------------------------------------------------------- parser


def _version() -> str:
    """The installed distribution's version, so the CLI, the package and the lock never disagree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("custos")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="custos", description="Custos data-sharing gateway")
    p.add_argument("--version", action="version", version=f"custos {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    client = argparse.ArgumentParser(add_help=False, parents=[common])
    client.add_argument("--gateway", help="HOST:PORT (or CUSTOS_GATEWAY)")
    client.add_argument("--identity", help="identity bundle directory (or CUSTOS_IDENTITY)")

    s = sub.add_parser("init", parents=[common], help="create a data directory")
    s.add_argument("data_dir")
    s.add_argument("--hostname", action="append", default=[], help="extra DNS name or IP for the server cert")
    s.add_argument("--tls", help="server certificate, key and CA certificate from 'custos ca issue --server': "
                                 "the CA key stays offline")
    s.add_argument("--key-dir", help="keep every key file here instead of DATA_DIR/keys")
    s.add_argument("--database", help="postgresql://USER@HOST:PORT/DB: the store for many replicas (no password "
                                      "in the URL: PGPASSWORD or ~/.pgpass); default: SQLCipher in DATA_DIR")
    s.set_defaults(fn=cmd_init)

    ca = sub.add_parser("ca", help="an offline CA that never has to sit on the gateway host").add_subparsers(
        dest="sub", required=True)
    s = ca.add_parser("init", parents=[common])
    s.add_argument("ca_dir")
    s.set_defaults(fn=cmd_ca_init)
    s = ca.add_parser("issue", parents=[common])
    s.add_argument("ca_dir")
    s.add_argument("--server", action="store_true", help="the gateway's server certificate")
    s.add_argument("--hostname", action="append", default=[], help="with --server: extra DNS name or IP")
    s.add_argument("--org", help="a client certificate for organisation ORG")
    s.add_argument("--packet-key", metavar="PACKET_VKEY",
                   help="with --org: the gateway's DATA_DIR/packet.vkey, copied into the bundle for 'packet verify'")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_ca_issue)

    keys = sub.add_parser("keys", help="KEK rotation: rotate, status, retire").add_subparsers(dest="sub", required=True)
    s = keys.add_parser("rotate", parents=[common], help="a new KEK version, primary at once; the gateway rewraps")
    s.add_argument("data_dir")
    s.set_defaults(fn=cmd_keys_rotate)
    s = keys.add_parser("status", parents=[common], help="how many data keys each KEK version wraps")
    s.add_argument("data_dir")
    s.set_defaults(fn=cmd_keys_status)
    s = keys.add_parser("retire", parents=[common], help="destroy a KEK version nothing uses any more")
    s.add_argument("data_dir")
    s.add_argument("--version", type=int, required=True)
    s.set_defaults(fn=cmd_keys_retire)
    org = sub.add_parser("org", help="register and disable organisations").add_subparsers(dest="sub", required=True)
    s = org.add_parser("add", parents=[common])
    s.add_argument("data_dir")
    s.add_argument("--id", required=True)
    s.add_argument("--kind", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--jurisdiction", default="CN")
    s.add_argument("--licence-no")
    s.add_argument("--licence-expires")
    s.add_argument("--address", help="a lender's postal address (the header of its Metro 2 bureau file)")
    s.add_argument("--telephone", help="a lender's 10-digit US telephone number (the same header)")
    s.add_argument("--out", help="write a new identity bundle here (the data directory's own CA)")
    s.add_argument("--cert", help="register with this client certificate from 'custos ca issue --org'")
    s.add_argument("--policies", help="the policy bundle the gateway serves, whose capability table names the "
                                      "kinds (default: the shipped bundle)")
    s.set_defaults(fn=cmd_org_add)
    s = org.add_parser("disable", parents=[common])
    s.add_argument("data_dir")
    s.add_argument("--id", required=True)
    s.set_defaults(fn=cmd_org_disable)

    s = sub.add_parser("serve", parents=[common], help="run the gateway")
    s.add_argument("data_dir")
    s.add_argument("--listen", default="127.0.0.1:7443")
    s.add_argument("--policies", help="policy bundle directory (default: the shipped bundle)")
    s.add_argument("--workers", type=int, default=128,
                   help="RPC worker threads (default 128; idle ones cost no CPU)")
    s.add_argument("--grace", type=float, default=5.0,
                   help="seconds calls in flight get on SIGTERM before they are cancelled (default 5)")
    s.add_argument("--processes", type=int, default=None,
                   help="gateway processes sharing the port (default: the usable cores; 1: this process serves)")
    s.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # a process of --processes N
    s.add_argument("--supervisor", type=int, default=None, help=argparse.SUPPRESS)
    s.set_defaults(fn=cmd_serve)
    s = sub.add_parser("stop", parents=[common], help="stop the custos serve of a data directory, all its processes")
    s.add_argument("data_dir")
    s.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for it to stop (default 30)")
    s.set_defaults(fn=cmd_stop)

    pol = sub.add_parser("policy", help="check policy bundles").add_subparsers(dest="sub", required=True)
    s = pol.add_parser("check", parents=[common])
    s.add_argument("dir", nargs="?")
    s.set_defaults(fn=cmd_policy_check)

    lender = sub.add_parser("lender", help="lender commands").add_subparsers(dest="sub", required=True)
    s = lender.add_parser("import", parents=[client])
    s.add_argument("file")
    s.set_defaults(fn=cmd_import)
    s = lender.add_parser("assign", parents=[client], help="mandate a case (or, with --file, many)")
    s.add_argument("case", nargs="?")
    s.add_argument("--to")
    s.add_argument("--purpose")
    s.add_argument("--until")
    s.add_argument("--label")
    s.add_argument("--file", help='JSON Lines, one {"case_id", "to", "purpose", "until", "label"} per line')
    s.set_defaults(fn=cmd_assign)
    s = lender.add_parser("recall", parents=[client], help="end a case's mandates of an org (or, with --all, every one)")
    s.add_argument("case", nargs="?")
    s.add_argument("--from", dest="from_org", required=True)
    s.add_argument("--all", action="store_true", help="every mandate the org holds on your cases")
    s.set_defaults(fn=cmd_recall)
    s = lender.add_parser("escalate", parents=[client], help="to litigation, mandated to a law firm")
    s.add_argument("case")
    s.add_argument("--to", required=True, help="the law firm")
    s.add_argument("--until", help="YYYY-MM-DD (default: a year from today)")
    s.set_defaults(fn=cmd_escalate)
    s = lender.add_parser("erase", parents=[client], help="crypto-shred a borrower's data (refused under legal hold)")
    s.add_argument("borrower")
    s.add_argument("--grace", type=int, metavar="DAYS", help="schedule it DAYS from now (cancellable)")
    s.add_argument("--cancel", action="store_true", help="cancel a scheduled erasure")
    s.set_defaults(fn=cmd_erase)
    s = lender.add_parser("subject-export", parents=[client],
                          help="a borrower's own data and its disclosures, for an access request")
    s.add_argument("borrower")
    s.add_argument("--out", required=True, help="the file to write (0600: it holds the borrower's PI)")
    s.add_argument("--force", action="store_true", help=FORCE_HELP)
    s.set_defaults(fn=cmd_subject_export)
    s = lender.add_parser("purge", parents=[client], help="what the retention purge will shred, and why")
    s.add_argument("--dry-run", action="store_true", required=False)
    s.set_defaults(fn=cmd_purge)
    s = lender.add_parser("consent", parents=[client], help="record a change of the borrower's consents")
    s.add_argument("case")
    s.add_argument("--third-party-sharing", choices=("yes", "no"))
    s.add_argument("--credit-reporting", choices=("yes", "no"))
    s.set_defaults(fn=cmd_consent)
    s = lender.add_parser("notice", parents=[client], help="record a prior notice of negative credit reporting")
    s.add_argument("case")
    s.add_argument("--on", required=True, help="YYYY-MM-DD, the day the notice was given")
    s.set_defaults(fn=cmd_notice)
    s = lender.add_parser("stage", parents=[client])
    s.add_argument("case")
    s.add_argument("stage")
    s.set_defaults(fn=cmd_stage)

    s = lender.add_parser("flag", parents=[client], help="set (--X) or clear (--no-X) case flags")
    s.add_argument("case")
    for name in FLAGS:
        s.add_argument(f"--{name.replace('_', '-')}", dest=name, action=argparse.BooleanOptionalAction, default=None)
    s.add_argument("--status", choices=None, help="open | settled | closed")
    s.set_defaults(fn=cmd_flag)

    s = pol.add_parser("explain", parents=[client], help="what would ORG get for CASE under PURPOSE, and why")
    s.add_argument("--org", required=True)
    s.add_argument("--case", required=True)
    s.add_argument("--purpose", required=True)
    s.add_argument("--at", help="RFC 3339 time (default: now)")
    s.set_defaults(fn=cmd_explain)

    contact = sub.add_parser("contact", help="open contacts and record outcomes").add_subparsers(dest="sub",
                                                                                                  required=True)
    s = contact.add_parser("open", parents=[client])
    s.add_argument("case")
    s.add_argument("--channel", required=True, help="call | sms | visit | letter")
    s.add_argument("--party", default="borrower", help="borrower | emergency_contact")
    s.set_defaults(fn=cmd_contact_open)
    s = contact.add_parser("outcome", parents=[client])
    s.add_argument("contact_id")
    s.add_argument("--result", required=True,
                   help="connected | no_answer | promise_to_pay | dispute | wrong_number | undeliverable")
    s.set_defaults(fn=cmd_contact_outcome)

    cases = sub.add_parser("cases", help="read cases").add_subparsers(dest="sub", required=True)
    s = cases.add_parser("list", parents=[client])
    s.add_argument("--national-id", help="lender only: find by national id (blind index)")
    s.add_argument("--phone", help="lender only: find by phone (blind index)")
    s.set_defaults(fn=cmd_cases_list)
    s = cases.add_parser("get", parents=[client])
    s.add_argument("case")
    s.add_argument("--purpose", required=True)
    s.set_defaults(fn=cmd_cases_get)
    s = cases.add_parser("pull", parents=[client], help="the cases mandated to you, or those changed since a cursor")
    s.add_argument("--purpose", required=True)
    s.add_argument("--since", help="the cursor of an earlier pull: only what changed after it")
    s.add_argument("--out", help="write the document here (owner-only) instead of stdout")
    s.add_argument("--force", action="store_true", help=FORCE_HELP)
    s.set_defaults(fn=cmd_cases_pull)

    packet = sub.add_parser("packet", help="signed litigation packets").add_subparsers(dest="sub", required=True)
    s = packet.add_parser("get", parents=[client], help="a case's litigation packet (law firm)")
    s.add_argument("case")
    s.add_argument("--out", required=True)
    s.add_argument("--force", action="store_true", help=FORCE_HELP)
    s.set_defaults(fn=cmd_packet_get)
    s = packet.add_parser("verify", parents=[common],
                          help="check every hash and the signature against a pinned key, offline")
    s.add_argument("file")
    s.add_argument("--key", help="the gateway's packet.vkey (default: packet.vkey of the identity bundle)")
    s.add_argument("--identity", help="identity bundle directory whose packet.vkey is pinned (or CUSTOS_IDENTITY)")
    s.add_argument("--recipient", metavar="ORG", help="require the packet to have been issued to ORG")
    s.set_defaults(fn=cmd_packet_verify)

    bureau = sub.add_parser("bureau", help="credit bureau feed").add_subparsers(dest="sub", required=True)
    s = bureau.add_parser("pull", parents=[client], help="records changed since the cursor (bureau)")
    s.add_argument("--since", help="the cursor of the last pull (default: from the start)")
    s.add_argument("--format", choices=("json", "metro2"), default="json")
    s.add_argument("--out", help="write here (mode 0600) instead of stdout")
    s.add_argument("--force", action="store_true", help=FORCE_HELP)
    s.set_defaults(fn=cmd_bureau_pull)

    audit = sub.add_parser("audit", help="audit log").add_subparsers(dest="sub", required=True)
    s = audit.add_parser("query", parents=[client])
    s.add_argument("--case")
    s.add_argument("--org")
    s.add_argument("--borrower")
    s.add_argument("--since")
    s.add_argument("--key", help="the pinned audit.vkey: check every event against a signed checkpoint by its "
                                 "inclusion proof before printing any (exit 1, AUDIT_VERIFY_FAILED, if one fails)")
    s.set_defaults(fn=cmd_audit_query)
    s = audit.add_parser("checkpoint", parents=[client], help="a signed checkpoint (regulator)")
    s.add_argument("--size", type=int, help="the one published for this tree size (default: the current tree)")
    s.set_defaults(fn=cmd_audit_checkpoint)
    s = audit.add_parser("subject-report", parents=[client],
                         help="who received which of a borrower's fields, and every refused attempt")
    s.add_argument("borrower")
    s.add_argument("--lender", help="the borrower's lender (a lender: its own); without it every lender's "
                                    "borrower of this id, apart (a lender: only its own)")
    s.set_defaults(fn=cmd_audit_subject_report)
    s = audit.add_parser("prove", parents=[client], help="an event's inclusion proof (regulator)")
    s.add_argument("seq", type=int, help="the event's sequence number (its leaf index)")
    s.add_argument("--size", type=int, help="the tree size (default: the current one)")
    s.set_defaults(fn=cmd_audit_prove)
    s = audit.add_parser("consistency", parents=[client], help="a consistency proof between two sizes (regulator)")
    s.add_argument("--from", dest="first", type=int, required=True)
    s.add_argument("--to", type=int, help="default: the current size")
    s.set_defaults(fn=cmd_audit_consistency)
    s = audit.add_parser("verify", parents=[client], help="the whole log, or with --state what was added since")
    s.add_argument("--key", required=True)
    s.add_argument("--state", help="the last run's state: later runs read only the new events")
    s.add_argument("--full", action="store_true", help="re-read every event even with --state")
    s.add_argument("--sample", type=int, default=DEFAULT_SAMPLE, metavar="K",
                   help=f"with --state: also re-read K random events verified on earlier runs and check each by "
                        f"inclusion proof (default {DEFAULT_SAMPLE}; 0: none)")
    s.add_argument("--bundle", help="verify an exported bundle offline instead (no gateway)")
    s.set_defaults(fn=cmd_audit_verify)
    s = audit.add_parser("cosigner-key", parents=[common], help="a regulator's cosigning key (offline)")
    s.add_argument("--name", required=True, help="the cosigner's name, e.g. regulator.example/custos-witness")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_audit_cosigner_key)
    s = audit.add_parser("cosign", parents=[client], help="cosign the checkpoint the state verified (regulator)")
    s.add_argument("--key", required=True)
    s.add_argument("--state", required=True)
    s.set_defaults(fn=cmd_audit_cosign)
    s = audit.add_parser("export", parents=[client], help="the log as a C2SP tlog-tiles bundle (regulator)")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_audit_export)
    return p


def _fail(args: argparse.Namespace | None, code: str, message: str, extra: dict[str, Any] | None = None) -> int:
    if args is not None and getattr(args, "json", False):
        print(json.dumps({"error": {"code": code, "message": message, **(extra or {})}}, ensure_ascii=False))
    print(f"error: {code}: {message}", file=sys.stderr)
    return EXIT_ERROR


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a pipeline cut short


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("CUSTOS_LOG_LEVEL", "INFO"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    from custos_client import CustosError as ClientError

    try:
        args.fn(args)
    except PolicyError as err:
        return _fail(args, err.code, err.detail)
    except CustosError as err:
        return _fail(args, err.code, err.message)
    except ClientError as err:
        seq = getattr(err, "seq", None)
        return _fail(args, err.code, err.message, {"seq": seq} if seq is not None else None)
    except ImportBroken as err:
        return _fail(args, err.code, err.message, {"stored": err.stored})
    except CliError as err:
        return _fail(args, err.code, err.message)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`custos ... | head`): nothing more can be written, and that is no error of ours.
        # Point stdout at /dev/null so the interpreter's own final flush does not fail as well.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # noqa: BLE001 - never a traceback; never the exception text (it may hold a value)
        return _fail(args, Code.INTERNAL, f"unexpected {type(exc).__name__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
