"""The certificate deny-list and the file watch that makes revocation live."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from ceir.cli.app import main
from ceir.errors import ConfigError
from ceir.security.certs import DEMO_PRINCIPALS, DevCA
from ceir.security.trust import CertDenyList, Trust
from ceir.server.reload import Reloader
from tests.cli.test_first_hour import ceir, one_line


@pytest.fixture(scope="module")
def issued() -> tuple[bytes, bytes]:
    ca = DevCA()
    return ca.client(DEMO_PRINCIPALS[0]).cert, ca.client(DEMO_PRINCIPALS[1]).cert


def test_a_certificate_is_denied_by_fingerprint_or_by_serial(issued: tuple[bytes, bytes]) -> None:
    """Either spelling openssl prints (upper case with colons, 0x and leading zeros) names
    the certificate; the other certificate is not denied."""
    one, other = issued
    cert = x509.load_pem_x509_certificate(one)
    fingerprint = ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))
    by_fp = CertDenyList.parse(f"sha256:{fingerprint}  # telkomsel\n", "f")
    by_serial = CertDenyList.parse(f"\n# a comment\nSERIAL: 0x00{cert.serial_number:X}\n", "f")
    for denied in (by_fp, by_serial):
        assert len(denied) == 1
        assert denied.denies(one)
        assert not denied.denies(other)
    assert not CertDenyList().denies(one)


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("sha256:abcd", "64 hex digits"),
        ("serial:xyz", "not hexadecimal"),
        ("5d1a9f", "neither sha256:FINGERPRINT nor serial:HEX"),
        ("serial:" + "1" * 43, "at most 20 bytes"),
    ],
)
def test_a_bad_deny_list_line_is_refused_with_its_line_number(line: str, fragment: str) -> None:
    """A line that names no certificate is a ConfigError naming the file and line."""
    with pytest.raises(ConfigError, match=fragment) as caught:
        CertDenyList.parse(f"# ok\n{line}\n", "deny.txt")
    assert "deny.txt line 2" in str(caught.value)


def test_ceir_certs_revoke_adds_each_certificate_once(tmp_path: Path) -> None:
    """`ceir certs revoke` appends a PEM's fingerprint or a given serial, never twice, and
    `ceir certs DIR` still writes a development PKI."""
    runner = CliRunner()
    pki = tmp_path / "pki"
    assert runner.invoke(main, ["certs", str(pki)]).exit_code == 0
    deny = tmp_path / "deny.txt"
    args = ["certs", "revoke", str(pki / "indosat.pem"), "serial:0A0B", "--cert-deny", str(deny)]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    again = runner.invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "(2 already in" in again.output
    lines = [line for line in deny.read_text().splitlines() if line]
    assert len(lines) == 2
    denied = CertDenyList.load(deny)
    assert denied.serials == {"a0b"}
    assert denied.denies((pki / "indosat.pem").read_bytes())
    assert not denied.denies((pki / "telkomsel.pem").read_bytes())
    bad = runner.invoke(main, ["certs", "revoke", str(tmp_path / "nope.pem"), "--cert-deny",
                               str(deny)])  # fmt: skip
    assert bad.exit_code == 6, bad.output
    assert "cannot read it" in bad.output


def test_serve_refuses_a_missing_deny_list_or_one_without_client_ca(tmp_path: Path) -> None:
    """`--cert-deny` names a file that must exist, and needs mutual TLS: one line, exit 6."""
    pki = tmp_path / "pki"
    assert ceir("certs", pki).code == 0
    tls = ("--tls-cert", pki / "server.pem", "--tls-key", pki / "server.key")
    base = ("serve", "--db", tmp_path / "db", "--port", "0", "--s13", "off", "--web", "off",
            "--sbi", "off", *tls)  # fmt: skip
    for workers in ("1", "2"):
        ran = ceir(*base, "--client-ca", pki / "ca.pem", "--cert-deny", tmp_path / "missing",
                   "--workers", workers)  # fmt: skip
        one_line(ran, 6, "cannot read the certificate deny-list")
    one_line(ceir(*base, "--cert-deny", tmp_path / "x"), 6, "needs --client-ca")


def test_the_watch_reloads_a_changed_file_and_keeps_the_old_when_it_is_broken(
    tmp_path: Path, issued: tuple[bytes, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    """A replaced deny-list is loaded at the next look; a broken one is logged and the
    list in force stays; an untouched file is not read again."""
    one, _other = issued
    deny = tmp_path / "deny.txt"
    deny.write_text("")
    trust = Trust.load(None, deny)
    reloader = Reloader()
    calls: list[str] = []

    def hook() -> str:
        calls.append("reload")
        return trust.reload_denied()

    reloader.add("certificate deny-list", hook, watch=deny)
    serial = x509.load_pem_x509_certificate(one).serial_number

    async def scenario() -> None:
        watching = asyncio.create_task(reloader.watch(0.05))
        await asyncio.sleep(0.2)
        assert calls == []  # nothing changed
        (tmp_path / "new").write_text(f"serial:{serial:x}\n")
        (tmp_path / "new").replace(deny)
        for _ in range(40):
            await asyncio.sleep(0.05)
            if trust.revoked(one):
                break
        assert trust.revoked(one)
        deny.write_text("not an entry\n")
        for _ in range(40):
            await asyncio.sleep(0.05)
            if len(calls) == 2:
                break
        watching.cancel()

    with caplog.at_level(logging.INFO, logger="ceir.server.reload"):
        asyncio.run(scenario())
    assert len(calls) == 2
    assert trust.revoked(one)  # the broken file did not clear the list
    assert any("cannot reload certificate deny-list" in r.message for r in caplog.records)
