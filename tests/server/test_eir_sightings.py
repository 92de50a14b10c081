"""CheckIMEI's ``imsi`` reaches the observation seam as an identity token, as N5g-eir's
``supi`` and S13's ``User-Name`` do (ceir.sightings)."""

from __future__ import annotations

import asyncio

from ceir.lookup import Checker
from ceir.policy import Policy
from ceir.record import Status
from ceir.security.principals import CURRENT, Principal, Role
from ceir.server.eir import EquipmentIdentityRegister
from ceir.store import Store, demo
from ceir.store.identity import IdKind, tokenizer_for
from ceir.v1 import eir_pb2

IMSI = "510101234567890"
VALID = "352099001761481"


def _servicer(store: Store, seen: list[tuple[bytes, bytes, str]]) -> EquipmentIdentityRegister:
    checker = Checker(store, Policy(Status.BLACKLISTED))
    return EquipmentIdentityRegister(
        checker,
        10_000,
        observe=lambda key, token, operator: seen.append((key, token, operator)),
        tokenizer=tokenizer_for(store),
    )


def test_every_form_hands_the_imsi_over_as_a_token(store: Store) -> None:
    """Unary and batch calls give (device key, IMSI token, operator id) per request with an
    imsi and a valid IMEI; requests without an imsi or with a malformed IMEI give nothing."""
    demo.load(store)
    seen: list[tuple[bytes, bytes, str]] = []
    eir = _servicer(store, seen)
    token = tokenizer_for(store).token(IdKind.IMSI, IMSI)
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
    assert seen == [(key, token, "510-10"), (key, token, "510-10")]
    assert all(IMSI.encode() not in t for _, t, _ in seen)
