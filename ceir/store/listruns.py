"""The ``lists`` table: list-export runs and their snapshots (read by :mod:`ceir.store.lists`).

Key layout: 4-byte big-endian run id -> the run's JSON record; run id + list name (UTF-8)
+ NUL + 4-byte chunk number -> one compressed chunk of that list's snapshot.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ceir.store._view import View

__all__ = ["ListRuns"]

_U32 = struct.Struct(">I")


class ListRuns(View):
    """``lists``: list-export runs (:mod:`ceir.store.lists`): a JSON record per run, and
    each list's snapshot in numbered chunks."""

    __slots__ = ()

    @staticmethod
    def _prefix(run: int, name: str) -> bytes:
        return _U32.pack(run) + name.encode() + b"\0"

    def last(self) -> int:
        key = self._last_key()
        return 0 if key is None else int(_U32.unpack(key[:4])[0])

    def record(self, run: int) -> dict[str, Any] | None:
        value = self._get(_U32.pack(run))
        return None if value is None else dict(json.loads(value))

    def runs(self) -> list[int]:
        """Every recorded run id, ascending."""
        return [int(_U32.unpack(key)[0]) for key, _v in self._items() if len(key) == 4]

    def put(self, run: int, record: Mapping[str, Any]) -> None:
        value = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
        self._txn.put(_U32.pack(run), value, db=self._db)

    def put_chunks(self, run: int, name: str, chunks: Sequence[bytes]) -> None:
        prefix = self._prefix(run, name)
        for i, chunk in enumerate(chunks):
            self._txn.put(prefix + _U32.pack(i), chunk, db=self._db)

    def chunks(self, run: int, name: str) -> Iterator[bytes]:
        """The chunks of list *name* of *run*, in order."""
        prefix = self._prefix(run, name)
        for _key, value in self._items(prefix, prefix):
            yield value

    def delete(self, run: int) -> None:
        """Delete *run*: its record and every snapshot chunk."""
        prefix = _U32.pack(run)
        for key, _value in list(self._items(prefix, prefix)):
            self._txn.delete(key, db=self._db)
