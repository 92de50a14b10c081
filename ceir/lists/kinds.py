"""The lists, their columns, their change kinds and their file names (DIRBS's formats).

A list's rows are kept as fixed-width ``key -> value`` bytes (:class:`ceir.store.lists.
Snapshot`): the key says which entry a row is, the value what the list says of it.

=================  ===================================  ==================================
list               key                                  value
=================  ===================================  ==================================
blacklist          device key (8)                       block day (4), reasons mask (2)
notifications      device key (8), namespace (4),       block day (4), reasons mask (2)
                   IMSI token (16)
exceptions         device key (8), namespace (4),       (nothing)
                   IMSI token (16)
=================  ===================================  ==================================

A block day is a Unix day number (UTC); a reasons mask has bit ``1 << Reason`` set for
each :class:`~ceir.record.Reason` that applies.
"""

from __future__ import annotations

import enum
import struct
import time

from ceir.record import Reason

__all__ = [
    "DEVICE_BYTES",
    "SIM_KEY_BYTES",
    "STATE",
    "Change",
    "ListKind",
    "block_day",
    "date_text",
    "delta_name",
    "full_name",
    "pack_state",
    "reasons_mask",
    "reasons_text",
    "unpack_state",
]

DEVICE_BYTES = 8
SIM_KEY_BYTES = DEVICE_BYTES + 4 + 16
"""A notification or exception row's key: device, token namespace, IMSI token."""
STATE = struct.Struct(">IH")
"""A blacklist or notification row's value: block day, reasons mask."""
_DAY = 86400


class Change(enum.Enum):
    """A kind of delta, as its file name ends (``…_delta_{base}_{run}_{kind}.csv``)."""

    BLOCKED = "blocked"
    UNBLOCKED = "unblocked"
    NEW = "new"
    RESOLVED = "resolved"
    BLACKLISTED = "blacklisted"
    NO_LONGER_SEEN = "no_longer_seen"
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


class ListKind(enum.Enum):
    """The three lists a CEIR hands to operators."""

    BLACKLIST = "blacklist"
    NOTIFICATIONS = "notifications"
    EXCEPTIONS = "exceptions"

    @property
    def columns(self) -> tuple[str, ...]:
        return _COLUMNS[self]

    @property
    def changes(self) -> tuple[Change, ...]:
        """The delta files this list has, in the order they are written."""
        return _CHANGES[self]

    @property
    def key_bytes(self) -> int:
        return DEVICE_BYTES if self is ListKind.BLACKLIST else SIM_KEY_BYTES

    @property
    def value_bytes(self) -> int:
        return 0 if self is ListKind.EXCEPTIONS else STATE.size

    def name_for(self, operator: str = "") -> str:
        """``blacklist``, ``notifications_510-10``, ``exceptions_510-10``."""
        return self.value if self is ListKind.BLACKLIST else f"{self.value}_{operator}"


_COLUMNS = {
    ListKind.BLACKLIST: ("imei", "block_date", "reasons"),
    ListKind.NOTIFICATIONS: ("imei", "imsi", "msisdn", "block_date", "reasons"),
    ListKind.EXCEPTIONS: ("imei", "imsi", "msisdn"),
}
_CHANGES = {
    ListKind.BLACKLIST: (Change.BLOCKED, Change.UNBLOCKED, Change.CHANGED),
    ListKind.NOTIFICATIONS: (
        Change.NEW,
        Change.RESOLVED,
        Change.BLACKLISTED,
        Change.NO_LONGER_SEEN,
        Change.CHANGED,
    ),
    ListKind.EXCEPTIONS: (Change.ADDED, Change.REMOVED),
}


def full_name(prefix: str, name: str) -> str:
    """``{prefix}_{name}.csv``: a full list."""
    return f"{prefix}_{name}.csv"


def delta_name(prefix: str, name: str, base: int, run: int, change: Change) -> str:
    """``{prefix}_{name}_delta_{base}_{run}_{change}.csv``: one kind of change."""
    return f"{prefix}_{name}_delta_{base}_{run}_{change.value}.csv"


def block_day(unix_seconds: int) -> int:
    """The Unix day number (UTC) of a moment."""
    return unix_seconds // _DAY


_DATE_TEXT: dict[int, str] = {}


def date_text(day: int) -> str:
    """``YYYYMMDD`` of a Unix day number; "" for 0 (no date)."""
    text = _DATE_TEXT.get(day)
    if text is None:
        text = time.strftime("%Y%m%d", time.gmtime(day * _DAY)) if day else ""
        if len(_DATE_TEXT) < 100_000:
            _DATE_TEXT[day] = text
    return text


def reasons_mask(reasons: set[Reason] | frozenset[Reason]) -> int:
    mask = 0
    for reason in reasons:
        mask |= 1 << reason.value
    return mask


_REASON_TEXT: dict[int, str] = {}


def reasons_text(mask: int) -> str:
    """The reasons of *mask*: names sorted, distinct, ``|``-joined."""
    text = _REASON_TEXT.get(mask)
    if text is None:
        text = "|".join(sorted(r.name for r in Reason if mask & (1 << r.value)))
        _REASON_TEXT[mask] = text
    return text


def pack_state(day: int, mask: int) -> bytes:
    return STATE.pack(day, mask)


def unpack_state(value: bytes) -> tuple[int, int]:
    day, mask = STATE.unpack(value)
    return int(day), int(mask)
