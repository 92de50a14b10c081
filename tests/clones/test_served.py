"""Clone state through real processes: ``ceir serve --publish``, ``ceir replica`` and a
real nats-server. A replica bootstrapped after the central paired, greylisted and blocked
devices answers (IMEI, IMSI) exactly as the central; pairing over the Registry RPCs, by
role, audited, reaching the replicas."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from ceir.record import Reason, Status
from ceir.store import demo, open_store
from ceir.v1 import eir_pb2, eir_pb2_grpc, registry_pb2, registry_pb2_grpc
from tests.replication._cluster import CEIR, Cluster, Proc, cluster, wait_for

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

GREY = "352099001761481"  # demo devices: registered by a manufacturer, at customs
BLOCK = "356868000041418"
PLAIN = "490154203237518"  # grandfathered, never flagged
OWNER = "510100000000001"  # a 510-10 subscriber's SIM, paired
OTHER = "510100000000777"  # another SIM of the same network, not paired
OP = "510-10"


def _answers(node: Proc, metadata: Any = None) -> dict[tuple[str, str], tuple[int, int]]:
    with node.channel() as channel:
        stub = eir_pb2_grpc.EquipmentIdentityRegisterStub(channel)
        out = {}
        for imei in (GREY, BLOCK, PLAIN):
            for imsi in (OWNER, OTHER, ""):
                r = stub.CheckIMEI(
                    eir_pb2.CheckIMEIRequest(imei=imei, imsi=imsi), metadata=metadata, timeout=10
                )
                out[(imei, imsi)] = (r.status, r.reason)
        return out


def _serving(node: Proc) -> None:
    wait_for("SERVING", lambda: node.health() == health_pb2.HealthCheckResponse.SERVING)


def _token_of(c: Cluster, db: Path, imsi: str) -> str:
    return c.ceir("clones", "token", "--db", str(db), "--imsi", imsi).stdout.strip()


def test_a_replica_bootstrapped_later_answers_every_sim_as_the_central(tmp_path: Path) -> None:
    """Pairs (the central's token and the operator's), a greylisted and a blocked device,
    made at the central while replica r1 follows; then r2, a new replica of the same
    operator (its key), bootstraps from the snapshot: central, r1 and r2 give the same
    answer for the paired SIM, another SIM and no SIM, and their digests (clone states
    and pairs included) are equal."""
    with cluster(tmp_path) as c:
        r1 = c.add_replica("r1", "--operator", OP)
        _serving(r1)
        db = str(c.central_db)
        op_token = _token_of(c, tmp_path / "r1", OWNER)
        assert re.fullmatch(r"tok_[0-9a-f]{32}", op_token)
        c.ceir("clones", "greylist", "--db", db, "--imei", GREY)
        c.ceir("clones", "greylist", "--db", db, "--imei", BLOCK, "--grace-days", "0")
        for imei in (GREY, BLOCK):
            c.ceir("clones", "pair", "--db", db, "--imei", imei, "--imsi", OWNER)
            c.ceir("clones", "pair", "--db", db, "--imei", imei, "--token", op_token,
                   "--operator", OP)  # fmt: skip
        c.converged(r1)
        shutil.copy(tmp_path / "r1.token-key", tmp_path / "r2.token-key")
        r2 = c.add_replica("r2", "--operator", OP)
        _serving(r2)
        c.converged(r2)
        ranges = {r.range: r.count for r in r2.digest().ranges}
        assert (ranges["clones"], ranges["pairs"]) == (2, 4)
        central = _answers(c.central)
        assert central == _answers(r1) == _answers(r2)
    grey, black, white = (
        (Status.GREYLISTED, Reason.DUPLICATE),
        (Status.BLACKLISTED, Reason.DUPLICATE),
        (Status.WHITELISTED, Reason.REGISTERED),
    )
    assert central[(GREY, OWNER)] == central[(BLOCK, OWNER)] == white
    assert central[(GREY, OTHER)] == central[(GREY, "")] == grey
    assert central[(BLOCK, OTHER)] == central[(BLOCK, "")] == black
    assert central[(PLAIN, OTHER)] == (Status.WHITELISTED, Reason.GRANDFATHERED)


def _add_token(tokens: Path, name: str, role: str, operator: str = "") -> tuple[tuple[str, str]]:
    args = [CEIR, "token", "add", name, "--role", role, "--tokens", str(tokens)]
    if operator:
        args += ["--operator", operator]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout
    found = re.search(r"\b([A-Za-z0-9_\-]{32,})\b", out)
    assert found, out
    return (("authorization", f"Bearer {found.group(1)}"),)


def _code(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    code: grpc.StatusCode = caught.value.code()
    return code


def test_pairing_over_the_registry_by_role_audited_and_replicated(tmp_path: Path) -> None:
    """With bearer tokens: an operator pairs a SIM of its own network (by IMSI or by its
    site's token) but not another network's, and may not unpair, clear or greylist; the
    ministry greylists and unpairs, the admin clears. Each change is in `ceir audit`
    under the principal and request, and reaches the replica; malformed requests get
    INVALID_ARGUMENT / NOT_FOUND with one line, no IMSI echoed."""
    tokens = tmp_path / "tokens.json"
    op = _add_token(tokens, "eir-a", "operator", OP)
    other_op = _add_token(tokens, "eir-b", "operator", "510-11")
    ministry = _add_token(tokens, "kominfo", "ministry")
    admin = _add_token(tokens, "root", "admin")
    replica = _add_token(tokens, "edge", "replica")[0][1].removeprefix("Bearer ")
    with open_store(tmp_path / "central") as store:
        demo.load(store)
    with cluster(tmp_path, "--tokens", str(tokens)) as c:
        r1 = c.add_replica("r1", "--operator", OP, "--source-token", replica)
        _serving(r1)
        site_token = _token_of(c, tmp_path / "r1", OWNER)
        with c.central.channel() as channel:
            reg = registry_pb2_grpc.RegistryStub(channel)

            def grey(who: Any, **kw: Any) -> registry_pb2.CloneChange:
                request = registry_pb2.GreylistRequest(imei=GREY, **kw)
                reply: registry_pb2.CloneChange = reg.GreylistDevice(request, metadata=who)
                return reply

            def pair(who: Any, **kw: Any) -> registry_pb2.CloneChange:
                reply: registry_pb2.CloneChange = reg.PairDevice(
                    registry_pb2.PairRequest(imei=GREY, **kw), metadata=who
                )
                return reply

            assert _code(lambda: grey(op)) == grpc.StatusCode.PERMISSION_DENIED
            done = grey(ministry, request_id="case-7")
            assert (done.changed, done.state) == (True, registry_pb2.CLONE_STATE_GREYLISTED)
            assert (done.status, done.reason) == (Status.GREYLISTED, Reason.DUPLICATE)
            assert not grey(ministry).changed
            paired = pair(op, imsi=OWNER, request_id="owner-proof-1")
            assert (paired.changed, paired.pairs, paired.imei) == (True, 1, GREY)
            assert not pair(op, imsi=OWNER).changed
            assert pair(op, token=site_token).pairs == 2  # token_operator: its own
            for who, kw in [
                (op, {"imsi": "510110000000001"}),  # another network's SIM
                (op, {"token": site_token, "token_operator": "510-11"}),
                (other_op, {"token": site_token, "token_operator": OP}),
            ]:
                denied = _code(lambda who=who, kw=kw: pair(who, **kw))
                assert denied == grpc.StatusCode.PERMISSION_DENIED
            unpair = registry_pb2.PairRequest(imei=GREY, imsi=OWNER)
            denied = _code(lambda: reg.UnpairDevice(unpair, metadata=op))
            assert denied == grpc.StatusCode.PERMISSION_DENIED
            eir = eir_pb2_grpc.EquipmentIdentityRegisterStub(channel)
            ask = eir_pb2.CheckIMEIRequest(imei=GREY, imsi=OWNER)
            assert eir.CheckIMEI(ask, metadata=op).status == Status.WHITELISTED
            assert reg.UnpairDevice(unpair, metadata=ministry).pairs == 1
            assert eir.CheckIMEI(ask, metadata=op).status == Status.GREYLISTED
            clear = registry_pb2.CloneRequest(imei=GREY, request_id="appeal-3")
            assert _code(lambda: reg.ClearClone(clear, metadata=op)) == (
                grpc.StatusCode.PERMISSION_DENIED
            )
            cleared = reg.ClearClone(clear, metadata=admin)
            assert (cleared.state, cleared.status) == (
                registry_pb2.CLONE_STATE_CLEARED,
                Status.WHITELISTED,
            )
            for call, code in [
                (lambda: reg.ClearClone(registry_pb2.CloneRequest(imei="123"), metadata=admin),
                 grpc.StatusCode.INVALID_ARGUMENT),
                (lambda: reg.ClearClone(registry_pb2.CloneRequest(imei="352099001761482"),
                                        metadata=admin),
                 grpc.StatusCode.INVALID_ARGUMENT),  # a wrong check digit
                (lambda: pair(admin), grpc.StatusCode.INVALID_ARGUMENT),
                (lambda: pair(admin, imsi="51010abc"), grpc.StatusCode.INVALID_ARGUMENT),
                (lambda: reg.PairDevice(registry_pb2.PairRequest(imei="352099001761473",
                                        imsi=OWNER), metadata=admin),
                 grpc.StatusCode.NOT_FOUND),
            ]:  # fmt: skip
                with pytest.raises(grpc.RpcError) as caught:
                    call()
                assert caught.value.code() == code
                assert "\n" not in caught.value.details()
                assert OWNER not in caught.value.details()

        def listed() -> str:
            return c.ceir("clones", "list", "--db", str(tmp_path / "r1")).stdout

        wait_for("the replica to clear", lambda: "CLEARED" in listed())
        assert listed() == "35209900176148 CLEARED - - 1 pair(s)\n"
        history = c.ceir("audit", GREY, "--db", str(c.central_db)).stdout
    for needle in ("ministry:kominfo", "operator:eir-a@510-10", "admin:root", "owner-proof-1",
                   "GreylistDevice case-7", "ClearClone appeal-3"):  # fmt: skip
        assert needle in history, needle
    assert OWNER not in history
    access = (tmp_path / "central.log").read_text()
    assert "PairDevice" in access
    assert OWNER not in access
