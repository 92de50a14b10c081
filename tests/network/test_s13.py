"""The S13 face over real TCP: capabilities exchange, ECR/ECA, peers, garbage, shutdown."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from diameter.message import Message

from ceir.imei import body_key
from ceir.lookup import Checker
from ceir.policy import Policy
from ceir.record import Status
from ceir.store import Store, demo
from ceir.v1 import eir_pb2
from loadtest import diameter as client
from loadtest.diameter import S13Client
from tests.network._s13 import Recorder, face

MME = "mme.localdomain"
REALM = "localdomain"


@pytest.fixture
def demo_store(store: Store) -> Store:
    demo.load(store, int(time.time()))
    return store


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


async def _connected(port: int, origin: str = MME) -> S13Client:
    mme = S13Client(origin, REALM)
    await mme.connect("127.0.0.1", port)
    return mme


def test_capabilities_exchange_advertises_s13(demo_store: Store) -> None:
    """A CER from a peer gets CEA 2001 with VSAI {10415, 16777252} and Supported-Vendor-Id
    10415, from Origin-Host ceir.localdomain."""

    async def main() -> Any:
        async with face(demo_store) as s13:
            mme = await _connected(s13.port)
            await mme.close()
            return mme.cea

    cea = run(main())
    assert cea.result_code == 2001
    decoded: Any = Message.from_bytes(cea.raw)
    assert decoded.origin_host == b"ceir.localdomain"
    assert decoded.origin_realm == b"localdomain"
    assert decoded.supported_vendor_id == [10415]
    vsai = decoded.vendor_specific_application_id
    assert [(v.vendor_id, v.auth_application_id) for v in vsai] == [(10415, 16777252)]
    assert decoded.host_ip_address == [(1, "127.0.0.1")]  # family 1: IPv4
    assert (cea.hop_by_hop, cea.end_to_end) == (1, 1)


def test_every_demo_device_gets_checkimeis_status(demo_store: Store) -> None:
    """Each demo device's ECA carries 2001 and the Equipment-Status CheckIMEI gives."""
    checker = Checker(demo_store, Policy(Status.BLACKLISTED))
    devices = demo.devices(int(time.time()))

    async def main() -> list[client.Answer]:
        async with face(demo_store) as s13:
            mme = await _connected(s13.port)
            answers = [await mme.check(d.imei[:14]) for d in devices]
            await mme.close()
            return answers

    answers = run(main())
    for device, answer in zip(devices, answers, strict=True):
        expected = checker.check_one(eir_pb2.CheckIMEIRequest(imei=device.imei)).status
        assert answer.result_code == 2001, device.note
        assert answer.equipment_status == Status(expected).gpp_value, device.note
        assert answer.experimental_result_code is None
    by_note = {d.note: a.equipment_status for d, a in zip(devices, answers, strict=True)}
    assert by_note["registered by its manufacturer"] == 0
    assert by_note["registered, then reported stolen"] == 1
    assert by_note["a visitor's phone, expired"] == 1
    assert by_note["never registered"] == 1


def test_eca_copies_ids_and_session(demo_store: Store) -> None:
    """The ECA echoes the Session-Id, copies hop-by-hop and end-to-end ids, carries
    Auth-Session-State 1 and Origin-Host/Realm, and is an answer of command 324."""
    request = client.ecr(MME, REALM, hop=0xDEADBEEF, session_id="mme.localdomain;77;abc")

    async def main() -> client.Answer:
        async with face(demo_store) as s13:
            mme = await _connected(s13.port)
            answer = await mme.request(request)
            await mme.close()
            return answer

    answer = run(main())
    decoded: Any = Message.from_bytes(answer.raw)
    assert answer.command == 324
    assert answer.flags & 0x80 == 0
    assert answer.hop_by_hop == 0xDEADBEEF
    assert answer.end_to_end == 0xDEADBEEF ^ 0x5A5A5A5A
    assert decoded.header.application_id == 16777252
    assert decoded.session_id == "mme.localdomain;77;abc"
    assert decoded.auth_session_state == 1
    assert decoded.origin_host == b"ceir.localdomain"
    assert decoded.result_code == 2001
    assert decoded.equipment_status == 0


@pytest.mark.parametrize(
    ("unknown", "not_found", "expected"),
    [
        (Status.BLACKLISTED, False, (2001, None, 1)),
        (Status.GREYLISTED, False, (2001, None, 2)),
        (Status.WHITELISTED, False, (2001, None, 0)),
        (Status.BLACKLISTED, True, (None, 5422, None)),
    ],
)
def test_unknown_device(
    demo_store: Store, unknown: Status, not_found: bool, expected: tuple[Any, ...]
) -> None:
    """An unregistered IMEI gets the --unknown-status answer, or Experimental-Result
    {10415, 5422} and no Equipment-Status with --s13-unknown not-found."""

    async def main() -> client.Answer:
        async with face(demo_store, unknown, unknown_not_found=not_found) as s13:
            mme = await _connected(s13.port)
            answer = await mme.check("35209900999999")
            await mme.close()
            return answer

    answer = run(main())
    assert (answer.result_code, answer.experimental_result_code, answer.equipment_status) == (
        expected
    )
    if not_found:
        decoded: Any = Message.from_bytes(answer.raw)
        assert decoded.experimental_result.vendor_id == 10415


def test_registered_device_is_not_5422_in_strict_mode(demo_store: Store) -> None:
    """--s13-unknown not-found changes only unknown devices: a stolen one is still 2001/1."""

    async def main() -> client.Answer:
        async with face(demo_store, unknown_not_found=True) as s13:
            mme = await _connected(s13.port)
            answer = await mme.check("35209900176149")
            await mme.close()
            return answer

    answer = run(main())
    assert (answer.result_code, answer.equipment_status) == (2001, 1)


@pytest.mark.parametrize(
    ("kwargs", "failed_code"),
    [
        ({"terminal_information": False}, 1401),
        ({"imei": None}, 1401),
        ({"session_id": None}, 263),
    ],
)
def test_missing_avp_gets_5005_with_failed_avp(
    demo_store: Store, kwargs: dict[str, Any], failed_code: int
) -> None:
    """No Terminal-Information, no IMEI in it, or no Session-Id: Result-Code 5005
    DIAMETER_MISSING_AVP with the missing AVP named in Failed-AVP, no Equipment-Status."""
    request = client.ecr(MME, REALM, hop=9, **kwargs)

    async def main() -> client.Answer:
        async with face(demo_store) as s13:
            mme = await _connected(s13.port)
            answer = await mme.request(request)
            await mme.close()
            return answer

    answer = run(main())
    assert answer.result_code == 5005
    assert answer.equipment_status is None
    failed = [value for code, _v, value in client.avps(answer.raw) if code == 279]
    assert len(failed) == 1
    assert [code for code, _v, _value in client.avps(failed[0], 0)] == [failed_code]


@pytest.mark.parametrize(
    "imei", ["12345", "3520990017614X", "352099001761482", "3520990017614812", "35209900176148a"]
)
def test_malformed_imei_is_blacklisted(demo_store: Store, imei: str) -> None:
    """A malformed IMEI (short, non-digit, bad check digit, 16 digits) gets 2001 with
    Equipment-Status 1, as CheckIMEI answers an invalid IMEI."""
    request = client.ecr(MME, REALM, hop=5, imei=imei)

    async def main() -> client.Answer:
        async with face(demo_store, Status.WHITELISTED) as s13:
            mme = await _connected(s13.port)
            answer = await mme.request(request)
            await mme.close()
            return answer

    answer = run(main())
    assert (answer.result_code, answer.equipment_status) == (2001, 1)


def test_peer_not_in_list_is_refused_and_disconnected(demo_store: Store) -> None:
    """A CER from an Origin-Host not in --s13-peers gets CEA 3010 and the connection
    closes; a listed peer (any case) is accepted."""

    async def main() -> tuple[client.Answer, client.Answer]:
        peers = frozenset({"mme1.operator.example"})
        async with face(demo_store, peers=peers) as s13:
            stranger = S13Client("intruder.example", REALM)
            refused = await stranger.connect("127.0.0.1", s13.port)
            await asyncio.wait_for(stranger.closed(), 5)
            listed = await _connected(s13.port, "MME1.operator.example")
            answer = await listed.check("35209900176148")
            await listed.close()
            assert refused is not None
            return refused, answer

    refused, answer = run(main())
    assert refused.result_code == 3010
    assert refused.flags & 0x20  # the E bit
    assert (answer.result_code, answer.equipment_status) == (2001, 0)


def test_cer_without_s13_gets_5010(demo_store: Store) -> None:
    """A peer that advertises no S13 application gets 5010 and is disconnected."""

    async def main() -> client.Answer:
        async with face(demo_store) as s13:
            mme = S13Client(MME, REALM)
            await mme.connect("127.0.0.1", s13.port, exchange=False)
            answer = await mme.request(client.cer(MME, REALM, applications=(16777251,)), 1)
            await asyncio.wait_for(mme.closed(), 5)
            return answer

    assert run(main()).result_code == 5010


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x01\x00\x00\x05" + bytes(16),  # length below the header
        b"\x01\xff\xff\xfc" + bytes(16),  # 16 MiB: beyond any S13 message
        b"\x01\x00\x00\x20\x80\x00\x01\x44"
        + bytes(8)
        + b"\x00\x00\x01\x07\x40\xff\xff\xff"
        + bytes(8),
    ],
)
def test_garbage_closes_that_connection_only(demo_store: Store, garbage: bytes) -> None:
    """Bytes that are not Diameter close their connection; another peer's connection
    keeps being served, and new connections are still accepted."""

    async def main() -> tuple[client.Answer, client.Answer]:
        async with face(demo_store) as s13:
            good = await _connected(s13.port)
            bad = await _connected(s13.port, "mme2.localdomain")
            bad.send(garbage)
            await asyncio.wait_for(bad.closed(), 5)
            answer = await good.check("35209900176148")
            late = await _connected(s13.port, "mme3.localdomain")
            again = await late.check("35209900176149")
            await good.close()
            await late.close()
            return answer, again

    answer, again = run(main())
    assert (answer.result_code, answer.equipment_status) == (2001, 0)
    assert (again.result_code, again.equipment_status) == (2001, 1)


def test_ecr_before_cer_closes_the_connection(demo_store: Store) -> None:
    """RFC 6733: nothing but a CER is accepted before the capabilities exchange."""

    async def main() -> None:
        async with face(demo_store) as s13:
            mme = S13Client(MME, REALM)
            await mme.connect("127.0.0.1", s13.port, exchange=False)
            mme.send(client.ecr(MME, REALM))
            await asyncio.wait_for(mme.closed(), 5)

    run(main())


def test_watchdog_and_disconnect(demo_store: Store) -> None:
    """DWR gets DWA 2001; DPR gets DPA 2001 and then the server closes the connection."""

    async def main() -> tuple[client.Answer, client.Answer]:
        async with face(demo_store) as s13:
            mme = await _connected(s13.port)
            dwa = await mme.request(client.dwr(MME, REALM, 77))
            dpa = await mme.request(client.dpr(MME, REALM, 78))
            await asyncio.wait_for(mme.closed(), 5)
            return dwa, dpa

    dwa, dpa = run(main())
    assert (dwa.command, dwa.result_code, dwa.hop_by_hop) == (280, 2001, 77)
    assert (dpa.command, dpa.result_code, dpa.hop_by_hop) == (282, 2001, 78)


def test_unknown_command_and_application(demo_store: Store) -> None:
    """A request of another command gets 3001 and an ECR under another application
    3007, both with the E bit; the connection stays open."""
    other = bytearray(client.dwr(MME, REALM, 31))
    other[5:8] = (316).to_bytes(3, "big")  # an Update-Location-Request: not an EIR's
    wrong_app = client.ecr(MME, REALM, hop=32, application=16777251)

    async def main() -> list[client.Answer]:
        async with face(demo_store) as s13:
            mme = await _connected(s13.port)
            answers = [
                await mme.request(bytes(other)),
                await mme.request(wrong_app),
                await mme.check("35209900176148"),
            ]
            await mme.close()
            return answers

    unsupported, application, fine = run(main())
    assert (unsupported.result_code, unsupported.flags & 0x20) == (3001, 0x20)
    assert (application.result_code, application.flags & 0x20) == (3007, 0x20)
    assert fine.equipment_status == 0


def test_pipelined_requests_are_all_answered(demo_store: Store) -> None:
    """Many ECRs in flight on one connection each get their own ECA (by hop-by-hop id)."""
    devices = list(demo.devices(int(time.time())))

    async def main() -> list[client.Answer]:
        async with face(demo_store) as s13:
            mme = await _connected(s13.port)
            futures = [mme.check_nowait(devices[i % len(devices)].imei[:14]) for i in range(2000)]
            answers = list(await asyncio.gather(*futures))
            await mme.close()
            return answers

    answers = run(main())
    reference = run(_reference(demo_store, devices))
    for i, answer in enumerate(answers):
        assert answer.equipment_status == reference[i % len(devices)]


async def _reference(store: Store, devices: list[demo.DemoDevice]) -> list[int]:
    checker = Checker(store, Policy(Status.BLACKLISTED))
    return [
        Status(checker.check_one(eir_pb2.CheckIMEIRequest(imei=d.imei)).status).gpp_value
        for d in devices
    ]


def test_user_name_reaches_the_observer_and_no_log(
    demo_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """User-Name (the IMSI) goes to the observer (which tokenises it before storing) with
    the IMEI's body; the clear IMSI appears in no log line."""
    imsi = "510109876543210"
    recorder = Recorder()
    caplog.set_level(logging.DEBUG)

    async def main() -> None:
        async with face(demo_store, observer=recorder) as s13:
            mme = await _connected(s13.port)
            await mme.check("35209900176148", imsi)
            await mme.close()

    run(main())
    assert recorder.sightings == [(body_key("35209900176148"), imsi, "")]
    assert imsi not in caplog.text


def test_stop_sends_dpr_and_waits_for_the_peer(demo_store: Store) -> None:
    """On stop an open peer gets a DPR (Disconnect-Cause REBOOTING); once it answers
    with a DPA the connection closes and stop returns, well within the grace period."""

    async def main() -> tuple[client.Answer, float]:
        checker = Checker(demo_store, Policy(Status.BLACKLISTED))
        from ceir.network.s13 import S13Face
        from tests.network._s13 import options

        s13 = S13Face(options(), checker, demo_store)
        await s13.start()
        mme = await _connected(s13.port)
        started = time.monotonic()
        stopping = asyncio.create_task(s13.stop(10))
        dpr = await asyncio.wait_for(mme.server_request(), 5)
        mme.answer_dpr(dpr)
        await asyncio.wait_for(mme.closed(), 5)
        await stopping
        return dpr, time.monotonic() - started

    dpr, took = run(main())
    decoded: Any = Message.from_bytes(dpr.raw)
    assert dpr.command == 282
    assert decoded.disconnect_cause == 0
    assert took < 5


def test_access_table_entry_gates_the_face(
    demo_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The face asks the method -> roles table: without its entry every peer is refused
    at CER with 3010 (fail closed), listed or not."""
    from ceir.network import s13 as s13_module

    assert s13_module.OPERATION in s13_module.METHOD_RULES
    monkeypatch.delitem(s13_module.METHOD_RULES, s13_module.OPERATION)

    async def main() -> list[client.Answer | None]:
        answers = []
        for peers in (frozenset(), frozenset({MME})):
            async with face(demo_store, peers=peers) as s13:
                mme = S13Client(MME, REALM)
                answers.append(await mme.connect("127.0.0.1", s13.port))
                await asyncio.wait_for(mme.closed(), 5)
        return answers

    refused = run(main())
    assert [a.result_code if a else None for a in refused] == [3010, 3010]


def test_silent_connection_is_closed_after_the_cer_timeout(
    demo_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that sends no CER within CER_TIMEOUT is closed; one that did stays."""
    from ceir.network import s13 as s13_module

    monkeypatch.setattr(s13_module, "CER_TIMEOUT", 0.3)

    async def main() -> client.Answer:
        async with face(demo_store) as s13:
            silent = S13Client(MME, REALM)
            await silent.connect("127.0.0.1", s13.port, exchange=False)
            talker = await _connected(s13.port, "mme2.localdomain")
            await asyncio.wait_for(silent.closed(), 5)
            await asyncio.sleep(0.4)
            answer = await talker.check("35209900176148")
            await talker.close()
            return answer

    assert run(main()).equipment_status == 0
