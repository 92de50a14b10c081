"""ceir.lookup: the hot path agrees with parse and policy, string and packed forms alike."""

from __future__ import annotations

import string
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ceir.errors import InvalidImeiError
from ceir.imei import Junk, parse
from ceir.lookup import Checker
from ceir.policy import INVALID, Decision, Policy
from ceir.record import Reason, Source, Status
from ceir.store import Store, demo, open_store
from ceir.v1 import eir_pb2

NOW = 1_800_000_000
DEMO = {d.imei: d.record for d in demo.devices(NOW)}


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The demo data, dated from NOW, in a store shared by this module."""
    with open_store(tmp_path_factory.mktemp("lookup") / "store") as opened:
        demo.load(opened, now=NOW)
        yield opened


@pytest.fixture(scope="module")
def checker(demo_store: Store) -> Checker:
    return Checker(demo_store, Policy(), clock=lambda: NOW)


def expected(text: str, store: Store, policy: Policy) -> eir_pb2.CheckIMEIResponse:
    """The answer built the slow way: strict parse, store.get, policy.decide."""
    try:
        imei = parse(text)
    except InvalidImeiError as exc:
        return eir_pb2.CheckIMEIResponse(
            status=INVALID.status, reason=Reason.INVALID_IMEI, detail=exc.message
        )
    decision = policy.decide(store.get(imei.key), NOW)
    response = eir_pb2.CheckIMEIResponse(
        status=decision.status,
        reason=decision.reason,
        source=decision.source,
        imei=imei.canonical,
        tac=imei.tac,
        svn=imei.svn or "",
        suspicious=imei.junk is not Junk.NONE,
    )
    if decision.expires_at:
        response.expires_at.seconds = decision.expires_at
    return response


demo_digits = st.sampled_from(sorted(DEMO)).flatmap(
    lambda imei: st.sampled_from([imei, imei[:14], imei[:14] + "42", imei[:14] + "0"])
)
texts = st.one_of(
    demo_digits,
    st.text(alphabet=string.digits, min_size=12, max_size=17),
    st.text(alphabet="0123456789abcdefABCDEF*# -", max_size=17),
    st.text(max_size=18),
)


@settings(max_examples=300)
@given(texts, st.text(max_size=8))
def test_fast_path_agrees_with_parse_and_policy(
    demo_store: Store, checker: Checker, text: str, request_id: str
) -> None:
    """For any string, check_one equals strict parse + store.get + policy.decide."""
    response = checker.check_one(eir_pb2.CheckIMEIRequest(imei=text, request_id=request_id))
    want = expected(text, demo_store, Policy())
    want.request_id = request_id
    assert response == want


@pytest.mark.parametrize(
    ("imei", "status", "reason", "source"),
    [
        ("352099001761481", Status.WHITELISTED, Reason.REGISTERED, Source.MANUFACTURER),
        ("356868000041418", Status.WHITELISTED, Reason.REGISTERED, Source.CUSTOMS),
        ("490154203237518", Status.WHITELISTED, Reason.GRANDFATHERED, Source.OPERATOR),
        ("860123450000012", Status.WHITELISTED, Reason.TEMPORARY, Source.OPERATOR),
        ("860123450000020", Status.BLACKLISTED, Reason.EXPIRED, Source.OPERATOR),
        ("012345000000013", Status.WHITELISTED, Reason.EXEMPT, Source.MINISTRY),
        ("352099001761499", Status.BLACKLISTED, Reason.LOST_STOLEN, Source.MANUFACTURER),
        ("352099009999992", Status.BLACKLISTED, Reason.NOT_REGISTERED, Source.NONE),
    ],
)
def test_demo_devices(
    checker: Checker, imei: str, status: Status, reason: Reason, source: Source
) -> None:
    """Each demo device gets the answer its note describes, from 14, 15 or 16 digits."""
    for text in (imei, imei[:14], imei[:14] + "07"):
        r = checker.check_one(eir_pb2.CheckIMEIRequest(imei=text))
        assert (r.status, r.reason, r.source, r.imei, r.tac) == (
            status,
            reason,
            source,
            imei,
            imei[:8],
        )


def test_expiry_follows_the_clock(demo_store: Store) -> None:
    """The same Checker answers TEMPORARY before expiry and EXPIRED after, without a write."""
    now = [float(NOW)]
    checker = Checker(demo_store, Policy(), clock=lambda: now[0])
    request = eir_pb2.CheckIMEIRequest(imei="860123450000012")
    first = checker.check_one(request)
    assert first.reason == Reason.TEMPORARY
    now[0] = first.expires_at.seconds
    assert checker.check_one(request).reason == Reason.EXPIRED


def test_batch_keeps_request_order(checker: Checker) -> None:
    """check_many answers requests[i] in responses[i], request_id echoed, for mixed input."""
    texts = [*sorted(DEMO), "bad", "", "35209900176148", "12345678901234"] * 50
    requests = [eir_pb2.CheckIMEIRequest(imei=t, request_id=str(i)) for i, t in enumerate(texts)]
    responses = checker.check_many(requests).responses
    assert len(responses) == len(requests)
    for i, (request, response) in enumerate(zip(requests, responses, strict=True)):
        assert response.request_id == str(i)
        assert response == checker.check_one(request)


def test_empty_batch(checker: Checker) -> None:
    """An empty batch gets an empty answer."""
    assert list(checker.check_many([]).responses) == []


def test_junk_is_suspicious_not_invalid(checker: Checker) -> None:
    """A junk IMEI is answered by policy and flagged suspicious."""
    r = checker.check_one(eir_pb2.CheckIMEIRequest(imei="00000000000000"))
    assert (r.reason, r.suspicious, r.imei) == (Reason.NOT_REGISTERED, True, "000000000000000")


def unpack_result(byte: int) -> tuple[int, int]:
    return byte & 0b11, byte >> 2


@settings(max_examples=100)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(sorted(DEMO)).map(lambda i: int(i[:14])),
            st.integers(0, 10**14 - 1),
        ),
        max_size=50,
    )
)
def test_packed_matches_string_form(checker: Checker, bodies: list[int]) -> None:
    """CheckPacked's byte per key carries the status and reason the string form answers."""
    keys = b"".join(b.to_bytes(8, "big") for b in bodies)
    results = checker.check_packed(keys)
    assert len(results) == len(bodies)
    for body, byte in zip(bodies, results, strict=True):
        r = checker.check_one(eir_pb2.CheckIMEIRequest(imei=f"{body:014d}"))
        assert unpack_result(byte) == (r.status, r.reason)


@pytest.mark.parametrize("value", [10**14, 2**63, 2**64 - 1])
def test_packed_invalid_keys(checker: Checker, value: int) -> None:
    """A key above 99999999999999 answers BLACKLISTED / INVALID_IMEI without a lookup."""
    good = int("35209900176148").to_bytes(8, "big")
    results = checker.check_packed(good + value.to_bytes(8, "big") + good)
    assert [unpack_result(b) for b in results] == [
        (Status.WHITELISTED, Reason.REGISTERED),
        (Status.BLACKLISTED, Reason.INVALID_IMEI),
        (Status.WHITELISTED, Reason.REGISTERED),
    ]


@pytest.mark.parametrize(
    ("unknown", "status"),
    [(Status.BLACKLISTED, Status.BLACKLISTED), (Status.GREYLISTED, Status.GREYLISTED)],
)
def test_unknown_regime_applies(demo_store: Store, unknown: Status, status: Status) -> None:
    """The policy's unknown status is what an unregistered IMEI gets on the fast path."""
    checker = Checker(demo_store, Policy(unknown), clock=lambda: NOW)
    r = checker.check_one(eir_pb2.CheckIMEIRequest(imei="352099009999992"))
    assert (r.status, r.reason) == (status, Reason.NOT_REGISTERED)
    assert checker.policy.unknown == Decision(status, Reason.NOT_REGISTERED, Source.NONE)
