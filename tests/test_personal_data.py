"""The clear identity numbers of the test feeds appear nowhere: not in the store file (or
its backup), not in any log or command output, not in any response."""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import grpc
from click.testing import CliRunner

from ceir.cli.app import main
from ceir.v1 import (
    approval_pb2,
    approval_pb2_grpc,
    device_check_pb2,
    device_check_pb2_grpc,
    eir_pb2,
    eir_pb2_grpc,
)

CLI = [sys.executable, "-c", "from ceir.cli import run; run()"]
PERSONAL = {"id_number", "passport_number", "imsi", "msisdn"}
PERSONAL_KINDS = ("customs", "visitor", "operator-dump")


def ceir(*args: str, cwd: Path) -> str:
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, check=False, cwd=cwd)
    assert result.returncode in (0, 8), result.stderr
    return result.stdout + result.stderr


def personal_values(path: Path) -> tuple[set[str], list[str]]:
    """The clear personal numbers in a generated feed, and its IMEIs."""
    values: set[str] = set()
    imeis = []
    with path.open() as f:
        for row in csv.DictReader(f):
            imeis.append(row["imei"])
            for name in PERSONAL & row.keys():
                value = row[name].strip()
                if len(value) >= 6:
                    values |= {value, value.lstrip("+")}
    return values, imeis


def test_no_clear_identity_number_is_stored_logged_or_returned(tmp_path: Path) -> None:
    """Import customs, visitor and operator feeds (one staged and approved), look every
    device up, back up, purge; then search every byte for the clear numbers."""
    db = tmp_path / "db"
    runner = CliRunner()
    feeds = {}
    for kind in ("tac", "customs", "visitor", "operator-dump"):
        path = tmp_path / f"{kind}.csv"
        assert runner.invoke(main, ["gen", kind, str(path), "--rows", "300", "-q"]).exit_code == 0
        feeds[kind] = path
    secrets: set[str] = set()
    imeis: list[str] = []
    for kind in ("customs", "visitor", "operator-dump"):
        values, found = personal_values(feeds[kind])
        secrets |= values
        imeis += found
    assert len(secrets) > 300
    outputs = [ceir("import", "tac", str(feeds["tac"]), "--db", str(db), "--create", cwd=tmp_path)]
    server = subprocess.Popen(
        [*CLI, "serve", "--db", str(db), "--port", "0", "--log-level", "debug",
         "--log-format", "json"],
        stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert server.stderr is not None
    log = [next(server.stderr)]
    while not (found := re.search(r"serving on 127\.0\.0\.1:(\d+)", log[-1])):
        log.append(next(server.stderr))
    address = f"127.0.0.1:{found.group(1)}"
    responses: list[bytes] = []
    try:
        outputs.append(ceir("import", "customs", str(feeds["customs"]), "--db", str(db), "--create",
                            "--stage-above", "10", cwd=tmp_path))  # fmt: skip
        assert "staged customs" in outputs[-1]
        outputs.extend(
            ceir("import", kind, str(feeds[kind]), "--db", str(db), "--create", cwd=tmp_path)
            for kind in ("visitor", "operator-dump")
        )
        with grpc.insecure_channel(address) as ch:
            approvals = approval_pb2_grpc.ApprovalsStub(ch)
            listed = approvals.ListStages(approval_pb2.ListStagesRequest())
            assert listed.stages
            assert listed.stages[0].sample
            responses.append(listed.SerializeToString())
            first = approval_pb2.StageRequest(id=1, digest=listed.stages[0].digest)
            responses.append(approvals.ApproveStage(first).SerializeToString())
            eir = eir_pb2_grpc.EquipmentIdentityRegisterStub(ch)
            batch = eir_pb2.CheckIMEIBatchRequest(
                requests=[eir_pb2.CheckIMEIRequest(imei=i, imsi="510101234567890") for i in imeis]
            )
            responses.append(eir.CheckIMEIBatch(batch).SerializeToString())
            dc = device_check_pb2_grpc.DeviceCheckStub(ch)
            for imei in imeis[::37]:
                request = device_check_pb2.LookupDeviceRequest(imei=imei)
                responses.append(dc.LookupDevice(request).SerializeToString())
        outputs.extend(ceir("audit", i, "--db", str(db), cwd=tmp_path) for i in imeis[::29])
        outputs.append(ceir("backup", str(tmp_path / "backup"), "--db", str(db), cwd=tmp_path))
        outputs.append(ceir("purge", "--db", str(db), cwd=tmp_path))
    finally:
        server.send_signal(signal.SIGTERM)
        rest = server.communicate(timeout=30)[1]
    log.append(rest)
    # the JSON access log has a line for the approval (a write), naming principal and method
    access = [json.loads(line) for line in "".join(log).splitlines() if '"ceir.access_log"' in line]
    assert any(a["method"] == "ApproveStage" and a["principal"] for a in access), access[:3]
    # the search finds what is there: the feed files themselves hold the numbers
    assert all(any(s.encode() in feeds[k].read_bytes() for s in secrets) for k in PERSONAL_KINDS)
    haystacks = {
        "store file": (db / "data.mdb").read_bytes(),
        "backup file": (tmp_path / "backup" / "data.mdb").read_bytes(),
        "server log": "".join(log).encode(),
        "command output": "".join(outputs).encode(),
        "responses": b"".join(responses),
        "reject reports": b"".join(p.read_bytes() for p in tmp_path.glob("*.rejects.csv")),
    }
    assert len(haystacks["responses"]) > 1000
    for where, data in haystacks.items():
        leaked = sorted(s for s in secrets if s.encode() in data)
        assert leaked == [], f"clear personal numbers in the {where}: {leaked[:5]}"
