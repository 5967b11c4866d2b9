"""gateway/pki.py: the CA, leaf certificates and identity bundles, and the one rule of identity, `org_id_of`."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from gateway.pki import (
    ORG_URI_PREFIX,
    PACKET_VKEY,
    check_issued,
    create_ca,
    issue,
    issue_org_bundle,
    issue_server,
    org_id_of,
)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ca")
    create_ca(root / "ca.crt", root / "ca.key")
    return root / "ca.crt", root / "ca.key"


def _leaf(ca: tuple[Path, Path], tmp_path: Path, name: str, **kw: object) -> x509.Certificate:
    issue(ca[0], ca[1], tmp_path / f"{name}.crt", tmp_path / f"{name}.key", cn=name, **kw)  # type: ignore[arg-type]
    return x509.load_pem_x509_certificate((tmp_path / f"{name}.crt").read_bytes())


def test_the_ca_key_is_owner_only_and_the_ca_is_a_ca(ca: tuple[Path, Path]) -> None:
    assert stat.S_IMODE(ca[1].stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(ca[0].read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


@pytest.mark.parametrize(("uris", "org"), [
    ([ORG_URI_PREFIX + "agency-x"], "agency-x"),
    ([], None),                                                   # no SAN at all
    (["urn:other:agency-x"], None),                               # a URI that names no org
    ([ORG_URI_PREFIX], None),                                     # the prefix and nothing after it
    ([ORG_URI_PREFIX + "agency-x", ORG_URI_PREFIX + "agency-y"], None),  # ambiguous
    ([ORG_URI_PREFIX + "agency-x", "https://example.invalid/"], None),  # ambiguous too
])
def test_org_id_of_takes_exactly_one_org_uri(ca: tuple[Path, Path], tmp_path: Path, uris: list[str],
                                             org: str | None) -> None:
    assert org_id_of(_leaf(ca, tmp_path, "leaf", uris=uris)) == org


def test_a_dns_name_alone_names_no_org(ca: tuple[Path, Path], tmp_path: Path) -> None:
    assert org_id_of(_leaf(ca, tmp_path, "leaf", dns=["agency-x.example.invalid"])) is None


def test_an_org_bundle_holds_its_certificate_key_ca_and_packet_key(ca: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    issue_org_bundle(ca[0], ca[1], out, "law-x", packet_vkey="custos.test/packet+00000000+AAAA\n")
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert stat.S_IMODE((out / "client.key").stat().st_mode) == 0o600
    assert (out / "ca.crt").read_bytes() == ca[0].read_bytes()
    assert (out / PACKET_VKEY).read_text() == "custos.test/packet+00000000+AAAA\n"
    cert = check_issued(ca[0], (out / "client.crt").read_bytes())
    assert org_id_of(cert) == "law-x"
    with pytest.raises(FileExistsError):  # a key file is never overwritten
        issue_org_bundle(ca[0], ca[1], out, "law-x")


def test_the_server_certificate_names_loopback_and_the_given_hosts(ca: tuple[Path, Path], tmp_path: Path) -> None:
    issue_server(ca[0], ca[1], tmp_path / "s.crt", tmp_path / "s.key", ["gw.example.invalid", "10.0.0.7"])
    cert = x509.load_pem_x509_certificate((tmp_path / "s.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "gw.example.invalid"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1", "10.0.0.7"]
    assert org_id_of(cert) is None


def test_check_issued_refuses_another_ca_and_a_certificate_out_of_its_validity(ca: tuple[Path, Path],
                                                                             tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    create_ca(other / "ca.crt", other / "ca.key")
    issue(other / "ca.crt", other / "ca.key", tmp_path / "x.crt", tmp_path / "x.key", cn="x")
    with pytest.raises(ValueError):
        check_issued(ca[0], (tmp_path / "x.crt").read_bytes())
    now = datetime.now(UTC)
    issue(ca[0], ca[1], tmp_path / "old.crt", tmp_path / "old.key", cn="old",
          not_before=now - timedelta(days=10), not_after=now - timedelta(days=1))
    with pytest.raises(ValueError, match="not valid now"):
        check_issued(ca[0], (tmp_path / "old.crt").read_bytes())
    assert check_issued(ca[0], (tmp_path / "old.crt").read_bytes(), now=now - timedelta(days=5)).subject
