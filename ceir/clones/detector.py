"""Clone detection: sightings merged, conditions evaluated, transitions written.

Everything here runs inside one write transaction of the caller (the recorder's flush,
the upstream ingest, a principal's command), so a sighting, the state it causes, the
device's new record, the pair, the audit entries and the change-log operations commit
together or not at all.

Transitions (each one an audit entry with the device's old and new record):

- SUSPECTED: a ``report`` condition is met; answers unchanged;
- GREYLISTED: a ``greylist`` condition is met; the record gets ``FLAG_CLONE_GREY`` and the
  SIM first seen with the device becomes its pair (unless it has one);
- DUPLICATE_BLOCKED: the grace period passed (:func:`sweep`); ``FLAG_CLONE_BLOCK``;
- CLEARED / PAIRED / UNPAIRED: a ministry or admin principal's command (:mod:`ceir.clones.actions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ceir.clones.conditions import CloneAction, Condition, met
from ceir.record import FLAG_CLONE_BLOCK, FLAG_CLONE_GREY, Record
from ceir.store import audit, clones
from ceir.store import changes as change_log
from ceir.store.clonetables import MAX_SIGHTINGS, CloneInfo, CloneState, PairKind, Sighting
from ceir.store.tables import Tables

__all__ = ["DETECTOR", "Seen", "Transitions", "merge", "sweep"]

DETECTOR = "ceir:clone-detector"
"""The audit actor of the detector's own transitions."""
_DAY_MIN = 1440


@dataclass(frozen=True, slots=True)
class Seen:
    """One sighting to record: a SIM (as a token in *namespace*) seen with a device."""

    key: bytes
    token: bytes
    namespace: int
    operator: int
    minute: int
    """Unix minutes."""


class Transitions:
    """The transitions of one write transaction: audit entries, change-log operations."""

    def __init__(self, tables: Tables, actor: str, at: int, what: str) -> None:
        self.tables = tables
        self.actor = actor
        self.at = at
        self.what = what
        self.changes: list[audit.Change] = []
        self.ops: list[bytes] = []

    def record(self, key: bytes, action: audit.Action, old: Record, new: Record) -> None:
        if new != old:
            self.tables.devices.put({key: new.pack()})
        self.changes.append(audit.Change(key, action, old, new))

    def commit(self) -> int:
        """Write the audit entries (under one origin) and the log operations; returns how
        many transitions there were. The pairs and states go into the change log first, so a
        replica never answers with a device's new flags before it holds its pairs."""
        if self.ops:
            change_log.record(self.tables, others=self.ops)
        if self.changes:
            origin = audit.new_origin(
                self.tables,
                {"kind": "clone", "file": "", "actor": self.actor, "request": self.what},
            )
            audit.append(self.tables, self.changes, self.at, origin)
        return len(self.changes)


def _merge_one(
    sightings: list[Sighting], dropped: int, seen: Sequence[Seen]
) -> tuple[int, list[Sighting]]:
    index = {(s.namespace, s.token): i for i, s in enumerate(sightings)}
    for o in seen:
        i = index.get((o.namespace, o.token))
        if i is None:
            if len(sightings) >= MAX_SIGHTINGS:
                dropped += 1
                continue
            index[(o.namespace, o.token)] = len(sightings)
            sightings.append(Sighting(o.token, o.namespace, o.operator, o.minute, o.minute))
            continue
        s = sightings[i]
        sightings[i] = Sighting(
            s.token,
            s.namespace,
            o.operator or s.operator,
            min(s.first_min, o.minute),
            max(s.last_min, o.minute),
        )
    return dropped, sightings


def merge(
    tables: Tables,
    batch: Sequence[Seen],
    conditions: Sequence[Condition] | None,
    now: int,
) -> int:
    """Record *batch*; with *conditions* (the central register), evaluate them on every
    device it touched and write the transitions. Returns how many transitions."""
    by_key: dict[bytes, list[Seen]] = {}
    for o in batch:
        by_key.setdefault(o.key, []).append(o)
    moves = Transitions(tables, DETECTOR, now, "clone detection")
    for key in sorted(by_key):
        dropped, sightings = tables.observations.get(key)
        dropped, sightings = _merge_one(sightings, dropped, by_key[key])
        tables.observations.put(key, dropped, sightings)
        if conditions and len(sightings) + dropped > 1:  # one SIM meets no condition
            _evaluate(moves, key, sightings, dropped, conditions, now)
    return moves.commit()


def _evaluate(
    moves: Transitions,
    key: bytes,
    sightings: list[Sighting],
    dropped: int,
    conditions: Sequence[Condition],
    now: int,
) -> None:
    tables = moves.tables
    info = tables.clones.get(key)
    if info is not None and info.state is not CloneState.SUSPECTED:
        return  # flagged already, or cleared by a principal (not applied again)
    record = tables.devices.record(key)
    if record is None or not record.registered:
        return  # not in the register: refused anyway, nothing to pair
    hits = met(conditions, sightings, dropped, now // 60)
    if not hits:
        return
    bits = sum(1 << c.kind for c in hits) | (info.conditions if info else 0)
    today = now // 86400
    grey = [c for c in hits if c.action is CloneAction.GREYLIST]
    if not grey:
        if info is None:
            new_info = CloneInfo(CloneState.SUSPECTED, bits, today, 0, now)
            clones.put_state(tables, key, new_info, moves.ops)
            moves.record(key, audit.Action.SUSPECTED, record, record)
        return
    grace = min(c.grace_days for c in grey)
    block_day = today + grace
    state = CloneState.BLOCKED if grace == 0 else CloneState.GREYLISTED
    flag = FLAG_CLONE_BLOCK if grace == 0 else FLAG_CLONE_GREY
    clones.put_state(tables, key, CloneInfo(state, bits, today, block_day, now), moves.ops)
    action = audit.Action.DUPLICATE_BLOCKED if grace == 0 else audit.Action.GREYLISTED
    new = replace(record, clone=flag)
    moves.record(key, action, record, new)
    if next(tables.pairs.of_device(key), None) is None and sightings:
        first = min(sightings, key=lambda s: (s.first_min, s.last_min))
        clones.put_pair(
            tables, key, first.namespace, first.token, PairKind.FIRST_SEEN, now, moves.ops
        )
        moves.record(key, audit.Action.PAIRED, new, new)


def sweep(tables: Tables, now: int) -> int:
    """GREYLISTED devices whose block day came become BLOCKED; returns how many."""
    today = now // 86400
    due = [
        (key, info)
        for key, info in tables.clones.items()
        if info.state is CloneState.GREYLISTED and info.block_day <= today
    ]
    moves = Transitions(tables, DETECTOR, now, "clone grace period ended")
    for key, info in due:
        clones.put_state(
            tables, key, replace(info, state=CloneState.BLOCKED, changed_at=now), moves.ops
        )
        record = tables.devices.record(key)
        if record is not None:
            new = replace(record, clone=FLAG_CLONE_BLOCK)
            moves.record(key, audit.Action.DUPLICATE_BLOCKED, record, new)
    return moves.commit()
