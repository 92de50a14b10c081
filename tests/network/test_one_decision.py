"""One decision, three doors: CheckIMEI (gRPC), N5g-eir (HTTP/2) and S13 (Diameter) give
the same status.

Thousands of generated devices in every state a register holds — registered by each
channel, grandfathered, temporary (running and expired), exempt, lost/stolen (over each
kind of registration), unknown, and invalid texts (letters, short, bad check digit, junk
bodies) — are asked about through every face of one running server, in each regime
(``--unknown-status``), and every face must give the status CheckIMEI gives. The S13
face is asked the way MMEs ask (the 14-digit body, sometimes 15 digits with the check
digit), N5g-eir the way AMFs ask (``imei-<15>``, sometimes ``imeisv-<16>``, with a
``supi``); CheckIMEI with the 15-digit IMEI. An invalid IMEI is BLACKLISTED on gRPC and
S13, and a 400 ProblemDetails on N5g-eir (TS 29.511 has no status for it).
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import httpx
import pytest

from ceir.config import UnknownStatus
from ceir.imei import body_key, check_digit
from ceir.network.n5g_eir import N5gEirFace
from ceir.record import Reason, Record, Source, Status
from ceir.store import open_store
from ceir.v1 import eir_pb2
from loadtest import diameter as client
from tests.conftest import run_server

COUNT = 3000
DAY = 86_400


def _population(seed: int, now: int) -> tuple[list[tuple[bytes, Record]], list[tuple[str, str]]]:
    """(records to store, (kind, IMEI body or invalid text) for every question)."""
    rng = random.Random(seed)
    stored: list[tuple[bytes, Record]] = []
    asked: list[tuple[str, str]] = []
    seen: set[str] = set()
    kinds = [
        "manufacturer",
        "customs",
        "grandfathered",
        "temporary",
        "expired",
        "exempt",
        "stolen",
        "stolen-visitor",
        "stolen-only",
        "unknown",
        "invalid",
    ]
    for i in range(COUNT):
        kind = kinds[i % len(kinds)]
        body = f"{rng.choice(('35', '86', '49', '01'))}{rng.randrange(10**12):012d}"
        if body in seen:
            continue
        seen.add(body)
        record = {
            "manufacturer": Record(Reason.REGISTERED, Source.MANUFACTURER, registered_at=now),
            "customs": Record(Reason.REGISTERED, Source.CUSTOMS, registered_at=now),
            "grandfathered": Record(Reason.GRANDFATHERED, Source.OPERATOR, registered_at=now),
            "temporary": Record(
                Reason.TEMPORARY, Source.OPERATOR, registered_at=now, expires_at=now + 80 * DAY
            ),
            "expired": Record(
                Reason.TEMPORARY, Source.OPERATOR, registered_at=now, expires_at=now - DAY
            ),
            "exempt": Record(Reason.EXEMPT, Source.MINISTRY, registered_at=now),
            "stolen": Record(
                Reason.REGISTERED, Source.MANUFACTURER, lost_stolen=True, registered_at=now
            ),
            "stolen-visitor": Record(
                Reason.TEMPORARY,
                Source.OPERATOR,
                lost_stolen=True,
                registered_at=now,
                expires_at=now + DAY,
            ),
            "stolen-only": Record(lost_stolen=True),
        }.get(kind)
        if record is not None:
            stored.append((body_key(body), record))
        if kind == "invalid":
            text = rng.choice(
                (
                    body[:13],  # a digit short
                    body[:6] + "A" + body[7:],  # a letter
                    body + str((check_digit(body) + rng.randrange(1, 10)) % 10),  # bad CD
                    body[:12] + "#*",
                )
            )
            asked.append((kind, text))
        else:
            asked.append((kind, body))
    return stored, asked


@pytest.mark.parametrize("regime", list(UnknownStatus))
def test_checkimei_n5g_and_s13_give_the_same_status(tmp_path: Path, regime: UnknownStatus) -> None:
    """For every generated device CheckIMEI's status, N5g-eir's status and S13's
    Equipment-Status agree (the 3GPP number is the status minus one), in every regime; S13
    answers 2001 throughout, N5g-eir 200 for every valid IMEI and 400 for invalid ones."""
    now = int(time.time())
    stored, asked = _population(list(UnknownStatus).index(regime), now)
    path = tmp_path / "store"
    with open_store(path) as store:
        store.put_devices(stored)
    with run_server(path, load_demo=False, unknown_status=regime) as running:
        grpc_status = []
        for _kind, text in asked:
            imei = text + str(check_digit(text)) if len(text) == 14 and text.isdigit() else text
            response = running.eir.CheckIMEI(eir_pb2.CheckIMEIRequest(imei=imei), timeout=10)
            grpc_status.append(Status(response.status).gpp_value)
        s13_port = next(f.port for f in running.server.faces if "S13" in f.describe())
        rng = random.Random(7)

        async def ask_s13() -> list[client.Answer]:
            mme = client.S13Client("mme.localdomain", "localdomain")
            await mme.connect("127.0.0.1", s13_port)
            futures = []
            for i, (_kind, text) in enumerate(asked):
                imei = text
                if len(text) == 14 and text.isdigit() and rng.random() < 0.3:
                    imei = text + str(check_digit(text))  # some MMEs send the 15th digit
                request = client.ecr(
                    "mme.localdomain",
                    "localdomain",
                    hop=i + 10,
                    imei=imei,
                    software_version=f"{i % 100:02d}",
                    user_name=f"51010{i:010d}",
                )
                futures.append(mme.request_nowait(request, i + 10))
            answers = list(await asyncio.gather(*futures))
            await mme.close()
            return answers

        answers = asyncio.run(asyncio.wait_for(ask_s13(), 60))
        n5g = next(f for f in running.server.faces if isinstance(f, N5gEirFace))
        n5g_status: list[int | None] = []
        with httpx.Client(http1=False, http2=True, timeout=10) as http:
            for i, (_kind, text) in enumerate(asked):
                valid = len(text) == 14 and text.isdigit()
                pei = f"imei-{text}{check_digit(text)}" if valid else f"imei-{text}"
                if valid and i % 3 == 0:
                    pei = f"imeisv-{text}{i % 100:02d}"  # some AMFs send the IMEISV
                reply = http.get(
                    f"{n5g.url}/n5g-eir-eic/v1/equipment-status",
                    params={"pei": pei, "supi": f"imsi-51010{i:010d}"},
                )
                if reply.status_code == 200:
                    n5g_status.append(Status[reply.json()["status"]].gpp_value)
                else:
                    assert reply.status_code == 400, reply.text  # an invalid PEI
                    n5g_status.append(None)
    kinds_seen = {kind for kind, _ in asked}
    assert len(kinds_seen) == 11
    mismatches = [
        (kind, text, g, a.result_code, a.equipment_status)
        for (kind, text), g, a in zip(asked, grpc_status, answers, strict=True)
        if a.result_code != 2001 or a.equipment_status != g
    ]
    assert mismatches == []
    n5g_mismatches = [
        (kind, text, g, n)
        for (kind, text), g, n in zip(asked, grpc_status, n5g_status, strict=True)
        if n != (None if kind == "invalid" else g)
    ]
    assert n5g_mismatches == []
    by_kind = {kind: g for (kind, _), g in zip(asked, grpc_status, strict=True)}
    assert by_kind["manufacturer"] == 0
    assert by_kind["stolen"] == by_kind["expired"] == by_kind["invalid"] == 1
    assert by_kind["unknown"] == regime.status.gpp_value
