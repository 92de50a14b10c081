"""The parsed rows of a bulk import as fixed-width columns, spooled, and read back in
ascending key order (:mod:`ceir.feeds.bulk`).

The check pass appends one :data:`ROW` per parsed row to a nameless file in the store's
spool; :func:`key_order` reads them back sorted by (key, file row), one key range at a
time, so that the memory an import holds does not grow with the file (a 100 M-row file
spools 2.9 GB; one range is at most :data:`BUCKET` rows in memory). The write pass then
writes contiguous key ranges: each commit dirties one run of B-tree pages and fills
them, instead of touching pages spread over the whole table.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ceir.store.env import spool_file

if TYPE_CHECKING:
    from ceir.store import Store

__all__ = ["BUCKET", "DUP", "ERROR", "ROW", "SLOW", "Spool", "key_order"]

ROW = np.dtype(
    [("key", "<u8"), ("off", "<u8"), ("row", "<u4"), ("len", "<u4"), ("rec", "<u4"),
     ("flags", "u1")]
)  # fmt: skip
"""A parsed row: its key, where its line is in the file (offset, length without the line
end), its 0-based row number, its new record (an index into the import's records) and
:data:`SLOW` / :data:`DUP`."""
ERROR = np.dtype([("off", "<u8"), ("row", "<u4"), ("len", "<u4"), ("err", "<u4")])
"""A row that did not parse: where it is (its reject is made again from its bytes), and
for a row rejected by its date alone (``Feed.rejects_by_date``) 1 + the index of that
date's representative row, whose reject it shares (else 0)."""
SLOW = 1
"""Parsed by the kind's own ``parse`` (not proven by arrays): read again when written."""
DUP = 2
"""Repeats the key of an earlier row of the file."""
BUCKET = 4_000_000
"""Rows sorted at once (about 120 MB of columns and 32 MB of order)."""
_SCAN = 2_000_000
"""Spooled rows dealt out to the key ranges' spools at once."""

Rows = npt.NDArray[np.void]


class Spool:
    """Rows of one dtype appended to a nameless spool file, then read through a map."""

    def __init__(self, store: Store, dtype: np.dtype[np.void]) -> None:
        self.dtype = dtype
        self._file = spool_file(store)
        self._n = 0
        self._view: Rows | None = None

    def __len__(self) -> int:
        return self._n

    def append(self, rows: Rows) -> None:
        if self._view is not None:  # pragma: no cover - a spool is written, then read
            raise ValueError("spool already read")
        self._file.write(np.ascontiguousarray(rows.astype(self.dtype, copy=False)).data)
        self._n += len(rows)

    def view(self) -> Rows:
        """Every row, read-only (mapped: the page cache holds them, not this process)."""
        if self._view is None:
            self._file.flush()
            if not self._n:
                self._view = np.zeros(0, self.dtype)
            else:
                mapped = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
                self._view = np.frombuffer(mapped, self.dtype, self._n)
        return self._view

    def close(self) -> None:
        self._view = None
        self._file.close()


def _by_key(part: Rows) -> npt.NDArray[np.intp]:
    """The order of *part* (rows in file order) by key, then row: an unstable sort (about
    twice as fast), and a stable one only where two rows share a key."""
    keys = part["key"]
    order = np.argsort(keys)
    ordered = keys[order]
    if len(ordered) > 1 and bool(np.any(ordered[1:] == ordered[:-1])):
        order = np.lexsort((part["row"], keys))
    return order


class _Held:
    """A :class:`Spool` held in memory (small inputs, tests)."""

    def __init__(self) -> None:
        self._parts: list[Rows] = []

    def append(self, rows: Rows) -> None:
        self._parts.append(np.array(rows))

    def view(self) -> Rows:
        return np.concatenate(self._parts) if self._parts else np.zeros(0, ROW)

    def close(self) -> None:
        self._parts = []


def key_order(
    rows: Rows, bucket: int = BUCKET, spool: Callable[[], Spool | _Held] = _Held
) -> Iterator[Rows]:
    """*rows* (in file order) sorted by key, a row repeating a key after the earlier one:
    consecutive key ranges of at most about *bucket* rows each, in memory one at a time.
    The ranges are cut at keys sampled from *rows*, so the order is the file's alone;
    one pass deals the rows out to a *spool* per range, then each is sorted."""
    n = len(rows)
    if n <= bucket:
        if n:
            part = np.array(rows)
            yield part[_by_key(part)]
        return
    step = max(1, n // 200_000)
    sample = np.sort(rows["key"][::step])
    ranges = -(-n // bucket)
    edges = np.unique(sample[np.linspace(0, len(sample) - 1, ranges + 1).astype(np.int64)[1:-1]])
    spools = [spool() for _ in range(len(edges) + 1)]
    try:
        for at in range(0, n, _SCAN):
            piece = np.array(rows[at : at + _SCAN])
            which = np.searchsorted(edges, piece["key"], side="right")
            order = np.argsort(which, kind="stable")  # file order within a range
            bounds = np.searchsorted(which[order], np.arange(len(spools) + 1))
            piece = piece[order]
            del which, order
            for k, target in enumerate(spools):
                if bounds[k + 1] > bounds[k]:
                    target.append(piece[bounds[k] : bounds[k + 1]])
            del piece
        for target in spools:
            part = np.array(target.view())
            target.close()
            if len(part):
                yield part[_by_key(part)]
            del part
    finally:
        for target in spools:
            target.close()
