"""Issue 10 §1: an insider with a valid credential cannot bend the register. Each test is
one attack, tried over real gRPC against a secured server on port 0."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ceir.config import Settings
from ceir.security.tokens import TokenBook
from ceir.v1 import common_pb2, eir_pb2, eir_pb2_grpc, registry_pb2, registry_pb2_grpc
from tests._serving import Running, serving
from tests.server.test_access_registry import PRINCIPALS, imei, upload

STOLEN_DEMO = "352099001761499"
"""The demo's stolen phone: blocked by demo data, no BLOCK entry in the audit log."""
REGISTERED_DEMO = "352099001761481"

Secured = tuple[Running, dict[str, tuple[tuple[str, str]]]]


def _book(tmp_path: Path) -> tuple[Path, dict[str, tuple[tuple[str, str]]]]:
    book = TokenBook()
    md = {}
    for name, role, op in PRINCIPALS:
        book, token = book.add(name, role, op)
        md[name] = (("authorization", f"Bearer {token}"),)
    book.save(tmp_path / "tokens.json")
    return tmp_path / "tokens.json", md


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Secured]:
    tokens, md = _book(tmp_path)
    settings = Settings(db=tmp_path / "db", tokens=tokens, write_rate=0)
    with serving(settings) as running:
        yield running, md


def _status(ch: grpc.Channel, md: tuple[tuple[str, str]], number: str) -> int:
    eir = eir_pb2_grpc.EquipmentIdentityRegisterStub(ch)
    return int(eir.CheckIMEI(eir_pb2.CheckIMEIRequest(imei=number), metadata=md).status)


def _lost_stolen_file(numbers: list[str], action: str = "BLOCK") -> bytes:
    rows = [f"{n},POL-{i},{action},2026-01-01" for i, n in enumerate(numbers)]
    return ("\n".join(["imei,report_ref,action,reported_at", *rows]) + "\n").encode()


def test_a_mass_blacklisting_file_is_staged(secured: Secured) -> None:
    """2,000 BLOCK rows from one operator are not applied at once: the lost-stolen file
    has its own small staging threshold, and nothing is blocked until approval."""
    running, md = secured
    numbers = [imei(200_000 + i) for i in range(2_000)] + [REGISTERED_DEMO]
    with running.channel() as ch:
        token = md["telkomsel"][0][1].removeprefix("Bearer ")
        answer = upload(ch, token, _kind("LOST_STOLEN"), _lost_stolen_file(numbers), "ls.csv")
        assert answer.state == registry_pb2.IMPORT_STATE_STAGED, answer.message
        assert (
            _status(ch, md["telkomsel"], REGISTERED_DEMO) == common_pb2.EQUIPMENT_STATUS_WHITELISTED
        )


def _kind(name: str) -> object:
    from ceir.feeds import Kind

    return Kind[name]


def test_another_operator_cannot_clear_a_block_by_any_path(secured: Secured) -> None:
    """Telkomsel blocks; Indosat's Register(UNBLOCK), ImportFeed UNBLOCK row and
    ClearLostStolen all fail, and the device stays blacklisted."""
    running, md = secured
    stub = registry_pb2_grpc.RegistryStub(running.channel())
    report = registry_pb2.LostStolenRequest(imei=REGISTERED_DEMO, report_ref="POL-1")
    stub.ReportLostStolen(report, metadata=md["telkomsel"])
    fields = {"imei": REGISTERED_DEMO, "report_ref": "POL-1", "action": "UNBLOCK",
              "reported_at": "2026-01-02"}  # fmt: skip
    with pytest.raises(grpc.RpcError) as err:
        stub.Register(
            registry_pb2.RegisterRequest(kind=registry_pb2.FEED_KIND_LOST_STOLEN, fields=fields),
            metadata=md["indosat"],
        )
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    with running.channel() as ch:
        token = md["indosat"][0][1].removeprefix("Bearer ")
        data = _lost_stolen_file([REGISTERED_DEMO], "UNBLOCK")
        answer = upload(ch, token, _kind("LOST_STOLEN"), data, "unblock.csv")
        assert answer.changed == 0
        assert (
            _status(ch, md["telkomsel"], REGISTERED_DEMO) == common_pb2.EQUIPMENT_STATUS_BLACKLISTED
        )
    with pytest.raises(grpc.RpcError) as err:
        stub.ClearLostStolen(report, metadata=md["indosat"])
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_a_block_with_no_owner_is_cleared_only_by_ministry_or_admin(secured: Secured) -> None:
    """The demo's stolen phone has no recorded blocking operator: an operator may not
    clear it, an admin may."""
    running, md = secured
    stub = registry_pb2_grpc.RegistryStub(running.channel())
    request = registry_pb2.LostStolenRequest(imei=STOLEN_DEMO, report_ref="POL-2")
    with pytest.raises(grpc.RpcError) as err:
        stub.ClearLostStolen(request, metadata=md["telkomsel"])
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    cleared = stub.ClearLostStolen(request, metadata=md["ops"])
    assert not cleared.after.lost_stolen


def test_future_dates_are_refused(secured: Secured) -> None:
    """A visitor registered in 2099 is refused (not whitelisted until 2100)."""
    running, md = secured
    stub = registry_pb2_grpc.RegistryStub(running.channel())
    fields = {"imei": imei(300_001), "passport_number": "X1234567",
              "registered_at": "2099-12-01", "valid_until": "2100-01-01"}  # fmt: skip
    with pytest.raises(grpc.RpcError) as err:
        stub.Register(
            registry_pb2.RegisterRequest(kind=registry_pb2.FEED_KIND_VISITOR, fields=fields),
            metadata=md["telkomsel"],
        )
    assert err.value.code() in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert "future" in (err.value.details() or "")


def test_customs_arrivals_in_the_future_get_no_fresh_quota(tmp_path: Path) -> None:
    """Rows dated 2030 and 2031 are rejected as future dates, not counted as new arrivals."""
    from tests.security.test_attack_leaks import NIK, _customs, _tac, ceir

    db = tmp_path / "db"
    _tac(tmp_path, db)
    rows = [f"{imei(400 + i)},BC-{i},NIK,{NIK},{year}-01-10,PASSENGER,true"
            for i, year in enumerate((2030, 2031))]  # fmt: skip
    _customs(tmp_path, rows)
    out = ceir("import", "customs", "customs.csv", "--db", str(db), cwd=tmp_path, ok=(0, 7))
    assert "0 accepted" in out.stdout + out.stderr or "refused" in out.stdout + out.stderr
    assert "future" in (tmp_path / "customs.csv.rejects.csv").read_text()


def test_nik_spellings_share_one_quota(tmp_path: Path) -> None:
    """The same NIK in fullwidth digits or with separators is the same identity; `0`+NIK
    or a trailing X is not a NIK at all. Only 2 devices per arrival go through."""
    from tests.security.test_attack_leaks import NIK, _customs, _tac, ceir

    db = tmp_path / "db"
    _tac(tmp_path, db)
    fullwidth = "".join(chr(0xFF10 + int(d)) for d in NIK)
    spellings = [
        NIK,
        fullwidth,
        f"{NIK[:8]}-{NIK[8:]}",
        f"0{NIK}",
        f"{NIK}X",
        f"{NIK[:6]} {NIK[6:]}",
    ]
    rows = [f"{imei(500 + i)},BC-{i},NIK,{s},2025-01-10,PASSENGER,true"
            for i, s in enumerate(spellings)]  # fmt: skip
    _customs(tmp_path, rows)
    out = ceir(
        "import", "customs", "customs.csv", "--db", str(db), "-q", "--max-bad-ratio", "0.5",
        cwd=tmp_path,
    )  # fmt: skip
    report = (tmp_path / "customs.csv.rejects.csv").read_text()
    assert report.count(",quota,") == 2, report
    assert report.count(",bad_value,") == 2, report
    assert out.stdout.startswith("imported customs customs.csv: 6 rows; 2 accepted"), out.stdout


def test_a_lost_stolen_file_is_a_log_of_events(secured: Secured) -> None:
    """BLOCK at 09:00 and UNBLOCK at 15:00 of one phone (listed in reverse order) are both
    applied, in reported_at order, each with its own audit entry; only the exact repeat is
    a duplicate."""
    running, md = secured
    number = REGISTERED_DEMO
    data = (
        "imei,report_ref,action,reported_at\n"
        f"{number},POL-7,UNBLOCK,2026-01-05T15:00:00+07:00\n"
        f"{number},POL-7,BLOCK,2026-01-05T09:00:00+07:00\n"
        f"{number},POL-7,BLOCK,2026-01-05T09:00:00+07:00\n"
        + "".join(f"{imei(700 + i)},POL-{i},BLOCK,2026-01-05\n" for i in range(40))
    ).encode()
    with running.channel() as ch:
        token = md["telkomsel"][0][1].removeprefix("Bearer ")
        answer = upload(ch, token, _kind("LOST_STOLEN"), data, "events.csv")
        assert answer.state == registry_pb2.IMPORT_STATE_DONE, answer.message
        assert answer.changed == 2 + 40
        assert dict(answer.rejected_by_reason) == {"duplicate": 1}
        assert _status(ch, md["telkomsel"], number) == common_pb2.EQUIPMENT_STATUS_WHITELISTED
        device = registry_pb2_grpc.RegistryStub(ch).GetDevice(
            registry_pb2.GetDeviceRequest(imei=number), metadata=md["ops"]
        )
    actions = [h.action for h in device.history if h.file == "events.csv"]
    assert actions == [registry_pb2.HISTORY_ACTION_BLOCK, registry_pb2.HISTORY_ACTION_UNBLOCK]


def test_request_ids_and_filenames_with_control_characters_are_refused(secured: Secured) -> None:
    """A request_id with a newline, or a 10,000-character one, is INVALID_ARGUMENT."""
    running, md = secured
    stub = registry_pb2_grpc.RegistryStub(running.channel())
    for request_id in ("r1\n2026-01-01 forged line", "x" * 10_000, "tab\there"):
        request = registry_pb2.LostStolenRequest(
            imei=imei(600_001), report_ref="POL-3", request_id=request_id
        )
        with pytest.raises(grpc.RpcError) as err:
            stub.ReportLostStolen(request, metadata=md["telkomsel"])
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with running.channel() as ch:
        token = md["telkomsel"][0][1].removeprefix("Bearer ")
        with pytest.raises(grpc.RpcError) as err:
            upload(ch, token, _kind("LOST_STOLEN"), _lost_stolen_file([imei(1)]), "a\nb.csv")
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_rows_appended_between_the_passes_are_never_written(tmp_path: Path) -> None:
    """The file grows by 5,000 rows after the check pass: only the 1,000 checked rows are
    written (the import reads one private copy), and the summary says 1,000."""
    from ceir.feeds import Kind
    from ceir.feeds.importer import import_file
    from ceir.store import open_store

    header = "imei,brand,model,tpp_number,maker_id,produced_at\n"
    path = tmp_path / "m.csv"
    path.write_text(header + "".join(f"{imei(i)},B,M,T,X,2025-01-01\n" for i in range(1_000)))

    class Growing:
        def phase(self, name: str, total: int | None) -> None:
            if name == "importing":
                with path.open("a") as f:
                    f.writelines(f"{imei(i)},B,M,T,X,2025-01-01\n" for i in range(1_000, 6_000))

        def advance(self, n: int) -> None:
            pass

        def close(self) -> None:
            pass

    with open_store(tmp_path / "db") as store:
        summary = import_file(
            store, Kind.MANUFACTURER, path, actor="local:test",
            options=_options(allow_unknown_tac=True), progress=Growing(),
        )  # fmt: skip
        assert summary.rows == 1_000
        assert summary.added == 1_000
        assert store.device_count() == 1_000


def _options(**kwargs: object) -> object:
    from ceir.feeds.base import Options

    return Options(**kwargs)  # type: ignore[arg-type]


def test_a_second_token_of_the_same_person_cannot_approve(tmp_path: Path) -> None:
    """ministry:min1 stages; ministry:min1b, a second token minted for the same person
    (--person), is refused; a different person approves."""
    from ceir.security.principals import Role
    from ceir.v1 import approval_pb2, approval_pb2_grpc

    book = TokenBook()
    book, min1 = book.add("min1", Role.MINISTRY, person="alice")
    book, min1b = book.add("min1b", Role.MINISTRY, person="alice")
    book, other = book.add("min2", Role.MINISTRY, person="bob")
    book.save(tmp_path / "tokens.json")
    settings = Settings(db=tmp_path / "db", tokens=tmp_path / "tokens.json", stage_above=5)
    rows = [f"{imei(800 + i)},DIPLOMAT,REF-{i}," for i in range(10)]
    data = ("\n".join(["imei,category,reference,valid_until", *rows]) + "\n").encode()
    with serving(settings) as running, running.channel() as ch:
        staged = upload(ch, min1, _kind("EXCEPTION"), data, "vip.csv")
        assert staged.state == registry_pb2.IMPORT_STATE_STAGED
        approvals = approval_pb2_grpc.ApprovalsStub(ch)
        request = approval_pb2.StageRequest(id=staged.stage_id, digest=staged.digest)
        with pytest.raises(grpc.RpcError) as err:
            approvals.ApproveStage(request, metadata=(("authorization", f"Bearer {min1b}"),))
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
        approved = approvals.ApproveStage(request, metadata=(("authorization", f"Bearer {other}"),))
        assert approved.added == 10
