"""ceir.imei: strict and lenient parsing, the Luhn check digit, keys and junk flags."""

from __future__ import annotations

import string
import sys
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import imei as std_imei
from stdnum import luhn

from ceir.errors import InvalidImeiError, InvalidReason
from ceir.imei import (
    KEY_LENGTH,
    Imei,
    Junk,
    body_from_key,
    body_key,
    check_digit,
    junk_flags,
    parse,
    parse_lenient,
)

bodies = st.text(alphabet=string.digits, min_size=14, max_size=14)
svns = st.text(alphabet=string.digits, min_size=2, max_size=2)


def lenient_valid(text: str) -> bool:
    try:
        parse_lenient(text)
    except InvalidImeiError:
        return False
    return True


def reason_of(text: str, *, lenient: bool = False) -> tuple[InvalidReason, str]:
    with pytest.raises(InvalidImeiError) as caught:
        (parse_lenient if lenient else parse)(text)
    return caught.value.reason, caught.value.message


# -- the check digit ---------------------------------------------------------------


def test_ts_23003_worked_example() -> None:
    """TS 23.003's example body 26053179311383 has check digit 7."""
    assert check_digit("26053179311383") == 7
    assert parse("260531793113837").canonical == "260531793113837"


@given(bodies)
def test_exactly_one_check_digit_is_valid(body: str) -> None:
    """Of the ten possible 15th digits, exactly one parses, and it is check_digit(body)."""
    valid = [d for d in string.digits if lenient_valid(body + d)]
    assert valid == [str(check_digit(body))]


@given(bodies)
def test_check_digit_is_luhn(body: str) -> None:
    """The check digit equals python-stdnum's independent Luhn implementation."""
    assert str(check_digit(body)) == luhn.calc_check_digit(body)


# -- parsed values -----------------------------------------------------------------


@given(bodies)
def test_canonical_round_trips(body: str) -> None:
    """parse(canonical) gives back the same body and canonical form, from 14 or 15 digits."""
    imei = parse(body)
    assert imei.canonical == body + str(check_digit(body))
    again = parse(imei.canonical)
    assert again == imei
    assert again.canonical == imei.canonical
    assert (again.tac, again.snr) == (body[:8], body[8:])
    assert again.check_digit == check_digit(body)
    assert str(again) == imei.canonical


@given(bodies, svns)
def test_imeisv_keeps_svn(body: str, svn: str) -> None:
    """A 16-digit IMEISV parses to its body and software version; no check digit is read."""
    imei = parse(body + svn)
    assert imei.body == body
    assert imei.svn == svn
    assert imei.canonical == body + str(check_digit(body))
    assert parse(body).svn is None


@given(bodies, bodies)
def test_key_order_is_numeric_order(a: str, b: str) -> None:
    """Store keys are 8 bytes and sort as the bodies' numbers do."""
    ka, kb = body_key(a), body_key(b)
    assert len(ka) == len(kb) == KEY_LENGTH
    assert (ka < kb) == (int(a) < int(b))
    assert (ka == kb) == (a == b)


@given(bodies)
def test_key_round_trips(body: str) -> None:
    """body_from_key(body_key(b)) == b, and Imei.from_key(imei.key) == imei."""
    assert body_from_key(body_key(body)) == body
    imei = parse(body)
    assert Imei.from_key(imei.key) == imei


def test_formatted_groups_digits() -> None:
    """formatted() writes the canonical form in the usual 2-6-6-1 groups."""
    imei = parse("35209900176148")
    assert imei.formatted() == "35-209900-176148-1"
    assert imei.formatted(" ") == "35 209900 176148 1"


# -- invalid input -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason", "message"),
    [
        ("", InvalidReason.EMPTY, "IMEI is empty"),
        (
            "35209900176148X",
            InvalidReason.NON_DIGIT,
            "IMEI must be digits only; found 'X' at position 15",
        ),
        (
            "3520990017614a1",
            InvalidReason.NON_DIGIT,
            "IMEI must be digits only; found 'a' at position 14",
        ),
        (
            "35-209900-176148-1",
            InvalidReason.NON_DIGIT,
            "IMEI must be digits only; found '-' at position 3",
        ),
        (
            "\uff1352099001761481",
            InvalidReason.NON_DIGIT,
            "IMEI must be digits only; found '\uff13' at position 1",
        ),
        (
            "1234567890123",
            InvalidReason.BAD_LENGTH,
            "IMEI has 13 digits; expected 14 (no check digit), 15 (with check digit) "
            "or 16 (IMEISV)",
        ),
        (
            "35209900176148123",
            InvalidReason.BAD_LENGTH,
            "IMEI has 17 digits; expected 14 (no check digit), 15 (with check digit) "
            "or 16 (IMEISV)",
        ),
        (
            "352099001761482",
            InvalidReason.BAD_CHECK_DIGIT,
            "check digit 2 does not match; expected 1",
        ),
    ],
)
def test_strict_parse_says_what_is_wrong(text: str, reason: InvalidReason, message: str) -> None:
    """Strict parse rejects each kind of bad input with its reason and a precise message."""
    assert reason_of(text) == (reason, message)


def test_invalid_imei_error_is_a_ceir_error_and_value_error() -> None:
    """InvalidImeiError carries reason and message and is caught as CeirError or ValueError."""
    from ceir.errors import CeirError

    with pytest.raises(InvalidImeiError) as caught:
        parse("12")
    assert isinstance(caught.value, CeirError)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == caught.value.message


@pytest.mark.parametrize(
    "key",
    [
        (10**14).to_bytes(8, "big"),
        b"\xff" * 8,
        b"\x00" * 7,
        b"\x00" * 9,
    ],
)
def test_out_of_range_key(key: bytes) -> None:
    """A key that is not 8 bytes or above 99999999999999 is OUT_OF_RANGE, naming the key."""
    with pytest.raises(InvalidImeiError) as caught:
        body_from_key(key)
    assert caught.value.reason is InvalidReason.OUT_OF_RANGE
    assert caught.value.message == (f"key {key.hex()} is not the key of a 14-digit IMEI body")


def test_largest_body_key_is_valid() -> None:
    """99999999999999 is the largest body and its key decodes."""
    assert body_from_key((10**14 - 1).to_bytes(8, "big")) == "9" * 14


# -- lenient parsing ---------------------------------------------------------------


def test_stdnum_doctest_examples() -> None:
    """35-209900-176148-1 is valid and 35-417803-685978-2 has a bad check digit, as in stdnum."""
    assert parse_lenient("35-209900-176148-1").canonical == "352099001761481"
    assert reason_of("35-417803-685978-2", lenient=True) == (
        InvalidReason.BAD_CHECK_DIGIT,
        "check digit 2 does not match; expected 9",
    )


@pytest.mark.parametrize(
    "text",
    [
        "35 209900 176148 1",
        " 35-209900-176148-1\n",
        "35\u2013209900\u2014176148\u20121",
        "\uff13\uff15\uff12\uff10\uff19\uff19\uff10\uff10\uff11\uff17\uff16\uff11\uff14\uff18\uff11",
        "\U0001d7f9\U0001d7fb209900176148\U0001d7cf",
        "35\u00a0209900\u3000176148 1",
        "\t352099001761481 ",
    ],
)
def test_lenient_accepts_what_people_type(text: str) -> None:
    """Spaces, Unicode dashes, fullwidth/mathematical digits and outer whitespace are fine."""
    assert parse_lenient(text).canonical == "352099001761481"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("35-209900-17614X-1", "IMEI must be digits only; found 'X' at position 16"),
        (" \t35 209900 176148 1x", "IMEI must be digits only; found 'x' at position 21"),
        ("35.209900.176148.1", "IMEI must be digits only; found '.' at position 3"),
        ("\u0663" + "5209900176148", "IMEI must be digits only; found '\u0663' at position 1"),
    ],
)
def test_lenient_counts_positions_as_typed(text: str, message: str) -> None:
    """A stray character's position is reported in the text as the person typed it."""
    assert reason_of(text, lenient=True) == (InvalidReason.NON_DIGIT, message)


def test_lenient_reports_length_of_digits() -> None:
    """Lenient parse counts only the digits when the length is wrong."""
    reason, message = reason_of("35-2099-0017", lenient=True)
    assert reason is InvalidReason.BAD_LENGTH
    assert message.startswith("IMEI has 10 digits;")


# -- junk --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "flags"),
    [
        ("35209900176148", Junk.NONE),
        ("00000000000000", Junk.SAME_DIGIT),
        ("77777777777777", Junk.SAME_DIGIT),
        ("12345678901234", Junk.SEQUENCE),
        ("01234567890123", Junk.SEQUENCE),
        ("98765432109876", Junk.SEQUENCE),
        ("00101234567891", Junk.TEST_TAC),
        ("00011234567891", Junk.TEST_TAC),
        ("00171234567891", Junk.TEST_TAC),
        ("00441234567891", Junk.TEST_TAC),
        ("00861234567891", Junk.TEST_TAC),
        ("00911234567891", Junk.TEST_TAC),
        ("00181234567891", Junk.NONE),
        ("01101234567891", Junk.NONE),
    ],
)
def test_junk_flags(body: str, flags: Junk) -> None:
    """All-same digits, counting sequences and DIRBS test TACs are flagged; others are not."""
    assert junk_flags(body) == flags
    assert parse(body).junk == flags


def test_junk_is_flagged_not_rejected() -> None:
    """A junk IMEI still parses: policy, not the parser, decides what junk means."""
    assert parse("000000000000000").canonical == "000000000000000"


# -- differential test against python-stdnum ---------------------------------------

# Every character Unicode gives a digit value (Arabic-Indic, superscripts, fullwidth,
# mathematical, circled...): stdnum maps some to ASCII digits and rejects the rest.
UNICODE_DIGITS: dict[int, list[str]] = {d: [] for d in range(10)}
for _c in map(chr, range(sys.maxunicode + 1)):
    if unicodedata.category(_c) in ("Nd", "No"):
        _d = unicodedata.digit(_c, None)
        if _d is not None:
            UNICODE_DIGITS[_d].append(_c)
WIDE_DIGITS = {
    d: [c for c in chars if unicodedata.name(c).startswith(("FULLWIDTH", "MATHEMATICAL"))]
    for d, chars in UNICODE_DIGITS.items()
}
# Dashes and spaces of every kind (stdnum drops most, not all), and rarer other whitespace.
DASHES_AND_SPACES = [
    *sorted(c for c in map(chr, range(0x10000)) if unicodedata.category(c) in ("Pd", "Zs")),
    *"\u2212\u00af\u203e\u02d7\u2043\u23af\u23e4\ufe63",
]
OTHER_SPACE = [c for c in map(chr, range(0x3001)) if c.isspace() and c not in DASHES_AND_SPACES]
STRAYS = list("*#./:,_+xXaA'\u00b7\u2022\u200b\ufeff\u0301")

# Tame dressing: what people type (mostly accepted). Wild: any dash, space or look-alike.
TAME_SEPARATORS = list("- \u2010\u2013\u2014\u00a0\u3000\u2212\uff0d")
TAME_OUTER = [*TAME_SEPARATORS, "\t", "\n", "\r"]
separators = {
    True: st.sampled_from(TAME_SEPARATORS),
    False: st.one_of(st.sampled_from(DASHES_AND_SPACES), st.sampled_from(OTHER_SPACE)),
}
separator_runs = {
    tame: st.text(alphabet=s, min_size=1, max_size=2) for tame, s in separators.items()
}
outer_runs = {
    True: st.text(alphabet=st.sampled_from(TAME_OUTER), max_size=3),
    False: st.text(alphabet=st.one_of(separators[False], st.sampled_from(OTHER_SPACE)), max_size=3),
}
look_alikes = {
    True: {d: st.sampled_from(WIDE_DIGITS[d]) for d in range(10)},
    False: {d: st.sampled_from(UNICODE_DIGITS[d]) for d in range(10)},
}
# Per digit: 0 a look-alike digit, 1 a separator after it, else the plain digit.
dressing = st.lists(st.integers(0, 11), min_size=18, max_size=18)


@st.composite
def near_valid(draw: st.DrawFn) -> str:
    """Digits of a (possibly broken) IMEI dressed the way people and machines dress them."""
    tame = draw(st.booleans())
    body = draw(bodies)
    cd = check_digit(body)
    tails = [str(cd), str(cd), body[12:], "", "", str((cd + 1) % 10), "123"]
    digits = draw(st.sampled_from([body, body, body[:-1]])) + draw(st.sampled_from(tails))
    out = [draw(outer_runs[tame])]
    for ch, dress in zip(digits, draw(dressing), strict=False):
        out.append(draw(look_alikes[tame][int(ch)]) if dress == 0 else ch)
        if dress == 1:
            out.append(draw(separator_runs[tame]))
    if draw(st.integers(0, 7)) == 0:
        out.insert(draw(st.integers(0, len(out))), draw(st.sampled_from(STRAYS)))
    out.append(draw(outer_runs[tame]))
    return "".join(out)


def assert_agrees_with_stdnum(text: str) -> None:
    valid = lenient_valid(text)
    assert valid == std_imei.is_valid(text), repr(text)
    if valid:
        imei = parse_lenient(text)
        compact = std_imei.compact(text)
        ours = {14: imei.body, 15: imei.canonical, 16: f"{imei.body}{imei.svn}"}
        assert ours[len(compact)] == compact


@settings(max_examples=2000)
@given(near_valid())
def test_lenient_agrees_with_stdnum_on_near_valid_text(text: str) -> None:
    """On IMEIs dressed with separators, look-alike digits and strays, we agree with stdnum."""
    assert_agrees_with_stdnum(text)


@settings(max_examples=1000)
@given(st.text())
def test_lenient_agrees_with_stdnum_on_any_text(text: str) -> None:
    """On arbitrary text, lenient validity equals stdnum.imei.is_valid, digits included."""
    assert_agrees_with_stdnum(text)


@given(st.text(alphabet=string.digits, min_size=12, max_size=18))
def test_strict_agrees_with_stdnum_on_plain_digits(text: str) -> None:
    """On plain ASCII digits strict and lenient parsing agree with each other and stdnum."""
    strict = lenient_strict = True
    try:
        parse(text)
    except InvalidImeiError:
        strict = False
    lenient_strict = lenient_valid(text)
    assert strict == lenient_strict == std_imei.is_valid(text)
