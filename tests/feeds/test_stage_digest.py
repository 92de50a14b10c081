"""Issue 10 §1: an approval names the stage and the digest the approver was shown, and
the approver is shown the stage's rules and a sample of its rows (personal numbers only
as identity-token prefixes)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from ceir.cli.app import EXIT_NO_STAGE, EXIT_USAGE, main
from ceir.config import Settings
from ceir.errors import InvalidRequestError, StageMismatchError
from ceir.feeds import Kind, staging
from ceir.security.principals import Principal, Role
from ceir.store import Store, TacInfo, open_store
from ceir.v1 import approval_pb2, approval_pb2_grpc
from tests._serving import serving
from tests.feeds.test_staging import MINISTRY, STAGER, feed, imeis, stored

NIKS = [f"3171012345{i:06d}" for i in range(30)]


def _customs(path: Path, *, swap: bool = False) -> Path:
    rows = []
    for i, (device, nik) in enumerate(zip(imeis(30, 700_000), NIKS, strict=True)):
        first, second = (nik, device) if swap and i == 0 else (device, nik)
        rows.append(f"{first},BC-{i},NIK,{second},2026-01-10,PASSENGER,true")
    header = "imei,declaration_no,id_type,id_number,arrival_date,channel,tax_paid"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_approval_needs_the_digest_it_was_shown(store: Store, tmp_path: Path) -> None:
    """No digest: refused; another digest: refused, nothing applied; the stage's: applied."""
    stage = staging.submit(store, Kind.MANUFACTURER, feed(tmp_path / "b.csv", imeis(20)),
                           actor=STAGER, stage_above=5)  # fmt: skip
    assert isinstance(stage, staging.Stage)
    with pytest.raises(InvalidRequestError, match="--digest"):
        staging.approve(store, stage.id, MINISTRY, digest="")
    with pytest.raises(StageMismatchError, match="another file"):
        staging.approve(store, stage.id, MINISTRY, digest="ab" * 32)
    with pytest.raises(StageMismatchError, match=r"not \(not hex\)"):
        staging.approve(store, stage.id, MINISTRY, digest="x\n" * 32)
    assert stored(store, imeis(20)) == 0
    assert [s.id for s in staging.list_stages(store)] == [stage.id]
    _, summary = staging.approve(store, stage.id, MINISTRY, digest=stage.digest.upper())
    assert summary.added == 20


def test_the_approver_sees_rules_and_masked_rows(tmp_path: Path) -> None:
    """ListStages carries the options (cutoff, quotas, --allow-unknown-tac, --max-bad-ratio)
    and sample rows in which no NIK appears in clear, even from a swapped column; the gRPC
    approval without the digest is INVALID_ARGUMENT, with another FAILED_PRECONDITION."""
    db = tmp_path / "db"
    with open_store(db) as s:
        s.put_tacs([TacInfo("35209900", "Nusantara", "N1", "Smartphone")])
        stage = staging.submit(s, Kind.CUSTOMS, _customs(tmp_path / "c.csv", swap=True),
                               actor="customs:bea", stage_above=5)  # fmt: skip
    assert isinstance(stage, staging.Stage)
    with serving(Settings(db=db, demo=False)) as running, running.channel() as ch:
        approvals = approval_pb2_grpc.ApprovalsStub(ch)
        listed = approvals.ListStages(approval_pb2.ListStagesRequest())
        (shown,) = listed.stages
        options = {o.name: o.value for o in shown.options}
        assert options["cutoff"] == "2020-09-15T15:00:00Z"
        assert options["customs-quota"] == "2"
        assert options["allow-unknown-tac"] == "false"
        assert options["max-bad-ratio"] == "0.05"
        assert list(shown.columns)[:4] == ["imei", "declaration_no", "id_type", "id_number"]
        assert len(shown.sample) >= 10
        assert shown.sample[0].values[0] == "<16 digits>"  # the swapped row: a NIK, masked
        assert shown.sample[1].values[0] == "35209900…"  # an IMEI: its TAC
        ids = [row.values[3] for row in shown.sample if len(row.values) > 3]
        assert ids
        assert all(v.startswith("tok_") for v in ids)
        raw = listed.SerializeToString()
        assert not any(nik.encode() in raw for nik in NIKS)
        assert not any(nik[-8:].encode() in raw for nik in NIKS)  # not even a long tail
        for request, code in (
            (approval_pb2.StageRequest(id=stage.id), grpc.StatusCode.INVALID_ARGUMENT),
            (approval_pb2.StageRequest(id=stage.id, digest="0" * 64),
             grpc.StatusCode.FAILED_PRECONDITION),
        ):  # fmt: skip
            with pytest.raises(grpc.RpcError) as err:
                approvals.ApproveStage(request)
            assert err.value.code() is code
        server = ["--server", running.address]
        runner = CliRunner()
        no_digest = runner.invoke(main, ["approve", str(stage.id), *server])
        assert no_digest.exit_code == EXIT_USAGE
        wrong = runner.invoke(main, ["approve", str(stage.id), "--digest", "0" * 64, *server])
        assert wrong.exit_code == EXIT_NO_STAGE
        assert "another file" in wrong.output
        one = runner.invoke(main, ["stages", str(stage.id), *server])
        assert one.exit_code == 0, one.output
        assert f"ceir approve {stage.id} --digest {stage.digest}" in one.output
        assert "--customs-quota 2" in one.output
        assert "tok_" in one.output
        assert not any(nik in one.output for nik in NIKS)
        ok = runner.invoke(main, ["approve", str(stage.id), "--digest", stage.digest, *server])
        assert ok.exit_code == 0, ok.output


def test_a_stage_from_an_older_store_record_still_lists(store: Store) -> None:
    """A stage record written before options/sample were shown has none; it still reads."""
    record = {"id": 1, "kind": "tac", "file": "t.csv", "digest": "0" * 64, "format": "csv",
              "staged_by": "admin:x", "rows": 1, "new_devices": 1, "created_at": 0,
              "expires_at": 1, "options": {}}  # fmt: skip
    stage = staging.Stage.from_record(record)
    assert (stage.sample, stage.columns, stage.why) == ([], [], "")
    assert Principal("y", Role.ADMIN).person_id == "y"
