"""Which rows of a plain chunk the row-by-row parser would accept, proven with numpy.

A row is *proven* when every check of its kind's ``parse`` is shown to pass by array
operations: the IMEI is 15 digits with a valid check digit (and, for manufacturers, its
TAC is known), the text fields need no trimming, the date is one the parser accepted on
a representative row (each distinct date is parsed once, by ``feed.parse`` itself, and
that row's key and details are compared with the ones computed here). Every other row
is parsed row by row, so its reject, fix and message are the row-by-row parser's.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from ceir.errors import FeedRowError
from ceir.feeds import Kind
from ceir.feeds._plain import Chunk, Fields, NotPlainError, imei_keys, split
from ceir.feeds.base import Context, Feed
from ceir.store.details import encode, token_values
from ceir.store.identity import TOKEN_BYTES, IdKind
from ceir.store.tables import SEP

__all__ = ["Proof", "Refusal", "prove", "stored_form"]

_TO_SEP = bytes.maketrans(b",", SEP.encode())
_DIGIT_LO, _DIGIT_HI, _PLUS = 48, 57, 43


class Refusal(NamedTuple):
    """A date whose rows are rejected alike: one of them (a chunk row), the date's text
    and the reject the kind's parser gave that row."""

    row: int
    date: bytes
    error: FeedRowError


@dataclass
class Proof:
    """The proven rows of a chunk and what each becomes."""

    rows: npt.NDArray[np.int64]
    """Chunk rows, ascending."""
    keys: npt.NDArray[np.uint64]
    rec: npt.NDArray[np.int64]
    """Each row's new record, as an index into :attr:`records`."""
    records: list[bytes]
    """The distinct packed records of the chunk's proven rows."""
    chunk: Chunk
    fields: Fields
    """Fields of the proven rows only."""
    feed: Feed
    ctx: Context
    refused: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    """Chunk rows rejected by their date alone (``Feed.rejects_by_date``), ascending..."""
    refusal: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    """...each with the index of its date in :attr:`refusals`."""
    refusals: list[Refusal] = field(default_factory=list)

    def details(self, select: npt.NDArray[np.int64]) -> list[bytes]:
        """The ``details`` values of proven rows ``rows[select]``: as stored
        (:func:`ceir.store.details.encode`) unless the kind's details are shared."""
        return _details(self.feed.kind, self.chunk, self.fields, select, self.ctx)


def stored_form(feed: Feed, details: bytes) -> bytes:
    """A parsed row's ``details`` in the form :meth:`Proof.details` gives them."""
    return details if feed.shared_details else encode(details)


def _details(
    kind: Kind, chunk: Chunk, f: Fields, select: npt.NDArray[np.int64], ctx: Context
) -> list[bytes]:
    buf = chunk.buf
    if kind is Kind.MANUFACTURER:
        if not len(select):
            return []
        first, last = f.starts[select, 1], f.stops[select, 5]
        low = int(first.min())
        tbuf = buf[low : int(last.max())].translate(_TO_SEP)
        starts, stops = (first - low).tolist(), (last - low).tolist()
        return [tbuf[a:b] for a, b in zip(starts, stops, strict=True)]
    # operator-dump: the IMSI and MSISDN tokens in bulk (already in their normal form:
    # prove() checked them), the date as a day number; nothing per row in Python.
    s, e = f.starts[select], f.stops[select]
    tokens = np.empty((len(select), 2, TOKEN_BYTES), np.uint8)
    tokens[:, 0] = ctx.tokenizer.digests(IdKind.IMSI, buf, s[:, 1], e[:, 1])
    tokens[:, 1] = ctx.tokenizer.digests(IdKind.MSISDN, buf, s[:, 2], e[:, 2])
    dates, _iso = _iso_days(f.fixed(chunk.arr, 3, 10)[select])
    uniq, inverse = np.unique(dates, return_inverse=True)
    epoch = [_epoch_day(int(d)) for d in uniq.tolist()]
    return token_values(tokens, np.array(epoch, np.int64)[inverse.ravel()])


_EPOCH = datetime.date(1970, 1, 1).toordinal()
_FIRST_DAY, _AFTER_DAY = 19700101, 21000101
"""The dates (YYYYMMDD) a proven operator-dump row may have: 2 bytes each in details."""


def _epoch_day(yyyymmdd: int) -> int:
    """Days since 1970 of a date; 0 for one that is not a date (such as 2020-02-30: its
    row is rejected by the parser, so these details are never kept or compared)."""
    year, rest = divmod(yyyymmdd, 10000)
    try:
        return datetime.date(year, *divmod(rest, 100)).toordinal() - _EPOCH
    except ValueError:
        return 0


def prove(chunk: Chunk, feed: Feed, ctx: Context, tacs: npt.NDArray[np.uint64] | None) -> Proof:
    """The rows of *chunk* proven to parse (*tacs*: the known TACs, sorted, or None when
    unknown TACs are allowed)."""
    width = len(feed.fields)
    f = split(chunk, width)
    arr = chunk.arr
    valid, keys = imei_keys(f.fixed(arr, 0, 15))
    ok = valid & (f.lengths(0) == 15)
    if feed.kind is Kind.MANUFACTURER:
        if tacs is not None:
            tac = keys // np.uint64(1_000_000)
            at = np.minimum(np.searchsorted(tacs, tac), max(len(tacs) - 1, 0))
            ok &= tacs[at] == tac if len(tacs) else False
        for j in range(1, 5):
            ok &= f.plain_text(arr, j)
    else:
        # The IMSI is digits, the MSISDN digits and "+" (their own normal forms): no
        # other byte lies inside them.
        other = np.flatnonzero((arr < _DIGIT_LO) | (arr > _DIGIT_HI))
        ok &= (f.lengths(1) > 0) & (_inside(other, f, 1) == 0)
        ok &= (f.lengths(2) > 0) & (_inside(other[arr[other] != _PLUS], f, 2) == 0)
    date = width - 1
    ok &= f.lengths(date) == 10
    rec = np.zeros(len(f.rows), np.int64)
    records: list[bytes] = []
    picked = np.flatnonzero(ok)
    if picked.size:
        # Each distinct date once: as the integer YYYYMMDD (a date not written so is left
        # to the row-by-row parser), which numpy finds the distinct values of fastest.
        days, iso = _iso_days(f.fixed(arr, date, 10)[picked])
        if feed.kind is Kind.OPERATOR_DUMP:
            iso &= (days >= _FIRST_DAY) & (days < _AFTER_DAY)
        ok[picked[~iso]] = False
        picked, days = picked[iso], days[iso]
    refused = refusal = np.zeros(0, np.int64)
    refusals: list[Refusal] = []
    if picked.size:
        _uniq, first, inverse = _distinct(days)
        reps = picked[first]
        good, index, slot, refusals = _dates(chunk, f, reps, feed, ctx, keys, records)
        ok[picked] = good[inverse]
        rec[picked] = index[inverse]
        gone = slot[inverse] >= 0
        refused, refusal = f.rows[picked[gone]], slot[inverse[gone]]
    sel = np.flatnonzero(ok)
    sub = Fields(f.rows[sel], f.starts[sel], f.stops[sel])
    return Proof(
        f.rows[sel], keys[sel], rec[sel], records, chunk, sub, feed, ctx, refused, refusal, refusals
    )


def _dates(
    chunk: Chunk,
    f: Fields,
    reps: npt.NDArray[np.int64],
    feed: Feed,
    ctx: Context,
    keys: npt.NDArray[np.uint64],
    records: list[bytes],
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64], npt.NDArray[np.int64], list[Refusal]]:
    """Each distinct date's representative row *reps* (of *f*) parsed by the kind: whether
    it is accepted, its record's index in *records* (added), and for a date that rejects
    its rows alike (``Feed.rejects_by_date``) its index in the refusals returned (else -1)."""
    n, date = len(reps), len(feed.fields) - 1
    good, index = np.zeros(n, bool), np.zeros(n, np.int64)
    slot = np.full(n, -1, np.int64)
    refusals: list[Refusal] = []
    made = _details(feed.kind, chunk, f, reps, ctx)  # the arrays' details, at once
    for u, i in enumerate(reps.tolist()):
        got = _representative(chunk, f, i, feed, ctx, keys, made[u])
        if isinstance(got, bytes):
            good[u], index[u] = True, len(records)
            records.append(got)
        elif feed.rejects_by_date:
            at = int(f.starts[i, date])
            slot[u] = len(refusals)
            refusals.append(Refusal(int(f.rows[i]), chunk.buf[at : at + 10], got))
    return good, index, slot, refusals


def _distinct(
    values: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The distinct *values* ascending, the index of a row holding each, and each row's
    distinct value's index: through a table over the values' span where it is small
    (a file's dates: a few thousand days), else by sorting (``np.unique``)."""
    low, high = int(values.min()), int(values.max())
    if high - low > 4 * len(values) + 4096:
        uniq, first, inverse = np.unique(values, return_index=True, return_inverse=True)
        return uniq, first, inverse.ravel()
    at = values - low
    present = np.zeros(high - low + 1, bool)
    present[at] = True
    slot = np.cumsum(present) - 1
    holder = np.empty(len(present), np.int64)
    holder[at] = np.arange(len(values))  # any row of each value will do
    where = np.flatnonzero(present)
    return where + low, holder[where], slot[at]


def _inside(at: npt.NDArray[np.int64], f: Fields, j: int) -> npt.NDArray[np.int64]:
    """How many of the byte offsets *at* (sorted) lie inside field *j* of each row."""
    found: npt.NDArray[np.int64] = np.searchsorted(at, f.stops[:, j]) - np.searchsorted(
        at, f.starts[:, j]
    )
    return found


_DAY_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9])
_DAY_POWERS = (10.0 ** np.arange(7, -1, -1)).astype(np.float64)


def _iso_days(text: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """For (n, 10) ASCII bytes: each as the integer YYYYMMDD, and whether it is written
    ``YYYY-MM-DD`` (digits and two dashes; the integer is exact only then)."""
    digits = text[:, _DAY_DIGITS] - np.uint8(48)
    iso = np.all(digits <= 9, axis=1) & (text[:, 4] == 45) & (text[:, 7] == 45)
    days = (digits.astype(np.float64) @ _DAY_POWERS).astype(np.int64)  # exact: < 10**8
    return days, iso


def _representative(
    chunk: Chunk,
    f: Fields,
    i: int,
    feed: Feed,
    ctx: Context,
    keys: npt.NDArray[np.uint64],
    details: bytes,
) -> bytes | FeedRowError:
    """The packed record row *i* (of *f*) parses to with the kind's own parser, or its
    reject; a key or details differing from the arrays' (*details*) is a bug that sends
    the file to the row-by-row path."""
    _line, values = chunk.values(int(f.rows[i]), len(feed.fields))
    if isinstance(values, FeedRowError):  # pragma: no cover - split() checked the width
        raise NotPlainError
    trimmed, fixed = ctx.trimmed, ctx.fixed
    try:
        cand = feed.parse(values, ctx)
    except FeedRowError as exc:
        return exc
    finally:
        ctx.trimmed, ctx.fixed = trimmed, fixed
    if cand.key != int(keys[i]).to_bytes(8, "big") or stored_form(feed, cand.details) != details:
        raise NotPlainError
    record: Any = cand.packed or cand.record.pack()
    return bytes(record)
