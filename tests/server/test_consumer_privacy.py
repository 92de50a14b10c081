"""What a consumer's DeviceCheck answer may hold: every field of every answer is checked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from ceir.config import Settings
from ceir.imei import parse
from ceir.record import Source
from ceir.store import demo, open_store
from ceir.v1 import device_check_pb2, device_check_pb2_grpc
from tests._serving import serving

# Reviewed: each field a consumer sees. A new field fails this test until it is reviewed
# for personal data, tokens, declaration numbers and internals, and added here.
CONSUMER_FIELDS = {
    "imei", "state", "summary", "brand", "model", "device_type", "tac", "valid_until",
    "allowed",
}  # fmt: skip


def scalars(message: Message, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every set scalar in *message*, nested messages included, as (path, value)."""
    for field, value in message.ListFields():
        path = prefix + field.name
        values = value if field.is_repeated else [value]
        for v in values:
            if isinstance(v, Message):
                yield from scalars(v, path + ".")
            else:
                yield path, v


def test_the_consumer_answer_has_only_reviewed_fields() -> None:
    """LookupDeviceResponse declares exactly the reviewed fields."""
    declared = {f.name for f in device_check_pb2.LookupDeviceResponse.DESCRIPTOR.fields}
    assert declared == CONSUMER_FIELDS


def forbidden_values(store_path: Path) -> tuple[set[str], set[int]]:
    """Internals a consumer must not learn: channel names, registration times."""
    words = {s.name for s in Source if s is not Source.NONE}
    with open_store(store_path, readonly=True) as store:
        times = {r.registered_at for _, r in store.iter_devices() if r.registered_at}
    return words, times


def test_no_consumer_answer_carries_internals_or_personal_data(tmp_path: Path) -> None:
    """For every demo device, each field is what it should be and nothing internal leaks."""
    db = tmp_path / "db"
    with open_store(db) as store:
        demo.load(store)
    words, times = forbidden_values(db)
    summaries = set()
    with serving(Settings(db=db, consumer_rate=0)) as running, running.channel() as ch:
        stub = device_check_pb2_grpc.DeviceCheckStub(ch)
        for device in demo.devices(0):
            answer = stub.LookupDevice(device_check_pb2.LookupDeviceRequest(imei=device.imei))
            imei = parse(device.imei)
            for path, value in scalars(answer):
                assert path.split(".")[0] in CONSUMER_FIELDS
                if isinstance(value, str):
                    assert not any(w.lower() in value.lower() for w in words), (path, value)
                    assert value.isprintable(), (path, value)
                elif path != "valid_until.seconds" and not isinstance(value, bool):
                    assert value not in times, (path, value)  # registration time: internal
            assert answer.imei == imei.canonical
            assert answer.tac == imei.tac
            assert answer.HasField("valid_until") == (
                answer.state
                in (device_check_pb2.DEVICE_STATE_TEMPORARY, device_check_pb2.DEVICE_STATE_EXPIRED)
            )
            summaries.add(answer.summary)
    assert len(summaries) >= 5


def test_consumer_answers_for_imported_devices_hold_no_tokens_or_declarations(
    tmp_path: Path,
) -> None:
    """Customs, visitor and operator registrations: no field of the consumer's answer holds
    a declaration number, an identity token, a clear number or who registered it."""
    from ceir.feeds import Kind
    from ceir.feeds.importer import import_file
    from ceir.imei import check_digit
    from ceir.store import TacInfo
    from ceir.store.identity import IdKind, tokenizer_for

    def imei(serial: int) -> str:
        body = f"35209900{serial:06d}"
        return f"{body}{check_digit(body)}"

    feeds = {
        Kind.CUSTOMS: "imei,declaration_no,id_type,id_number,arrival_date,channel,tax_paid\n"
        + "".join(f"{imei(i)},BC-7{i:05d},NIK,31710123456{i:05d},2025-01-10,PASSENGER,true\n"
                  for i in range(10)),
        Kind.VISITOR: "imei,passport_number,registered_at,valid_until\n"
        + "".join(f"{imei(100 + i)},X9{i:06d},2026-11-01,2027-01-01\n" for i in range(10)),
        Kind.OPERATOR_DUMP: "imei,imsi,msisdn,first_seen\n"
        + "".join(f"{imei(200 + i)},51010987{i:07d},+6281377{i:06d},2019-05-01\n"
                  for i in range(10)),
    }  # fmt: skip
    forbidden = {"BC-7", "tok_", "customs:", "operator:", "local:", "grpc:"}
    db = tmp_path / "db"
    with open_store(db) as store:
        store.put_tacs([TacInfo("35209900", "Nusantara", "N1", "Smartphone")])
        tokenizer = tokenizer_for(store)
        for i in range(10):
            forbidden |= {
                f"31710123456{i:05d}",
                f"X9{i:06d}",
                f"51010987{i:07d}",
                f"6281377{i:06d}",
            }
            for kind, number in (
                (IdKind.NIK, f"31710123456{i:05d}"),
                (IdKind.PASSPORT, f"X9{i:06d}"),
            ):
                forbidden.add(tokenizer.token(kind, number).hex()[:12])
        for kind, text in feeds.items():
            path = tmp_path / f"{kind.value}.csv"
            path.write_text(text)
            summary = import_file(store, kind, path, actor=f"customs:bea-{kind.value}")
            assert summary.added == 10
    with serving(Settings(db=db, consumer_rate=0, demo=False)) as running, running.channel() as ch:
        stub = device_check_pb2_grpc.DeviceCheckStub(ch)
        for serial in [*range(10), *range(100, 110), *range(200, 210)]:
            answer = stub.LookupDevice(device_check_pb2.LookupDeviceRequest(imei=imei(serial)))
            assert answer.allowed
            for path, value in scalars(answer):
                assert path.split(".")[0] in CONSUMER_FIELDS
                text = str(value)
                assert not any(f in text for f in forbidden), (path, value)
