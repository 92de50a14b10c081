"""What every feed kind shares: the candidate a row becomes, the evaluation context over
a transaction, and the registration rules (new, unchanged, upgrade, conflict).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar, NamedTuple

from ceir.errors import FeedRowError
from ceir.feeds import Kind
from ceir.feeds.rows import RejectReason, iso_day
from ceir.record import Reason, Record
from ceir.store.audit import Action
from ceir.store.identity import Tokenizer
from ceir.store.tables import Tables

__all__ = ["Candidate", "Context", "Feed", "Options", "Outcome"]

# 2020-09-15T22:00:00+07:00: the Indonesian whitelist regime's start (grandfathering cutoff).
DEFAULT_CUTOFF = 1600182000
MAX_CLOCK_SKEW = 3600
"""Seconds a date of something that has happened (an arrival, a registration, a report)
may lie ahead of the server's clock; further ahead is refused as a future date."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Options:
    """Channel rules and thresholds of one import; each is a ``ceir import`` flag."""

    max_bad_ratio: float = 0.05
    """Refuse the whole file when more than this share of rows is malformed."""
    max_new_devices: int | None = None
    """Refuse the whole file when it would add more new devices; None: the kind's default."""
    allow_unknown_tac: bool = False
    fix_leading_zero: bool = False
    """TAC feeds: pad 7-digit TACs with the zero a spreadsheet dropped (counted, reported)."""
    customs_quota: int = 2
    customs_cooldown_days: int = 180
    cutoff: int = DEFAULT_CUTOFF
    visitor_max_days: int = 90
    batch_rows: int = 250_000
    """Rows per write transaction. Each commit copies every B-tree page its random keys
    touch; at national scale (10M+ devices) a bigger batch writes far less in total
    (1M rows into an 11M-device store: 207 s with 50k-row batches, 114 s with 500k)."""


@dataclass(slots=True)
class Candidate:
    """A well-formed row: what it asks to be written."""

    key: bytes
    record: Record
    details: bytes
    label: str
    """The IMEI (or TAC) as shown in messages."""
    block: bool | None = None
    """Lost/stolen feeds: True to block, False to unblock."""
    packed: bytes = b""
    """``record.pack()`` when the kind has it at hand (bulk feeds cache it)."""
    identity: tuple[bytes, int] | None = None
    """Customs: (identity token, arrival day) that the quota counts."""


class Outcome(NamedTuple):
    """What a candidate does to the stored record. (A tuple: made once per row.)"""

    old: Record | None
    new: Record | None
    added: bool = False
    """A new registration (the device was not registered before)."""
    unchanged: bool = False


@dataclass
class Context:
    """Evaluation over one transaction (a read snapshot in the check pass, the batch's
    write transaction in the write pass), with the identity counts this pass has added."""

    tables: Tables
    options: Options
    tokenizer: Tokenizer
    now: float
    operator: str = ""
    """The writing operator's id (MCC-MNC); ``""`` for the ministry, an admin or a local
    command. Lost/stolen blocks record it; an operator may clear only its own."""
    pending: dict[bytes, bytes | None] = field(default_factory=dict)
    """Device records this pass has decided but not yet written (key -> packed or None):
    the rows of one device in one file see each other's outcome."""
    pending_details: dict[tuple[bytes, int], bytes | None] = field(default_factory=dict)
    tac_known: dict[str, bool] = field(default_factory=dict)
    identities: dict[bytes, dict[int, int]] = field(default_factory=dict)
    identity_writes: dict[tuple[bytes, int], int] = field(default_factory=dict)
    trimmed: int = 0
    fixed: int = 0

    def current(self, key: bytes) -> Record | None:
        if self.pending and key in self.pending:
            value = self.pending[key]
            return None if value is None else Record.unpack(value)
        return self.tables.devices.record(key)

    def details(self, key: bytes, kind: Kind) -> bytes | None:
        if self.pending_details and (key, kind.code) in self.pending_details:
            return self.pending_details[key, kind.code]
        return self.tables.details.get(key, kind.code)

    def has_tac(self, tac: str) -> bool:
        known = self.tac_known.get(tac)
        if known is None:
            known = self.tables.tacs.packed(tac.encode()) is not None
            self.tac_known[tac] = known
        return known

    def identity_days(self, token: bytes) -> dict[int, int]:
        """Arrival day -> devices registered, for one identity token."""
        days = self.identities.get(token)
        if days is None:
            days = self.identities[token] = self.tables.identities.days(token)
        return days

    def count_identity(self, token: bytes, day: int) -> None:
        days = self.identity_days(token)
        days[day] = days.get(day, 0) + 1
        self.identity_writes[(token, day)] = days[day]

    def past(self, seconds: int, name: str) -> int:
        """*seconds* unless it lies in the future (beyond :data:`MAX_CLOCK_SKEW`): a visitor
        registered in 2099 would be whitelisted until 2100, a customs arrival in 2030
        would get a fresh quota."""
        if seconds > self.now + MAX_CLOCK_SKEW:
            raise FeedRowError(
                name,
                RejectReason.BAD_DATE,
                f"{name} is in the future ({iso_day(seconds)}; today is {iso_day(int(self.now))})",
            )
        return seconds

    def text(self, value: str, name: str, *, optional: bool = False) -> str:
        """A free-text field: surrounding spaces trimmed (and counted), no control chars."""
        if value and value.isprintable() and value[0] != " " and value[-1] != " ":
            return value
        stripped = value.strip()
        if stripped != value:
            self.trimmed += 1
        if not stripped and not optional:
            raise FeedRowError(name, RejectReason.MISSING_FIELD, f"{name} is empty")
        if not stripped.isprintable():
            raise FeedRowError(name, RejectReason.BAD_VALUE, f"{name} contains control characters")
        return stripped


class Feed:
    """One feed kind. Subclasses set the class attributes and :meth:`parse`."""

    kind: ClassVar[Kind]
    fields: ClassVar[tuple[str, ...]]
    """The columns, in order."""
    optional_columns: ClassVar[frozenset[str]] = frozenset()
    """Columns a file may leave out altogether."""
    personal: ClassVar[frozenset[str]] = frozenset()
    """Fields holding personal numbers: tokenised, never echoed."""
    detail_fields: ClassVar[tuple[str, ...]] = ()
    """The names of the values packed into ``details`` by :meth:`parse`."""
    shared_details: ClassVar[bool] = False
    """Many devices share every ``details`` value but the last (stored once each)."""
    action: ClassVar[Action]
    events: ClassVar[bool] = False
    """Rows are events (lost-stolen): one device's rows apply in time order, and only an
    exact repeat of a row is a duplicate."""
    recurring: ClassVar[bool] = False
    """Rows for already-registered devices are normal (operator dumps): unchanged."""
    default_max_new: ClassVar[int] = 1_000_000
    rejects_by_date: ClassVar[bool] = False
    """A row whose other fields the bulk proof checked is accepted or rejected by its date
    alone, with the same reject (once redacted) for every such row of a date, in one
    pass: the bulk path parses one row per date and gives its reject to the others."""

    def parse(self, values: Sequence[str], ctx: Context) -> Candidate:
        raise NotImplementedError

    def decide(self, cand: Candidate, ctx: Context) -> Outcome:
        """What *cand* does to the stored record; raises FeedRowError for a conflict."""
        return decide_registration(self, cand, ctx)


def decide_registration(feed: Feed, cand: Candidate, ctx: Context) -> Outcome:
    """The rules every registering channel shares.

    Not registered (or only reported lost/stolen) -> a new registration, the lost/stolen
    flag kept. The same registration again -> unchanged. A permanent registration over a
    temporary one -> an upgrade. Anything else -> a conflict, left for a person to settle.
    """
    current = ctx.current(cand.key)
    new = cand.record
    if current is None:
        return Outcome(None, new, added=True)
    if not current.registered:
        return Outcome(current, replace(new, lost_stolen=current.lost_stolen), added=True)
    if current.reason == new.reason and current.source == new.source:
        if feed.recurring or ctx.details(cand.key, feed.kind) == cand.details:
            return Outcome(current, current, unchanged=True)
        if current.reason is Reason.TEMPORARY and current.expires_at <= ctx.now:
            return Outcome(current, replace(new, lost_stolen=current.lost_stolen))
        raise FeedRowError(
            "imei",
            RejectReason.CONFLICT,
            f"{cand.label} is already {_state(current)} with other details",
        )
    if current.reason is Reason.TEMPORARY and new.reason is not Reason.TEMPORARY:
        return Outcome(current, replace(new, lost_stolen=current.lost_stolen))
    if feed.recurring:
        return Outcome(current, current, unchanged=True)
    raise FeedRowError("imei", RejectReason.CONFLICT, f"{cand.label} is already {_state(current)}")


def _state(record: Record) -> str:
    text = f"{record.reason.name.lower()} by {record.source.name.lower()}"
    if record.expires_at:
        text += f" until {iso_day(record.expires_at)}"
    return text
