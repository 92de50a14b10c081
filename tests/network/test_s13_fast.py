"""The ECR hot path (ceir.network._ecr) writes the bytes the python-diameter path writes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ceir.lookup import Checker
from ceir.network import _diameter as dia
from ceir.network import _ecr
from ceir.network.s13 import S13Face
from ceir.policy import Policy
from ceir.record import Status
from ceir.store import Store, demo, open_store
from loadtest import diameter as client
from tests.network._s13 import options

IMEIS = st.one_of(
    st.sampled_from([d.imei[:14] for d in demo.devices(0)] + [d.imei for d in demo.devices(0)]),
    st.text(alphabet="0123456789", min_size=14, max_size=15),
    st.text(alphabet="0123456789ABCDEF*#", min_size=1, max_size=20),
    st.text(min_size=1, max_size=20),
)


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with open_store(tmp_path_factory.mktemp("fast") / "store") as store:
        demo.load(store, int(time.time()))
        yield store


@settings(max_examples=400)
@given(
    session=st.text(min_size=1, max_size=80),
    imei=IMEIS,
    software_version=st.one_of(st.none(), st.text(alphabet="0123456789", min_size=2, max_size=2)),
    user=st.one_of(st.none(), st.text(alphabet="0123456789", min_size=5, max_size=15)),
    hop=st.integers(0, 2**32 - 1),
    not_found=st.booleans(),
)
def test_fast_path_equals_library_path(
    demo_store: Store,
    session: str,
    imei: str,
    software_version: str | None,
    user: str | None,
    hop: int,
    not_found: bool,
) -> None:
    """For generated ECRs the hot path answers (a common-shape ECR always takes it) with
    exactly the bytes python-diameter encodes for the same decision."""
    checker = Checker(demo_store, Policy(Status.BLACKLISTED))
    face = S13Face(options(unknown_not_found=not_found), checker, demo_store)
    raw = client.ecr(
        "mme.localdomain",
        "localdomain",
        hop=hop,
        session_id=session,
        imei=imei,
        software_version=software_version,
        user_name=user,
    )
    fast = face.answer_fast(raw)
    slow = face.answer_ecr(dia.decode(raw))
    assert fast is not None
    assert fast == slow


def test_unusual_ecrs_take_the_library_path() -> None:
    """Missing Session-Id, Terminal-Information or IMEI, and a repeated AVP: the hot path
    declines (the library path answers 5005)."""
    base = {"hop": 3, "session_id": "s;1", "imei": "35209900176148"}
    missing = [
        client.ecr("mme", "realm", **{**base, "session_id": None}),  # type: ignore[arg-type]
        client.ecr("mme", "realm", **base, terminal_information=False),  # type: ignore[arg-type]
        client.ecr("mme", "realm", **{**base, "imei": None}),  # type: ignore[arg-type]
    ]
    assert all(_ecr.scan(raw) is None for raw in missing)
    one = client.ecr("mme", "realm", **base)  # type: ignore[arg-type]
    fields = _ecr.scan(one)
    assert fields == _ecr.EcrFields(b"s;1", "35209900176148", None)
    session_avp = one[20 : 20 + 12]  # Session-Id "s;1": 8 + 3 bytes, padded to 12
    doubled = bytearray(one[:20] + session_avp + one[20:])
    doubled[1:4] = len(doubled).to_bytes(3, "big")
    assert _ecr.scan(bytes(doubled)) is None
    truncated = bytearray(one[:-4])
    truncated[1:4] = len(truncated).to_bytes(3, "big")
    assert _ecr.scan(bytes(truncated)) is None
