"""CheckIMEI's ``imsi`` reaches the observation seam, as N5g-eir's ``supi`` and S13's
``User-Name`` do (ceir.sightings); the recorder behind it stores tokens only
(tests/clones)."""

from __future__ import annotations

import asyncio

from ceir.lookup import Checker
from ceir.policy import Policy
from ceir.record import Status
from ceir.security.principals import CURRENT, Principal, Role
from ceir.server.eir import EquipmentIdentityRegister
from ceir.store import Store, demo
from ceir.v1 import eir_pb2

IMSI = "510101234567890"
VALID = "352099001761481"


def _servicer(store: Store, seen: list[tuple[bytes, str, str]]) -> EquipmentIdentityRegister:
    checker = Checker(store, Policy(Status.BLACKLISTED))
    return EquipmentIdentityRegister(
        checker,
        10_000,
        observe=lambda key, imsi, operator: seen.append((key, imsi, operator)),
    )


def test_every_form_hands_the_imsi_over(store: Store) -> None:
    """Unary and batch calls give (device key, IMSI, operator id) per request with an
    imsi and a valid IMEI; requests without an imsi or with a malformed IMEI give nothing."""
    demo.load(store)
    seen: list[tuple[bytes, str, str]] = []
    eir = _servicer(store, seen)
    key = int(VALID[:14]).to_bytes(8, "big")
    principal = Principal("op1", Role.OPERATOR, via="token", operator_id="510-10")
    reset = CURRENT.set(principal)
    try:
        asyncio.run(eir.CheckIMEI(eir_pb2.CheckIMEIRequest(imei=VALID, imsi=IMSI), None))
        batch = eir_pb2.CheckIMEIBatchRequest(
            requests=[
                eir_pb2.CheckIMEIRequest(imei=VALID, imsi=IMSI),
                eir_pb2.CheckIMEIRequest(imei=VALID),
                eir_pb2.CheckIMEIRequest(imei="35209900176148X", imsi=IMSI),
            ]
        )
        asyncio.run(eir.CheckIMEIBatch(batch, None))
    finally:
        CURRENT.reset(reset)
    assert seen == [(key, IMSI, "510-10"), (key, IMSI, "510-10")]


def test_a_unary_call_with_an_invalid_imei_hands_nothing_over(store: Store) -> None:
    """Unary CheckIMEI with an IMSI but a malformed IMEI or a wrong check digit is
    answered INVALID_IMEI and gives no sighting; a 14-digit body gives its key."""
    demo.load(store)
    seen: list[tuple[bytes, str, str]] = []
    eir = _servicer(store, seen)
    for imei in ("35209900176148X", "352099001761482", "3520990017"):
        asyncio.run(eir.CheckIMEI(eir_pb2.CheckIMEIRequest(imei=imei, imsi=IMSI), None))
    assert seen == []
    asyncio.run(eir.CheckIMEI(eir_pb2.CheckIMEIRequest(imei=VALID[:14], imsi=IMSI), None))
    assert seen == [(int(VALID[:14]).to_bytes(8, "big"), IMSI, "")]
