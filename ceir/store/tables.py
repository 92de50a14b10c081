"""One typed view per table, over one transaction: the only code that knows key layouts.

:meth:`Store.snapshot() <ceir.store.env.Store.snapshot>` and
:meth:`Store.write() <ceir.store.env.Store.write>` hand out :class:`Tables`, a view of
every table inside one read or write transaction. Nothing outside ``ceir/store/`` sees a
transaction, a cursor or a sub-database handle. A table an older read-only store lacks
reads as empty.

Key layouts (see :mod:`ceir.store.env` for what each table holds):

==============  ===========================================================================
``devices``     8-byte body key -> 12-byte record
``tacs``        8 ASCII digits -> ``brand \\x1f model \\x1f device_type``
``details``     device key + 1-byte feed-kind code -> ``\\x1f``-joined fields
``identities``  16-byte identity token + 4-byte day number -> 4-byte count
``rejects``     4-byte origin + 4-byte row number -> JSON reject
``digests``     32-byte import key -> 4-byte origin
``imports``     4-byte origin -> JSON origin record
``audit``       device key + 8-byte sequence number -> one packed change (:mod:`ceir.store.audit`)
``audit_links`` 8-byte first sequence number of a batch -> its origin, time, digest, link
``shapes``      ``#`` + 4-byte id -> shared leading ``details`` fields; ``=`` + hash -> id
``stages``      4-byte stage id + 4-byte part (0: the stage record) -> JSON or sealed bytes
``config``      a name -> a value
``changes``     8-byte sequence -> 8-byte commit time (ms) + packed ops (:mod:`ceir.store.changes`)
``replica``     ``state`` -> JSON position of a replica (:mod:`ceir.store.replica`)
``volume``      4-byte hour + 1-byte feed-kind code + principal label (none: the whole
                channel) -> 8-byte count of writes (:mod:`ceir.feeds.volume`)
``lists``       4-byte run id -> JSON run; run id + list name + NUL + 4-byte chunk -> bytes
``observations`` ``clones`` ``pairs`` ``imsi_vault`` ``outbox``: the clone detector's
                (:mod:`ceir.store.clonetables`)
==============  ===========================================================================
"""

from __future__ import annotations

import itertools
import json
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ceir.record import Record
from ceir.store._view import SEP, TOKEN_BYTES, pack_fields, put_ascending, unpack_fields
from ceir.store._view import View as _View
from ceir.store.audittables import AuditLog
from ceir.store.changes import open_body, seal
from ceir.store.clonetables import Clones, Observations, Outbox, Pairs, Vault
from ceir.store.details import Details
from ceir.store.listruns import ListRuns

__all__ = ["SEP", "TOKEN_BYTES", "Details", "Tables", "TacInfo", "pack_fields", "unpack_fields"]

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_PAIR = struct.Struct(">II")


@dataclass(frozen=True, slots=True)
class TacInfo:
    """What the TAC database says of one Type Allocation Code."""

    tac: str
    brand: str
    model: str
    device_type: str = ""

    def pack(self) -> bytes:
        return pack_fields(self.brand, self.model, self.device_type)

    @classmethod
    def unpack(cls, tac: str, value: bytes) -> TacInfo:
        brand, model, device_type = unpack_fields(value)
        return cls(tac, brand, model, device_type)


class Devices(_View):
    """``devices``: body key -> packed record."""

    __slots__ = ()

    def packed(self, key: bytes) -> bytes | None:
        return self._get(key)

    def record(self, key: bytes) -> Record | None:
        value = self._get(key)
        return None if value is None else Record.unpack(value)

    def items(self) -> Iterator[tuple[bytes, Record]]:
        for key, value in self._items():
            yield key, Record.unpack(value)

    def packed_items(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, packed record) of every device, in key order."""
        return self._items()

    def present(self, keys: Sequence[bytes]) -> list[bytes]:
        """Which of *keys* (sorted) have a record: one ``getmulti``."""
        found = self._txn.cursor(self._db).getmulti(keys)
        return [bytes(k) for k, _v in found]

    def any_within(self, low: bytes, high: bytes) -> bool:
        """Whether a device is stored with a key from *low* to *high* (inclusive)."""
        cursor = self._txn.cursor(self._db)
        return bool(cursor.set_range(low)) and bytes(cursor.key()) <= high

    def put(self, items: Mapping[bytes, bytes | None]) -> None:
        """Packed records by key (None: delete the device)."""
        self._put(items)

    def delete(self, key: bytes) -> bool:
        return bool(self._txn.delete(key, db=self._db))

    def put_pairs(self, pairs: Iterable[tuple[bytes, bytes]]) -> None:
        """(key, packed record) pairs, written in the order given (sorted is fastest)."""
        self._txn.cursor(self._db).putmulti(pairs)

    def clear(self) -> None:
        """Delete every device (a replica's bootstrap, inside its one transaction)."""
        self._txn.drop(self._db, delete=False)

    def append(self, pairs: list[tuple[bytes, bytes]]) -> None:
        """(key, packed record) pairs in ascending key order, after every stored key."""
        self._txn.cursor(self._db).putmulti(pairs, append=True)

    def put_ascending(self, pairs: Sequence[tuple[bytes, bytes]]) -> None:
        """(key, packed record) pairs in strictly ascending key order: appended where
        they lie above every stored key (pages filled), else put in order."""
        put_ascending(self._txn, self._db, pairs)


class Tacs(_View):
    """``tacs``: 8-digit TAC -> brand, model, device type."""

    __slots__ = ()

    def get(self, tac: str) -> TacInfo | None:
        value = self._get(tac.encode())
        return None if value is None else TacInfo.unpack(tac, value)

    def packed(self, key: bytes) -> bytes | None:
        return self._get(key)

    def all_keys(self) -> list[bytes]:
        """Every TAC (ASCII key), in order."""
        if self._db is None:
            return []
        return [bytes(k) for k in self._txn.cursor(self._db).iternext(values=False)]

    def put(self, entries: Iterable[tuple[bytes, bytes]]) -> None:
        """Packed entries (:meth:`TacInfo.pack`) by ASCII TAC key."""
        self._txn.cursor(self._db).putmulti(sorted(entries))

    def packed_items(self) -> Iterator[tuple[bytes, bytes]]:
        """(ASCII TAC key, packed entry) of every TAC, in key order."""
        return self._items()

    def delete(self, key: bytes) -> bool:
        return bool(self._txn.delete(key, db=self._db))

    def clear(self) -> None:
        self._txn.drop(self._db, delete=False)


class Identities(_View):
    """``identities``: how many devices one identity registered for one arrival day."""

    __slots__ = ()

    def days(self, token: bytes) -> dict[int, int]:
        """Arrival day -> devices registered, for one identity token."""
        return {
            _U32.unpack(key[len(token) :])[0]: _U32.unpack(value)[0]
            for key, value in self._items(token, token)
        }

    def before(self, day: int) -> list[tuple[bytes, int]]:
        """(token, day) of every count for an arrival before *day*."""
        if self._db is None:
            return []
        cursor = self._txn.cursor(self._db)
        out = []
        for key in cursor.iternext(keys=True, values=False):
            found = _U32.unpack(key[TOKEN_BYTES : TOKEN_BYTES + 4])[0]
            if found < day:
                out.append((bytes(key[:TOKEN_BYTES]), found))
        return out

    def put(self, counts: Mapping[tuple[bytes, int], int | None]) -> None:
        """Counts by (token, day); None deletes the count."""
        self._put(
            {
                token + _U32.pack(day): None if n is None else _U32.pack(n)
                for (token, day), n in counts.items()
            }
        )


class Rejects(_View):
    """``rejects``: the rejected rows of one import, by row number."""

    __slots__ = ()

    def put(self, origin: int, rows: Iterable[tuple[int, dict[str, Any]]]) -> None:
        pairs = [
            (_PAIR.pack(origin, row), json.dumps(r, separators=(",", ":")).encode())
            for row, r in rows
        ]
        if pairs:
            self._txn.cursor(self._db).putmulti(sorted(pairs))

    def of_origin(self, origin: int) -> Iterator[dict[str, Any]]:
        prefix = _U32.pack(origin)
        for _key, value in self._items(prefix, prefix):
            yield dict(json.loads(value))

    def origins(self) -> list[int]:
        """The origins that have rejects, ascending (one seek per origin)."""
        found: list[int] = []
        if self._db is None:
            return found
        cursor = self._txn.cursor(self._db)
        more = cursor.first()
        while more:
            origin = int(_U32.unpack(bytes(cursor.key())[:4])[0])
            found.append(origin)
            more = origin < 0xFFFFFFFF and cursor.set_range(_U32.pack(origin + 1))
        return found

    def delete_origin(self, origin: int) -> int:
        """Delete every reject of *origin*; returns how many."""
        keys = [key for key, _value in self._items(_U32.pack(origin), _U32.pack(origin))]
        for key in keys:
            self._txn.delete(key, db=self._db)
        return len(keys)


class Digests(_View):
    """``digests``: what makes an import the same (file digest, kind, rules) -> its origin."""

    __slots__ = ()

    def get(self, key: bytes) -> int | None:
        value = self._get(key)
        return None if value is None else _U32.unpack(value)[0]

    def put(self, key: bytes, origin: int) -> None:
        self._txn.put(key, _U32.pack(origin), db=self._db)


class Imports(_View):
    """``imports``: one record per origin (a file import, a request, a purge...)."""

    __slots__ = ()

    def last(self) -> int:
        key = self._last_key()
        return 0 if key is None else int(_U32.unpack(key)[0])

    def get(self, origin: int) -> dict[str, Any] | None:
        value = self._get(_U32.pack(origin))
        return None if value is None else dict(json.loads(value))

    def put(self, origin: int, info: Mapping[str, Any]) -> None:
        value = json.dumps(info, sort_keys=True, separators=(",", ":")).encode()
        self._txn.put(_U32.pack(origin), value, db=self._db)


class Stages(_View):
    """``stages``: bulk imports waiting for a second principal (:mod:`ceir.feeds.staging`):
    part 0 is the stage's JSON record, parts 1.. its file, sealed."""

    __slots__ = ()

    @staticmethod
    def aad(stage_id: int, part: int) -> bytes:
        """The bytes a sealed part is bound to (its key)."""
        return _PAIR.pack(stage_id, part)

    def last(self) -> int:
        key = self._last_key()
        return 0 if key is None else int(_PAIR.unpack(key)[0])

    def record(self, stage_id: int) -> dict[str, Any] | None:
        value = self._get(_PAIR.pack(stage_id, 0))
        return None if value is None else dict(json.loads(value))

    def records(self) -> Iterator[dict[str, Any]]:
        for key, value in self._items():
            if _PAIR.unpack(key)[1] == 0:
                yield dict(json.loads(value))

    def parts(self, stage_id: int) -> Iterator[tuple[int, bytes]]:
        """(part, sealed bytes) of the stage's file, in order."""
        prefix = _U32.pack(stage_id)
        for key, value in self._items(_PAIR.pack(stage_id, 1), prefix):
            yield _PAIR.unpack(key)[1], value

    def put(self, stage_id: int, record: Mapping[str, Any], parts: Iterable[bytes]) -> None:
        self._txn.put(_PAIR.pack(stage_id, 0), json.dumps(record).encode(), db=self._db)
        for part, sealed in enumerate(parts, 1):
            self._txn.put(_PAIR.pack(stage_id, part), sealed, db=self._db)

    def delete(self, stage_id: int) -> None:
        for key, _value in list(self._items(_PAIR.pack(stage_id, 0), _U32.pack(stage_id))):
            self._txn.delete(key, db=self._db)


_LAST_STAGE = b"stages:last-id"  # in config: see Tables.next_stage_id


class Config(_View):
    """``config``: store-wide settings by name."""

    __slots__ = ()

    def get(self, name: bytes) -> bytes | None:
        return self._get(name)

    def put(self, name: bytes, value: bytes) -> None:
        self._txn.put(name, value, db=self._db)

    def delete(self, name: bytes) -> bool:
        return self._db is not None and bool(self._txn.delete(name, db=self._db))


class ChangeLog(_View):
    """``changes``: what replicas apply, by sequence number (:mod:`ceir.store.changes`)."""

    __slots__ = ()

    def last(self) -> tuple[int, int]:
        """(last sequence, its commit time in Unix ms); (0, 0) when empty."""
        if self._db is None:
            return 0, 0
        cursor = self._txn.cursor(self._db)
        if not cursor.last():
            return 0, 0
        return int(_U64.unpack(cursor.key())[0]), int(_U64.unpack(cursor.value()[:8])[0])

    def first(self) -> int:
        """The lowest sequence still held; 0 when empty."""
        if self._db is None:
            return 0
        cursor = self._txn.cursor(self._db)
        return int(_U64.unpack(cursor.key())[0]) if cursor.first() else 0

    def trim(self, below: int, before_ms: int, limit: int) -> tuple[int, int]:
        """Delete, from the oldest on, up to *limit* entries numbered below *below* and
        committed before *before_ms*; returns (entries, bytes) deleted."""
        if self._db is None:
            return 0, 0
        cursor = self._txn.cursor(self._db)
        count = size = 0
        found = cursor.first()
        while found and count < limit:
            key, value = cursor.item()
            if _U64.unpack(key)[0] >= below or _U64.unpack(value[:8])[0] >= before_ms:
                break
            size += len(key) + len(value)
            count += 1
            found = cursor.delete()  # moves to the next entry
        return count, size

    def append(self, first: int, committed_ms: int, bodies: list[bytes]) -> None:
        stamp = _U64.pack(committed_ms)
        pairs = [(_U64.pack(first + i), stamp + seal(body)) for i, body in enumerate(bodies)]
        self._txn.cursor(self._db).putmulti(pairs, append=True)

    def after(self, seq: int, limit: int) -> list[tuple[int, int, bytes]]:
        """Up to *limit* (sequence, commit time, body) numbered above *seq*, in order."""
        out = []
        for key, value in self._items(_U64.pack(seq + 1)):
            stamp, body = int(_U64.unpack(value[:8])[0]), open_body(value[8:])
            out.append((int(_U64.unpack(key)[0]), stamp, body))
            if len(out) >= limit:
                break
        return out


class ReplicaPosition(_View):
    """``replica``: where a replica stands (one JSON value)."""

    __slots__ = ()

    def get(self) -> bytes | None:
        return self._get(b"state")

    def put(self, value: bytes) -> None:
        self._txn.put(b"state", value, db=self._db)


class Volume(_View):
    """``volume``: devices' answers changed per hour, per channel and per principal."""

    __slots__ = ()

    @staticmethod
    def key(hour: int, code: int, label: str) -> bytes:
        """The bucket of *hour* (hours since the epoch) for feed kind *code* and principal
        *label* (``""``: every principal of the channel together)."""
        return _U32.pack(hour) + bytes((code,)) + label.encode()

    def get(self, key: bytes) -> int:
        value = self._get(key)
        return 0 if value is None else int(_U64.unpack(value)[0])

    def add(self, key: bytes, n: int) -> None:
        self._txn.put(key, _U64.pack(self.get(key) + n), db=self._db)

    def drop_before(self, hour: int) -> int:
        """Delete every bucket older than *hour*; returns how many."""
        keys = list(itertools.takewhile(lambda k: k[:4] < _U32.pack(hour), self._keys()))
        for key in keys:
            self._txn.delete(key, db=self._db)
        return len(keys)


class Tables:
    """Every table, viewed through one transaction (read-only in a snapshot)."""

    __slots__ = (
        "audit",
        "changes",
        "clones",
        "config",
        "details",
        "devices",
        "digests",
        "identities",
        "imports",
        "lists",
        "observations",
        "outbox",
        "pairs",
        "rejects",
        "replica",
        "stages",
        "tacs",
        "vault",
        "volume",
    )

    def __init__(self, txn: Any, devices: Any, tacs: Any, dbs: Mapping[str, Any]) -> None:
        self.devices = Devices(txn, devices)
        self.tacs = Tacs(txn, tacs)
        self.details = Details(txn, dbs["details"], dbs["shapes"], dbs["audit"])
        self.identities = Identities(txn, dbs["identities"])
        self.rejects = Rejects(txn, dbs["rejects"])
        self.digests = Digests(txn, dbs["digests"])
        self.imports = Imports(txn, dbs["imports"])
        self.audit = AuditLog(txn, dbs["audit"], dbs["audit_links"], dbs["details"])
        self.stages = Stages(txn, dbs["stages"])
        self.config = Config(txn, dbs["config"])
        self.changes = ChangeLog(txn, dbs["changes"])
        self.replica = ReplicaPosition(txn, dbs["replica"])
        self.lists = ListRuns(txn, dbs["lists"])
        self.observations = Observations(txn, dbs["observations"])
        self.clones = Clones(txn, dbs["clones"])
        self.pairs = Pairs(txn, dbs["pairs"])
        self.vault = Vault(txn, dbs["imsi_vault"])
        self.outbox = Outbox(txn, dbs["outbox"])
        self.volume = Volume(txn, dbs["volume"])

    def next_stage_id(self) -> int:
        """A stage id this store never issued before (the last one is kept in ``config``),
        so an `approve N` from shell history can never reach a later, different file."""
        issued = self.config.get(_LAST_STAGE)
        last = max(self.stages.last(), _U32.unpack(issued)[0] if issued else 0)
        self.config.put(_LAST_STAGE, _U32.pack(last + 1))
        return last + 1
