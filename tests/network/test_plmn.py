"""Operator ids from 3GPP realms (TS 23.003 §19.2) and from IMSIs (MNC length by MCC)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ceir.network._plmn import from_imsi, from_realm
from ceir.security.principals import check_operator_id

_THREE = ["310", "311", "302", "334", "722", "732"]
_TWO = ["510", "525", "234", "262", "208", "440"]


@pytest.mark.parametrize(
    ("realm", "operator"),
    [
        ("epc.mnc010.mcc510.3gppnetwork.org", "510-10"),
        ("EPC.MNC001.MCC510.3GPPNETWORK.ORG", "510-01"),
        ("mmec01.mmegi8001.mme.epc.mnc011.mcc510.3gppnetwork.org", "510-11"),
        ("epc.mnc260.mcc310.3gppnetwork.org", "310-260"),
        ("epc.mnc010.mcc310.3gppnetwork.org", "310-010"),
        ("epc.mnc123.mcc510.3gppnetwork.org", "510-123"),
        ("epc.mnc025.mcc405.3gppnetwork.org.", ""),  # India mixes 2 and 3 digits
        ("epc.mnc854.mcc405.3gppnetwork.org", "405-854"),
        ("epc.mnc001.mcc001.3gppnetwork.org", ""),  # the test network, no country
        ("localdomain", ""),
        ("epc.mnc10.mcc510.3gppnetwork.org", ""),
        ("epc.mnc010.mcc510.3gppnetwork.org.evil.example", ""),
        ("xepc.mnc010.mcc5100.3gppnetwork.org", ""),
    ],
)
def test_realm_names_its_operator(realm: str, operator: str) -> None:
    """The realm's MNC is three digits; a leading 0 is padding except where MNCs are
    three digits; a realm not of the 3GPP form, or ambiguous, names nothing."""
    assert from_realm(realm) == operator


@given(mcc=st.sampled_from(_TWO + _THREE), mnc=st.integers(0, 999))
def test_realm_round_trip(mcc: str, mnc: int) -> None:
    """The realm TS 23.003 builds for an operator (MNC zero-padded to 3) gives it back."""
    digits = 3 if mcc in _THREE or mnc > 99 else 2
    operator = f"{mcc}-{mnc:0{digits}d}"
    realm = f"epc.mnc{mnc:03d}.mcc{mcc}.3gppnetwork.org"
    assert from_realm(realm) == operator
    assert check_operator_id(from_realm(realm)) == operator


@given(
    mcc=st.sampled_from(_TWO + _THREE),
    mnc=st.integers(0, 999),
    msin=st.text(alphabet="0123456789", min_size=5, max_size=9),
)
def test_imsi_names_its_home_network(mcc: str, mnc: int, msin: str) -> None:
    """An IMSI's MCC-MNC, the MNC two digits or three by its country."""
    digits = 3 if mcc in _THREE else 2
    mnc_text = f"{mnc % 10**digits:0{digits}d}"
    assert from_imsi(mcc + mnc_text + msin) == f"{mcc}-{mnc_text}"


@pytest.mark.parametrize(
    "imsi", ["", "51010", "5101012345678901", "51010abc", "405251234567890", "001011234567890"]
)
def test_what_is_not_a_readable_imsi_names_nothing(imsi: str) -> None:
    """Too short, too long, not digits, a mixed-length country, no country: ``""``."""
    assert from_imsi(imsi) == ""
