"""The operator client: coalescing, deadlines, reconnects and errors, against real servers."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from ceir.client import Client
from ceir.config import Settings
from ceir.errors import ClientClosedError, DeadlineError, RejectedError
from ceir.lookup import Checker
from ceir.policy import Policy
from ceir.server.app import create_server
from ceir.store import Store, demo, open_store
from ceir.v1 import eir_pb2

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "store")
    demo.load(s)
    try:
        yield s
    finally:
        s.close()


def _expected() -> dict[str, tuple[int, int]]:
    """(status, reason) per demo IMEI, from the records through the policy."""
    now = int(time.time())
    policy = Policy()
    return {
        d.imei: (policy.decide(d.record, now).status, policy.decide(d.record, now).reason)
        for d in demo.devices(now)
    }


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


async def _serving(store: Store, settings: Settings | None = None) -> tuple[Any, int]:
    # Faces on free ports, never the fixed defaults (other tests run at the same time).
    chosen = dataclasses.replace(settings or Settings(port=0), s13="127.0.0.1:0", web="127.0.0.1:0")
    server, port = create_server(chosen, store)
    await server.start()
    return server, port


def _batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the batches the server answers from now on (either batch path)."""
    sizes: list[int] = []
    original = Checker.check_batch

    def counting(self: Checker, requests: Any, tally: Any = None) -> bytes:
        sizes.append(len(requests))
        return original(self, requests, tally)

    original_bytes = Checker.check_batch_bytes

    def counting_bytes(self: Checker, data: bytes, tally: Any = None) -> bytes | None:
        answer = original_bytes(self, data, tally)
        if answer is not None:  # else the message is parsed and check_batch counts it
            sizes.append(len(eir_pb2.CheckIMEIBatchRequest.FromString(data).requests))
        return answer

    monkeypatch.setattr(Checker, "check_batch", counting)
    monkeypatch.setattr(Checker, "check_batch_bytes", counting_bytes)
    return sizes


def test_concurrent_checks_are_coalesced_and_answered(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """250 concurrent check() calls with max_batch 100 go out as 3 stream messages and
    each gets its own device's answer."""
    sizes = _batch_sizes(monkeypatch)
    expected = _expected()
    imeis = [list(expected)[i % len(expected)] for i in range(250)]

    async def test() -> None:
        server, port = await _serving(store)
        try:
            async with Client(f"127.0.0.1:{port}", max_batch=100, max_delay=0.2) as client:
                answers = await asyncio.gather(*(client.check(i, imsi="510101") for i in imeis))
        finally:
            await server.stop(0)
        assert [(a.status, a.reason) for a in answers] == [expected[i] for i in imeis]
        assert [a.imei for a in answers] == imeis
        assert sizes == [100, 100, 50]

    run(test)


def test_queued_batches_go_out_as_one_message(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches flushed while no write could go out are merged up to max_batch per message."""
    sizes = _batch_sizes(monkeypatch)
    expected = _expected()
    imeis = [list(expected)[i % len(expected)] for i in range(90)]

    async def test() -> None:
        server, port = await _serving(store)
        try:
            async with Client(f"127.0.0.1:{port}", max_batch=60, max_delay=0.01) as client:
                await client.check(imeis[0])
                sizes.clear()
                loop = asyncio.get_running_loop()
                waiting: list[asyncio.Future[Any]] = []
                for start in range(0, 90, 30):  # three flushes before the writer can run
                    for imei in imeis[start : start + 30]:
                        future: asyncio.Future[Any] = loop.create_future()
                        client.submit(lambda r, e, f=future: f.set_result(r), imei)
                        waiting.append(future)
                    client._flush()
                answers = await asyncio.gather(*waiting)
        finally:
            await server.stop(0)
        assert [(a.status, a.reason) for a in answers] == [expected[i] for i in imeis]
        assert sizes == [60, 30]

    run(test)


def test_lone_check_is_flushed_after_max_delay(store: Store) -> None:
    """A single check() below max_batch is sent once max_delay has passed."""

    async def test() -> None:
        server, port = await _serving(store)
        try:
            async with Client(f"127.0.0.1:{port}", max_batch=1000, max_delay=0.01) as client:
                answer = await client.check("352099001761481", request_id="a1", timeout=5)
        finally:
            await server.stop(0)
        assert (answer.status, answer.reason, answer.request_id) == (1, 1, "a1")

    run(test)


def test_invalid_imei_is_an_answer_not_an_error(store: Store) -> None:
    """A malformed IMEI gets BLACKLISTED / INVALID_IMEI with the problem in detail."""

    async def test() -> None:
        server, port = await _serving(store)
        try:
            async with Client(f"127.0.0.1:{port}", max_delay=0) as client:
                answer = await client.check("35209900176148X")
        finally:
            await server.stop(0)
        assert (answer.status, answer.reason) == (2, 8)
        assert "position 15" in answer.detail

    run(test)


def test_unary_and_batch_agree_with_coalesced(store: Store) -> None:
    """check_unary, check_batch and check give the same answers."""
    from ceir.v1 import eir_pb2

    imeis = list(_expected())

    async def test() -> None:
        server, port = await _serving(store)
        try:
            async with Client(f"127.0.0.1:{port}") as client:
                coalesced = await asyncio.gather(*(client.check(i) for i in imeis))
                unary = [await client.check_unary(i) for i in imeis]
                batch = await client.check_batch([eir_pb2.CheckIMEIRequest(imei=i) for i in imeis])
        finally:
            await server.stop(0)
        assert list(batch) == unary == coalesced

    run(test)


def test_server_limit_is_a_rejected_error(store: Store) -> None:
    """A message beyond the server's max_batch fails every IMEI in it with RejectedError."""

    async def test() -> None:
        server, port = await _serving(store, Settings(port=0, max_batch=10))
        try:
            async with Client(f"127.0.0.1:{port}", max_batch=20, max_delay=0.05) as client:
                results = await asyncio.gather(
                    *(client.check("352099001761481") for _ in range(20)),
                    return_exceptions=True,
                )
        finally:
            await server.stop(0)
        assert all(isinstance(r, RejectedError) for r in results)
        assert "INVALID_ARGUMENT" in str(results[0])
        assert f"127.0.0.1:{port}" in str(results[0])

    run(test)


def test_stalled_server_gives_deadline_error() -> None:
    """A server that never answers the stream: each check fails with DeadlineError in time."""

    async def stall(request_iterator: Any, context: Any) -> Any:
        async for _ in request_iterator:
            await asyncio.sleep(30)
        yield b""  # pragma: no cover - never reached

    async def test() -> None:
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "ceir.v1.EquipmentIdentityRegister",
            {"CheckIMEIStream": grpc.stream_stream_rpc_method_handler(stall)},
        )
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with Client(f"127.0.0.1:{port}", timeout=0.3, max_delay=0) as client:
                started = time.monotonic()
                with pytest.raises(DeadlineError, match=r"within 0\.3 s"):
                    await client.check("352099001761481")
                assert time.monotonic() - started < 2
        finally:
            await server.stop(0)

    run(test)


def test_checks_survive_a_server_restart(store: Store) -> None:
    """Checks asked while the server is down are answered once it is back on its port."""
    imei = "352099001761481"

    async def test() -> None:
        server, port = await _serving(store)
        async with Client(f"127.0.0.1:{port}", timeout=10, max_delay=0) as client:
            first = await client.check(imei)
            await server.stop(0)
            pending = asyncio.ensure_future(client.check(imei))
            await asyncio.sleep(0.3)
            assert not pending.done()
            server, again = await _serving(store, Settings(port=port))
            try:
                assert again == port
                second = await pending
                third = await client.check(imei)
            finally:
                await server.stop(0)
        assert first == second == third

    run(test)


def test_close_fails_waiting_checks(store: Store) -> None:
    """Closing the client fails checks still waiting with ClientClosedError."""

    async def test() -> None:
        server, port = await _serving(store)
        try:
            client = Client(f"127.0.0.1:{port}", max_delay=10)
            await client.connect()
            pending = asyncio.ensure_future(client.check("352099001761481"))
            await asyncio.sleep(0.05)
            await client.close()
            with pytest.raises(ClientClosedError):
                await pending
            with pytest.raises(ClientClosedError):
                await client.check("352099001761481")
        finally:
            await server.stop(0)

    run(test)


def test_bad_settings_are_refused() -> None:
    """max_batch beyond the server limit or a non-positive timeout is a ValueError."""
    with pytest.raises(ValueError, match="max_batch"):
        Client("127.0.0.1:1", max_batch=10_001)
    with pytest.raises(ValueError, match="timeout"):
        Client("127.0.0.1:1", timeout=0)
