"""The ECR -> ECA hot path: the common ME-Identity-Check without building message objects.

python-diameter decodes an ECR into objects and encodes the ECA from them (about 70 µs
on this machine before any lookup; see ``scripts/bench_s13``). Almost every ECR is the
same shape, so :func:`scan` reads only what the answer needs (Session-Id,
Terminal-Information's IMEI, User-Name) straight from the bytes, and
:class:`Answers` writes the ECA as the header, the echoed Session-Id and one of a few
precomputed tails. The tails are cut from ECAs python-diameter itself encoded, so the
bytes are the library's (the tests compare both paths on generated requests, and
tshark reads the result). Anything unusual (a missing or repeated AVP, a value that
is not text, a length that does not add up) returns ``None`` and the caller takes the
library path, which also answers the errors (5005 with Failed-AVP).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ceir.network import _diameter as dia

_AVP_USER_NAME = 1
_AVP_SOFTWARE_VERSION = 1403


class EcrFields(NamedTuple):
    """What an ECA depends on, from one ECR."""

    session_id: bytes
    """The raw Session-Id value (valid UTF-8), echoed as it came."""
    imei: str
    user_name: str | None


def _avps(data: bytes, at: int, end: int) -> list[tuple[int, int, int, int]] | None:
    """(code, vendor, value start, value end) of the AVPs in data[at:end]; None when the
    lengths do not tile the range exactly (RFC 6733 §4.1, values padded to 4 bytes)."""
    out = []
    while at < end:
        if end - at < 8:
            return None
        code = int.from_bytes(data[at : at + 4], "big")
        flags = data[at + 4]
        length = int.from_bytes(data[at + 5 : at + 8], "big")
        head = 12 if flags & 0x80 else 8
        if length < head or at + length > end:
            return None
        vendor = int.from_bytes(data[at + 8 : at + 12], "big") if head == 12 else 0
        out.append((code, vendor, at + head, at + length))
        at += (length + 3) & ~3
    return out if at == end else None


_SESSION = (dia.AVP_SESSION_ID, 0)
_INFO = (dia.AVP_TERMINAL_INFORMATION, dia.VENDOR_3GPP)
_USER = (_AVP_USER_NAME, 0)
_WANTED = frozenset({_SESSION, _INFO, _USER})


def scan(raw: bytes) -> EcrFields | None:
    """The fields of an ECR (a request of command 324 under application 16777252, which
    the caller checked), or None when it is not the common shape."""
    top = _avps(raw, dia.HEADER_BYTES, len(raw))
    if top is None:
        return None
    found: dict[tuple[int, int], tuple[int, int]] = {}
    for code, vendor, start, end in top:
        key = (code, vendor)
        if key in _WANTED:
            if key in found:
                return None  # a repeated AVP: the library path decides
            found[key] = (start, end)
    if _SESSION not in found or _INFO not in found:
        return None
    session = raw[slice(*found[_SESSION])]
    imei = _imei(raw, *found[_INFO])
    user = raw[slice(*found[_USER])] if _USER in found else None
    if not session or not imei:
        return None
    try:
        session.decode()
        imei_text = imei.decode()
        user_text = None if user is None else user.decode()
    except UnicodeDecodeError:
        return None
    return EcrFields(session, imei_text, user_text)


def _imei(raw: bytes, start: int, end: int) -> bytes | None:
    """The IMEI in a Terminal-Information of IMEI and Software-Version only; else None."""
    inner = _avps(raw, start, end)
    if inner is None:
        return None
    imei = None
    for code, vendor, value_start, value_end in inner:
        if vendor != dia.VENDOR_3GPP or code not in (dia.AVP_IMEI, _AVP_SOFTWARE_VERSION):
            return None  # a 3GPP2-MEID or anything else: the library path
        if code == dia.AVP_IMEI:
            if imei is not None:
                return None
            imei = raw[value_start:value_end]
    return imei


class Answers:
    """ECAs for one identity: 2001 with Equipment-Status 0, 1 or 2, or 5422."""

    def __init__(self, identity: dia.Identity, library_ecr: Any) -> None:
        """*library_ecr*: any ECR decoded by python-diameter (the tails do not depend on
        it beyond the Session-Id, which is cut off)."""
        self._status_tails = [
            self._tail(identity.eca(library_ecr, equipment_status=status)) for status in (0, 1, 2)
        ]
        self._unknown_tail = self._tail(
            identity.eca(library_ecr, result=dia.ResultCode.ERROR_EQUIPMENT_UNKNOWN)
        )

    @staticmethod
    def _tail(eca: bytes) -> bytes:
        """An encoded ECA after its header and Session-Id (which the library puts first)."""
        first = _avps(eca, dia.HEADER_BYTES, len(eca))
        assert first is not None
        assert first[0][0] == dia.AVP_SESSION_ID
        return eca[(first[0][3] + 3) & ~3 :]

    def eca(self, raw: bytes, session_id: bytes, equipment_status: int | None) -> bytes:
        """The ECA to the ECR *raw*: Equipment-Status 0/1/2, or None for 5422."""
        if equipment_status is None:
            tail = self._unknown_tail
        else:
            tail = self._status_tails[equipment_status]
        size = 8 + len(session_id)
        padding = b"\x00" * (-size % 4)
        length = dia.HEADER_BYTES + size + len(padding) + len(tail)
        return b"".join(
            (
                b"\x01",
                length.to_bytes(3, "big"),
                b"\x40\x00\x01\x44",  # flags: proxyable answer; command 324
                raw[8:20],  # application id, hop-by-hop and end-to-end ids, as they came
                b"\x00\x00\x01\x07\x40",  # Session-Id, M bit
                size.to_bytes(3, "big"),
                session_id,
                padding,
                tail,
            )
        )
