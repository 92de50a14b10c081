"""Issue 10 §1 over ``ceir serve --workers 2``: the rolling 24-hour counts live in the
store, so calls spread over two worker processes add up (a per-process count let two
files of 900 new devices through where one of 1,800 was staged)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ceir.feeds import Kind
from ceir.v1 import registry_pb2, registry_pb2_grpc
from tests.server.test_access_registry import KINDS, clean_feed, imei
from tests.server.test_supervisor import Served, _start

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[Served]:
    served = _start(
        tmp_path, "--workers", "2", "--grace", "1", "--stage-above", "1000",
        "--stage-lost-stolen-above", "3", "--web", "off", "--s13", "off", "--sbi", "off",
    )  # fmt: skip
    try:
        yield served
    finally:
        if served.proc.poll() is None:
            os.kill(served.proc.pid, signal.SIGTERM)
            try:
                served.proc.wait(30)
            except Exception:
                served.proc.kill()
                served.proc.wait()
        served.handle.close()


def _upload(port: int, data: bytes, name: str) -> registry_pb2.ImportFeedResponse:
    def messages() -> Iterator[registry_pb2.ImportFeedRequest]:
        header = registry_pb2.ImportHeader(kind=KINDS[Kind.MANUFACTURER], filename=name)
        yield registry_pb2.ImportFeedRequest(header=header)
        yield registry_pb2.ImportFeedRequest(chunk=data)

    # A new channel per call: a new connection, which either worker may accept.
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        answer: registry_pb2.ImportFeedResponse = registry_pb2_grpc.RegistryStub(ch).ImportFeed(
            messages(), timeout=60
        )
        return answer


def test_split_files_and_single_writes_add_up_across_workers(two_workers: Served) -> None:
    port = two_workers.port
    first = _upload(port, clean_feed(Kind.MANUFACTURER, 900, start=0), "a.csv")
    assert first.state == registry_pb2.IMPORT_STATE_DONE, first.message
    second = _upload(port, clean_feed(Kind.MANUFACTURER, 900, start=1_000), "b.csv")
    assert second.state == registry_pb2.IMPORT_STATE_STAGED, second.message
    assert "in the last 24 hours" in second.message
    codes, details = [], []
    for serial in range(5):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            request = registry_pb2.LostStolenRequest(imei=imei(300 + serial), report_ref="P1")
            try:
                registry_pb2_grpc.RegistryStub(ch).ReportLostStolen(request, timeout=30)
                codes.append("OK")
            except grpc.RpcError as exc:
                codes.append(exc.code().name)
                details.append(exc.details() or "")
    assert all("24 hours" in d for d in details)
    assert codes == ["OK", "OK", "OK", "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"]
