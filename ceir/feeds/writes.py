"""Staging accepted changes and writing them in one transaction, sorted by key.

Used by the batched file importer and by single requests alike: devices, channel
details, TAC entries, identity counts and audit entries go in together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ceir.feeds import Kind
from ceir.feeds.base import Candidate, Context, Feed, Outcome
from ceir.store import audit, changes
from ceir.store.tables import Tables

__all__ = ["Writes"]


@dataclass
class Writes:
    """The writes of one batch (or one request) of one feed kind."""

    feed: Feed
    devices: dict[bytes, bytes | None] = field(default_factory=dict)
    details: dict[tuple[bytes, int], bytes | None] = field(default_factory=dict)
    tacs: list[tuple[bytes, bytes]] = field(default_factory=list)
    changes: list[audit.Change] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._code = self.feed.kind.code

    def add(self, cand: Candidate, outcome: Outcome, line: int) -> None:
        """Stage what *outcome* does (nothing when unchanged)."""
        if outcome.unchanged:
            return
        if self.feed.kind is Kind.TAC:
            self.tacs.append((cand.key, cand.details))
            return
        key = cand.key
        if outcome.new is None:
            new = None
        elif outcome.new is cand.record and cand.packed:
            new = cand.packed
        else:
            new = outcome.new.pack()
        self.devices[key] = new
        action = self.feed.action
        if cand.block is False:
            action = audit.Action.UNBLOCK
            self.details[key, self._code] = None  # the report is settled
        else:
            self.details[key, self._code] = cand.details
        old = None if outcome.old is None else outcome.old.pack()
        self.changes.append(audit.Change(key, action, old, new, line))

    def flush(self, tables: Tables, ctx: Context, origin: int, at: int) -> int:
        """Write everything inside a write transaction; returns the first audit sequence
        number."""
        tables.devices.put(self.devices)
        if self.tacs:
            tables.tacs.put(self.tacs)
            changes.record(tables, tacs=sorted(self.tacs))
        if ctx.identity_writes:
            tables.identities.put(ctx.identity_writes)
        # The details go with the audit entries: a creation's value keeps its entry.
        shared = self.feed.shared_details
        return audit.append(tables, self.changes, at, origin, self.details, self._code, shared)
