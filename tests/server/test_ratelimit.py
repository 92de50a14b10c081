"""Token buckets per client, and DeviceCheck answering RESOURCE_EXHAUSTED with retry-after."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from ceir.config import Settings
from ceir.server.ratelimit import RateLimiter
from ceir.v1 import device_check_pb2, device_check_pb2_grpc, eir_pb2, eir_pb2_grpc
from tests._serving import serving


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_the_rate() -> None:
    """A full bucket grants `burst` calls, then one per 1/rate seconds."""
    clock = Clock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0


def test_clients_have_separate_buckets() -> None:
    """One client's exhaustion does not touch another's."""
    limiter = RateLimiter(1.0, 1, clock=Clock())
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    assert limiter.take("b") == 0.0


def test_the_bucket_table_is_bounded() -> None:
    """A flood of distinct clients cannot grow the table past max_clients."""
    limiter = RateLimiter(1.0, 1, max_clients=100, clock=Clock())
    for i in range(1000):
        limiter.take(str(i))
    assert len(limiter) == 100


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    """Retry-after rounds up and never says 0."""
    assert RateLimiter.retry_after(0.01) == "1"
    assert RateLimiter.retry_after(1.2) == "2"


def test_device_check_is_rate_limited_per_client_with_retry_after(tmp_path: Path) -> None:
    """Past the burst, LookupDevice answers RESOURCE_EXHAUSTED with retry-after metadata;
    the operator path is not rate-limited."""
    settings = Settings(db=tmp_path / "db", consumer_rate=0.5, consumer_burst=3)
    request = device_check_pb2.LookupDeviceRequest(imei="352099001761481")
    with serving(settings) as running, running.channel() as ch:
        stub = device_check_pb2_grpc.DeviceCheckStub(ch)
        for _ in range(3):
            stub.LookupDevice(request)
        with pytest.raises(grpc.RpcError) as err:
            stub.LookupDevice(request)
        assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        trailers = dict(err.value.trailing_metadata())
        assert int(trailers["retry-after"]) in (1, 2)
        eir = eir_pb2_grpc.EquipmentIdentityRegisterStub(ch)
        for _ in range(10):
            eir.CheckIMEI(eir_pb2.CheckIMEIRequest(imei="352099001761481"))
