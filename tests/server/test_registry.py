"""The gRPC Registry service: ImportFeed, Register, lost/stolen, GetDevice."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from ceir.config import Settings
from ceir.feeds import Kind
from ceir.feeds.gen import POOL, device_imei, generate, rows
from ceir.server.app import create_server
from ceir.store import Store, open_store
from ceir.v1 import common_pb2, eir_pb2, eir_pb2_grpc, registry_pb2, registry_pb2_grpc

NIK = "3171012345678901"


class _Running:
    """A server on 127.0.0.1, port 0, on its own event loop thread."""

    def __init__(self, store: Store, db: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        settings = Settings(
            db=db,
            host="127.0.0.1",
            port=0,
            demo=False,
            s13="127.0.0.1:0",
            web="127.0.0.1:0",
            sbi="127.0.0.1:0",
        )

        async def start() -> tuple[Any, int]:
            server, port = create_server(settings, store)
            await server.start()
            return server, port

        self.server, self.port = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(0), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[grpc.Channel]:
    store = open_store(tmp_path / "db")
    running = _Running(store, tmp_path / "db")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            yield ch
    finally:
        running.stop()
        store.close()


@pytest.fixture
def stub(channel: grpc.Channel) -> registry_pb2_grpc.RegistryStub:
    return registry_pb2_grpc.RegistryStub(channel)


def _upload(
    stub: registry_pb2_grpc.RegistryStub, kind: int, data: bytes, name: str, chunk: int = 4096
) -> registry_pb2.ImportFeedResponse:
    def messages() -> Iterator[registry_pb2.ImportFeedRequest]:
        yield registry_pb2.ImportFeedRequest(
            header=registry_pb2.ImportHeader(kind=kind, filename=name)  # type: ignore[arg-type]
        )
        for i in range(0, len(data), chunk):
            yield registry_pb2.ImportFeedRequest(chunk=data[i : i + chunk])

    response: registry_pb2.ImportFeedResponse = stub.ImportFeed(messages(), timeout=30)
    return response


def _feed(tmp_path: Path, kind: Kind, n: int, **kw: Any) -> bytes:
    path = tmp_path / f"{kind.value}.csv"
    generate(kind, n, path, **kw)
    return path.read_bytes()


def _load_tacs(stub: registry_pb2_grpc.RegistryStub, tmp_path: Path) -> None:
    summary = _upload(stub, registry_pb2.FEED_KIND_TAC, _feed(tmp_path, Kind.TAC, POOL), "t.csv")
    assert summary.added == POOL


def test_import_feed_streams_chunks_and_summarises(
    stub: registry_pb2_grpc.RegistryStub, channel: grpc.Channel, tmp_path: Path
) -> None:
    """A file in 4 KiB chunks is imported; lookups see it; the same bytes again are a no-op."""
    _load_tacs(stub, tmp_path)
    data = _feed(tmp_path, Kind.MANUFACTURER, 500, dirt=0.02, seed=4)
    summary = _upload(stub, registry_pb2.FEED_KIND_MANUFACTURER, data, "/x/y/maker.csv")
    assert summary.state == registry_pb2.IMPORT_STATE_DONE
    assert summary.format == registry_pb2.FEED_FORMAT_CSV
    assert summary.rows == 500
    assert summary.added + summary.rejected == 500
    assert summary.rejected == sum(summary.rejected_by_reason.values()) > 0
    assert summary.first_rejects[0].line > 1
    dirty = rows(Kind.MANUFACTURER, 500, dirt=0.02, seed=4)
    pairs = zip(dirty, rows(Kind.MANUFACTURER, 500, seed=4), strict=True)
    clean = next(d[0] for d, c in pairs if d == c)
    eir = eir_pb2_grpc.EquipmentIdentityRegisterStub(channel)
    answer = eir.CheckIMEI(eir_pb2.CheckIMEIRequest(imei=clean))
    assert answer.status == common_pb2.EQUIPMENT_STATUS_WHITELISTED
    again = _upload(stub, registry_pb2.FEED_KIND_MANUFACTURER, data, "maker.csv")
    assert again.state == registry_pb2.IMPORT_STATE_ALREADY_IMPORTED
    assert f"import #{summary.import_id}" in again.message


def test_import_feed_refused_whole(stub: registry_pb2_grpc.RegistryStub, tmp_path: Path) -> None:
    """A file over the bad-row limit comes back REFUSED with its first rejects."""
    data = _feed(tmp_path, Kind.MANUFACTURER, 100, dirt=0.5, seed=1)
    summary = _upload(stub, registry_pb2.FEED_KIND_MANUFACTURER, data, "bad.csv")
    assert summary.state == registry_pb2.IMPORT_STATE_REFUSED
    assert "nothing was imported" in summary.message
    assert summary.first_rejects


def test_import_feed_needs_the_header_first(stub: registry_pb2_grpc.RegistryStub) -> None:
    """Chunks without a header first are INVALID_ARGUMENT."""
    with pytest.raises(grpc.RpcError) as info:
        stub.ImportFeed(iter([registry_pb2.ImportFeedRequest(chunk=b"imei\n")]), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_import_feed_unreadable_file(stub: registry_pb2_grpc.RegistryStub) -> None:
    """A file missing required columns is INVALID_ARGUMENT, saying which."""
    with pytest.raises(grpc.RpcError) as info:
        _upload(stub, registry_pb2.FEED_KIND_CUSTOMS, b"imei,x\n1,2\n", "c.csv")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "declaration_no" in (info.value.details() or "")


def _customs(serial: int, nik: str = NIK) -> registry_pb2.RegisterRequest:
    return registry_pb2.RegisterRequest(
        kind=registry_pb2.FEED_KIND_CUSTOMS,
        fields={
            "imei": device_imei(serial),
            "declaration_no": f"BC-{serial}",
            "id_type": "NIK",
            "id_number": nik,
            "arrival_date": "2024-01-10",
            "channel": "PASSENGER",
            "tax_paid": "true",
        },
        request_id=f"r{serial}",
    )


def test_register_applies_channel_rules(stub: registry_pb2_grpc.RegistryStub) -> None:
    """Register adds; the same again is unchanged; a third device is FAILED_PRECONDITION."""
    first = stub.Register(_customs(1))
    assert first.outcome == registry_pb2.CHANGE_OUTCOME_ADDED
    assert first.after.present
    assert not first.before.present
    assert first.audit_seq > 0
    assert stub.Register(_customs(1)).outcome == registry_pb2.CHANGE_OUTCOME_UNCHANGED
    stub.Register(_customs(2))
    with pytest.raises(grpc.RpcError) as info:
        stub.Register(_customs(3))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "at most 2 per arrival" in (info.value.details() or "")


def test_register_malformed_and_unknown_fields(stub: registry_pb2_grpc.RegistryStub) -> None:
    """A bad field or an unknown field name is INVALID_ARGUMENT; a missing kind too."""
    bad = _customs(1)
    bad.fields["arrival_date"] = "10/01/2024"
    extra = _customs(2)
    extra.fields["colour"] = "red"
    for request in (bad, extra, registry_pb2.RegisterRequest()):
        with pytest.raises(grpc.RpcError) as info:
            stub.Register(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_lost_stolen_block_and_clear(stub: registry_pb2_grpc.RegistryStub) -> None:
    """Report: BLACKLISTED / LOST_STOLEN; clear: back to what it was; clear again refused."""
    stub.Register(_customs(1))
    imei = device_imei(1)
    blocked = stub.ReportLostStolen(registry_pb2.LostStolenRequest(imei=imei, report_ref="P/1"))
    assert (blocked.status, blocked.reason) == (2, 6)  # BLACKLISTED, LOST_STOLEN
    cleared = stub.ClearLostStolen(registry_pb2.LostStolenRequest(imei=imei, report_ref="P/1"))
    assert (cleared.status, cleared.reason) == (1, 1)  # WHITELISTED, REGISTERED
    assert cleared.after == blocked.before
    with pytest.raises(grpc.RpcError) as info:
        stub.ClearLostStolen(registry_pb2.LostStolenRequest(imei=imei, report_ref="P/1"))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_get_device_full_record_without_personal_data(
    stub: registry_pb2_grpc.RegistryStub,
) -> None:
    """GetDevice returns state, details with tokens and the history; never the NIK."""
    stub.Register(_customs(1))
    stub.ReportLostStolen(registry_pb2.LostStolenRequest(imei=device_imei(1), report_ref="P/9"))
    device = stub.GetDevice(registry_pb2.GetDeviceRequest(imei=device_imei(1)))
    assert device.state.lost_stolen
    customs = device.details["customs"].fields
    assert customs["id_token"].startswith("tok_")
    assert customs["declaration_no"] == "BC-1"
    assert [h.action for h in device.history] == [
        registry_pb2.HISTORY_ACTION_CUSTOMS,
        registry_pb2.HISTORY_ACTION_BLOCK,
    ]
    assert device.history[0].actor.startswith("grpc:")
    assert device.history[0].request == "Register r1"
    assert NIK.encode() not in device.SerializeToString()
    assert NIK not in str(device)


def test_get_device_unknown_is_not_found(stub: registry_pb2_grpc.RegistryStub) -> None:
    """An IMEI the register knows nothing of is NOT_FOUND; a malformed one INVALID_ARGUMENT."""
    with pytest.raises(grpc.RpcError) as info:
        stub.GetDevice(registry_pb2.GetDeviceRequest(imei=device_imei(7)))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        stub.GetDevice(registry_pb2.GetDeviceRequest(imei="12"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_cli_import_while_serving(tmp_path: Path) -> None:
    """`ceir import` in another process writes into the store a running server reads;
    lookups see the devices as soon as the import's batches commit."""
    import subprocess
    import sys

    db = tmp_path / "db"
    store = open_store(db)
    running = _Running(store, db)
    try:
        tacs, maker = tmp_path / "tac.csv", tmp_path / "m.csv"
        generate(Kind.TAC, POOL, tacs)
        generate(Kind.MANUFACTURER, 300, maker)
        code = "import sys; from ceir.cli import run; sys.argv[0] = 'ceir'; run()"
        for kind, path in (("tac", tacs), ("manufacturer", maker)):
            subprocess.run(
                [sys.executable, "-c", code, "import", kind, str(path), "--db", str(db), "-q"],
                check=True,
                capture_output=True,
                cwd=tmp_path,
            )
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            eir = eir_pb2_grpc.EquipmentIdentityRegisterStub(ch)
            batch = eir_pb2.CheckIMEIBatchRequest(
                requests=[eir_pb2.CheckIMEIRequest(imei=r[0]) for r in rows(Kind.MANUFACTURER, 300)]
            )
            answers = eir.CheckIMEIBatch(batch).responses
        assert {a.status for a in answers} == {common_pb2.EQUIPMENT_STATUS_WHITELISTED}
    finally:
        running.stop()
        store.close()


def test_no_personal_number_in_responses_or_logs(
    stub: registry_pb2_grpc.RegistryStub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Identity numbers sent in a feed and in requests appear in no response and no log."""
    import logging

    caplog.set_level(logging.DEBUG)
    header = "imei,declaration_no,id_type,id_number,arrival_date,channel,tax_paid\n"
    passports = [f"C{n:07d}" for n in range(5)]
    body = "".join(
        f"{device_imei(100 + i)},BC-{i},PASSPORT,{p},2024-02-01,SHIPMENT,true\n"
        for i, p in enumerate(passports)
    )
    body += f"{device_imei(99)},BC-9,PASSPORT,{passports[0]},2024-03-01,SHIPMENT,true\n"
    summary = _upload(stub, registry_pb2.FEED_KIND_CUSTOMS, (header + body).encode(), "c.csv")
    assert summary.state == registry_pb2.IMPORT_STATE_DONE
    assert (summary.added, dict(summary.rejected_by_reason)) == (5, {"cooldown": 1})
    responses = [summary.SerializeToString(), str(summary).encode()]
    responses.extend(stub.Register(_customs(i)).SerializeToString() for i in (1, 2))
    with pytest.raises(grpc.RpcError) as info:
        stub.Register(_customs(3))  # over the quota: the message must not name the NIK
    responses.append((info.value.details() or "").encode())
    device = stub.GetDevice(registry_pb2.GetDeviceRequest(imei=device_imei(100)))
    responses.append(device.SerializeToString())
    assert "ImportFeed from grpc:" in caplog.text  # the logs were captured and are checked
    for value in (*passports, NIK):
        for data in responses:
            assert value.encode() not in data
        assert value not in caplog.text


def _count(name: str, **labels: str) -> float:
    from ceir import metrics

    total = 0.0
    for line in metrics.exposition().decode().splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_imports_are_counted_on_metrics(
    stub: registry_pb2_grpc.RegistryStub, tmp_path: Path
) -> None:
    """An import adds to ceir_imports_total and its rows to accepted / the reject reasons;
    a refused one to result="refused"."""
    imported = ("ceir_imports_total", {"kind": "manufacturer", "result": "imported"})
    refused = ("ceir_imports_total", {"kind": "manufacturer", "result": "refused"})
    accepted = ("ceir_import_rows_total", {"kind": "manufacturer", "outcome": "accepted"})
    before = [_count(n, **labels) for n, labels in (imported, refused, accepted)]
    _load_tacs(stub, tmp_path)
    data = _feed(tmp_path, Kind.MANUFACTURER, 300, dirt=0.02, seed=9)
    summary = _upload(stub, registry_pb2.FEED_KIND_MANUFACTURER, data, "maker.csv")
    bad = _feed(tmp_path, Kind.MANUFACTURER, 100, dirt=0.5, seed=1)
    _upload(stub, registry_pb2.FEED_KIND_MANUFACTURER, bad, "bad.csv")
    after = [_count(n, **labels) for n, labels in (imported, refused, accepted)]
    assert after[0] - before[0] == 1
    assert after[1] - before[1] == 1
    assert after[2] - before[2] == summary.added + summary.changed + summary.unchanged
    reasons = sum(_count("ceir_import_rows_total", kind="manufacturer", outcome=r) for r in
                  summary.rejected_by_reason)  # fmt: skip
    assert reasons >= summary.rejected > 0


def test_every_python_enum_has_its_proto_twin() -> None:
    """Feed kinds, formats and history actions map one to one onto the proto's enums."""
    from ceir.feeds import Format
    from ceir.server.registry import FEED_FORMATS, FEED_KINDS, HISTORY_ACTIONS
    from ceir.store.audit import Action

    assert sorted(FEED_KINDS.values()) == sorted(
        v for v in registry_pb2.FeedKind.values() if v != registry_pb2.FEED_KIND_UNSPECIFIED
    )
    assert sorted(FEED_FORMATS.values()) == sorted(
        v for v in registry_pb2.FeedFormat.values() if v != registry_pb2.FEED_FORMAT_AUTO
    )
    assert len(FEED_FORMATS) == len(Format)
    assert {int(a): v for a, v in HISTORY_ACTIONS.items()} == {int(a): int(a) for a in Action}
    assert len(registry_pb2.HistoryAction.values()) == len(Action) + 1
