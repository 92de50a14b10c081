"""Plain CSV, a chunk of rows at a time, as numpy arrays (the bulk import's reader).

A *plain* file is what generators and operators' exports write: UTF-8 without a BOM, a
header that is exactly the kind's columns in order, ``\\n`` line ends, no quotes, no
blank lines, no NUL. For such a file every physical line is one row and ``csv.reader``
splits a line exactly where its commas are, so the row-by-row reader's values are
``line.split(",")``; this module finds the commas and fields of a whole chunk at once.
A file that is not plain raises :class:`NotPlainError` before anything is written, and
the importer reads it row by row instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ceir.errors import FeedRowError
from ceir.feeds.reader import MAX_LINE, NotPlainError, Row, _too_long
from ceir.feeds.rows import RejectReason

__all__ = ["Chunk", "Fields", "NotPlainError", "chunks", "pieces", "row_values", "split"]

_BLOCK = 8 << 20
_FORBIDDEN = (b'"', b"\x00")
_NL, _CR, _COMMA, _SPACE = 10, 13, 44, 32
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


@dataclass
class Chunk:
    """Consecutive rows of a plain file."""

    start: int
    """0-based index of the first row (data rows; the header is not a row)."""
    buf: bytes
    begins: Ints
    ends: Ints
    nl: Ints
    """Offsets in *buf* of each line's first byte, of the byte after its last (its
    ``\\r\\n`` or ``\\n`` excluded), and of its ``\\n``."""
    offset: int = 0
    """The file offset of ``buf[0]``."""

    def __len__(self) -> int:
        return len(self.ends)

    @property
    def arr(self) -> npt.NDArray[np.uint8]:
        return np.frombuffer(self.buf, np.uint8)

    def line_number(self, r: int) -> int:
        """The file line of row *r* of the chunk (line 1 is the header)."""
        return self.start + r + 2

    def values(self, r: int, width: int) -> Row:
        """Row *r* exactly as :class:`~ceir.feeds.reader.FeedReader` yields it."""
        raw = self.buf[int(self.begins[r]) : int(self.ends[r])]
        return row_values(raw, self.line_number(r), int(self.nl[r] - self.ends[r]) + 1, width)


def row_values(raw: bytes, line: int, eol: int, width: int) -> Row:
    """The row of file line *line* whose bytes are *raw* (its line end of *eol* bytes
    excluded) exactly as :class:`~ceir.feeds.reader.FeedReader` yields it."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise NotPlainError from None  # the row-by-row reader refuses the file
    if len(text) + eol > MAX_LINE + 1:
        return line, _too_long()
    values = text.split(",")
    if len(values) != width:
        message = f"row has {len(values)} fields; the header has {width}"
        return line, FeedRowError("", RejectReason.MALFORMED_ROW, message)
    return line, values


def chunks(path: Path, header: str, rows: int, cut: int = 0) -> Iterator[Chunk]:
    """The rows of plain file *path* in chunks of *rows* (no chunk spans row *cut*).

    Raises :class:`NotPlainError` when the file's header is not exactly *header* or a
    byte or line the plain reading cannot take appears.
    """
    with path.open("rb") as f:
        first = f.readline()
        if first.removesuffix(b"\n").removesuffix(b"\r") != header.encode():
            raise NotPlainError
        pend = b""
        pend_nl: Ints = np.empty(0, np.int64)
        start, offset = 0, len(first)
        eof = False
        while not eof:
            block = f.read(_BLOCK)
            if not block:
                eof = True
                block = b"\n" if pend and not pend.endswith(b"\n") else b""
            if any(bad in block for bad in _FORBIDDEN):
                raise NotPlainError
            base = len(pend)
            pend += block
            found = np.flatnonzero(np.frombuffer(block, np.uint8) == _NL) + base
            if not found.size and not eof:
                continue
            # The offsets of complete lines only; a partial last line waits for the next block.
            pend_nl = np.concatenate((pend_nl, found))
            while len(pend_nl) and (len(pend_nl) >= _want(start, rows, cut) or eof):
                n = min(len(pend_nl), _want(start, rows, cut))
                cut_at = int(pend_nl[n - 1]) + 1
                buf = pend[:cut_at]
                nl = pend_nl[:n].astype(np.int64)
                begins = np.concatenate(([0], nl[:-1] + 1)).astype(np.int64)
                ends = nl - (np.frombuffer(buf, np.uint8)[np.maximum(nl - 1, 0)] == _CR)
                if np.any(ends <= begins) or buf.count(b"\r") != buf.count(b"\r\n"):
                    # A blank line (skipped by the row-by-row reader) or a lone "\r"
                    # (a line end to the csv module).
                    raise NotPlainError
                yield Chunk(start, buf, begins, ends, nl, offset)
                start += n
                offset += cut_at
                pend = pend[cut_at:]
                pend_nl = pend_nl[n:] - cut_at


def _want(start: int, rows: int, cut: int) -> int:
    return cut - start if start < cut < start + rows else rows


@dataclass
class Fields:
    """Where the fields of a chunk's well-formed lines are."""

    rows: Ints
    """Chunk rows whose lines have the header's width and only printable ASCII."""
    starts: Ints
    stops: Ints
    """(len(rows), width): each field's first byte and the byte after its last."""

    def lengths(self, j: int) -> Ints:
        return self.stops[:, j] - self.starts[:, j]

    def plain_text(self, arr: npt.NDArray[np.uint8], j: int) -> Bools:
        """Field *j* is non-empty with no space at either end (``Context.text`` keeps
        it as it is)."""
        length = self.lengths(j)
        first: npt.NDArray[np.uint8] = arr[np.minimum(self.starts[:, j], len(arr) - 1)]
        last: npt.NDArray[np.uint8] = arr[np.maximum(self.stops[:, j] - 1, 0)]
        ok: Bools = (length > 0) & (first != _SPACE) & (last != _SPACE)
        return ok

    def fixed(self, arr: npt.NDArray[np.uint8], j: int, width: int) -> npt.NDArray[np.uint8]:
        """The first *width* bytes of field *j* of every row, (len(rows), width)."""
        at = self.starts[:, j, None] + np.arange(width)
        out: npt.NDArray[np.uint8] = arr[np.minimum(at, len(arr) - 1)]
        return out

    def count(self, cum: npt.NDArray[np.int32], j: int) -> npt.NDArray[np.int32]:
        """How many marked bytes field *j* holds, from *cum* (a 0-prefixed cumsum)."""
        return cum[self.stops[:, j]] - cum[self.starts[:, j]]


def split(chunk: Chunk, width: int) -> Fields:
    """The fields of the chunk's lines that have *width* fields of printable ASCII."""
    arr = chunk.arr
    commas = np.flatnonzero(arr == _COMMA)
    before_end = np.searchsorted(commas, chunk.ends)
    before_begin = np.searchsorted(commas, chunk.begins)
    bad = (arr < _SPACE) | (arr > 126)  # includes each line's end
    line_ends = chunk.nl - chunk.ends + 1  # "\n" or "\r\n": bad bytes of every line
    if np.count_nonzero(bad) == int(line_ends.sum()):  # no other bad byte: all lines clean
        bad_lines = np.zeros(len(chunk), np.int64)
    else:
        bad_lines = np.add.reduceat(bad, chunk.begins, dtype=np.int64) - line_ends
    per_line = before_end - before_begin
    ok = (per_line == width - 1) & (bad_lines == 0)
    n = len(chunk)
    if width > 1 and len(commas) == n * (width - 1) and bool(ok.all()):
        # Every line is well-formed (the usual file): its commas are one row each.
        c = commas.reshape(n, width - 1).astype(np.int64)
        starts = np.empty((n, width), np.int64)
        stops = np.empty((n, width), np.int64)
        starts[:, 0], starts[:, 1:] = chunk.begins, c + 1
        stops[:, :-1], stops[:, -1] = c, chunk.ends
        return Fields(np.arange(n, dtype=np.int64), starts, stops)
    rows = np.flatnonzero(ok)
    if width > 1 and rows.size:
        at = before_begin[rows, None] + np.arange(width - 1)
        c = commas[at]
        starts = np.hstack((chunk.begins[rows, None], c + 1))
        stops = np.hstack((c, chunk.ends[rows, None]))
    elif rows.size:
        starts = chunk.begins[rows, None]
        stops = chunk.ends[rows, None]
    else:
        starts = stops = np.empty((0, width), np.int64)
    return Fields(rows, starts.astype(np.int64), stops.astype(np.int64))


_DOUBLE = np.array([0, 2, 4, 6, 8, 1, 3, 5, 7, 9], np.uint8)
_POWERS = (10.0 ** np.arange(13, -1, -1)).astype(np.float64)


def imei_keys(digits: npt.NDArray[np.uint8]) -> tuple[Bools, npt.NDArray[np.uint64]]:
    """For (n, 15) ASCII bytes: whether each is 15 digits with a valid check digit, and
    its 14-digit body as an integer (the store key's value)."""
    d = digits - np.uint8(48)
    valid = np.all(d <= 9, axis=1)
    d = np.where(valid[:, None], d, 0).astype(np.uint8)
    total = d[:, 0:14:2].sum(axis=1, dtype=np.int64) + _DOUBLE[d[:, 1:14:2]].sum(
        axis=1, dtype=np.int64
    )
    check = (10 - total % 10) % 10
    valid &= check == d[:, 14]
    body = d[:, :14].astype(np.float64) @ _POWERS  # exact: below 10**14 < 2**53
    return valid, body.astype(np.uint64)


def key_bytes(keys: npt.NDArray[np.uint64]) -> list[bytes]:
    """8-byte big-endian store keys of integer bodies."""
    return pieces(keys.astype(">u8"), 8)


def pieces(values: npt.NDArray[Any], size: int) -> list[bytes]:
    """The *size*-byte values of a fixed-width array as bytes, exactly (a void view's
    ``tolist``: an ``S`` array's would strip trailing NUL bytes)."""
    out: list[bytes] = np.ascontiguousarray(values).view(f"V{size}").ravel().tolist()
    return out
