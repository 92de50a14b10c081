"""Clone states, pairs and sightings: the writes that replicas follow, and the reads the
operators' lists make (:mod:`ceir.lists`). Codecs and layouts: :mod:`ceir.store.clonetables`.

A clone state or a pair is written with its change-log operation in the same transaction
(so replicas get both); sightings stay at the site that made them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from ceir.record import Reason
from ceir.store import Store
from ceir.store import changes as change_log
from ceir.store.clonetables import (
    CloneInfo,
    CloneState,
    ConditionKind,
    PairKind,
    Sighting,
    operator_code,
    operator_text,
    pack_pair,
    pair_key,
    split_pair_key,
    unpack_pair,
)
from ceir.store.tables import Tables

__all__ = [
    "Clone",
    "CloneInfo",
    "CloneState",
    "ConditionKind",
    "ExceptionRow",
    "Notification",
    "Pair",
    "PairKind",
    "Sighting",
    "exceptions",
    "iter_clones",
    "iter_pairs",
    "notifications",
    "operator_code",
    "operator_text",
    "put_pair",
    "put_state",
    "sightings",
]

_DAY = 86400


def day_text(day: int) -> str:
    """``YYYYMMDD`` of a Unix day number ("" for 0)."""
    return time.strftime("%Y%m%d", time.gmtime(day * _DAY)) if day else ""


@dataclass(frozen=True, slots=True)
class Clone:
    """A device the detector flagged, as the lists show it."""

    key: bytes
    state: CloneState
    conditions: tuple[str, ...]
    """Names of the conditions met (``duplicate_threshold``, ``simultaneity``), sorted."""
    flagged_day: int
    block_day: int
    changed_at: int

    @property
    def block_date(self) -> str:
        """``YYYYMMDD`` of the day it is (or will be) BLACKLISTED; "" if never."""
        return day_text(self.block_day)

    @property
    def reasons(self) -> tuple[str, ...]:
        return (Reason.DUPLICATE.name,)


@dataclass(frozen=True, slots=True)
class Pair:
    """A SIM whose answer the clone flags do not change."""

    key: bytes
    namespace: int
    token: bytes
    kind: PairKind
    at: int


@dataclass(frozen=True, slots=True)
class Notification:
    """One row of an operator's notifications list: a flagged device, one of its SIMs."""

    key: bytes
    token: bytes
    namespace: int
    block_date: str
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ExceptionRow:
    """One row of an operator's exceptions list: a flagged device and a paired SIM."""

    key: bytes
    token: bytes
    namespace: int


def _clone(key: bytes, info: CloneInfo) -> Clone:
    names = tuple(sorted(k.label for k in info.kinds))
    return Clone(key, info.state, names, info.flagged_day, info.block_day, info.changed_at)


def iter_clones(store: Store) -> Iterator[Clone]:
    """Every device with a clone state, in key order."""
    with store.snapshot() as tables:
        for key, info in tables.clones.items():
            yield _clone(key, info)


def iter_pairs(store: Store) -> Iterator[Pair]:
    """Every pair, in key order."""
    with store.snapshot() as tables:
        for key, value in tables.pairs.items():
            device, ns, token = split_pair_key(key)
            yield Pair(device, ns, token, *unpack_pair(value))


def sightings(store: Store, key: bytes) -> list[Sighting]:
    """The SIMs this site saw with device *key* (tokens only)."""
    with store.snapshot() as tables:
        return tables.observations.get(key)[1]


_FLAGGED = (CloneState.GREYLISTED, CloneState.BLOCKED)


def _mine(s: Sighting, op: int) -> bool:
    return op in (s.operator, s.namespace)


def notifications(store: Store, operator: str) -> Iterator[Notification]:
    """Per GREYLISTED or BLOCKED device, each SIM *operator* saw on it (or tokenised with
    its own key) that is not a pair."""
    op = operator_code(operator)
    with store.snapshot() as tables:
        for key, info in tables.clones.items():
            if info.state not in _FLAGGED:
                continue
            paired = {(ns, token) for ns, token, _k, _a in tables.pairs.of_device(key)}
            clone = _clone(key, info)
            for s in tables.observations.get(key)[1]:
                if _mine(s, op) and (s.namespace, s.token) not in paired:
                    yield Notification(key, s.token, s.namespace, clone.block_date, clone.reasons)


def exceptions(store: Store, operator: str) -> Iterator[ExceptionRow]:
    """Per device with a clone state, each pair in *operator*'s own tokens or one it saw."""
    op = operator_code(operator)
    with store.snapshot() as tables:
        for key in tables.clones.devices():
            seen = {(s.namespace, s.token) for s in tables.observations.get(key)[1] if _mine(s, op)}
            for ns, token, _kind, _at in tables.pairs.of_device(key):
                if ns == op or (ns, token) in seen:
                    yield ExceptionRow(key, token, ns)


# -- writes (inside a write transaction) ------------------------------------------


def _log(tables: Tables, op: bytes, ops: list[bytes] | None) -> None:
    if ops is None:
        change_log.record(tables, others=[op])
    else:
        ops.append(op)


def put_state(
    tables: Tables, key: bytes, info: CloneInfo | None, ops: list[bytes] | None = None
) -> None:
    """Set (None: delete) *key*'s clone state and log it for replicas (into *ops* when
    given: the caller records them all at once with ``changes.record(others=ops)``)."""
    if info is None:
        tables.clones.put_packed(key, None)
        _log(tables, change_log.clone_op(change_log.Op.CLONE_DELETE, key), ops)
        return
    packed = info.pack()
    tables.clones.put_packed(key, packed)
    _log(tables, change_log.clone_op(change_log.Op.CLONE_PUT, key, packed), ops)


def put_pair(
    tables: Tables,
    key: bytes,
    namespace: int,
    token: bytes,
    kind: PairKind | None,
    at: int = 0,
    ops: list[bytes] | None = None,
) -> None:
    """Pair (kind None: unpair) the SIM *token* with device *key*, and log it."""
    full = pair_key(key, namespace, token)
    if kind is None:
        tables.pairs.put_packed(full, None)
        op = change_log.clone_op(change_log.Op.PAIR_DELETE, key, full[8:])
    else:
        value = pack_pair(kind, at)
        tables.pairs.put_packed(full, value)
        op = change_log.clone_op(change_log.Op.PAIR_PUT, key, full[8:] + value)
    _log(tables, op, ops)
