"""freeDiameter, an independent Diameter stack (Debian ``freediameterd``), as ceir's peer.

``freeDiameterd`` plays the MME's Diameter node: it connects to a real ``ceir serve``,
runs the capabilities exchange to the OPEN state, exchanges watchdogs, and disconnects
with DPR/DPA — both when it stops and when ceir stops. A peer not in ``--s13-peers`` is
refused with 3010 and never reaches OPEN. (freeDiameter has no S13 client in Debian, so
the ECR itself is checked by the other tests and by tshark.) ``./scripts/setup``
installs freediameterd where it can; without it these tests skip.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ceir.security.certs import DevCA
from tests.network.test_s13_serve import Served, _start

FREEDIAMETER = shutil.which("freeDiameterd")
pytestmark = [
    pytest.mark.skipif(
        FREEDIAMETER is None,
        reason="freeDiameterd is not installed (apt-get install freediameterd; scripts/setup does)",
    ),
    pytest.mark.timeout(120),
]


def _conf(tmp_path: Path, port: int, realm: str = "localdomain") -> Path:
    """A freeDiameter node "mme.localdomain" in *realm* that connects to ceir on *port*
    over TCP."""
    issued = DevCA().server(("mme.localdomain",))
    (tmp_path / "fd.pem").write_bytes(issued.cert)
    (tmp_path / "fd.key").write_bytes(issued.key)
    conf = tmp_path / "fd.conf"
    conf.write_text(
        f"""Identity = "mme.localdomain";
Realm = "{realm}";
Port = 0;
SecPort = 0;
No_SCTP;
No_IPv6;
ListenOn = "127.0.0.1";
TLS_Cred = "{tmp_path / "fd.pem"}", "{tmp_path / "fd.key"}";
TLS_CA = "{tmp_path / "fd.pem"}";
TcTimer = 5;
TwTimer = 6;
ConnectPeer = "ceir.localdomain" {{ ConnectTo = "127.0.0.1"; Port = {port}; No_TLS; }};
"""
    )
    return conf


class FreeDiameter:
    def __init__(self, conf: Path, log: Path) -> None:
        self.log = log
        self.handle = log.open("w")
        assert FREEDIAMETER is not None
        self.proc = subprocess.Popen(
            [FREEDIAMETER, "-c", str(conf), "-dd"],
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def wait_for(self, pattern: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            if re.search(pattern, text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"freeDiameter never logged {pattern!r}:\n{text[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.handle.close()


@pytest.fixture
def ceir(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Served]:
    args = getattr(request, "param", ())
    served = _start(tmp_path, "--workers", "1", "--s13", "127.0.0.1:0", *args)
    try:
        yield served
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait()
        served.handle.close()


def test_freediameter_opens_watches_and_disconnects(ceir: Served, tmp_path: Path) -> None:
    """freeDiameter reaches STATE_OPEN on ceir's CEA 2001, gets DWAs to its DWRs, and on
    stopping gets a DPA to its DPR."""
    fd = FreeDiameter(_conf(tmp_path, ceir.s13), tmp_path / "fd.log")
    try:
        fd.wait_for(r"'STATE_WAITCEA'\s+-> 'STATE_OPEN'\s+'ceir.localdomain'")
        text = fd.wait_for(r"RCV from 'ceir.localdomain': .*0/280 f:----", timeout=30)
        assert "DIAMETER_SUCCESS" in text
        fd.proc.send_signal(signal.SIGTERM)
        fd.wait_for(r"RCV from 'ceir.localdomain': .*0/282 f:----")
        fd.wait_for(r"'STATE_CLOSING_GRACE'\s+-> 'STATE_CLOSING'")
    finally:
        fd.stop()
    assert "S13 peer mme.localdomain" in ceir.log.read_text()


def test_ceir_stopping_sends_freediameter_a_dpr(ceir: Served, tmp_path: Path) -> None:
    """On SIGTERM ceir sends the open peer a DPR; freeDiameter answers it, and ceir exits 0
    well within its grace period."""
    fd = FreeDiameter(_conf(tmp_path, ceir.s13), tmp_path / "fd.log")
    try:
        fd.wait_for(r"-> 'STATE_OPEN'")
        started = time.monotonic()
        ceir.proc.send_signal(signal.SIGTERM)
        assert ceir.proc.wait(timeout=20) == 0
        took = time.monotonic() - started
        fd.wait_for(r"RCV from 'ceir.localdomain': .*0/282 f:R")
    finally:
        fd.stop()
    assert took < 5  # the DPA came back: no waiting out the 5 s grace


def test_freediameter_in_a_3gpp_realm_is_that_operator(ceir: Served, tmp_path: Path) -> None:
    """freeDiameter in realm epc.mnc010.mcc510.3gppnetwork.org (its CER's Origin-Realm)
    is taken for operator 510-10 (TS 23.003 §19.2), as ceir's log says on connection."""
    realm = "epc.mnc010.mcc510.3gppnetwork.org"
    fd = FreeDiameter(_conf(tmp_path, ceir.s13, realm), tmp_path / "fd.log")
    try:
        fd.wait_for(r"'STATE_WAITCEA'\s+-> 'STATE_OPEN'\s+'ceir.localdomain'")
        deadline = time.monotonic() + 10
        while "operator 510-10" not in ceir.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        fd.stop()
    assert "S13 peer mme.localdomain" in ceir.log.read_text()
    assert "connected, operator 510-10" in ceir.log.read_text()


@pytest.mark.parametrize("ceir", [("--s13-peers", "mme1.operator.example")], indirect=True)
def test_freediameter_not_in_peers_is_refused(ceir: Served, tmp_path: Path) -> None:
    """A peer whose Origin-Host is not in --s13-peers gets CEA 3010 (DIAMETER_UNKNOWN_PEER)
    and never reaches STATE_OPEN."""
    fd = FreeDiameter(_conf(tmp_path, ceir.s13), tmp_path / "fd.log")
    try:
        text = fd.wait_for(r"3010|DIAMETER_UNKNOWN_PEER")
        time.sleep(1)
        text = fd.log.read_text(errors="replace")
    finally:
        fd.stop()
    assert "-> 'STATE_OPEN'" not in text
    assert "not in --s13-peers" in ceir.log.read_text()
