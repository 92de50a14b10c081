"""Writes through the Registry: each role writes only its own feed kinds, imports are
stamped with the principal, bulk ImportFeeds are staged, single writes are rate-limited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from ceir.config import Settings
from ceir.feeds import Kind
from ceir.imei import check_digit
from ceir.security.principals import Role
from ceir.security.tokens import TokenBook
from ceir.store import audit
from ceir.v1 import (
    approval_pb2,
    approval_pb2_grpc,
    common_pb2,
    eir_pb2,
    eir_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)
from tests._serving import Running, serving

PRINCIPALS = (
    ("telkomsel", Role.OPERATOR, "510-10"),
    ("indosat", Role.OPERATOR, "510-01"),
    ("nusantara", Role.MANUFACTURER, ""),
    ("bea", Role.CUSTOMS, ""),
    ("kemenperin", Role.MINISTRY, ""),
    ("portal", Role.CONSUMER, ""),
    ("ops", Role.ADMIN, ""),
)
KINDS = {
    Kind.TAC: registry_pb2.FEED_KIND_TAC,
    Kind.MANUFACTURER: registry_pb2.FEED_KIND_MANUFACTURER,
    Kind.CUSTOMS: registry_pb2.FEED_KIND_CUSTOMS,
    Kind.OPERATOR_DUMP: registry_pb2.FEED_KIND_OPERATOR_DUMP,
    Kind.VISITOR: registry_pb2.FEED_KIND_VISITOR,
    Kind.EXCEPTION: registry_pb2.FEED_KIND_EXCEPTION,
    Kind.LOST_STOLEN: registry_pb2.FEED_KIND_LOST_STOLEN,
}
ALLOWED = {
    "telkomsel": {Kind.OPERATOR_DUMP, Kind.VISITOR, Kind.LOST_STOLEN},
    "nusantara": {Kind.MANUFACTURER},
    "bea": {Kind.CUSTOMS},
    "kemenperin": {Kind.EXCEPTION, Kind.TAC},
    "portal": set(),
    "ops": set(Kind),
}


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[Running, dict[str, str]]]:
    book = TokenBook()
    tokens = {}
    for name, role, op in PRINCIPALS:
        book, tokens[name] = book.add(name, role, op)
    book.save(tmp_path / "tokens.json")
    settings = Settings(
        db=tmp_path / "db", tokens=tmp_path / "tokens.json", stage_above=50, write_burst=3,
        write_rate=0.01,
    )  # fmt: skip
    with serving(settings) as running:
        yield running, tokens


def upload(ch: grpc.Channel, token: str, kind: Kind, data: bytes, name: str) -> Any:
    def messages() -> Iterator[registry_pb2.ImportFeedRequest]:
        header = registry_pb2.ImportHeader(kind=KINDS[kind], filename=name)
        yield registry_pb2.ImportFeedRequest(header=header)
        yield registry_pb2.ImportFeedRequest(chunk=data)

    stub = registry_pb2_grpc.RegistryStub(ch)
    return stub.ImportFeed(messages(), metadata=(("authorization", f"Bearer {token}"),))


def imei(serial: int) -> str:
    body = f"35209900{serial:06d}"
    return f"{body}{check_digit(body)}"


def clean_feed(kind: Kind, n: int = 5, start: int = 0) -> bytes:
    """A feed of *kind* with *n* rows that break no rule (demo TAC 35209900)."""
    base = {k: 100_000 + 10_000 * i for i, k in enumerate(Kind)}[kind] + start
    header, row = {
        Kind.TAC: ("tac,brand,model,device_type", "{tac},Brand,M{i},Smartphone"),
        Kind.MANUFACTURER: ("imei,brand,model,tpp_number,maker_id,produced_at",
                            "{imei},Nusantara,N1,TPP-1,M1,2025-01-01"),
        Kind.CUSTOMS: ("imei,declaration_no,id_type,id_number,arrival_date,channel,tax_paid",
                       "{imei},BC-{i},NIK,31710123456{i:05d},2025-01-10,PASSENGER,true"),
        Kind.OPERATOR_DUMP: ("imei,imsi,msisdn,first_seen",
                             "{imei},5101012345{i:05d},+62812000{i:05d},2019-05-01"),
        Kind.VISITOR: ("imei,passport_number,registered_at,valid_until",
                       "{imei},X{i:07d},2026-11-01,2027-01-01"),
        Kind.EXCEPTION: ("imei,category,reference,valid_until", "{imei},DIPLOMAT,REF-{i},"),
        Kind.LOST_STOLEN: ("imei,report_ref,action,reported_at", "{imei},POL-{i},BLOCK,2026-01-01"),
    }[kind]  # fmt: skip
    lines = [header] + [
        row.format(i=i, imei=imei(base + i), tac=f"{90_000_000 + base + i}") for i in range(n)
    ]
    return ("\n".join(lines) + "\n").encode()


def test_each_role_may_import_only_its_own_feed_kinds(
    secured: tuple[Running, dict[str, str]], tmp_path: Path
) -> None:
    """Every principal x every kind: allowed ones import (or stage), others are refused
    with PERMISSION_DENIED before a byte is written."""
    running, tokens = secured
    data = {kind: clean_feed(kind) for kind in Kind}
    with running.channel() as ch:
        for name, kinds in ALLOWED.items():
            for kind in Kind:
                if kind in kinds:
                    answer = upload(ch, tokens[name], kind, data[kind], f"{name}-{kind.value}.csv")
                    # Grandfathering years after the 2020 cutoff is staged whatever its size.
                    ok = {
                        registry_pb2.IMPORT_STATE_DONE,
                        registry_pb2.IMPORT_STATE_ALREADY_IMPORTED,
                    }
                    if kind is Kind.OPERATOR_DUMP:
                        ok.add(registry_pb2.IMPORT_STATE_STAGED)
                    assert answer.state in ok
                else:
                    with pytest.raises(grpc.RpcError) as err:
                        upload(ch, tokens[name], kind, data[kind], "x.csv")
                    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED, (name, kind)
                    assert err.value.details() == "permission denied"


def test_imports_are_stamped_with_the_principal_and_operator_id(
    secured: tuple[Running, dict[str, str]], tmp_path: Path
) -> None:
    """The audit origin of an operator's visitor import names operator:telkomsel@510-10."""
    running, tokens = secured
    with running.channel() as ch:
        answer = upload(ch, tokens["telkomsel"], Kind.VISITOR, clean_feed(Kind.VISITOR), "v.csv")
    assert answer.added == 5
    origin = audit.get_origin(running.store, answer.import_id)
    assert origin is not None
    assert origin["actor"] == "operator:telkomsel@510-10"


def test_bulk_import_feed_is_staged_until_another_principal_approves(
    secured: tuple[Running, dict[str, str]], tmp_path: Path
) -> None:
    """Above stage_above the answer is STAGED; the devices are unknown until the ministry
    approves; the admin who staged its own file may not approve it."""
    running, tokens = secured
    md = {name: (("authorization", f"Bearer {t}"),) for name, t in tokens.items()}
    with running.channel() as ch:
        data = clean_feed(Kind.MANUFACTURER, 80, start=5000)
        staged = upload(ch, tokens["ops"], Kind.MANUFACTURER, data, "bulk.csv")
        assert staged.state == registry_pb2.IMPORT_STATE_STAGED
        assert staged.added == 80
        eir = eir_pb2_grpc.EquipmentIdentityRegisterStub(ch)
        probe = eir_pb2.CheckIMEIRequest(imei=imei(110_000 + 5000 + 10))
        assert (
            eir.CheckIMEI(probe, metadata=md["telkomsel"]).reason
            == common_pb2.REASON_NOT_REGISTERED
        )
        approvals = approval_pb2_grpc.ApprovalsStub(ch)
        request = approval_pb2.StageRequest(id=staged.stage_id, digest=staged.digest)
        with pytest.raises(grpc.RpcError) as err:
            approvals.ApproveStage(request, metadata=md["ops"])
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as err:
            approvals.ApproveStage(request, metadata=md["nusantara"])
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
        approved = approvals.ApproveStage(request, metadata=md["kemenperin"])
        assert approved.added == 80
        answer = eir.CheckIMEI(probe, metadata=md["telkomsel"])
        assert answer.status == common_pb2.EQUIPMENT_STATUS_WHITELISTED
    origin = audit.get_origin(running.store, approved.import_id)
    assert origin is not None
    assert origin["actor"] == "admin:ops approved by ministry:kemenperin"


def test_single_writes_are_rate_limited_per_principal(
    secured: tuple[Running, dict[str, str]],
) -> None:
    """Past the write burst, Register answers RESOURCE_EXHAUSTED with retry-after."""
    running, tokens = secured
    md = (("authorization", f"Bearer {tokens['telkomsel']}"),)
    stub = registry_pb2_grpc.RegistryStub(running.channel())
    codes = []
    retry_after = []
    for serial in range(5):
        request = registry_pb2.LostStolenRequest(imei=imei(serial), report_ref=f"P{serial}")
        try:
            stub.ReportLostStolen(request, metadata=md)
            codes.append("OK")
        except grpc.RpcError as exc:
            codes.append(exc.code().name)
            retry_after.append(dict(exc.trailing_metadata() or ()).get("retry-after"))
    assert codes == ["OK", "OK", "OK", "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"]
    assert all(r and int(r) >= 1 for r in retry_after)


def test_get_device_is_for_ministry_and_admin_only(
    secured: tuple[Running, dict[str, str]],
) -> None:
    """An operator may not read a device's full record; the ministry may."""
    running, tokens = secured
    stub = registry_pb2_grpc.RegistryStub(running.channel())
    request = registry_pb2.GetDeviceRequest(imei="352099001761481")
    with pytest.raises(grpc.RpcError) as err:
        stub.GetDevice(request, metadata=(("authorization", f"Bearer {tokens['telkomsel']}"),))
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    md = (("authorization", f"Bearer {tokens['kemenperin']}"),)
    assert stub.GetDevice(request, metadata=md).imei == "352099001761481"


def test_an_operator_clears_only_its_own_lost_stolen_reports(
    secured: tuple[Running, dict[str, str]],
) -> None:
    """Telkomsel's block cannot be cleared by Indosat; Telkomsel and an admin can."""
    running, tokens = secured
    md = {name: (("authorization", f"Bearer {t}"),) for name, t in tokens.items()}
    stub = registry_pb2_grpc.RegistryStub(running.channel())
    request = registry_pb2.LostStolenRequest(imei="352099001761481", report_ref="POL-9")
    stub.ReportLostStolen(request, metadata=md["telkomsel"])
    with pytest.raises(grpc.RpcError) as err:
        stub.ClearLostStolen(request, metadata=md["indosat"])
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    cleared = stub.ClearLostStolen(request, metadata=md["telkomsel"])
    assert cleared.status == common_pb2.EQUIPMENT_STATUS_WHITELISTED
