"""What an approver is shown of a staged file: a few of its rows, personal numbers tokenised.

The approver of a stage sees the file's first rows and some spread through it, so a file
of iPhones staged as "Nusantara N1" or a column of NIKs where IMEIs belong shows before it
is applied. Personal columns (NIK, passport, MSISDN, IMSI) appear only as the first hex
digits of their identity token (``tok_1a2b3c4d``: repeats of one identity show, the number
never does). In a feed with personal columns every other value is masked as the reject
messages are (digit runs of 6 or more replaced by their length: a swapped column would
hold a clear number there), except the IMEI's TAC, which says what model it is.
"""

from __future__ import annotations

from pathlib import Path

from ceir.errors import FeedRowError
from ceir.feeds import Format, Kind
from ceir.feeds.kinds import feed_for
from ceir.feeds.reader import open_feed
from ceir.feeds.rows import redact
from ceir.imei import check_digit
from ceir.store.identity import IdKind, Tokenizer

__all__ = ["SAMPLE_FIRST", "SAMPLE_SPREAD", "sample_rows"]

SAMPLE_FIRST = 5
"""The first rows of a file an approver sees."""
SAMPLE_SPREAD = 5
"""Rows spread evenly through the rest of the file."""
_TOKEN_HEX = 8
_WIDTH = 64
_ID_KINDS = {"imsi": IdKind.IMSI, "msisdn": IdKind.MSISDN, "passport_number": IdKind.PASSPORT}


def _picks(rows: int) -> set[int]:
    first = set(range(min(rows, SAMPLE_FIRST)))
    rest = rows - len(first)
    spread = {len(first) + rest * k // SAMPLE_SPREAD for k in range(SAMPLE_SPREAD)}
    return first | {i for i in spread if i < rows} | ({rows - 1} if rows else set())


def _shown(
    column: str, value: str, row: dict[str, str], personal: frozenset[str], tok: Tokenizer
) -> str:
    if column in personal:
        kind = _ID_KINDS.get(column)
        if kind is None:  # customs id_number: its id_type says which
            passport = row.get("id_type", "").strip().upper() == "PASSPORT"
            kind = IdKind.PASSPORT if passport else IdKind.NIK
        return "tok_" + tok.token(kind, value).hex()[:_TOKEN_HEX] if value else ""
    if personal and column == "imei":
        # Only the TAC of what is an IMEI (15 digits, Luhn): a 16-digit NIK put here would
        # read as an IMEISV, so anything else is masked whole.
        digits = value.strip()
        if len(digits) == 15 and digits.isdigit() and str(check_digit(digits[:14])) == digits[14]:
            return digits[:8] + "…"
        return redact(value, personal=True)[:_WIDTH]
    shown = redact(value, personal=bool(personal))[:_WIDTH]
    # A terminal escape or a newline in a row would forge lines on the approver's screen.
    return shown if shown.isprintable() else shown.encode("unicode_escape").decode("ascii")


def sample_rows(
    path: Path, kind: Kind, fmt: Format, rows: int, tokenizer: Tokenizer, *, name: str = ""
) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(columns, [(line, shown values)]) of about ten rows of the *rows* in *path*."""
    feed = feed_for(kind)
    columns = list(feed.fields)
    picks = _picks(rows)
    out: list[tuple[int, list[str]]] = []
    for i, (line, values) in enumerate(open_feed(path, feed, fmt, name=name).rows()):
        if i not in picks:
            continue
        if isinstance(values, FeedRowError):
            out.append((line, [f"(bad row: {values.reason.value})"]))
        else:
            row = dict(zip(columns, values, strict=False))
            shown = [_shown(c, v, row, feed.personal, tokenizer) for c, v in row.items()]
            out.append((line, shown))
        if len(out) == len(picks):
            break
    return columns, out
