"""The two-person rule: bulk imports are staged until a different ministry/admin approves."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from ceir.cli.app import EXIT_FORBIDDEN, EXIT_NO_STAGE, EXIT_STAGED, main
from ceir.config import Settings
from ceir.errors import ForbiddenError, NotFoundError, StageExpiredError
from ceir.feeds import Kind, staging
from ceir.imei import check_digit, parse
from ceir.security.principals import Principal, Role
from ceir.security.tokens import TokenBook
from ceir.store import Store, TacInfo, audit, open_store
from ceir.v1 import common_pb2, eir_pb2, eir_pb2_grpc, registry_pb2
from tests._serving import serving

TAC = "35209900"
STAGER = "manufacturer:nusantara"
MINISTRY = Principal("kemenperin", Role.MINISTRY)


def imeis(n: int, start: int = 500_000) -> list[str]:
    bodies = [f"{TAC}{start + i:06d}" for i in range(n)]
    return [f"{b}{check_digit(b)}" for b in bodies]


def feed(path: Path, devices: list[str]) -> Path:
    rows = [f"{i},Nusantara,N1,TPP-1,M1,2025-01-01" for i in devices]
    path.write_text("imei,brand,model,tpp_number,maker_id,produced_at\n" + "\n".join(rows) + "\n")
    return path


def stored(store: Store, devices: list[str]) -> int:
    return sum(store.get(parse(i).key) is not None for i in devices)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "db")
    s.put_tacs([TacInfo(TAC, "Nusantara", "N1", "Smartphone")])
    yield s
    s.close()


def test_small_imports_apply_and_bulk_imports_are_staged_invisibly(
    store: Store, tmp_path: Path
) -> None:
    """At or below the threshold the import applies; above it nothing is written."""
    small = imeis(5, start=0)
    done = staging.submit(store, Kind.MANUFACTURER, feed(tmp_path / "s.csv", small),
                          actor=STAGER, stage_above=5)  # fmt: skip
    assert not isinstance(done, staging.Stage)
    assert stored(store, small) == 5
    bulk = imeis(20)
    stage = staging.submit(store, Kind.MANUFACTURER, feed(tmp_path / "b.csv", bulk),
                           actor=STAGER, stage_above=5)  # fmt: skip
    assert isinstance(stage, staging.Stage)
    assert (stage.new_devices, stage.staged_by) == (20, STAGER)
    assert stored(store, bulk) == 0
    assert [s.id for s in staging.list_stages(store)] == [stage.id]
    assert f"ceir approve 1 --digest {stage.digest}" in stage.line()


def test_the_submitter_and_non_approver_roles_cannot_approve(store: Store, tmp_path: Path) -> None:
    """Self-approval (same principal name) and an operator's approval are refused."""
    stage = staging.submit(store, Kind.MANUFACTURER, feed(tmp_path / "b.csv", imeis(20)),
                           actor="admin:root", stage_above=5)  # fmt: skip
    assert isinstance(stage, staging.Stage)
    with pytest.raises(ForbiddenError, match="second, different principal"):
        staging.approve(store, stage.id, Principal("root", Role.ADMIN), digest=stage.digest)
    with pytest.raises(ForbiddenError, match="ministry or admin"):
        staging.approve(
            store, stage.id, Principal("xl", Role.OPERATOR, "510-11"), digest=stage.digest
        )
    assert stored(store, imeis(20)) == 0


def test_approval_applies_the_stage_and_the_audit_names_both(store: Store, tmp_path: Path) -> None:
    """After a different ministry principal approves, lookups see the devices; the audit
    origin says who staged and who approved."""
    bulk = imeis(20)
    stage = staging.submit(store, Kind.MANUFACTURER, feed(tmp_path / "b.csv", bulk),
                           actor=STAGER, stage_above=5)  # fmt: skip
    assert isinstance(stage, staging.Stage)
    _, summary = staging.approve(store, stage.id, MINISTRY, digest=stage.digest)
    assert summary.added == 20
    assert stored(store, bulk) == 20
    origin = audit.get_origin(store, summary.origin)
    assert origin is not None
    assert origin["actor"] == f"{STAGER} approved by ministry:kemenperin"
    assert staging.list_stages(store) == []
    with pytest.raises(NotFoundError):
        staging.approve(store, stage.id, MINISTRY, digest=stage.digest)


def test_rejected_and_expired_stages_leave_no_trace_in_lookups(
    store: Store, tmp_path: Path
) -> None:
    """Reject drops a stage; an expired one cannot be approved and is dropped too."""
    first = staging.submit(store, Kind.MANUFACTURER, feed(tmp_path / "a.csv", imeis(10)),
                           actor=STAGER, stage_above=5)  # fmt: skip
    second = staging.submit(store, Kind.MANUFACTURER, feed(tmp_path / "b.csv", imeis(10, 600_000)),
                            actor=STAGER, stage_above=5, ttl=60,
                            clock=lambda: time.time() - 3600)  # fmt: skip
    assert isinstance(first, staging.Stage)
    assert isinstance(second, staging.Stage)
    staging.reject(store, first.id, MINISTRY)
    with pytest.raises(StageExpiredError):
        staging.approve(store, second.id, MINISTRY, digest=second.digest)
    assert staging.list_stages(store, now=0) == []
    assert stored(store, imeis(10) + imeis(10, 600_000)) == 0
    with store.snapshot() as tables:
        assert tables.stages.count() == 0
    states = [audit.get_origin(store, i)["state"] for i in range(1, 5)]  # type: ignore[index]
    assert states == ["stage-staged", "stage-staged", "stage-rejected", "stage-expired"]


NOW = time.time()


def test_purge_drops_expired_stages(store: Store, tmp_path: Path) -> None:
    """purge_expired removes stages past their time and keeps the others."""
    old = staging.submit(store, Kind.MANUFACTURER, feed(tmp_path / "a.csv", imeis(10)),
                         actor=STAGER, stage_above=5, ttl=10, clock=lambda: NOW - 900)  # fmt: skip
    assert isinstance(old, staging.Stage)
    assert [s.id for s in staging.purge_expired(store, now=NOW)] == [old.id]
    with pytest.raises(NotFoundError):
        staging.get(store, old.id)


def test_cli_import_stages_and_the_approve_command_applies_over_grpc(tmp_path: Path) -> None:
    """`ceir import` exits 8 above --stage-above; `ceir approve` needs a ministry/admin
    token (a consumer gets exit 9, an unknown stage exit 10); then the server whitelists."""
    db = tmp_path / "db"
    with open_store(db) as s:
        s.put_tacs([TacInfo(TAC, "Nusantara", "N1", "Smartphone")])
    bulk = imeis(30)
    path = feed(tmp_path / "bulk.csv", bulk)
    imported = subprocess.run(
        [sys.executable, "-c", "from ceir.cli import run; run()", "import", "manufacturer",
         str(path), "--db", str(db), "--stage-above", "10", "-q"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert imported.returncode == EXIT_STAGED, imported.stderr
    assert imported.stdout.startswith("staged manufacturer bulk.csv as stage 1: 30 rows, 30 new")
    book, ministry = TokenBook().add("kemenperin", Role.MINISTRY)
    book, consumer = book.add("portal", Role.CONSUMER)
    book.save(tmp_path / "tokens.json")
    settings = Settings(db=db, tokens=tmp_path / "tokens.json")
    with serving(settings) as running:
        server = ["--server", running.address]
        runner = CliRunner()
        digest = ["--digest", hashlib.sha256(path.read_bytes()).hexdigest()]
        denied = runner.invoke(main, ["approve", "1", *digest, *server, "--token", consumer])
        assert denied.exit_code == EXIT_FORBIDDEN
        missing = runner.invoke(main, ["approve", "7", *digest, *server, "--token", ministry])
        assert missing.exit_code == EXIT_NO_STAGE
        listed = runner.invoke(main, ["stages", *server, "--token", ministry])
        assert "30 new devices, 0 changed, 30 rows; staged by local:" in listed.output
        assert f"ceir approve 1 --digest {digest[1]}" in listed.output
        assert "    1  manufacturer bulk.csv" in listed.output  # the enum, named as on the CLI
        assert stored_count_open(running.store, bulk) == 0
        approved = runner.invoke(main, ["approve", "1", *digest, *server, "--token", ministry])
        assert approved.exit_code == 0, approved.output
        assert "30 new, 0 changed, 0 rejected" in approved.output
        assert stored_count_open(running.store, bulk) == 30


def stored_count_open(store: Store, devices: list[str]) -> int:
    return stored(store, devices)


def test_lookups_see_a_stage_only_after_approval(tmp_path: Path) -> None:
    """Over gRPC (open mode): NOT_REGISTERED while staged, WHITELISTED once approved."""
    db = tmp_path / "db"
    with open_store(db) as s:
        s.put_tacs([TacInfo(TAC, "Nusantara", "N1", "Smartphone")])
        stage = staging.submit(s, Kind.MANUFACTURER, feed(tmp_path / "b.csv", imeis(12)),
                               actor=STAGER, stage_above=5)  # fmt: skip
    assert isinstance(stage, staging.Stage)
    request = eir_pb2.CheckIMEIRequest(imei=imeis(12)[3])
    with serving(Settings(db=db, demo=False)) as running, running.channel() as ch:
        stub = eir_pb2_grpc.EquipmentIdentityRegisterStub(ch)
        assert stub.CheckIMEI(request).reason == common_pb2.REASON_NOT_REGISTERED
        from ceir.v1 import approval_pb2, approval_pb2_grpc

        approvals = approval_pb2_grpc.ApprovalsStub(ch)
        answer = approvals.ApproveStage(approval_pb2.StageRequest(id=stage.id, digest=stage.digest))
        assert answer.added == 12
        assert answer.stage.kind == registry_pb2.FEED_KIND_MANUFACTURER
        assert stub.CheckIMEI(request).status == common_pb2.EQUIPMENT_STATUS_WHITELISTED
        with pytest.raises(grpc.RpcError) as err:
            approvals.ApproveStage(approval_pb2.StageRequest(id=stage.id, digest=stage.digest))
        assert err.value.code() is grpc.StatusCode.NOT_FOUND
