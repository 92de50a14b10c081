"""The decision: what a device's record means for a network attach, now.

Whitelist regime by default (Indonesia, 2020): only registered devices connect.

- a lost/stolen report beats any registration: BLACKLISTED / LOST_STOLEN;
- a registration with an expiry in the past: BLACKLISTED / EXPIRED (decided at read
  time, so no background job is needed for correctness);
- a registration of a suspected clone (a clone flag, :mod:`ceir.clones`): GREYLISTED /
  DUPLICATE, or past the condition's grace BLACKLISTED / DUPLICATE — except for the SIMs
  paired with the device, whose answers are made from the record without its clone flags
  (:func:`without_clone`);
- a registration: WHITELISTED with its reason and source;
- no record: the unknown-device status of the regime, with NOT_REGISTERED.
"""

from __future__ import annotations

from typing import NamedTuple

from ceir.record import (
    FLAG_CLONE_BLOCK,
    FLAG_CLONE_GREY,
    FLAG_LOST_STOLEN,
    FLAGS_CLONE,
    Reason,
    Record,
    Source,
    Status,
)


class Decision(NamedTuple):
    """The answer for one IMEI."""

    status: Status
    reason: Reason
    source: Source
    expires_at: int = 0
    """Unix seconds when the registration ends (ended); 0 if never."""


INVALID = Decision(Status.BLACKLISTED, Reason.INVALID_IMEI, Source.NONE)


class Policy:
    """Turns records into decisions under one regime."""

    __slots__ = ("unknown",)

    def __init__(self, unknown_status: Status = Status.BLACKLISTED) -> None:
        self.unknown = Decision(unknown_status, Reason.NOT_REGISTERED, Source.NONE)

    def decide(self, record: Record | None, now: float) -> Decision:
        """The decision for *record* (``None``: not in the register) at Unix time *now*."""
        if record is None:
            return self.unknown
        return self.decide_fields(
            int(record.reason),
            int(record.source),
            (FLAG_LOST_STOLEN if record.lost_stolen else 0) | record.clone,
            record.expires_at,
            now,
        )

    def decide_fields(
        self, reason: int, source: int, flags: int, expires_at: int, now: float
    ) -> Decision:
        """:meth:`decide` on a record's raw fields, for the lookup path."""
        if flags & FLAG_LOST_STOLEN:
            return Decision(Status.BLACKLISTED, Reason.LOST_STOLEN, Source(source), expires_at)
        if reason == Reason.NONE:
            return self.unknown
        if expires_at and expires_at <= now:
            return Decision(Status.BLACKLISTED, Reason.EXPIRED, Source(source), expires_at)
        if flags & FLAG_CLONE_BLOCK:
            return Decision(Status.BLACKLISTED, Reason.DUPLICATE, Source(source), expires_at)
        if flags & FLAG_CLONE_GREY:
            return Decision(Status.GREYLISTED, Reason.DUPLICATE, Source(source), expires_at)
        return Decision(Status.WHITELISTED, Reason(reason), Source(source), expires_at)


def without_clone(value: bytes) -> bytes:
    """A packed record without its clone flags: what a paired SIM's answer is made from."""
    return value[:2] + bytes((value[2] & ~FLAGS_CLONE & 0xFF,)) + value[3:]
