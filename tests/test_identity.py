"""Invariant 5: identity comes only from the client certificate chain to the gateway's CA."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from custos_client import CustosClient, CustosClientError, Identity

from gateway import pki
from gateway.transport.server import accepts_tls12
from tests.conftest import Env


def _bundle(env: Env, tmp: Path, name: str, *, uri: str | None, ca: str = "ours", not_before: datetime | None = None,
            not_after: datetime | None = None) -> Path:
    out = tmp / name
    out.mkdir()
    if ca == "ours":
        ca_crt, ca_key = env.data / "tls" / "ca.crt", env.data / "keys" / "ca.key"
    else:
        ca_crt, ca_key = tmp / f"{name}-ca.crt", tmp / f"{name}-ca.key"
        pki.create_ca(ca_crt, ca_key)
    pki.issue(ca_crt, ca_key, out / "client.crt", out / "client.key", cn=name, uris=[uri] if uri else [],
              not_before=not_before, not_after=not_after)
    (out / "ca.crt").write_bytes((env.data / "tls" / "ca.crt").read_bytes())
    return out


def _fails(env: Env, identity: Path | Identity) -> CustosClientError:
    with CustosClient(env.addr, identity, timeout=5) as c, pytest.raises(CustosClientError) as info:
        c.get_case("C-1", "servicing")
    return info.value


def test_certificate_from_another_ca_is_refused(seeded: Env, tmp_path: Path) -> None:
    # Claims lender-a in its SAN, but is signed by a CA the gateway does not trust.
    rogue = _bundle(seeded, tmp_path, "rogue", uri=pki.ORG_URI_PREFIX + "lender-a", ca="other")
    assert _fails(seeded, rogue).code == "UNAVAILABLE"


def test_missing_client_certificate_is_refused(seeded: Env) -> None:
    ca = (seeded.data / "tls" / "ca.crt").read_bytes()
    channel = grpc.secure_channel(seeded.addr, grpc.ssl_channel_credentials(root_certificates=ca))
    from custos_client.v1 import custos_pb2, custos_pb2_grpc

    stub = custos_pb2_grpc.CaseServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.GetCase(custos_pb2.GetCaseRequest(case_id="C-1", purpose="servicing"), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    channel.close()


def test_expired_and_not_yet_valid_certificates_are_refused(seeded: Env, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    expired = _bundle(seeded, tmp_path, "expired", uri=pki.ORG_URI_PREFIX + "lender-a",
                      not_before=now - timedelta(days=30), not_after=now - timedelta(days=1))
    future = _bundle(seeded, tmp_path, "future", uri=pki.ORG_URI_PREFIX + "lender-a",
                     not_before=now + timedelta(days=1), not_after=now + timedelta(days=30))
    assert _fails(seeded, expired).code == "UNAVAILABLE"
    assert _fails(seeded, future).code == "UNAVAILABLE"


def test_certificate_without_a_registered_org_is_unauthenticated(seeded: Env, tmp_path: Path) -> None:
    nobody = _bundle(seeded, tmp_path, "nobody", uri=pki.ORG_URI_PREFIX + "ghost-org")
    no_san = _bundle(seeded, tmp_path, "nosan", uri=None)
    err = _fails(seeded, nobody)
    assert (err.code, err.status) == ("UNKNOWN_ORG", "UNAUTHENTICATED")
    err = _fails(seeded, no_san)
    assert (err.code, err.status) == ("UNKNOWN_ORG", "UNAUTHENTICATED")


def test_metadata_cannot_change_identity(seeded: Env) -> None:
    spoof = [("x-custos-org", "lender-a"), ("org-id", "lender-a"), ("x-forwarded-client-cert", "URI=urn:custos:org:lender-a"),
             ("authorization", "Bearer lender-a")]
    agency = seeded.client("agency-1")
    with pytest.raises(CustosClientError) as info:
        agency.get_case("C-1", "servicing", metadata=spoof)
    assert info.value.code == "PURPOSE_NOT_ALLOWED"
    rec = agency.get_case("C-1", "collection", metadata=spoof)
    assert "bank_account" not in rec.fields and rec.fields["phone"].count("*") == 4
    events = [e for e in seeded.events(case_id="C-1") if e.method == "GetCase"]
    assert [e.org for e in events[-2:]] == ["agency-1", "agency-1"]


def test_wrong_kind_cannot_use_lender_calls(seeded: Env) -> None:
    with pytest.raises(CustosClientError) as info:
        seeded.client("agency-1").set_stage("C-1", "litigation")
    assert info.value.code == "WRONG_ORG_KIND"
    with pytest.raises(CustosClientError) as info:
        seeded.client("agency-1").audit_query()
    assert info.value.code == "WRONG_ORG_KIND"
    assert seeded.client("lender-a").get_case("C-1", "servicing").stage == "reminder"


def _handshake(env: Env, org: str, version: ssl.TLSVersion) -> str:
    """A raw TLS handshake with the org's client certificate, at exactly `version`; returns what was agreed."""
    ident = env.identity(org)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(ident / "ca.crt"))
    ctx.load_cert_chain(str(ident / "client.crt"), str(ident / "client.key"))
    ctx.minimum_version = ctx.maximum_version = version
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", env.gw.port), timeout=5) as sock, \
            ctx.wrap_socket(sock, server_hostname="localhost") as tls:
        return str(tls.version())


def test_only_tls13_is_spoken(env: Env) -> None:
    assert _handshake(env, "agency-1", ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(env, "agency-1", ssl.TLSVersion.TLSv1_2)  # a valid client certificate does not help
    assert accepts_tls12("127.0.0.1", env.gw.port) is False


def test_the_tls12_probe_recognises_a_server_that_speaks_it(tmp_path: Path) -> None:
    """The start-up check must be able to fail: a plain TLS 1.2 server is caught."""
    crt, key = tmp_path / "s.crt", tmp_path / "s.key"
    pki.create_ca(tmp_path / "ca.crt", tmp_path / "ca.key")
    pki.issue(tmp_path / "ca.crt", tmp_path / "ca.key", crt, key, cn="localhost", dns=["localhost"], server=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(crt), str(key))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                try:
                    with ctx.wrap_socket(conn, server_side=True):
                        pass
                except (ssl.SSLError, OSError):
                    pass

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        assert accepts_tls12("127.0.0.1", port) is True
        t.join(5)


def test_gateway_refuses_to_serve_if_grpc_was_loaded_before_the_tls_policy(env_dir: Path) -> None:
    """Imported the wrong way round (grpc first, without the variable), gRPC would accept TLS 1.2: no serving then."""
    script = (
        "import grpc, sys\n"
        "from gateway.core.errors import CustosError\n"
        "from gateway.transport.server import build\n"
        "try:\n"
        "    gw = build(__import__('pathlib').Path(sys.argv[1]), '127.0.0.1:0')\n"
        "except CustosError as e:\n"
        "    print('refused', e.code)\n"
        "else:\n"
        "    gw.stop(); print('served')\n"
    )
    environ = {k: v for k, v in os.environ.items() if k != "GRPC_SSL_CIPHER_SUITES"}
    out = subprocess.run([sys.executable, "-c", script, str(env_dir / "data")], capture_output=True, text=True,
                         timeout=120, env=environ, cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "refused TLS_NOT_ENFORCED", out.stderr[-2000:]


def test_a_certificate_that_expires_during_a_connection_is_refused_at_the_next_call(seeded: Env,
                                                                                   tmp_path: Path) -> None:
    """TLS checks validity only at the handshake; the gate checks it again on every call, and audits."""
    from gateway.core.errors import CustosError as CoreError
    from gateway.transport.calls import caller_of

    now = datetime.now(UTC)
    lapsed = _bundle(seeded, tmp_path, "lapsed", uri=pki.ORG_URI_PREFIX + "lender-a",
                     not_before=now - timedelta(days=30), not_after=now - timedelta(seconds=1))
    pem = (lapsed / "client.crt").read_bytes()

    class Connection:  # what gRPC shows of a connection made while the certificate was still valid
        def auth_context(self) -> dict[str, list[bytes]]:
            return {"x509_pem_cert": [pem]}

        def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
            return ()

    caller = caller_of(Connection(), "GetCase")  # type: ignore[arg-type]
    assert (caller.org_id, caller.problem) == ("lender-a", "CERT_EXPIRED")
    with pytest.raises(CoreError) as info:
        seeded.gw.core.admit(caller)
    assert info.value.code == "CERT_EXPIRED"
    (event,) = [e for e in seeded.events() if e.code == "CERT_EXPIRED"]
    assert (event.org, event.method, event.decision) == ("lender-a", "GetCase", "deny")
