"""The blacklist: every device the register answers BLACKLISTED for a reason it holds.

One pass over ``devices`` in key order. A device is on it when its record says so
(:mod:`ceir.policy`): reported lost or stolen (``LOST_STOLEN``; the block date is the day
the audit log recorded the report's block), or a registration that ended
(``EXPIRED``; the day it ended), or blocked by the clone detector past its grace
(``DUPLICATE``; the day the grace ended, from :mod:`ceir.store.clones`). Devices unknown
to the register are not listed: in a whitelist regime every EIR refuses them anyway, and
no list can name them all.
A device blocked for several reasons is one row: all its reasons, the earliest date.
"""

from __future__ import annotations

from collections.abc import Mapping

from ceir.lists.kinds import block_day, pack_state
from ceir.record import FLAG_LOST_STOLEN, Reason
from ceir.store.audit import flag_set_at
from ceir.store.tables import Tables

__all__ = ["blacklist"]

_NEVER = bytes(4)
_LOST = 1 << Reason.LOST_STOLEN.value
_EXPIRED = 1 << Reason.EXPIRED.value


def blacklist(
    tables: Tables, now: int, also: Mapping[bytes, tuple[int, int]] | None = None
) -> dict[bytes, bytes]:
    """Device key -> packed (block day, reasons mask), as of Unix time *now*.

    *also* adds (day, mask) by device key from elsewhere (the clone detector's blocks),
    merged into the row of a registered device: reasons together, the earliest day (a
    device with no registration is not blocked by them, as in :mod:`ceir.policy`).
    """
    extra = also or {}
    found: dict[bytes, tuple[list[int], int]] = {}  # key -> (days but the block's, mask)
    lost_keys: list[bytes] = []
    fallback: dict[bytes, int] = {}
    for key, value in tables.devices.packed_items():
        lost = value[2] & FLAG_LOST_STOLEN
        ends = value[8:12]
        registered = value[0] != Reason.NONE
        expired = registered and ends != _NEVER and int.from_bytes(ends) <= now
        also_here = registered and key in extra  # the policy reads clone flags only then
        if not (lost or expired or also_here):
            continue
        days: list[int] = []
        mask = 0
        if lost:
            mask |= _LOST
            lost_keys.append(key)
            fallback[key] = int.from_bytes(value[4:8])
        if expired:
            mask |= _EXPIRED
            days.append(block_day(int.from_bytes(ends)))
        if also_here:
            day, more = extra[key]
            mask |= more
            days.append(day)
        found[key] = (days, mask)
    # The day each block was recorded: one pass over the audit log's index for them all.
    for key, at in flag_set_at(tables, lost_keys, FLAG_LOST_STOLEN).items():
        found[key][0].append(block_day(at or fallback[key]))
    rows = {}
    for key, (days, mask) in found.items():
        dated = [d for d in days if d]
        rows[key] = pack_state(min(dated) if dated else 0, mask)
    return rows
