"""Checking one feed field: IMEIs, dates, enums, booleans; the reasons a row is rejected.

Every check raises :class:`~ceir.errors.FeedRowError` naming the field, the reason and,
when it is obvious, the fix. Values of personal fields are never echoed.
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, date, datetime, timedelta, timezone

from ceir import imei as imei_mod
from ceir.errors import FeedRowError, InvalidImeiError, InvalidReason
from ceir.store.identity import IdKind, normalise

__all__ = [
    "FEED_TZ",
    "RejectReason",
    "parse_bool",
    "parse_choice",
    "parse_feed_imei",
    "parse_identity",
    "parse_instant",
    "redact",
    "required",
]

FEED_TZ = timezone(timedelta(hours=7), "WIB")
"""Date-only values mean that day in Western Indonesia Time (UTC+7)."""
DAY = 86_400
_MAX_U32 = 2**32 - 1


class RejectReason(enum.Enum):
    """Why a row was not imported. ``malformed`` reasons count toward the bad-row limit."""

    BAD_IMEI = "bad_imei"
    BAD_TAC = "bad_tac"
    LOST_LEADING_ZERO = "lost_leading_zero"
    """A 7-digit TAC: the leading zero a spreadsheet dropped."""
    MISSING_FIELD = "missing_field"
    BAD_DATE = "bad_date"
    BAD_VALUE = "bad_value"
    MALFORMED_ROW = "malformed_row"
    DUPLICATE = "duplicate"
    UNKNOWN_TAC = "unknown_tac"
    CONFLICT = "conflict"
    QUOTA = "quota"
    COOLDOWN = "cooldown"
    NOT_ELIGIBLE = "not_eligible"
    TOO_LONG = "too_long"
    NOT_BLOCKED = "not_blocked"
    NOT_OWNER = "not_owner"
    """An operator clearing a block it did not make (or that no operator made)."""

    @property
    def malformed(self) -> bool:
        """A data-quality problem (vs. a channel rule applied to good data)."""
        return self in _MALFORMED


_MALFORMED = frozenset(
    {
        RejectReason.BAD_IMEI,
        RejectReason.BAD_TAC,
        RejectReason.LOST_LEADING_ZERO,
        RejectReason.MISSING_FIELD,
        RejectReason.BAD_DATE,
        RejectReason.BAD_VALUE,
        RejectReason.MALFORMED_ROW,
        RejectReason.DUPLICATE,
        RejectReason.UNKNOWN_TAC,
    }
)


MAX_MESSAGE = 300
"""Longest reject message or fix kept and returned (a 10 MB field is not echoed back)."""
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_DIGIT_RUN = re.compile(r"\d{6,}")


def _describe(match: re.Match[str]) -> str:
    value = match.group(0)[1:-1]
    kinds = [
        name
        for name, present in (
            ("digits", any(c.isdigit() for c in value)),
            ("letters", any(c.isalpha() for c in value)),
            ("other characters", any(not c.isalnum() for c in value)),
        )
        if present
    ]
    return f"<{len(value)} characters: {', '.join(kinds) or 'none'}>"


def redact(text: str, *, personal: bool) -> str:
    """*text* fit to keep and show: at most :data:`MAX_MESSAGE` characters; for a feed
    with personal columns, no quoted value (its length and kinds of characters instead)
    and no run of 6 or more digits (a swapped column would hold a NIK or an MSISDN)."""
    if personal:
        text = _QUOTED.sub(_describe, text)
        text = _DIGIT_RUN.sub(lambda m: f"<{len(m.group(0))} digits>", text)
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 1] + "…"
    return text


_PASSPORT = re.compile(r"[A-Z0-9]{5,20}")


def parse_identity(kind: IdKind, value: str, field: str) -> str:
    """A NIK or passport number in the one form that is tokenised (NFKC, upper case, no
    spaces or separators), so that spelling it another way gets no new quota: a NIK is
    16 digits, a passport number 5-20 letters and digits. The value is never echoed."""
    number = normalise(value)
    if not number:
        raise FeedRowError(field, RejectReason.MISSING_FIELD, f"{field} is empty")
    if kind is IdKind.NIK:
        if len(number) != 16 or not (number.isascii() and number.isdigit()):
            raise FeedRowError(
                field,
                RejectReason.BAD_VALUE,
                f"{field} is not a NIK: {len(number)} characters"
                f"{'' if number.isdigit() else ', not all digits'}; a NIK has 16 digits",
            )
    elif kind is IdKind.PASSPORT and not (number.isascii() and _PASSPORT.fullmatch(number)):
        raise FeedRowError(
            field,
            RejectReason.BAD_VALUE,
            f"{field} is not a passport number: {len(number)} characters; one has 5-20 "
            "letters and digits",
        )
    return number


def required(value: str, field: str) -> str:
    """*value* unless it is empty."""
    if not value:
        raise FeedRowError(field, RejectReason.MISSING_FIELD, f"{field} is empty")
    return value


# Luhn in three lookups: the TAC's share (cached per TAC) and two 3-digit SNR groups.
# The SNR starts at position 8 (even): of positions 8..13 counted from the left, the
# odd ones (9, 11, 13) are doubled, as in ceir.imei.check_digit.
_DOUBLE = tuple(sum(divmod(2 * d, 10)) for d in range(10))
_SNR_HEAD = tuple(a + _DOUBLE[b] + c for a in range(10) for b in range(10) for c in range(10))
_SNR_TAIL = tuple(
    _DOUBLE[a] + b + _DOUBLE[c] for a in range(10) for b in range(10) for c in range(10)
)
_tac_share: dict[str, int] = {}


def _tac_luhn(tac: str) -> int:
    share = _tac_share.get(tac)
    if share is None:
        share = sum(int(tac[i]) if i % 2 == 0 else _DOUBLE[int(tac[i])] for i in range(8))
        if len(_tac_share) < 1_000_000:
            _tac_share[tac] = share
    return share


def fast_check_digit(body: str) -> int:
    """:func:`ceir.imei.check_digit` for bulk feeds (cached per TAC)."""
    return -(_tac_luhn(body[:8]) + _SNR_HEAD[int(body[8:11])] + _SNR_TAIL[int(body[11:14])]) % 10


def feed_body(text: str, field: str = "imei") -> str:
    """:func:`parse_feed_imei`'s 14-digit body, without building an Imei (bulk feeds)."""
    if len(text) == 15 and text.isascii() and text.isdigit():
        body = text[:14]
        if ord(text[14]) - 48 == fast_check_digit(body):
            return body
    return parse_feed_imei(text, field).body


def parse_feed_imei(text: str, field: str = "imei") -> imei_mod.Imei:
    """A feed IMEI: 15 digits with a valid check digit, or 14 digits. Nothing else."""
    if len(text) == 15 and text.isascii() and text.isdigit():
        body = text[:14]
        if ord(text[14]) - 48 == fast_check_digit(body):
            return imei_mod.Imei(body)
    if not text:
        raise FeedRowError(field, RejectReason.MISSING_FIELD, f"{field} is empty")
    if len(text) == 16 and text.isascii() and text.isdigit():
        raise FeedRowError(
            field,
            RejectReason.BAD_IMEI,
            f"{field} {text!r} has 16 digits (an IMEISV?); feeds take the 15-digit IMEI",
        )
    try:
        parsed = imei_mod.parse(text)
    except InvalidImeiError as exc:
        raise FeedRowError(
            field, RejectReason.BAD_IMEI, f"{field} {text!r}: {exc.message}", _imei_fix(text, exc)
        ) from None
    return parsed


def _imei_fix(text: str, exc: InvalidImeiError) -> str:
    if exc.reason is InvalidReason.NON_DIGIT:
        try:
            lenient = imei_mod.parse_lenient(text)
        except InvalidImeiError:
            return ""
        return lenient.canonical
    if exc.reason is InvalidReason.BAD_LENGTH and len(text) == 13:
        # 13 digits: a 14-digit IMEI body that lost its leading zero in a spreadsheet?
        return f"0{text}"
    return ""


def parse_choice(value: str, field: str, choices: tuple[str, ...]) -> str:
    """One of *choices*, exactly; a case or space slip gets the fix."""
    if value in choices:
        return value
    if not value:
        raise FeedRowError(field, RejectReason.MISSING_FIELD, f"{field} is empty")
    fixed = value.strip().upper()
    fix = next((c for c in choices if c.upper() == fixed), "")
    raise FeedRowError(
        field,
        RejectReason.BAD_VALUE,
        f"{field} {value!r} is not one of {', '.join(choices)}",
        fix,
    )


_TRUE = frozenset({"TRUE", "YES", "Y", "1"})
_FALSE = frozenset({"FALSE", "NO", "N", "0"})


def parse_bool(value: str, field: str) -> bool:
    """``true`` or ``false``, exactly."""
    if value == "true":
        return True
    if value == "false":
        return False
    if not value:
        raise FeedRowError(field, RejectReason.MISSING_FIELD, f"{field} is empty")
    upper = value.strip().upper()
    fix = "true" if upper in _TRUE else "false" if upper in _FALSE else ""
    raise FeedRowError(
        field, RejectReason.BAD_VALUE, f"{field} {value!r} is not true or false", fix
    )


_DMY = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})$")
_instant_cache: dict[tuple[str, bool], int] = {}


def parse_instant(value: str, field: str, *, end_of_day: bool = False) -> int:
    """Unix seconds of an ISO 8601 date or date-time with an offset.

    A date alone means that day in UTC+7; with *end_of_day* it means the end of that day
    (an "until" date includes the whole day).
    """
    cached = _instant_cache.get((value, end_of_day))
    if cached is not None:
        return cached
    result = _parse_instant(value, field, end_of_day)
    if len(_instant_cache) < 100_000:
        _instant_cache[(value, end_of_day)] = result
    return result


def _parse_instant(value: str, field: str, end_of_day: bool) -> int:
    if not value:
        raise FeedRowError(field, RejectReason.MISSING_FIELD, f"{field} is empty")
    if len(value) == 10:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise FeedRowError(
                field,
                RejectReason.BAD_DATE,
                f"{field} {value!r} is not a date (YYYY-MM-DD)",
                _dmy_fix(value),
            ) from None
        moment = datetime(day.year, day.month, day.day, tzinfo=FEED_TZ)
        if end_of_day:
            moment += timedelta(days=1)
    else:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise FeedRowError(
                field,
                RejectReason.BAD_DATE,
                f"{field} {value!r} is not an ISO 8601 date",
                _dmy_fix(value),
            ) from None
        if moment.tzinfo is None:
            raise FeedRowError(
                field,
                RejectReason.BAD_DATE,
                f"{field} {value!r} has a time but no UTC offset; add one, e.g. +07:00",
                f"{value}+07:00",
            )
    seconds = int(moment.timestamp())
    if not 0 < seconds <= _MAX_U32:
        raise FeedRowError(field, RejectReason.BAD_DATE, f"{field} {value!r} is out of range")
    return seconds


def _dmy_fix(value: str) -> str:
    match = _DMY.match(value.strip())
    if not match:
        return ""
    day, month, year = (int(g) for g in match.groups())
    if day <= 12 or month > 12:
        return ""  # day and month could be swapped: not obvious
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return ""


def day_number(seconds: int) -> int:
    """The calendar day (UTC+7) of a Unix time, as days since 1970-01-01."""
    return (seconds + 7 * 3600) // DAY


def iso_day(seconds: int) -> str:
    """A Unix time as its UTC+7 date, for messages."""
    return datetime.fromtimestamp(seconds, UTC).astimezone(FEED_TZ).date().isoformat()
