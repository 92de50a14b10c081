"""What the register knows about one device, and its compact fixed-size encoding.

The enums mirror ``proto/ceir/v1/common.proto`` number for number, so translating to
the wire is ``int(member)``. Pure: no I/O.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, replace


class Status(enum.IntEnum):
    """The EIR answer. The 3GPP equipment status is ``value - 1`` (see common.proto)."""

    WHITELISTED = 1
    BLACKLISTED = 2
    GREYLISTED = 3

    @property
    def gpp_value(self) -> int:
        """The number TS 29.002/29.272 use: whiteListed 0, blackListed 1, greyListed 2."""
        return self.value - 1


class Reason(enum.IntEnum):
    """Why a status is what it is."""

    NONE = 0
    REGISTERED = 1
    GRANDFATHERED = 2
    TEMPORARY = 3
    EXEMPT = 4
    NOT_REGISTERED = 5
    LOST_STOLEN = 6
    EXPIRED = 7
    INVALID_IMEI = 8
    DUPLICATE = 9


class Source(enum.IntEnum):
    """The channel that wrote a registration."""

    NONE = 0
    MANUFACTURER = 1
    CUSTOMS = 2
    OPERATOR = 3
    MINISTRY = 4


FLAG_LOST_STOLEN = 0x01
FLAG_CLONE_GREY = 0x02
"""A clone condition is met: GREYLISTED / DUPLICATE but for the device's pairs."""
FLAG_CLONE_BLOCK = 0x04
"""Past the condition's grace: BLACKLISTED / DUPLICATE but for the device's pairs."""
FLAGS_CLONE = FLAG_CLONE_GREY | FLAG_CLONE_BLOCK
"""Either clone flag: an answer for an (IMEI, IMSI) must consult the pairs."""

# reason, source, flags, pad, registered_at, expires_at (both Unix seconds, u32;
# expires_at 0 = never). 12 bytes: the hot record stays small at billions of devices.
_RECORD = struct.Struct(">BBBxII")
RECORD_SIZE = _RECORD.size


@dataclass(frozen=True, slots=True)
class Record:
    """One device's registration and block state.

    ``reason`` is the registration kind (``Reason.NONE`` when the device is only known
    because it was reported lost or stolen). A lost/stolen report sets a flag and leaves
    the registration in place, so clearing the report restores what the device was.
    """

    reason: Reason = Reason.NONE
    source: Source = Source.NONE
    lost_stolen: bool = False
    registered_at: int = 0
    expires_at: int = 0
    clone: int = 0
    """The clone flags (:data:`FLAGS_CLONE` bits) the clone detector set; 0 for none."""

    def pack(self) -> bytes:
        """The fixed-size store value."""
        return _RECORD.pack(
            self.reason,
            self.source,
            (FLAG_LOST_STOLEN if self.lost_stolen else 0) | (self.clone & FLAGS_CLONE),
            self.registered_at,
            self.expires_at,
        )

    @classmethod
    def unpack(cls, value: bytes) -> Record:
        """Decode a store value made by :meth:`pack`."""
        reason, source, flags, registered_at, expires_at = _RECORD.unpack(value)
        return cls(
            Reason(reason),
            Source(source),
            bool(flags & FLAG_LOST_STOLEN),
            registered_at,
            expires_at,
            flags & FLAGS_CLONE,
        )

    @property
    def registered(self) -> bool:
        """Whether the record holds a registration (not only a lost/stolen report)."""
        return self.reason is not Reason.NONE

    def with_block(self, *, blocked: bool) -> Record:
        """This record with the lost/stolen flag set or cleared."""
        return replace(self, lost_stolen=blocked)


def unpack_header(value: bytes) -> tuple[int, int, int, int]:
    """Fast decode for the lookup path: (reason, source, flags, expires_at) as ints."""
    reason, source, flags, _registered_at, expires_at = _RECORD.unpack(value)
    return reason, source, flags, expires_at
