"""Rolling 24-hour write counts per principal and per channel: the two-person rule across
files and single writes.

A threshold on one file alone is beaten by splitting: two files of 900 new devices went
through where one of 1,800 was staged, and single ``Register`` calls were limited per
worker process only. So every write that changes devices' answers (an ImportFeed file's
new devices, blocks, unblocks and upgrades; a Register; a lost/stolen report) is counted
in the store's ``volume`` table, per channel (feed kind) and principal and per channel
alone, in hourly buckets. Every worker of one server, and a local ``ceir import`` beside
it, count into the same numbers, inside the write transaction that admits the write, so
two processes cannot both pass under a limit.

The window is the current hour and the 23 before it. A file that would take its
principal past the channel's staging threshold (``--stage-above``, ``--stage-lost-stolen-
above``) within the window, or the whole channel past ``--channel-daily-above``
(``--channel-daily-lost-stolen-above``), is staged for a second principal; a single write
that would is refused (RESOURCE_EXHAUSTED, :class:`~ceir.errors.DailyLimitError`) until
older hours leave the window. An approved stage is not counted: a second person vetted
it. Buckets older than the window are deleted whenever a count is added, so the table
holds at most 24 x channels x (principals + 1) entries.
"""

from __future__ import annotations

from dataclasses import dataclass

from ceir.config import (
    DEFAULT_CHANNEL_DAILY_ABOVE,
    DEFAULT_CHANNEL_DAILY_LOST_STOLEN_ABOVE,
    DEFAULT_STAGE_ABOVE,
    DEFAULT_STAGE_LOST_STOLEN_ABOVE,
)
from ceir.feeds import Kind
from ceir.store.tables import Tables, Volume

__all__ = ["OFF", "WINDOW_HOURS", "Limits", "admit", "principal_key", "record", "window"]

WINDOW_HOURS = 24
CHANNEL = ""
"""The principal label of a channel's own count (every principal together)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """What one file, one principal in 24 hours, and one channel in 24 hours may change."""

    stage_above: int = DEFAULT_STAGE_ABOVE
    stage_lost_stolen_above: int = DEFAULT_STAGE_LOST_STOLEN_ABOVE
    channel_daily_above: int = DEFAULT_CHANNEL_DAILY_ABOVE
    channel_daily_lost_stolen_above: int = DEFAULT_CHANNEL_DAILY_LOST_STOLEN_ABOVE

    def principal(self, kind: Kind) -> int | None:
        """Devices' answers one file, and one principal in 24 hours, may change in *kind*
        before a second principal must approve (None: never staged)."""
        limits = [self.stage_above] if kind is not Kind.LOST_STOLEN else [
            self.stage_above, self.stage_lost_stolen_above
        ]  # fmt: skip
        given = [n for n in limits if n]
        return min(given) if given else None

    def channel(self, kind: Kind) -> int | None:
        """The same for every principal of *kind* together (None: no channel limit; and
        none where staging is off for the kind)."""
        n = (
            self.channel_daily_lost_stolen_above
            if kind is Kind.LOST_STOLEN
            else self.channel_daily_above
        )
        return n if n and self.principal(kind) is not None else None


OFF = Limits(stage_above=0, stage_lost_stolen_above=0)


def principal_key(actor: str, person: str = "") -> str:
    """Whose count a write goes to: the person behind the credential when known (two tokens
    of one person are one count), else the principal as the audit log names it."""
    return f"person:{person}" if person else actor


def _hour(now: float) -> int:
    return int(now // 3600)


def window(tables: Tables, kind: Kind, who: str, now: float) -> tuple[int, int]:
    """(changes by *who*, changes by the whole channel) of *kind* in the window at *now*."""
    hour = _hour(now)
    mine = channel = 0
    for h in range(hour - WINDOW_HOURS + 1, hour + 1):
        mine += tables.volume.get(Volume.key(h, kind.code, who))
        channel += tables.volume.get(Volume.key(h, kind.code, CHANNEL))
    return mine, channel


def record(tables: Tables, kind: Kind, who: str, n: int, now: float) -> None:
    """Count *n* changes of *kind* by *who* at *now*; drop buckets older than the window."""
    if n <= 0:
        return
    hour = _hour(now)
    tables.volume.add(Volume.key(hour, kind.code, who), n)
    tables.volume.add(Volume.key(hour, kind.code, CHANNEL), n)
    tables.volume.drop_before(hour - WINDOW_HOURS + 1)


def admit(tables: Tables, kind: Kind, who: str, n: int, limits: Limits, now: float) -> str:
    """Count *n* more changes of *kind* by *who* and return ``""``, or, when they would
    pass a limit within the window, count nothing and return why."""
    mine, channel = window(tables, kind, who, now)
    own, whole = limits.principal(kind), limits.channel(kind)
    if n > 0 and own is not None and mine + n > own:
        return (
            f"{who} changed {mine:,} devices' answers through {kind.value} in the last "
            f"{WINDOW_HOURS} hours; {n:,} more would pass the limit of {own:,}"
        )
    if n > 0 and whole is not None and channel + n > whole:
        return (
            f"the {kind.value} channel (every principal) changed {channel:,} devices' answers "
            f"in the last {WINDOW_HOURS} hours; {n:,} more would pass its limit of {whole:,}"
        )
    record(tables, kind, who, n, now)
    return ""
