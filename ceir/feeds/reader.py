"""Reading feed files: CSV with a header row or JSON Lines, UTF-8, and the TAC dialects.

A reader yields ``(line, values)`` per data row, *values* being the kind's fields in
order (``""`` when absent), or ``(line, FeedRowError)`` for a row that cannot be read
(a CSV row with the wrong number of fields, a JSONL line that is not an object). A file
that cannot be read at all (not UTF-8, a required column missing) raises
:class:`~ceir.errors.FeedFormatError`. Unknown columns are ignored with a warning.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ceir.errors import FeedFormatError, FeedRowError
from ceir.feeds import Format, Kind
from ceir.feeds.base import Feed
from ceir.feeds.rows import RejectReason

__all__ = ["FeedReader", "NotPlainError", "detect_format", "open_feed"]

Row = tuple[int, list[str] | FeedRowError]

MAX_LINE = 65_536
"""Longest line (characters) of a feed file; a longer one is a malformed row, skipped
without being held in memory (a row of any feed kind is well under 1 KiB)."""
MAX_NESTING = 32
"""Most ``[`` and ``{`` in one JSON Lines row (a row is one flat object)."""
_TOO_LONG = "\x00ceir: line too long\x00\n"

# GSMA TAC database column names -> ours.
_GSMA_NAMES = {
    "tac": ("tac",),
    "brand": ("brand", "brand_name", "manufacturer"),
    "model": ("model", "model_name", "marketing_name"),
    "device_type": ("device_type", "devicetype", "equipment_type"),
}
_OSMOCOM_HEADER = "tac,name,name"


BULK_KINDS = frozenset({Kind.MANUFACTURER, Kind.OPERATOR_DUMP})
BULK_BYTES = 1 << 20
"""CSV files of the bulk kinds from this size on take the bulk path (smaller ones are
read row by row: the same outcome, without loading numpy)."""


class NotPlainError(Exception):
    """A CSV file the bulk path (:mod:`ceir.feeds.bulk`) cannot read as plain CSV: it is
    read row by row instead (internal to the importer; never raised to a caller)."""


def detect_format(path: Path, kind: Kind, name: str | None = None) -> Format:
    """The format of *path*, from its extension (of *name*, if given) and first lines."""
    if Path(name or path.name).suffix.lower() in (".jsonl", ".ndjson"):
        return Format.JSONL
    try:
        with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
            # Non-blank lines: a CR CR LF file reads as a line, then an empty one.
            head = [t for t in (f.readline(MAX_LINE).strip() for _ in range(4)) if t][:2]
            head += [""] * (2 - len(head))
    except OSError as exc:
        raise FeedFormatError(f"cannot read {path}: {exc.strerror}") from exc
    first = head[0]
    if first.startswith("{"):
        return Format.JSONL
    if kind is Kind.TAC:
        if head[1].lower().startswith(_OSMOCOM_HEADER):
            return Format.OSMOCOM
        if "|" in first and "," not in first.split("|", 1)[0]:
            return Format.GSMA
    return Format.CSV


@dataclass
class FeedReader:
    """One feed file opened for reading. Iterate :meth:`rows`; read :attr:`warnings`."""

    path: Path
    feed: Feed
    format: Format
    warnings: list[str] = field(default_factory=list)
    name: str = ""
    """The file's name in messages (*path* may be a spool copy's ``/proc/self/fd/N``)."""

    @property
    def shown(self) -> str:
        return self.name or str(self.path)

    def bulk(self, wanted: bool | None) -> bool:
        """Whether the bulk path (:mod:`ceir.feeds.bulk`) reads this file: a CSV file of a
        bulk kind, when *wanted*, or when None and the file has :data:`BULK_BYTES` with at
        least a line per KiB in them."""
        if self.feed.kind not in BULK_KINDS or self.format is not Format.CSV or wanted is False:
            return False
        if wanted:
            return True
        try:
            with self.path.open("rb") as f:
                head = f.read(BULK_BYTES)
        except OSError:
            return False  # the row-by-row reader says what is wrong
        # Big, and made of rows of a usual length (not one line of a million fields).
        return len(head) == BULK_BYTES and head.count(b"\n") >= BULK_BYTES // 1024

    def warn(self, message: str) -> None:
        """Note a warning once (the file is read more than once)."""
        if message not in self.warnings:
            self.warnings.append(message)

    def rows(self) -> Iterator[Row]:
        try:
            with self.path.open(encoding="utf-8-sig", newline="") as f:
                if self.format is Format.JSONL:
                    yield from self._jsonl(f)
                else:
                    yield from self._csv(f)
        except UnicodeDecodeError as exc:
            raise FeedFormatError(
                f"{self.shown} is not UTF-8 (byte {exc.start} of a chunk: "
                f"{exc.object[exc.start : exc.start + 1]!r}); save it as UTF-8"
            ) from exc
        except csv.Error as exc:
            raise FeedFormatError(f"{self.shown} is not readable CSV: {exc}") from exc
        except OSError as exc:
            raise FeedFormatError(f"cannot read {self.shown}: {exc.strerror}") from exc

    # -- CSV and the TAC dialects ------------------------------------------------------

    def _columns(self, header: list[str], names: dict[str, tuple[str, ...]]) -> list[int]:
        lowered = [h.strip().lower() for h in header]
        index: list[int] = []
        missing = []
        for name in self.feed.fields:
            found = next((lowered.index(n) for n in names.get(name, (name,)) if n in lowered), -1)
            if found < 0 and name not in self.feed.optional_columns:
                missing.append(name)
            index.append(found)
        if missing:
            raise FeedFormatError(
                f"{self.shown}: column(s) {', '.join(missing)} missing from the header; a "
                f"{self.feed.kind.value} feed has columns {','.join(self.feed.fields)}"
            )
        known = {n for name in self.feed.fields for n in names.get(name, (name,))}
        unknown = [h for h in header if h.strip().lower() not in known]
        if unknown and self.format is not Format.GSMA:
            self.warn(f"ignored unknown column(s): {', '.join(unknown)}")
        return index

    def _csv(self, f: io.TextIOBase) -> Iterator[Row]:
        delimiter = "|" if self.format is Format.GSMA else ","
        lines = _Lines(f)
        reader = csv.reader(lines, delimiter=delimiter)
        fields = self.feed.fields
        if self.format is Format.OSMOCOM:
            next(reader, None)  # the licence banner
            header = next(reader, None)
            if header is None:
                raise FeedFormatError(f"{self.shown}: no header after the Osmocom banner")
            width = len(header)
            index = [0, 1, 2, -1]  # tac, name (brand), name (model); no device type
        else:
            header = next(reader, None)
            if header is None:
                raise FeedFormatError(
                    f"{self.shown} is empty: no header (a {self.feed.kind.value} feed starts "
                    f"with the header {','.join(self.feed.fields)})"
                )
            width = len(header)
            if self.format is Format.GSMA and header[0].strip().lower() != "tac":
                index = [0, 1, 2, 3]  # no header: tac|brand|model|device_type
                width = -1
                yield from self._csv_row(lines.current, header, index, width)
            else:
                names = _GSMA_NAMES if self.format is Format.GSMA else {}
                index = self._columns(header, names)
        plain = index == list(range(len(fields))) and width == len(fields)
        while True:
            line = lines.following  # where the next row starts (it may span lines)
            row = next(reader, None)
            if row is None:
                return
            if not row:
                continue  # a blank line
            if row[0] == _TOO_LONG[:-1]:
                yield line, _too_long()
                continue
            if plain and len(row) == width:
                yield line, row
            else:
                yield from self._csv_row(line, row, index, width)

    def _csv_row(self, line: int, row: list[str], index: list[int], width: int) -> Iterator[Row]:
        if width >= 0 and len(row) != width:
            yield (
                line,
                FeedRowError(
                    "",
                    RejectReason.MALFORMED_ROW,
                    f"row has {len(row)} fields; the header has {width}",
                ),
            )
            return
        yield line, [row[i] if 0 <= i < len(row) else "" for i in index]

    # -- JSON Lines --------------------------------------------------------------------

    def _jsonl(self, f: io.TextIOBase) -> Iterator[Row]:
        fields = self.feed.fields
        known = set(fields)
        unknown: set[str] = set()
        lines = _Lines(f)
        for text in lines:
            line = lines.current
            if not text.strip():
                continue
            if text is _TOO_LONG:
                yield line, _too_long()
                continue
            if text.count("{") + text.count("[") > MAX_NESTING:
                yield (
                    line,
                    FeedRowError(
                        "", RejectReason.MALFORMED_ROW, "a JSON Lines row must be one flat object"
                    ),
                )
                continue
            try:
                obj = json.loads(text)
            except (ValueError, RecursionError) as exc:
                yield line, FeedRowError("", RejectReason.MALFORMED_ROW, f"not JSON: {exc}"[:200])
                continue
            if not isinstance(obj, dict):
                yield (
                    line,
                    FeedRowError(
                        "", RejectReason.MALFORMED_ROW, "a JSON Lines row must be an object"
                    ),
                )
                continue
            for key in obj.keys() - known - unknown:
                unknown.add(key)
                self.warn(f"ignored unknown field {key!r} (first on line {line})")
            try:
                yield line, [_json_text(obj.get(name), name) for name in fields]
            except FeedRowError as exc:
                yield line, exc
        if lines.current == 0:
            raise FeedFormatError(
                f"{self.shown} is empty: no header, no rows (a JSON Lines feed holds one "
                "object per line)"
            )


def _bounded(f: io.TextIOBase) -> Iterator[str]:
    """The lines of *f*, each at most :data:`MAX_LINE` characters read; a longer line is
    read past in pieces and stands as one ``_TOO_LONG`` marker line."""
    while True:
        line = f.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE and not line.endswith("\n"):
            while True:
                rest = f.readline(MAX_LINE)
                if not rest or rest.endswith("\n"):
                    break
            yield _TOO_LONG
            continue
        yield line


class _Lines:
    """The lines of *f* (from :func:`_bounded`, so universal newlines), numbered as an
    editor shows them: a line ends at LF, CRLF, or a lone CR that no CR or LF follows. So a
    CR CR LF file (a CRLF file converted to CRLF once more) has the line numbers of its
    LF original, not 2N - 1 (the lone CR before CRLF is not a line of its own)."""

    def __init__(self, f: io.TextIOBase) -> None:
        self._f = f
        self.current = 0
        """The editor line on which the item last yielded starts (0: none yet)."""
        self.following = 1
        """The editor line on which the next item starts."""

    def __iter__(self) -> Iterator[str]:
        items = _bounded(self._f)
        item = next(items, None)
        while item is not None:
            after = next(items, None)
            ends = item.endswith("\n") or (
                item.endswith("\r") and not (after or "").startswith(("\r", "\n"))
            )
            self.current = self.following
            self.following += ends
            yield item
            item = after


def _too_long() -> FeedRowError:
    return FeedRowError(
        "",
        RejectReason.MALFORMED_ROW,
        f"line is too long: over than {MAX_LINE:,} characters (a feed row is a few hundred)",
    )


def _json_text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    raise FeedRowError(
        name, RejectReason.BAD_VALUE, f"{name} must be a string, not {type(value).__name__}"
    )


def open_feed(
    path: Path, feed: Feed, fmt: Format | None = None, *, name: str | None = None
) -> FeedReader:
    """A reader of *path* as a *feed* file, in *fmt* or the detected format (from the
    extension of *name*, the file's own name, when *path* is a spool copy)."""
    if not path.is_file():
        raise FeedFormatError(f"no feed file at {path}")
    chosen = fmt or detect_format(path, feed.kind, name)
    if chosen in (Format.OSMOCOM, Format.GSMA) and feed.kind is not Kind.TAC:
        raise FeedFormatError(f"format {chosen.value} is for TAC databases only")
    return FeedReader(path, feed, chosen, name=name or "")
