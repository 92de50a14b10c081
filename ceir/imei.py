"""The IMEI: parsing, the Luhn check digit, TAC/SNR/SVN and the store key.

Pure domain code: no I/O, no gRPC, no LMDB. Following 3GPP TS 23.003, an IMEI is
TAC (8 digits) + SNR (6) + CD (1), and an IMEISV is TAC + SNR + SVN (2). The check
digit is never sent by the network, so a device's identity is its 14-digit *body*;
the check digit is computed for display and verified only when one is supplied.

:func:`parse` is strict (operators, feeds): ASCII digits only, 14, 15 or 16 of them.
:func:`parse_lenient` is for people: it also drops spaces and dashes (Unicode ones
too), maps fullwidth and mathematical digits, and trims surrounding whitespace, so
that it accepts exactly what ``python-stdnum``'s ``stdnum.imei`` accepts.
"""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass

from ceir.errors import InvalidImeiError, InvalidReason

__all__ = [
    "BODY_LENGTH",
    "KEY_LENGTH",
    "Imei",
    "Junk",
    "body_from_key",
    "body_key",
    "check_digit",
    "junk_flags",
    "parse",
    "parse_lenient",
]

BODY_LENGTH = 14
KEY_LENGTH = 8
MAX_BODY = 10**BODY_LENGTH - 1

_DIGITS = frozenset("0123456789")

# Luhn over a 14-digit body, two digits at a time: the left digit of each pair is
# taken as is, the right one doubled (digits summed), because the check digit that
# follows sits at position 0 from the right. _PAIR[n] is the contribution of pair n.
_PAIR = tuple((n // 10) + sum(divmod(2 * (n % 10), 10)) for n in range(100))
# The same by text, four digits (two pairs) at a time: three dict lookups and one more
# replace seven int() calls, the bulk of a per-IMEI lookup's cost.
_QUAD = {f"{n:04d}": _PAIR[n // 100] + _PAIR[n % 100] for n in range(10_000)}
_DUO = {f"{n:02d}": _PAIR[n] for n in range(100)}


def check_digit(body: str) -> int:
    """The Luhn check digit of a 14-digit body (ISO/IEC 7812, as TS 23.003 specifies)."""
    quad = _QUAD
    return -(quad[body[0:4]] + quad[body[4:8]] + quad[body[8:12]] + _DUO[body[12:14]]) % 10


def body_key(body: str) -> bytes:
    """The 8-byte store key of a 14-digit body: its value as a big-endian integer.

    Key order is numeric order, so TAC ranges are contiguous in the store.
    """
    return int(body).to_bytes(KEY_LENGTH, "big")


def body_from_key(key: bytes) -> str:
    """The 14-digit body whose :func:`body_key` is *key*."""
    value = int.from_bytes(key, "big")
    if len(key) != KEY_LENGTH or value > MAX_BODY:
        raise InvalidImeiError(
            InvalidReason.OUT_OF_RANGE, f"key {key.hex()} is not the key of a 14-digit IMEI body"
        )
    return f"{value:014d}"


class Junk(enum.Flag):
    """Patterns that mark an IMEI as junk. Flagged, not rejected: policy decides."""

    NONE = 0
    SAME_DIGIT = enum.auto()
    """Every digit of the body is the same (``00000000000000``)."""
    SEQUENCE = enum.auto()
    """The body counts up or down (``12345678901234``)."""
    TEST_TAC = enum.auto()
    """A test TAC: ``00`` followed by ``10`` or ``01``..``17``, or ``44``/``86``/``91`` (DIRBS)."""


_TEST_TAC_PREFIXES = frozenset(
    ["0010", *(f"00{n:02d}" for n in range(1, 18)), "0044", "0086", "0091"]
)
_UP = "01234567890123456789"
_DOWN = "98765432109876543210"


def junk_flags(body: str) -> Junk:
    """The junk patterns a 14-digit body matches."""
    flags = Junk.NONE
    if body == body[0] * BODY_LENGTH:
        flags |= Junk.SAME_DIGIT
    if body in _UP or body in _DOWN:
        flags |= Junk.SEQUENCE
    if body[:4] in _TEST_TAC_PREFIXES:
        flags |= Junk.TEST_TAC
    return flags


@dataclass(frozen=True, slots=True)
class Imei:
    """A valid IMEI or IMEISV. Build one with :func:`parse` or :func:`parse_lenient`."""

    body: str
    """TAC + SNR: 14 ASCII digits. The device's identity."""
    svn: str | None = None
    """The 2-digit software version number, when parsed from an IMEISV."""

    @property
    def tac(self) -> str:
        """Type Allocation Code: the first 8 digits."""
        return self.body[:8]

    @property
    def snr(self) -> str:
        """Serial number: digits 9 to 14."""
        return self.body[8:]

    @property
    def check_digit(self) -> int:
        """The Luhn check digit computed over the body."""
        return check_digit(self.body)

    @property
    def canonical(self) -> str:
        """The 15-digit form: body + check digit."""
        return f"{self.body}{check_digit(self.body)}"

    @property
    def key(self) -> bytes:
        """The 8-byte big-endian store key."""
        return body_key(self.body)

    @property
    def junk(self) -> Junk:
        """Junk patterns this IMEI matches (``Junk.NONE`` for an ordinary one)."""
        return junk_flags(self.body)

    def formatted(self, separator: str = "-") -> str:
        """The canonical form grouped as people write it: ``35-209900-176148-1``."""
        c = self.canonical
        return separator.join((c[:2], c[2:8], c[8:14], c[14:]))

    def __str__(self) -> str:
        return self.canonical

    @classmethod
    def from_key(cls, key: bytes) -> Imei:
        """The IMEI whose store key is *key*."""
        return cls(body_from_key(key))


def parse(text: str) -> Imei:
    """Strictly parse 14, 15 (check digit verified) or 16 (IMEISV) ASCII digits.

    Raises :class:`InvalidImeiError` saying what is wrong.
    """
    if not text:
        raise InvalidImeiError(InvalidReason.EMPTY, "IMEI is empty")
    if not (text.isascii() and text.isdigit()):
        bad = next(ch for ch in text if ch not in _DIGITS)
        position = text.index(bad) + 1
        raise InvalidImeiError(
            InvalidReason.NON_DIGIT,
            f"IMEI must be digits only; found {bad!r} at position {position}",
        )
    n = len(text)
    if n == BODY_LENGTH:
        return Imei(text)
    if n == BODY_LENGTH + 1:
        body = text[:BODY_LENGTH]
        expected = check_digit(body)
        if int(text[BODY_LENGTH]) != expected:
            raise InvalidImeiError(
                InvalidReason.BAD_CHECK_DIGIT,
                f"check digit {text[BODY_LENGTH]} does not match; expected {expected}",
            )
        return Imei(body)
    if n == BODY_LENGTH + 2:
        return Imei(text[:BODY_LENGTH], svn=text[BODY_LENGTH:])
    raise InvalidImeiError(
        InvalidReason.BAD_LENGTH,
        f"IMEI has {n} digits; expected 14 (no check digit), 15 (with check digit) or 16 (IMEISV)",
    )


def _chars(names: str) -> frozenset[str]:
    return frozenset(unicodedata.lookup(name.strip()) for name in names.split(","))


# Characters people (and word processors) put between digit groups, which the lenient
# parser drops. Chosen to agree with python-stdnum's notion of dashes and spaces.
_DASHES = _chars(
    "HYPHEN-MINUS, ARMENIAN HYPHEN, HEBREW PUNCTUATION MAQAF, HYPHEN, NON-BREAKING HYPHEN,"
    "FIGURE DASH, EN DASH, EM DASH, HORIZONTAL BAR, SMALL HYPHEN-MINUS, FULLWIDTH HYPHEN-MINUS,"
    "MONGOLIAN NIRUGU, OVERLINE, HYPHEN BULLET, MACRON, MODIFIER LETTER MINUS SIGN,"
    "FULLWIDTH MACRON, OGHAM SPACE MARK, SUPERSCRIPT MINUS, SUBSCRIPT MINUS, MINUS SIGN,"
    "HORIZONTAL LINE EXTENSION, HORIZONTAL SCAN LINE-1, HORIZONTAL SCAN LINE-3,"
    "HORIZONTAL SCAN LINE-7, HORIZONTAL SCAN LINE-9, STRAIGHTNESS"
)
_SPACES = _chars(
    "SPACE, NO-BREAK SPACE, EN QUAD, EM QUAD, EN SPACE, EM SPACE, THREE-PER-EM SPACE,"
    "FOUR-PER-EM SPACE, SIX-PER-EM SPACE, FIGURE SPACE, PUNCTUATION SPACE, THIN SPACE,"
    "HAIR SPACE, NARROW NO-BREAK SPACE, MEDIUM MATHEMATICAL SPACE, IDEOGRAPHIC SPACE"
)
_DIGIT_NAMES = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")
_DIGIT_STYLES = (
    "FULLWIDTH",
    "MATHEMATICAL BOLD",
    "MATHEMATICAL DOUBLE-STRUCK",
    "MATHEMATICAL SANS-SERIF",
    "MATHEMATICAL SANS-SERIF BOLD",
    "MATHEMATICAL MONOSPACE",
)
_LENIENT = str.maketrans(
    {
        **dict.fromkeys(_DASHES | _SPACES),
        **{
            unicodedata.lookup(f"{style} DIGIT {name}"): str(value)
            for style in _DIGIT_STYLES
            for value, name in enumerate(_DIGIT_NAMES)
        },
    }
)


def normalize_lenient(text: str) -> str:
    """Drop separators, map wide digits and trim whitespace, as a person's input needs."""
    return text.translate(_LENIENT).strip()


def parse_lenient(text: str) -> Imei:
    """Parse what a person typed: ``35-209900-176148-1``, ``35 209900 176148 1``, ...

    Raises :class:`InvalidImeiError` saying what is wrong; a stray character's position
    is counted in *text* as typed, not in its normalized form.
    """
    try:
        return parse(normalize_lenient(text))
    except InvalidImeiError as exc:
        if exc.reason is not InvalidReason.NON_DIGIT:
            raise
        position = _typed_position(text, normalize_lenient(text))
    raise InvalidImeiError(
        InvalidReason.NON_DIGIT,
        f"IMEI must be digits only; found {text[position - 1]!r} at position {position}",
    )


def _typed_position(text: str, normalized: str) -> int:
    """The 1-based position in *text* of the first non-digit of its *normalized* form."""
    # Each character of text is dropped or mapped to exactly one character, and the
    # normalized form is what is kept, less leading whitespace: map the index back.
    kept = [i for i, ch in enumerate(text) if ch.translate(_LENIENT)]
    translated = text.translate(_LENIENT)
    leading = len(translated) - len(translated.lstrip())
    first_bad = next(i for i, ch in enumerate(normalized) if ch not in _DIGITS)
    return kept[leading + first_bad] + 1
