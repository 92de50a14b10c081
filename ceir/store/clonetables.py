"""The clone detector's tables and their codecs (see :mod:`ceir.store.clones` for reads).

==================  =========================================================================
``observations``    device key -> 2-byte count of IMSIs dropped past the cap + up to
                    :data:`MAX_SIGHTINGS` sightings of 32 bytes: token (16), namespace (4),
                    operator (4), first and last seen (Unix minutes, 4 + 4)
``clones``          device key -> state, conditions met, flagged day, block day, changed at
``pairs``           device key + namespace (4) + token (16) -> pair kind, paired at
``imsi_vault``      token (16) -> nonce + AES-GCM of the clear IMSI (a replica's own SIMs)
``outbox``          a replica's upstream messages not yet acknowledged by the broker:
                    sequence (8) -> sealed message; key 0 -> epoch (8) + next sequence (8)
==================  =========================================================================

A *namespace* says whose key made a token: 0 the central register's identity-token key,
otherwise the operator code (:func:`operator_code`) of the operator whose site made it
with its own key. An *operator* code says which network saw the SIM (0: unknown).
"""

from __future__ import annotations

import enum
import os
import re
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ceir.store._view import View

__all__ = [
    "MAX_SIGHTINGS",
    "CloneInfo",
    "CloneState",
    "Clones",
    "ConditionKind",
    "Observations",
    "Outbox",
    "PairKind",
    "Pairs",
    "Sighting",
    "Vault",
    "operator_code",
    "operator_text",
]

MAX_SIGHTINGS = 32
"""Distinct IMSIs kept per device: past it only a count grows (the value stays bounded)."""
_SIGHTING = struct.Struct(">16sIIII")
SIGHTING_SIZE = _SIGHTING.size
_DROPPED = struct.Struct(">H")
_CLONE = struct.Struct(">BBxxIII")
_PAIR = struct.Struct(">BI")
_NS = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_OUTBOX_HEAD = _U64.pack(0)
_OPERATOR = re.compile(r"([0-9]{3})-([0-9]{2,3})")


def operator_code(operator: str) -> int:
    """The 4-byte code of an MCC-MNC such as ``510-10`` (0 for ``""`` or anything else)."""
    found = _OPERATOR.fullmatch(operator)
    if found is None:
        return 0
    mcc, mnc = found.groups()
    return int(mcc) << 16 | (len(mnc) == 3) << 15 | int(mnc)


def operator_text(code: int) -> str:
    """The MCC-MNC of an :func:`operator_code` (``""`` for 0)."""
    if not code:
        return ""
    mnc = code & 0x7FFF
    return f"{code >> 16:03d}-{mnc:03d}" if code & 0x8000 else f"{code >> 16:03d}-{mnc:02d}"


class CloneState(enum.IntEnum):
    """Where a device stands with the clone detector."""

    SUSPECTED = 1
    """A condition whose action is only to report it is met; answers are unchanged."""
    GREYLISTED = 2
    """GREYLISTED / DUPLICATE for every SIM but its pairs, until the block day."""
    BLOCKED = 3
    """BLACKLISTED / DUPLICATE for every SIM but its pairs."""
    CLEARED = 4
    """A ministry/admin principal cleared it; conditions are not applied again to it."""


class ConditionKind(enum.IntEnum):
    """The conditions the detector knows (bit ``1 << value`` in a clone's ``conditions``)."""

    DUPLICATE_THRESHOLD = 0
    SIMULTANEITY = 1

    @property
    def label(self) -> str:
        return self.name.lower()


class PairKind(enum.IntEnum):
    """How a SIM became a device's pair."""

    FIRST_SEEN = 1
    EXPLICIT = 2


@dataclass(frozen=True, slots=True)
class Sighting:
    """One SIM seen with one device: its token, whose key made it, who saw it, when."""

    token: bytes
    namespace: int
    operator: int
    first_min: int
    last_min: int

    def pack(self) -> bytes:
        return _SIGHTING.pack(
            self.token, self.namespace, self.operator, self.first_min, self.last_min
        )


def pack_sightings(dropped: int, sightings: Sequence[Sighting]) -> bytes:
    return _DROPPED.pack(min(dropped, 0xFFFF)) + b"".join(s.pack() for s in sightings)


def unpack_sightings(value: bytes) -> tuple[int, list[Sighting]]:
    (dropped,) = _DROPPED.unpack_from(value)
    return dropped, [
        Sighting(*_SIGHTING.unpack_from(value, at))
        for at in range(_DROPPED.size, len(value), SIGHTING_SIZE)
    ]


@dataclass(frozen=True, slots=True)
class CloneInfo:
    """One device's clone state."""

    state: CloneState
    conditions: int
    """Bits ``1 << ConditionKind`` of the conditions met."""
    flagged_day: int
    """Unix day the state began."""
    block_day: int
    """Unix day it is (or was) BLACKLISTED; 0 if the action never blocks."""
    changed_at: int
    """Unix seconds of the last transition."""

    def pack(self) -> bytes:
        return _CLONE.pack(
            self.state, self.conditions, self.flagged_day, self.block_day, self.changed_at
        )

    @classmethod
    def unpack(cls, value: bytes) -> CloneInfo:
        state, conditions, flagged, block, changed = _CLONE.unpack(value)
        return cls(CloneState(state), conditions, flagged, block, changed)

    @property
    def kinds(self) -> tuple[ConditionKind, ...]:
        return tuple(k for k in ConditionKind if self.conditions >> k & 1)


CLONE_SIZE = _CLONE.size
PAIR_KEY_SIZE = 8 + _NS.size + 16
PAIR_SIZE = _PAIR.size


class Observations(View):
    """``observations``: the SIMs each device was seen with."""

    __slots__ = ()

    def get(self, key: bytes) -> tuple[int, list[Sighting]]:
        value = self._get(key)
        return (0, []) if value is None else unpack_sightings(value)

    def put(self, key: bytes, dropped: int, sightings: Sequence[Sighting]) -> None:
        if sightings:
            self._txn.put(key, pack_sightings(dropped, sightings), db=self._db)
        else:
            self._txn.delete(key, db=self._db)

    def items(self) -> Iterator[tuple[bytes, int, list[Sighting]]]:
        for key, value in self._items():
            yield (key, *unpack_sightings(value))


class Clones(View):
    """``clones``: devices the detector flagged."""

    __slots__ = ()

    def get(self, key: bytes) -> CloneInfo | None:
        value = self._get(key)
        return None if value is None else CloneInfo.unpack(value)

    def put_packed(self, key: bytes, value: bytes | None) -> None:
        if value is None:
            self._txn.delete(key, db=self._db)
        else:
            self._txn.put(key, value, db=self._db)

    def items(self) -> Iterator[tuple[bytes, CloneInfo]]:
        for key, value in self._items():
            yield key, CloneInfo.unpack(value)

    def packed_items(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, packed state) in key order (a replica's snapshot)."""
        return self._items()

    def replace(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        """Every state replaced by *items* (a replica's bootstrap, in its one transaction)."""
        self._txn.drop(self._db, delete=False)
        if items:
            self._txn.cursor(self._db).putmulti(items)

    def devices(self) -> Iterator[bytes]:
        for key, _value in self._items():
            yield key


def pair_key(device: bytes, namespace: int, token: bytes) -> bytes:
    return device + _NS.pack(namespace) + token


def split_pair_key(key: bytes) -> tuple[bytes, int, bytes]:
    return key[:8], _NS.unpack_from(key, 8)[0], key[12:]


def pack_pair(kind: PairKind, at: int) -> bytes:
    return _PAIR.pack(kind, at)


def unpack_pair(value: bytes) -> tuple[PairKind, int]:
    kind, at = _PAIR.unpack(value)
    return PairKind(kind), at


class Pairs(View):
    """``pairs``: the SIMs whose answers a clone flag does not change."""

    __slots__ = ()

    def has(self, device: bytes, namespace: int, token: bytes) -> bool:
        return self._get(pair_key(device, namespace, token)) is not None

    def of_device(self, device: bytes) -> Iterator[tuple[int, bytes, PairKind, int]]:
        """(namespace, token, kind, paired at) of each pair of *device*."""
        for key, value in self._items(device, device):
            _dev, ns, token = split_pair_key(key)
            yield (ns, token, *unpack_pair(value))

    def put_packed(self, key: bytes, value: bytes | None) -> None:
        if value is None:
            self._txn.delete(key, db=self._db)
        else:
            self._txn.put(key, value, db=self._db)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return self._items()

    def replace(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        """Every pair replaced by *items* (a replica's bootstrap, in its one transaction)."""
        self._txn.drop(self._db, delete=False)
        if items:
            self._txn.cursor(self._db).putmulti(items)


class Vault(View):
    """``imsi_vault``: a replica's clear IMSIs, sealed (:mod:`ceir.store.vault`)."""

    __slots__ = ()

    def get(self, token: bytes) -> bytes | None:
        return self._get(token)

    def put(self, token: bytes, sealed: bytes) -> None:
        self._txn.put(token, sealed, db=self._db)

    def delete(self, token: bytes) -> None:
        self._txn.delete(token, db=self._db)

    def tokens(self) -> list[bytes]:
        return [key for key, _value in self._items()]


class Outbox(View):
    """``outbox``: a replica's sealed upstream messages until the broker acknowledged
    them (:mod:`ceir.clones.upstream`). Each gets the next number of this store's *epoch*
    (8 random bytes made with the first one): the central skips a number it has taken,
    and a store made anew (a new epoch) starts again at 1."""

    __slots__ = ()

    def _head(self) -> tuple[int, int]:
        value = self._get(_OUTBOX_HEAD)
        if value is None:
            return 0, 0
        return _U64.unpack_from(value)[0], _U64.unpack_from(value, 8)[0]

    def reserve(self) -> tuple[int, int]:
        """(epoch, sequence) for the next message; the sequence is never handed out again."""
        epoch, last = self._head()
        if not epoch:
            epoch = int.from_bytes(os.urandom(8), "big") or 1
        self._txn.put(_OUTBOX_HEAD, _U64.pack(epoch) + _U64.pack(last + 1), db=self._db)
        return epoch, last + 1

    def put(self, seq: int, message: bytes) -> None:
        self._txn.put(_U64.pack(seq), message, db=self._db)

    def oldest(self, n: int) -> list[tuple[int, bytes]]:
        """Up to *n* waiting messages, oldest first."""
        out = []
        for key, value in self._items(_U64.pack(1)):
            out.append((_U64.unpack(key)[0], value))
            if len(out) >= n:
                break
        return out

    def delete(self, seqs: Sequence[int]) -> None:
        for seq in seqs:
            self._txn.delete(_U64.pack(seq), db=self._db)

    def waiting(self) -> int:
        """How many messages wait."""
        n = self.count()
        return n - 1 if self._get(_OUTBOX_HEAD) is not None else n
