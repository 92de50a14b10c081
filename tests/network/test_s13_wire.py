"""The S13 face's wire bytes, read by an independent decoder: Wireshark's tshark.

A real exchange with the face (CER/CEA, ECRs/ECAs, DWR/DWA) is captured as the bytes
that crossed the socket, written into a pcap (raw IPv4 + TCP, one message per segment)
and decoded by ``tshark``; its Diameter dissector must find the fields TS 29.272 and
RFC 6733 require, and nothing malformed. ``./scripts/setup`` installs tshark (Debian
package ``tshark``) where it can.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from ceir.store import Store, demo
from loadtest import diameter as client
from tests.network._s13 import face

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(
    TSHARK is None, reason="tshark is not installed (apt-get install tshark; scripts/setup does)"
)

MME = "mme.localdomain"
REALM = "localdomain"
IMSI = "510109876543210"
FIELDS = (
    "diameter.cmd.code",
    "diameter.flags.request",
    "diameter.flags.error",
    "diameter.hopbyhopid",
    "diameter.endtoendid",
    "diameter.applicationId",
    "diameter.Session-Id",
    "diameter.Result-Code",
    "diameter.Equipment-Status",
    "diameter.Experimental-Result-Code",
    "diameter.Auth-Session-State",
    "diameter.Origin-Host",
    "diameter.Origin-Realm",
    "diameter.Supported-Vendor-Id",
    "diameter.Auth-Application-Id",
    "diameter.Vendor-Id",
    "diameter.avp.code",
    "_ws.malformed",
)


def write_pcap(path: Path, port: int, segments: list[tuple[bool, bytes]]) -> None:
    """A pcap (LINKTYPE_IPV4) of one TCP connection carrying *segments* in order, each
    (sent by the client?, bytes); sequence numbers follow the bytes, as on the wire."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 228))
    seq = {True: 1000, False: 5000}
    mme, eir = b"\x7f\x00\x00\x02", b"\x7f\x00\x00\x01"
    for i, (from_client, data) in enumerate(segments):
        src, dst = (mme, eir) if from_client else (eir, mme)
        sport, dport = (40000, port) if from_client else (port, 40000)
        tcp = struct.pack(
            ">HHIIBBHHH",
            sport,
            dport,
            seq[from_client],
            seq[not from_client],
            0x50,
            0x18,
            65535,
            0,
            0,
        )
        seq[from_client] += len(data)
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40 + len(data), i, 0, 64, 6, 0, src, dst)
        frame = ip + tcp + data
        out += struct.pack("<IIII", 1_700_000_000, i, len(frame), len(frame)) + frame
    path.write_bytes(out)


def _exchange(store: Store, not_found: bool) -> tuple[int, list[tuple[bool, bytes]]]:
    requests = [
        client.cer(MME, REALM),
        client.ecr(MME, REALM, hop=2, session_id="mme.localdomain;1;2", user_name=IMSI),
        client.ecr(MME, REALM, hop=3, imei="35209900176149"),
        client.ecr(MME, REALM, hop=4, imei="35209900999999"),
        client.ecr(MME, REALM, hop=5, terminal_information=False),
        client.dwr(MME, REALM, 6),
    ]

    async def main() -> tuple[int, list[tuple[bool, bytes]]]:
        segments: list[tuple[bool, bytes]] = []
        async with face(store, unknown_not_found=not_found) as s13:
            mme = client.S13Client(MME, REALM)
            await mme.connect("127.0.0.1", s13.port, exchange=False)
            for request in requests:
                answer = await mme.request(request)
                segments += [(True, request), (False, answer.raw)]
            await mme.close()
            return s13.port, segments

    return asyncio.run(asyncio.wait_for(main(), 20))


def _decode(tmp_path: Path, port: int, segments: list[tuple[bool, bytes]]) -> list[dict[str, str]]:
    pcap = tmp_path / "s13.pcap"
    write_pcap(pcap, port, segments)
    assert TSHARK is not None
    command = [TSHARK, "-r", str(pcap), "-d", f"tcp.port=={port},diameter", "-T", "fields"]
    command += ["-E", "separator=|", "-E", "occurrence=a"]
    for field in FIELDS:
        command += ["-e", field]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    rows = [line.split("|") for line in done.stdout.splitlines() if line]
    return [dict(zip(FIELDS, row, strict=True)) for row in rows]


@pytest.fixture
def demo_store(store: Store) -> Store:
    demo.load(store, int(time.time()))
    return store


def test_tshark_decodes_the_exchange(demo_store: Store, tmp_path: Path) -> None:
    """tshark reads CEA 2001 with S13 advertised, ECAs with ids copied, Session-Id,
    Auth-Session-State 1, Result-Code 2001 and Equipment-Status 0/1, 5005 for a missing
    Terminal-Information, DWA 2001; nothing is malformed."""
    port, segments = _exchange(demo_store, not_found=False)
    rows = _decode(tmp_path, port, segments)
    assert len(rows) == len(segments)
    assert not any(row["_ws.malformed"] for row in rows)
    answers = rows[1::2]
    cea, white, black, unknown, missing, dwa = answers
    assert (cea["diameter.cmd.code"], cea["diameter.Result-Code"]) == ("257", "2001")
    assert cea["diameter.Origin-Host"] == "ceir.localdomain"
    assert cea["diameter.Supported-Vendor-Id"] == "10415"
    assert cea["diameter.Auth-Application-Id"] == "16777252"
    assert "10415" in cea["diameter.Vendor-Id"].split(",")
    for request, answer in zip(rows[2::2], answers[1:], strict=True):
        assert answer["diameter.flags.request"] == "0"
        for field in ("diameter.hopbyhopid", "diameter.endtoendid", "diameter.Session-Id"):
            assert answer[field] == request[field]
    for ecr_answer in (white, black, unknown, missing):
        assert ecr_answer["diameter.cmd.code"] == "324"
        assert ecr_answer["diameter.applicationId"] == "16777252"
        assert ecr_answer["diameter.Auth-Session-State"] == "1"
        assert ecr_answer["diameter.Origin-Realm"] == "localdomain"
    assert white["diameter.Session-Id"] == "mme.localdomain;1;2"
    assert (white["diameter.Result-Code"], white["diameter.Equipment-Status"]) == ("2001", "0")
    assert (black["diameter.Result-Code"], black["diameter.Equipment-Status"]) == ("2001", "1")
    assert (unknown["diameter.Result-Code"], unknown["diameter.Equipment-Status"]) == ("2001", "1")
    assert missing["diameter.Result-Code"] == "5005"
    assert missing["diameter.Equipment-Status"] == ""
    assert "279" in missing["diameter.avp.code"].split(",")  # Failed-AVP
    assert "1401" in missing["diameter.avp.code"].split(",")  # ... naming Terminal-Information
    assert (dwa["diameter.cmd.code"], dwa["diameter.Result-Code"]) == ("280", "2001")
    assert not any(IMSI.encode() in data for from_client, data in segments if not from_client)


def test_tshark_decodes_5422(demo_store: Store, tmp_path: Path) -> None:
    """With --s13-unknown not-found tshark reads Experimental-Result {10415, 5422} and no
    Result-Code or Equipment-Status for the unknown device only."""
    port, segments = _exchange(demo_store, not_found=True)
    rows = _decode(tmp_path, port, segments)
    assert not any(row["_ws.malformed"] for row in rows)
    unknown = rows[7]
    assert unknown["diameter.Experimental-Result-Code"] == "5422"
    assert "10415" in unknown["diameter.Vendor-Id"].split(",")
    assert (unknown["diameter.Result-Code"], unknown["diameter.Equipment-Status"]) == ("", "")
    black = rows[5]
    assert (black["diameter.Result-Code"], black["diameter.Equipment-Status"]) == ("2001", "1")
