"""Staging accepted changes and writing them in one transaction, sorted by key.

Used by the batched file importer and by single requests alike: devices, channel
details, TAC entries, identity counts and audit entries go in together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ceir.feeds import Kind
from ceir.feeds.base import Candidate, Context, Feed, Outcome
from ceir.store import Store, audit

__all__ = ["Writes"]


@dataclass
class Writes:
    """The writes of one batch (or one request) of one feed kind."""

    feed: Feed
    devices: dict[bytes, bytes | None] = field(default_factory=dict)
    details: dict[bytes, bytes | None] = field(default_factory=dict)
    tacs: list[tuple[bytes, bytes]] = field(default_factory=list)
    changes: list[audit.Change] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._suffix = bytes((self.feed.kind.code,))

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
            self.details[key + self._suffix] = None  # the report is settled
        else:
            self.details[key + self._suffix] = cand.details
        old = None if outcome.old is None else outcome.old.pack()
        self.changes.append(audit.Change(key, action, old, new, line))

    def flush(self, txn: Any, store: Store, ctx: Context, origin: int, at: int) -> int:
        """Write everything inside *txn*; returns the first audit sequence number."""
        _put_sorted(txn, store.devices, self.devices)
        _put_sorted(txn, store.dbs["details"], self.details)
        if self.tacs:
            txn.cursor(store.tacs).putmulti(sorted(self.tacs))
        identities = ctx.identity_items()
        if identities:
            txn.cursor(store.dbs["identities"]).putmulti(identities)
        return audit.append(txn, store, self.changes, at, origin)


def _put_sorted(txn: Any, db: Any, items: dict[bytes, bytes | None]) -> None:
    puts = sorted([(k, v) for k, v in items.items() if v is not None])
    if puts:
        txn.cursor(db).putmulti(puts)
    for key in sorted(k for k, v in items.items() if v is None):
        txn.delete(key, db=db)
