"""Diameter on the wire for the S13 face: framing, the codes it uses, its answers.

Messages are decoded and encoded by python-diameter (``diameter.message``); this module
only cuts a byte stream into messages (RFC 6733 §3: a 20-byte header whose 24-bit
length covers the whole message) and builds the few answers a responder sends: CEA,
DWA, DPA, error answers and the ECA of TS 29.272.
"""

from __future__ import annotations

import enum
import ipaddress
from typing import Any

from diameter.message import Message
from diameter.message.avp import Avp
from diameter.message.avp.grouped import (
    ExperimentalResult,
    FailedAvp,
    VendorSpecificApplicationId,
)
from diameter.message.commands import (
    CapabilitiesExchangeAnswer,
    DeviceWatchdogAnswer,
    DisconnectPeerAnswer,
    DisconnectPeerRequest,
)
from diameter.message.commands.me_identity_check import (
    MeIdentityCheckAnswer,
    MeIdentityCheckRequest,
)

from ceir import __version__

VERSION = 1
HEADER_BYTES = 20
MAX_MESSAGE_BYTES = 65_536
"""A larger message is garbage to an EIR (an ECR is ~200 bytes): the connection closes."""

VENDOR_3GPP = 10415
S13_APPLICATION = 16777252
RELAY_APPLICATION = 0xFFFFFFFF
PRODUCT_NAME = "ceir"

FLAG_REQUEST = 0x80
FLAG_PROXYABLE = 0x40
FLAG_ERROR = 0x20

AVP_SESSION_ID = 263
AVP_TERMINAL_INFORMATION = 1401
AVP_IMEI = 1402


class Command(enum.IntEnum):
    """The command codes the S13 face answers (RFC 6733, TS 29.272)."""

    CAPABILITIES_EXCHANGE = 257
    DEVICE_WATCHDOG = 280
    DISCONNECT_PEER = 282
    ME_IDENTITY_CHECK = 324


class ResultCode(enum.IntEnum):
    """Result-Code and Experimental-Result-Code values the face sends."""

    SUCCESS = 2001
    COMMAND_UNSUPPORTED = 3001
    APPLICATION_UNSUPPORTED = 3007
    UNKNOWN_PEER = 3010
    MISSING_AVP = 5005
    NO_COMMON_APPLICATION = 5010
    ERROR_EQUIPMENT_UNKNOWN = 5422
    """TS 29.272 §7.4.3, sent as an Experimental-Result with vendor 10415."""


class DisconnectCause(enum.IntEnum):
    """Disconnect-Cause of a DPR (RFC 6733 §5.4.3)."""

    REBOOTING = 0
    BUSY = 1
    DO_NOT_WANT_TO_TALK_TO_YOU = 2


class FramingError(ValueError):
    """The bytes on a connection are not Diameter: the connection is closed."""


def split(buffer: bytearray) -> list[bytes]:
    """Remove and return the complete messages at the start of *buffer*.

    Raises :class:`FramingError` when the next header cannot start a Diameter message
    (wrong version, a length below the header or above :data:`MAX_MESSAGE_BYTES`, or
    not a multiple of 4).
    """
    messages = []
    at = 0
    end = len(buffer)
    while end - at >= 4:
        if buffer[at] != VERSION:
            raise FramingError(f"version {buffer[at]} is not Diameter's 1")
        length = int.from_bytes(buffer[at + 1 : at + 4], "big")
        if length < HEADER_BYTES or length > MAX_MESSAGE_BYTES or length % 4:
            raise FramingError(f"message length {length} is not a Diameter length")
        if end - at < length:
            break
        messages.append(bytes(buffer[at : at + length]))
        at += length
    del buffer[:at]
    return messages


def decode(data: bytes) -> Any:
    """One message (its python-diameter object); :class:`FramingError` if it cannot be."""
    try:
        return Message.from_bytes(data)
    except Exception as exc:
        raise FramingError(f"undecodable message: {type(exc).__name__}") from exc


def text(value: Any) -> str:
    """A DiameterIdentity or UTF8String AVP value as text ('' when absent)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def advertises_s13(cer: Any) -> bool:
    """Whether a CER names the S13 application (or the relay application)."""
    wanted = {S13_APPLICATION, RELAY_APPLICATION}
    ids = set(getattr(cer, "auth_application_id", None) or ())
    for vsai in getattr(cer, "vendor_specific_application_id", None) or ():
        ids.add(vsai.auth_application_id)
    return not ids.isdisjoint(wanted)


class Identity:
    """Who this node is: Origin-Host and Origin-Realm, and the answers it builds."""

    def __init__(self, host: str, realm: str) -> None:
        self.host = host.encode()
        self.realm = realm.encode()

    def _origin(self, answer: Any) -> Any:
        answer.origin_host = self.host
        answer.origin_realm = self.realm
        return answer

    def cea(self, cer: Any, result: ResultCode, address: str) -> bytes:
        """The Capabilities-Exchange-Answer to *cer*, from the local *address*."""
        answer = self._origin(cer.to_answer())
        assert isinstance(answer, CapabilitiesExchangeAnswer)
        answer.result_code = int(result)
        if result is not ResultCode.SUCCESS:
            answer.header.command_flags |= FLAG_ERROR
        try:
            ipaddress.ip_address(address)
        except ValueError:
            address = "127.0.0.1"
        answer.host_ip_address = [address]
        answer.vendor_id = 0
        answer.product_name = PRODUCT_NAME
        answer.firmware_revision = _firmware()
        answer.supported_vendor_id = [VENDOR_3GPP]
        answer.vendor_specific_application_id = [
            VendorSpecificApplicationId(vendor_id=VENDOR_3GPP, auth_application_id=S13_APPLICATION)
        ]
        return bytes(answer.as_bytes())

    def dwa(self, dwr: Any) -> bytes:
        answer = self._origin(dwr.to_answer())
        assert isinstance(answer, DeviceWatchdogAnswer)
        answer.result_code = int(ResultCode.SUCCESS)
        return bytes(answer.as_bytes())

    def dpa(self, dpr: Any) -> bytes:
        answer = self._origin(dpr.to_answer())
        assert isinstance(answer, DisconnectPeerAnswer)
        answer.result_code = int(ResultCode.SUCCESS)
        return bytes(answer.as_bytes())

    def dpr(self, hop_by_hop: int, cause: DisconnectCause) -> bytes:
        """A Disconnect-Peer-Request this node sends when it stops."""
        request = self._origin(DisconnectPeerRequest())
        request.header.hop_by_hop_identifier = hop_by_hop
        request.header.end_to_end_identifier = hop_by_hop
        request.disconnect_cause = int(cause)
        return bytes(request.as_bytes())

    def error(self, request: Any, result: ResultCode) -> bytes:
        """An answer with the E bit and *result* to a request this node cannot serve
        (an unknown command or application): RFC 6733 §7.2's generic error answer."""
        answer = Message(request.to_answer().header)
        answer.header.command_flags = (request.header.command_flags & FLAG_PROXYABLE) | FLAG_ERROR
        session = request.find_avps((AVP_SESSION_ID, 0))
        if session:
            answer.append_avp(Avp.new(AVP_SESSION_ID, value=session[0].value))
        answer.append_avp(Avp.new(268, value=int(result)))  # Result-Code
        answer.append_avp(Avp.new(264, value=self.host))  # Origin-Host
        answer.append_avp(Avp.new(296, value=self.realm))  # Origin-Realm
        return bytes(answer.as_bytes())

    def eca(
        self,
        ecr: Any,
        *,
        equipment_status: int | None = None,
        result: ResultCode = ResultCode.SUCCESS,
        failed: list[Any] | None = None,
    ) -> bytes:
        """The ME-Identity-Check-Answer to *ecr*: Result-Code 2001 with
        Equipment-Status, 5422 as an Experimental-Result, or another Result-Code
        (5005 with the *failed* AVPs in Failed-AVP)."""
        answer = self._origin(ecr.to_answer())
        assert isinstance(answer, MeIdentityCheckAnswer)
        answer.session_id = ecr.session_id or ""
        answer.auth_session_state = 1  # NO_STATE_MAINTAINED
        if result is ResultCode.ERROR_EQUIPMENT_UNKNOWN:
            answer.experimental_result = ExperimentalResult(
                vendor_id=VENDOR_3GPP, experimental_result_code=int(result)
            )
        else:
            answer.result_code = int(result)
        if equipment_status is not None:
            answer.equipment_status = equipment_status
        if failed:
            answer.failed_avp = [FailedAvp(additional_avps=failed)]
        return bytes(answer.as_bytes())


def sample_ecr() -> Any:
    """An ECR decoded by python-diameter, to cut answer templates from."""
    request = MeIdentityCheckRequest()
    request.header.application_id = S13_APPLICATION
    request.session_id = "sample;1"
    request.auth_session_state = 1
    request.origin_host = b"sample"
    request.origin_realm = b"sample"
    request.destination_realm = b"sample"
    return decode(bytes(request.as_bytes()))


def missing_session_id() -> Avp:
    """A Session-Id AVP as Failed-AVP names a missing one."""
    return Avp.new(AVP_SESSION_ID, value="")


def missing_terminal_information() -> Avp:
    """A Terminal-Information AVP as Failed-AVP names a missing one (no value)."""
    return Avp.new(AVP_TERMINAL_INFORMATION, VENDOR_3GPP, value=[])


def missing_imei() -> Avp:
    """A Terminal-Information AVP holding an empty IMEI: the IMEI is what is missing."""
    imei = Avp.new(AVP_IMEI, VENDOR_3GPP, value="")
    return Avp.new(AVP_TERMINAL_INFORMATION, VENDOR_3GPP, value=[imei])


def _firmware() -> int:
    """Firmware-Revision: the version's digits (0.1.0 -> 100)."""
    parts = [*__version__.split(".")[:3], "0", "0"][:3]
    try:
        major, minor, patch = (int(p) for p in parts)
    except ValueError:
        return 0
    return major * 10_000 + minor * 100 + patch
