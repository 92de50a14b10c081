"""The blacklist: every device the register answers BLACKLISTED for a reason it holds.

One pass over ``devices`` in key order. A device is on it when its record says so
(:mod:`ceir.policy`): reported lost or stolen (``LOST_STOLEN``; the block date is the day
the audit log recorded the report's block), or a registration that ended
(``EXPIRED``; the day it ended). Devices unknown to the register are not listed: in a
whitelist regime every EIR refuses them anyway, and no list can name them all.
A device blocked for several reasons is one row: all its reasons, the earliest date.
"""

from __future__ import annotations

from collections.abc import Mapping

from ceir.lists.kinds import block_day, pack_state
from ceir.record import FLAG_LOST_STOLEN, Reason
from ceir.store.audit import flag_set_at
from ceir.store.tables import Tables

__all__ = ["blacklist", "lost_stolen_day"]

_NEVER = bytes(4)
_LOST = 1 << Reason.LOST_STOLEN.value
_EXPIRED = 1 << Reason.EXPIRED.value


def lost_stolen_day(tables: Tables, key: bytes, fallback: int) -> int:
    """The day the device's current lost/stolen block was recorded (the last change that
    set the flag), or the day of *fallback* (Unix seconds) when the log has none."""
    return block_day(flag_set_at(tables, key, FLAG_LOST_STOLEN) or fallback)


def blacklist(
    tables: Tables, now: int, also: Mapping[bytes, tuple[int, int]] | None = None
) -> dict[bytes, bytes]:
    """Device key -> packed (block day, reasons mask), as of Unix time *now*.

    *also* adds (day, mask) by device key from elsewhere (the clone detector's blocks),
    merged into the device's row: reasons together, the earliest day. A key with no
    record in ``devices`` is not listed.
    """
    rows: dict[bytes, bytes] = {}
    extra = dict(also or {})
    for key, value in tables.devices.packed_items():
        lost = value[2] & FLAG_LOST_STOLEN
        ends = value[8:12]
        expired = value[0] != Reason.NONE and ends != _NEVER and int.from_bytes(ends) <= now
        if not (lost or expired or key in extra):
            continue
        days: list[int] = []
        mask = 0
        if lost:
            mask |= _LOST
            days.append(lost_stolen_day(tables, key, int.from_bytes(value[4:8])))
        if expired:
            mask |= _EXPIRED
            days.append(block_day(int.from_bytes(ends)))
        if key in extra:
            day, more = extra.pop(key)
            mask |= more
            days.append(day)
        rows[key] = pack_state(min(d for d in days if d) if any(days) else 0, mask)
    return rows
