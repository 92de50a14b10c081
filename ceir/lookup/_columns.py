"""The lookup path's column work: what :mod:`ceir.lookup` does to a whole batch at once.

Luhn check digits of many bodies from byte-column slices, the IMEIs of a serialized
batch request read out of its bytes, the fixed tail of each response element built
column by column, and the numpy constants the bulk path shares.
"""

from __future__ import annotations

import functools
import struct

import numpy as np

from ceir import imei as imei_mod

_TAIL = 15 + 10  # an element's bytes after the head: IMEI value, TAC tag and value
_TAIL_SVN = _TAIL + 4  # ... and the SVN's tag, length and value

# Luhn in columns: digit value as is, doubled (digits summed), and sum -> ASCII check digit.
_AS_IS = bytes.maketrans(b"0123456789", bytes(range(10)))
_DOUBLED = bytes.maketrans(b"0123456789", bytes((0, 2, 4, 6, 8, 1, 3, 5, 7, 9)))
_TO_CHECK_DIGIT = bytes(48 + (-s % 10) for s in range(256))
_IS_ZERO = bytes.maketrans(b"0123456789", b"\x01" + bytes(9))
_NOT_DIGITS = bytes(b for b in range(256) if not 48 <= b <= 57)
_POWERS = 10 ** np.arange(13, -1, -1, dtype=np.uint64)  # a body's digits -> its number
# A record's decision class: header and expiry (bytes 0-3, 8-11). A missing record reads
# as _MISSING, whose pad byte (3) no packed record has.
_CLASS = np.array([0, 1, 2, 3, 8, 9, 10, 11])
_MISSING = b"\xff" * 12
_RANGE = np.arange(64)


def check_digits(bodies: bytes, stride: int) -> bytes:
    """The ASCII Luhn check digits of the 14-digit bodies starting every *stride* bytes.

    *bodies* holds ASCII digits only and its length is a multiple of *stride* (>= 14).
    """
    count = len(bodies) // stride
    total = 0
    for position in range(imei_mod.BODY_LENGTH):
        column = bodies[position::stride].translate(_DOUBLED if position % 2 else _AS_IS)
        total += int.from_bytes(column, "big")
    return total.to_bytes(count, "big").translate(_TO_CHECK_DIGIT)


def _tails(raw: bytes, width: int, digits: bytes) -> bytes:
    """Every element's bytes after its head, laid out back to back, built column by column:
    the canonical IMEI's value, the TAC field, and for IMEISVs (*width* 16) the SVN field."""
    count = len(digits)
    size = _TAIL_SVN if width == 16 else _TAIL
    block = bytearray(count * size)
    for k in range(14):
        block[k::size] = raw[k::width]
    block[14::size] = digits
    block[15::size] = b"*" * count  # field 5 (tac), 8 bytes
    block[16::size] = b"\x08" * count
    for k in range(8):
        block[17 + k :: size] = raw[k::width]
    if width == 16:
        block[25::size] = b"J" * count  # field 9 (svn), 2 bytes
        block[26::size] = b"\x02" * count
        block[27::size] = raw[14::width]
        block[28::size] = raw[15::width]
    return bytes(block)


@functools.lru_cache(maxsize=64)
def _splitter(count: int) -> struct.Struct:
    """Splits *count* 8-byte keys apart in one call."""
    return struct.Struct("8s" * count)


def plain_imeis(data: bytes) -> tuple[bytes, int] | None:
    """The IMEIs of a serialized CheckIMEIBatchRequest, back to back, and their width,
    when every request in it holds only an ``imei`` of 14-16 ASCII digits, all of one
    width, encoded as protobuf does (``0a <w+2> 0a <w> digits``); else None.

    This reads the common message without building a message object per request."""
    if len(data) < 4:
        return None
    width = data[3]
    step = width + 4
    if not 14 <= width <= 16 or len(data) % step or data[1] != width + 2:
        return None
    count = len(data) // step
    tag, size = b"\n" * count, bytes((width,)) * count
    if data[0::step] != tag or data[2::step] != tag or data[3::step] != size:
        return None
    if data[1::step] != bytes((width + 2,)) * count:
        return None
    raw = data.translate(None, _NOT_DIGITS)  # the headers are not digits
    return (raw, width) if len(raw) == count * width else None
