"""Issue 10 §1: eligibility rules (cutoff, 90-day limit, customs quota and cooldown) are
store policy set by the ministry or an admin, not flags of whoever imports; an importer's
flag may only tighten them. Late grandfathering (after the cutoff has passed by more than
the configured window) is staged for approval whatever its size."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from ceir.cli.app import EXIT_FORBIDDEN, main
from ceir.config import DEFAULT_LATE_GRANDFATHERING_DAYS, Settings
from ceir.errors import ForbiddenError, InvalidRequestError, RuleError
from ceir.feeds import Kind, eligibility, staging
from ceir.feeds.base import Options
from ceir.feeds.single import apply_one
from ceir.feeds.summary import ImportSummary
from ceir.feeds.volume import Limits
from ceir.security.principals import Role
from ceir.security.tokens import TokenBook
from ceir.store import Store, audit, open_store
from ceir.v1 import approval_pb2, approval_pb2_grpc
from tests._serving import serving
from tests.feeds.test_staging import MINISTRY, imeis

DAY = 86_400
CUSTOMS_HEADER = "imei,declaration_no,id_type,id_number,arrival_date,channel,tax_paid"
DUMP_HEADER = "imei,imsi,msisdn,first_seen"


def _customs(path: Path, n: int, start: int = 700_000, people: int = 1) -> Path:
    """*n* devices of *people* identities on one arrival."""
    rows = [f"{d},BC-{i},NIK,31710123456789{i % people:02d},2026-01-10,PASSENGER,true"
            for i, d in enumerate(imeis(n, start))]  # fmt: skip
    path.write_text("\n".join([CUSTOMS_HEADER, *rows]) + "\n")
    return path


def _dump(path: Path, n: int, first_seen: str = "2019-05-01", start: int = 800_000) -> Path:
    rows = [f"{d},51010123456{i:04d},+628120000{i:04d},{first_seen}"
            for i, d in enumerate(imeis(n, start))]  # fmt: skip
    path.write_text("\n".join([DUMP_HEADER, *rows]) + "\n")
    return path


def test_the_store_rules_apply_to_every_import_and_single_write(
    store: Store, tmp_path: Path
) -> None:
    """A ministry sets quota 1 and a 30-day visit: an import with no options and one with
    the default options (as the server sends) both get quota 1; Register a 60-day visit
    is refused; the change is an audited origin with the old and new rules."""
    rules = eligibility.set_rules(
        store, "ministry:kemenperin", {"customs_quota": 1, "visitor_max_days": 30}
    )
    assert (rules.customs_quota, rules.set_by) == (1, "ministry:kemenperin")
    for i, opts in enumerate((None, Options())):
        path = _customs(tmp_path / f"c{i}.csv", 3, 700_000 + 10 * i)
        done = staging.submit(store, Kind.CUSTOMS, path, actor="customs:bea", options=opts)
        assert isinstance(done, ImportSummary)
        assert done.added == (1 if i == 0 else 0), done
        assert done.rejected.get("quota", 0) == (2 if i == 0 else 3)
    fields = {"imei": imeis(1, 900_000)[0], "passport_number": "X1234567",
              "registered_at": "2026-11-01", "valid_until": "2026-12-31"}  # fmt: skip
    with pytest.raises(RuleError, match="at most 30 days"):
        apply_one(store, Kind.VISITOR, fields, actor="operator:tsel@510-10", request="R")
    origin = audit.get_origin(store, 1)
    assert origin is not None
    assert origin["kind"] == "eligibility"
    assert (origin["before"]["customs_quota"], origin["after"]["customs_quota"]) == (2, 1)


def test_an_importer_flag_may_only_tighten(store: Store, tmp_path: Path) -> None:
    """Later cutoff, longer visit, bigger quota, shorter cooldown: refused; the tighter
    direction is taken. Through `ceir import`: exit 9 and nothing written."""
    rules = eligibility.read(store)
    for name, looser in (("cutoff", rules.cutoff + DAY), ("visitor_max_days", 91),
                         ("customs_quota", 3), ("customs_cooldown_days", 179)):  # fmt: skip
        with pytest.raises(ForbiddenError, match="looser than the store's rule"):
            eligibility.options(rules, **{name: looser})
    tight = eligibility.options(rules, customs_quota=1, cutoff=rules.cutoff - DAY)
    assert (tight.customs_quota, tight.cutoff) == (1, rules.cutoff - DAY)
    path = _customs(tmp_path / "c.csv", 2)
    store.close()
    db = str(tmp_path / "db")
    cli = [sys.executable, "-c", "from ceir.cli import run; run()", "import", "customs",
           str(path), "--db", db, "-q", "--rejects", str(tmp_path / "r.csv")]  # fmt: skip
    loose = subprocess.run([*cli, "--customs-quota", "5"], capture_output=True, text=True,
                           check=False, cwd=tmp_path)  # fmt: skip
    assert loose.returncode == EXIT_FORBIDDEN, loose.stderr
    assert "--customs-quota 5 is looser than the store's rule (2)" in loose.stderr
    with open_store(db) as again:
        assert again.device_count() == 0
    tighter = subprocess.run([*cli, "--customs-quota", "1"], capture_output=True, text=True,
                             check=False, cwd=tmp_path)  # fmt: skip
    assert tighter.returncode == 0, tighter.stderr
    with open_store(db) as again:
        assert again.device_count() == 1


def test_an_approval_runs_under_rules_tightened_since(store: Store, tmp_path: Path) -> None:
    """Staged under quota 2, the ministry then lowers it to 1: the approval applies 1 per
    identity."""
    stage = staging.submit(store, Kind.CUSTOMS, _customs(tmp_path / "c.csv", 8, people=4),
                           actor="customs:bea", stage_above=3)  # fmt: skip
    assert isinstance(stage, staging.Stage)
    eligibility.set_rules(store, "admin:ops", {"customs_quota": 1})
    _, summary = staging.approve(store, stage.id, MINISTRY, digest=stage.digest)
    assert summary.added == 4  # one per identity, not two


def test_set_rules_refuses_nonsense(store: Store) -> None:
    with pytest.raises(InvalidRequestError, match="in the future"):
        eligibility.set_rules(store, "admin:ops", {"cutoff": int(time.time()) + 10 * DAY})
    with pytest.raises(InvalidRequestError, match="at least 1"):
        eligibility.set_rules(store, "admin:ops", {"customs_quota": 0})
    with pytest.raises(InvalidRequestError, match="cutoff must be at least 0"):
        eligibility.set_rules(store, "admin:ops", {"cutoff": -1})
    with pytest.raises(InvalidRequestError, match="not an eligibility rule"):
        eligibility.set_rules(store, "admin:ops", {"stage_above": 0})


def test_late_grandfathering_is_staged_whatever_its_size(store: Store, tmp_path: Path) -> None:
    """The default cutoff (2020) is long past: one grandfathering row is staged, with why.
    Within the window after a recent cutoff the same kind of file goes straight in; a
    late single write is refused (FAILED_PRECONDITION class)."""
    late = staging.submit(store, Kind.OPERATOR_DUMP, _dump(tmp_path / "d.csv", 1),
                          actor="operator:tsel@510-10")  # fmt: skip
    assert isinstance(late, staging.Stage)
    assert f"more than {DEFAULT_LATE_GRANDFATHERING_DAYS} days after the cutoff" in late.why
    fields = {"imei": imeis(1, 810_000)[0], "imsi": "510101234567890",
              "msisdn": "+6281200001111", "first_seen": "2019-05-01"}  # fmt: skip
    with pytest.raises(RuleError, match="needs a second principal's approval"):
        apply_one(store, Kind.OPERATOR_DUMP, fields, actor="operator:tsel@510-10",
                  request="R", limits=Limits())  # fmt: skip
    recent = int(time.time()) - 10 * DAY
    eligibility.set_rules(store, "ministry:kemenperin", {"cutoff": recent})
    seen = time.strftime("%Y-%m-%d", time.gmtime(recent - 5 * DAY))
    done = staging.submit(store, Kind.OPERATOR_DUMP, _dump(tmp_path / "e.csv", 3, seen, 820_000),
                          actor="operator:tsel@510-10")  # fmt: skip
    assert isinstance(done, ImportSummary)
    assert done.added == 3


def test_eligibility_over_grpc_is_set_by_ministry_and_read_by_writers(tmp_path: Path) -> None:
    book, ministry = TokenBook().add("kemenperin", Role.MINISTRY)
    book, operator = book.add("tsel", Role.OPERATOR, "510-10")
    book.save(tmp_path / "tokens.json")
    settings = Settings(db=tmp_path / "db", tokens=tmp_path / "tokens.json")
    with serving(settings) as running, running.channel() as ch:
        stub = approval_pb2_grpc.ApprovalsStub(ch)
        as_op = (("authorization", f"Bearer {operator}"),)
        as_min = (("authorization", f"Bearer {ministry}"),)
        with pytest.raises(grpc.RpcError) as err:
            stub.SetEligibility(approval_pb2.SetEligibilityRequest(customs_quota=9), metadata=as_op)
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
        got = stub.SetEligibility(
            approval_pb2.SetEligibilityRequest(customs_quota=1, visitor_max_days=30),
            metadata=as_min,
        )
        assert (got.customs_quota, got.visitor_max_days) == (1, 30)
        assert got.customs_cooldown_days == 180  # unchanged
        read = stub.GetEligibility(approval_pb2.GetEligibilityRequest(), metadata=as_op)
        assert (read.customs_quota, read.set_by) == (1, "ministry:kemenperin")
        with pytest.raises(grpc.RpcError) as err:
            stub.SetEligibility(
                approval_pb2.SetEligibilityRequest(customs_quota=0), metadata=as_min
            )
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        server = ["--server", running.address]
        runner = CliRunner()
        denied = runner.invoke(main, ["eligibility", "--customs-quota", "1", *server,
                                      "--token", operator])  # fmt: skip
        assert denied.exit_code == EXIT_FORBIDDEN
        shown = runner.invoke(main, ["eligibility", *server, "--token", operator])
        assert shown.exit_code == 0, shown.output
        assert "customs-quota             1" in shown.output
        assert "cutoff                    2020-09-15T15:00:00Z" in shown.output
        flags = ["--customs-cooldown-days", "200", "--cutoff", "2020-09-01T00:00:00Z"]
        changed = runner.invoke(main, ["eligibility", *flags, *server, "--token", ministry])
        assert changed.exit_code == 0, changed.output
        assert "customs-cooldown-days     200" in changed.output
        assert "cutoff                    2020-09-01T00:00:00Z" in changed.output
        assert "set by ministry:kemenperin" in changed.output
