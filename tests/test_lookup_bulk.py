"""The bulk lookup path (Checker.check_batch, check_packed) answers exactly as the
message-by-message path (Checker.check_many) does, and counts its answers (the tally the
metrics get) as they are."""

from __future__ import annotations

import collections
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ceir.imei import body_key, check_digit
from ceir.lookup import Checker, Tally, check_digits, plain_imeis
from ceir.policy import Policy
from ceir.record import FLAG_CLONE_BLOCK, FLAG_CLONE_GREY, Reason, Record, Source, Status
from ceir.store import Store, open_store
from ceir.v1 import eir_pb2

NOW = 1_750_000_000
RECORDS = (
    Record(Reason.REGISTERED, Source.MANUFACTURER, registered_at=NOW - 100),
    Record(Reason.REGISTERED, Source.CUSTOMS, registered_at=NOW - 200),
    Record(Reason.GRANDFATHERED, Source.OPERATOR, registered_at=NOW - 300),
    Record(Reason.TEMPORARY, Source.OPERATOR, registered_at=NOW - 10, expires_at=NOW + 86_400),
    Record(Reason.TEMPORARY, Source.OPERATOR, registered_at=NOW - 99, expires_at=NOW - 1),
    Record(Reason.EXEMPT, Source.MINISTRY, registered_at=NOW - 5),
    Record(Reason.REGISTERED, Source.MANUFACTURER, lost_stolen=True, registered_at=NOW - 7),
    Record(Reason.NONE, Source.NONE, lost_stolen=True),
    Record(Reason.REGISTERED, Source.MANUFACTURER, registered_at=NOW - 9, clone=FLAG_CLONE_GREY),
    Record(Reason.REGISTERED, Source.CUSTOMS, registered_at=NOW - 8, clone=FLAG_CLONE_BLOCK),
)
# Bodies in the store: ordinary ones, plus junk ones (test TAC, repeated, counting).
STORED = [f"35{n:06d}{n * 7919 % 10**6:06d}" for n in range(40)] + [
    "00100000123456",
    "11111111111111",
    "01234567890123",
]
UNKNOWN = ["86012345000001", "00440000000009", "99999999999999", "98765432109876"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    path: Path = tmp_path_factory.mktemp("bulk") / "store"
    s = open_store(path)
    s.put_devices((body_key(body), RECORDS[i % len(RECORDS)]) for i, body in enumerate(STORED))
    try:
        yield s
    finally:
        s.close()


def _batch(texts: list[str], ids: list[str] | None = None) -> eir_pb2.CheckIMEIBatchRequest:
    message = eir_pb2.CheckIMEIBatchRequest()
    for i, text in enumerate(texts):
        message.requests.add(imei=text, imsi="510101234567890", request_id=ids[i] if ids else "")
    return message


def _tallies(checker: Checker, message: eir_pb2.CheckIMEIBatchRequest) -> tuple[Tally, Tally]:
    """The bulk path's tally of *message*, and the (status, reason) count of the message
    path's answers to it."""
    tally: Tally = collections.Counter()
    checker.check_batch(message.requests, tally)
    answers = checker.check_many(message.requests).responses
    return tally, collections.Counter((int(r.status), int(r.reason)) for r in answers)


def _forms(body: str) -> list[str]:
    cd = str(check_digit(body))
    bad = str((int(cd) + 3) % 10)
    return [body, body + cd, body + "07", body + bad]


@pytest.mark.parametrize("unknown", [Status.BLACKLISTED, Status.GREYLISTED])
@pytest.mark.parametrize("form", [0, 1, 2])
def test_plain_batch_bytes_equal_protobuf_serialization(
    store: Store, form: int, unknown: Status
) -> None:
    """A batch of one IMEI width (14, 15, 16 digits) serializes byte for byte as protobuf would."""
    checker = Checker(store, Policy(unknown), clock=lambda: NOW)
    texts = [_forms(body)[form] for body in STORED + UNKNOWN]
    message = _batch(texts)
    assert checker.check_batch(message.requests) == (
        checker.check_many(message.requests).SerializeToString()
    )
    tally, counted = _tallies(checker, message)
    assert tally == counted
    assert sum(tally.values()) == len(texts)


def test_plain_batch_answers_every_kind(store: Store) -> None:
    """The bulk path gives each stored kind its decision: expired, lost/stolen, unknown, junk."""
    checker = Checker(store, Policy(), clock=lambda: NOW)
    texts = [_forms(body)[1] for body in STORED + UNKNOWN]
    got = eir_pb2.CheckIMEIBatchResponse.FromString(checker.check_batch(_batch(texts).requests))
    reasons = {r.reason for r in got.responses}
    assert reasons >= {
        Reason.REGISTERED,
        Reason.GRANDFATHERED,
        Reason.TEMPORARY,
        Reason.EXPIRED,
        Reason.EXEMPT,
        Reason.LOST_STOLEN,
        Reason.NOT_REGISTERED,
        Reason.DUPLICATE,
    }
    assert [r.imei for r in got.responses] == texts
    suspicious = {r.imei[:14] for r in got.responses if r.suspicious}
    assert suspicious == {
        "00100000123456",
        "11111111111111",
        "01234567890123",
        "00440000000009",
        "99999999999999",
        "98765432109876",
    }


texts_strategy = st.lists(
    st.one_of(
        st.sampled_from(STORED + UNKNOWN).flatmap(lambda b: st.sampled_from(_forms(b))),
        st.text(alphabet="0123456789", min_size=13, max_size=17),
        st.text(max_size=18),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(texts=texts_strategy, with_ids=st.booleans())
def test_bulk_path_equals_message_path(store: Store, texts: list[str], with_ids: bool) -> None:
    """For any batch (valid, malformed, mixed widths, request ids) check_batch == check_many."""
    checker = Checker(store, Policy(), clock=lambda: NOW)
    ids = [f"r{i}" for i in range(len(texts))] if with_ids else None
    message = _batch(texts, ids)
    got = eir_pb2.CheckIMEIBatchResponse.FromString(checker.check_batch(message.requests))
    assert got == checker.check_many(message.requests)
    tally, counted = _tallies(checker, message)
    assert tally == counted


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 10**14 - 1), min_size=0, max_size=50), st.integers(14, 20))
def test_column_check_digits_equal_luhn(bodies: list[int], stride: int) -> None:
    """check_digits over a block of bodies equals check_digit for each body."""
    rng = random.Random(stride)
    texts = [f"{b:014d}" for b in bodies]
    padding = ["".join(rng.choice("0123456789") for _ in range(stride - 14)) for _ in texts]
    raw = "".join(t + p for t, p in zip(texts, padding, strict=True)).encode()
    assert check_digits(raw, stride) == "".join(str(check_digit(t)) for t in texts).encode()


def test_packed_equals_string_answers(store: Store) -> None:
    """check_packed gives (reason << 2) | status of the string answer; keys above the
    largest body are invalid."""
    checker = Checker(store, Policy(), clock=lambda: NOW)
    bodies = STORED + UNKNOWN
    keys = b"".join(body_key(b) for b in bodies) + (10**14).to_bytes(8, "big")
    packed = checker.check_packed(keys)
    expected = [
        (r.reason << 2) | r.status for r in checker.check_many(_batch(bodies).requests).responses
    ]
    assert list(packed) == [*expected, (Reason.INVALID_IMEI << 2) | Status.BLACKLISTED]


@pytest.mark.parametrize("form", [0, 1, 2])
def test_mostly_plain_batch_with_strays_equals_protobuf(store: Store, form: int) -> None:
    """Plain IMEIs of one width mixed with malformed, bad-check-digit and other-width ones
    still serialize byte for byte as protobuf would."""
    checker = Checker(store, Policy(), clock=lambda: NOW)
    texts = [_forms(body)[form] for body in STORED + UNKNOWN]
    strays = [
        "35209900176148X",
        "3520990017",
        _forms(STORED[0])[3],
        _forms(STORED[1])[(form + 1) % 3],
    ]
    for n, stray in enumerate(strays):
        texts.insert(5 + 7 * n, stray)
    message = _batch(texts)
    assert checker.check_batch(message.requests) == (
        checker.check_many(message.requests).SerializeToString()
    )
    tally, counted = _tallies(checker, message)
    assert tally == counted
    assert tally[Status.BLACKLISTED, Reason.INVALID_IMEI] >= 2


def test_cached_expiry_answer_flips_when_the_expiry_passes(store: Store) -> None:
    """One checker, one temporary device: WHITELISTED/TEMPORARY before its expiry and
    BLACKLISTED/EXPIRED from it on, the same as the message path each time."""
    temporary = RECORDS[3]
    body = next(b for i, b in enumerate(STORED) if RECORDS[i % len(RECORDS)] is temporary)
    now = [float(temporary.expires_at - 5)]
    checker = Checker(store, Policy(), clock=lambda: now[0])
    message = _batch([_forms(body)[1], _forms(STORED[0])[1]])
    reasons = []
    for moment in (temporary.expires_at - 5, temporary.expires_at - 1, temporary.expires_at):
        now[0] = float(moment)
        got = checker.check_batch(message.requests)
        assert got == checker.check_many(message.requests).SerializeToString()
        tally, counted = _tallies(checker, message)
        assert tally == counted
        reasons.append(eir_pb2.CheckIMEIBatchResponse.FromString(got).responses[0].reason)
    assert reasons == [Reason.TEMPORARY, Reason.TEMPORARY, Reason.EXPIRED]


def _plain_message(texts: list[str]) -> eir_pb2.CheckIMEIBatchRequest:
    return eir_pb2.CheckIMEIBatchRequest(
        requests=[eir_pb2.CheckIMEIRequest(imei=text) for text in texts]
    )


@pytest.mark.parametrize("form", [0, 1, 2])
def test_serialized_plain_batch_is_answered_without_parsing(store: Store, form: int) -> None:
    """The common message, read from its bytes, gets protobuf's answer byte for byte, and
    its answers are tallied by (status, reason) as they are."""
    checker = Checker(store, Policy(), clock=lambda: NOW)
    message = _plain_message([_forms(body)[form] for body in STORED + UNKNOWN])
    found = plain_imeis(message.SerializeToString())
    assert found == ("".join(r.imei for r in message.requests).encode(), 14 + form)
    tally: Tally = Tally()
    expected = checker.check_many(message.requests)
    assert checker.check_batch_bytes(message.SerializeToString(), tally) == (
        expected.SerializeToString()
    )
    assert tally == Tally((r.status, r.reason) for r in expected.responses)


@settings(max_examples=150, deadline=None)
@given(texts=texts_strategy, extra=st.sampled_from(["", "imsi", "request_id"]))
def test_serialized_batch_is_answered_right_or_left_to_the_parser(
    store: Store, texts: list[str], extra: str
) -> None:
    """For any message, check_batch_bytes answers as check_many does, or declines (None)
    and the message is parsed; it declines nothing but what is not the common message."""
    checker = Checker(store, Policy(), clock=lambda: NOW)
    message = _plain_message(texts)
    if extra:
        for request in message.requests:
            setattr(request, extra, "x1")
    got = checker.check_batch_bytes(message.SerializeToString())
    if got is not None:
        assert got == checker.check_many(message.requests).SerializeToString()
    widths = {len(t) for t in texts}
    common = (
        texts and not extra and len(widths) == 1 and 14 <= widths.pop() <= 16
        and all(t.isascii() and t.isdigit() for t in texts)
    )  # fmt: skip
    valid = common and all(len(t) != 15 or int(t[14]) == check_digit(t[:14]) for t in texts)
    assert (got is not None) == bool(valid)


def test_foreign_bytes_are_not_a_plain_batch() -> None:
    """Bytes that only look like the common message's frame are declined."""
    one = _plain_message(["35209900176148"]).SerializeToString()
    assert plain_imeis(one) is not None
    assert plain_imeis(one[:-1]) is None
    assert plain_imeis(one + b"\x20\x01") is None  # an unknown field after it
    assert plain_imeis(one.replace(b"35", b"3\x00", 1)) is None
    assert plain_imeis(b"") is None
