"""A Diameter S13 client: an MME's side of the ME-Identity-Check, for tests and load.

:class:`S13Client` connects over TCP, runs the capabilities exchange, and sends
ECRs, many in flight on one connection (answers are matched by hop-by-hop id). Requests
are built once by python-diameter as a template and then patched in place (hop-by-hop
and end-to-end ids, Session-Id, IMEI, Software-Version, User-Name are fixed-width), so
the client costs little next to the server it measures; answers are read by a small
AVP scanner (:func:`avps`) that a test can check against python-diameter and tshark.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from dataclasses import dataclass
from typing import Any, cast

from diameter.message import Message
from diameter.message.avp.grouped import TerminalInformation, VendorSpecificApplicationId
from diameter.message.commands import (
    CapabilitiesExchangeRequest,
    DeviceWatchdogRequest,
    DisconnectPeerRequest,
)
from diameter.message.commands.me_identity_check import MeIdentityCheckRequest

VENDOR_3GPP = 10415
S13 = 16777252
RESULT_CODE = 268
EXPERIMENTAL_RESULT = 297
EXPERIMENTAL_RESULT_CODE = 298
EQUIPMENT_STATUS = 1445
FAILED_AVP = 279
SESSION_ID = 263
_HEADER = struct.Struct(">B3sB3sIII")


@dataclass(frozen=True, slots=True)
class Answer:
    """What an ECA (or any answer) said."""

    command: int
    flags: int
    hop_by_hop: int
    end_to_end: int
    result_code: int | None
    experimental_result_code: int | None
    equipment_status: int | None
    session_id: str
    raw: bytes


def avps(data: bytes, at: int = 20) -> list[tuple[int, int, bytes]]:
    """The (code, vendor, value) of each AVP in *data* from offset *at* (RFC 6733 §4.1)."""
    out = []
    end = len(data)
    while at + 8 <= end:
        code, flags_length = struct.unpack_from(">II", data, at)
        flags, length = flags_length >> 24, flags_length & 0xFFFFFF
        head = 12 if flags & 0x80 else 8
        vendor = struct.unpack_from(">I", data, at + 8)[0] if flags & 0x80 else 0
        if length < head:
            raise ValueError(f"AVP {code} has length {length}")
        out.append((code, vendor, data[at + head : at + length]))
        at += (length + 3) & ~3
    return out


def parse_answer(data: bytes) -> Answer:
    """The fields of one answer message."""
    _v, _len, flags, command, _app, hop, e2e = _HEADER.unpack_from(data)
    result = experimental = status = None
    session = ""
    for code, vendor, value in avps(data):
        if code == RESULT_CODE and vendor == 0:
            result = int.from_bytes(value, "big")
        elif code == EQUIPMENT_STATUS and vendor == VENDOR_3GPP:
            status = int.from_bytes(value, "big")
        elif code == SESSION_ID:
            session = value.decode()
        elif code == EXPERIMENTAL_RESULT:
            for inner, _vendor, inner_value in avps(value, 0):
                if inner == EXPERIMENTAL_RESULT_CODE:
                    experimental = int.from_bytes(inner_value, "big")
    return Answer(
        int.from_bytes(command, "big"),
        flags,
        hop,
        e2e,
        result,
        experimental,
        status,
        session,
        data,
    )


def cer(origin_host: str, realm: str, applications: tuple[int, ...] = (S13,)) -> bytes:
    request = CapabilitiesExchangeRequest()
    request.header.hop_by_hop_identifier = 1
    request.header.end_to_end_identifier = 1
    request.origin_host = origin_host.encode()
    request.origin_realm = realm.encode()
    request.host_ip_address = ["127.0.0.1"]
    request.vendor_id = VENDOR_3GPP
    request.product_name = "ceir-loadtest-mme"
    request.supported_vendor_id = [VENDOR_3GPP]
    request.vendor_specific_application_id = [
        VendorSpecificApplicationId(vendor_id=VENDOR_3GPP, auth_application_id=app)
        for app in applications
    ]
    return bytes(request.as_bytes())


def dwr(origin_host: str, realm: str, hop: int) -> bytes:
    request = DeviceWatchdogRequest()
    request.header.hop_by_hop_identifier = hop
    request.header.end_to_end_identifier = hop
    request.origin_host = origin_host.encode()
    request.origin_realm = realm.encode()
    return bytes(request.as_bytes())


def dpr(origin_host: str, realm: str, hop: int) -> bytes:
    request = DisconnectPeerRequest()
    request.header.hop_by_hop_identifier = hop
    request.header.end_to_end_identifier = hop
    request.origin_host = origin_host.encode()
    request.origin_realm = realm.encode()
    request.disconnect_cause = 0
    return bytes(request.as_bytes())


def ecr(
    origin_host: str,
    realm: str,
    *,
    hop: int = 1,
    session_id: str | None = "mme;1;1",
    imei: str | None = "35209900176148",
    software_version: str | None = "01",
    user_name: str | None = None,
    terminal_information: bool = True,
    application: int = S13,
) -> bytes:
    """One ECR built by python-diameter; ``None`` leaves that AVP out."""
    request = MeIdentityCheckRequest()
    request.header.application_id = application
    request.header.hop_by_hop_identifier = hop
    request.header.end_to_end_identifier = hop ^ 0x5A5A5A5A
    request.session_id = session_id
    request.auth_session_state = 1
    request.origin_host = origin_host.encode()
    request.origin_realm = realm.encode()
    request.destination_realm = b"localdomain"
    if terminal_information:
        request.terminal_information = TerminalInformation(
            imei=imei, software_version=software_version
        )
    if user_name is not None:
        request.user_name = user_name
    return bytes(request.as_bytes())


class EcrTemplate:
    """ECRs of fixed-width fields, patched into a copy of one encoded request."""

    def __init__(self, origin_host: str, realm: str) -> None:
        self.session_prefix = f"{origin_host};".encode()
        data = ecr(
            origin_host,
            realm,
            hop=0x01020304,
            session_id=f"{origin_host};" + "0" * 16,
            imei="1" * 14,
            software_version="22",
            user_name="3" * 15,
        )
        self.data = data
        self.session_at = data.index(self.session_prefix + b"0" * 16) + len(self.session_prefix)
        self.imei_at = data.index(b"1" * 14)
        self.sv_at = data.index(b"22", self.imei_at + 14)
        self.user_at = data.index(b"3" * 15)

    def build(self, hop: int, imei14: str, imsi15: str, software_version: str = "01") -> bytes:
        out = bytearray(self.data)
        struct.pack_into(">II", out, 12, hop, hop)
        out[self.session_at : self.session_at + 16] = b"%016x" % hop
        out[self.imei_at : self.imei_at + 14] = imei14.encode()
        out[self.sv_at : self.sv_at + 2] = software_version.encode()
        out[self.user_at : self.user_at + 15] = imsi15.encode()
        return bytes(out)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.pending: dict[int, asyncio.Future[Answer]] = {}
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.requests: asyncio.Queue[Answer] = asyncio.Queue()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        at = 0
        while len(buffer) - at >= 20:
            length = int.from_bytes(buffer[at + 1 : at + 4], "big")
            if len(buffer) - at < length:
                break
            answer = parse_answer(bytes(buffer[at : at + length]))
            at += length
            if answer.flags & 0x80:  # a request from the server (DPR, DWR)
                self.requests.put_nowait(answer)
                continue
            future = self.pending.pop(answer.hop_by_hop, None)
            if future is not None and not future.done():
                future.set_result(answer)
        del buffer[:at]

    def connection_lost(self, exc: Exception | None) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("the server closed the connection"))
        self.pending.clear()
        if not self.closed.done():
            self.closed.set_result(None)


class S13Client:
    """One MME's Diameter connection to an EIR."""

    def __init__(self, origin_host: str = "mme.localdomain", realm: str = "localdomain") -> None:
        self.origin_host = origin_host
        self.realm = realm
        self.template = EcrTemplate(origin_host, realm)
        self._hops = itertools.count(0x100)
        self._protocol: _Protocol | None = None
        self._outgoing: list[bytes] = []
        self.cea: Answer | None = None

    async def connect(self, host: str, port: int, *, exchange: bool = True) -> Answer | None:
        """Open the connection and (unless told not to) run CER/CEA; returns the CEA."""
        loop = asyncio.get_running_loop()
        _transport, protocol = await loop.create_connection(_Protocol, host, port)
        self._protocol = protocol
        if exchange:
            self.cea = await self.request(cer(self.origin_host, self.realm), 1)
        return self.cea

    async def request(self, data: bytes, hop: int | None = None) -> Answer:
        """Send one request (its hop-by-hop id *hop*, read from it if not given)."""
        protocol = self._protocol
        assert protocol is not None
        assert protocol.transport is not None
        if hop is None:
            hop = struct.unpack_from(">I", data, 12)[0]
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        protocol.pending[hop] = future
        protocol.transport.write(data)
        return await future

    def send(self, data: bytes) -> None:
        """Write bytes as they are (garbage tests)."""
        assert self._protocol is not None
        assert self._protocol.transport is not None
        self._protocol.transport.write(data)

    async def check(self, imei14: str, imsi15: str = "510100000000001") -> Answer:
        hop = next(self._hops) & 0xFFFFFFFF
        return await self.request(self.template.build(hop, imei14, imsi15), hop)

    def check_nowait(self, imei14: str, imsi15: str = "510100000000001") -> asyncio.Future[Answer]:
        """Send an ECR now; the future gets its ECA (pipelining, no await per request)."""
        hop = self.next_hop()
        return self.request_nowait(self.template.build(hop, imei14, imsi15), hop)

    def next_hop(self) -> int:
        return next(self._hops) & 0xFFFFFFFF

    def request_nowait(self, data: bytes, hop: int) -> asyncio.Future[Answer]:
        """Send one request whose hop-by-hop id is *hop*; the future gets its answer.

        Requests made in the same event-loop turn leave in one write (as an MME with
        many attaches in flight pipelines them): one syscall, not one per request."""
        protocol = self._protocol
        assert protocol is not None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        protocol.pending[hop] = future
        if not self._outgoing:
            loop.call_soon(self._flush)
        self._outgoing.append(data)
        return future

    def _flush(self) -> None:
        data, self._outgoing = self._outgoing, []
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None and data:
            protocol.transport.write(b"".join(data))

    async def server_request(self) -> Answer:
        """The next request the server sent (a DPR when it stops)."""
        assert self._protocol is not None
        return await self._protocol.requests.get()

    async def closed(self) -> None:
        """Wait until the server closed the connection."""
        assert self._protocol is not None
        await self._protocol.closed

    def answer_dpr(self, dpr_answer: Answer) -> None:
        """Send the DPA to a DPR the server sent."""
        request: Any = Message.from_bytes(dpr_answer.raw)
        answer = request.to_answer()
        answer.result_code = 2001
        answer.origin_host = self.origin_host.encode()
        answer.origin_realm = self.realm.encode()
        self.send(bytes(answer.as_bytes()))

    async def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
            await self._protocol.closed
