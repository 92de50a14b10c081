"""A replica bootstraps from the central's snapshot and follows its changes."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2

from ceir.record import Reason, Record
from ceir.store import open_store
from ceir.v1 import eir_pb2, eir_pb2_grpc, registry_pb2, registry_pb2_grpc
from tests.replication._cluster import cluster, wait_for

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def test_replica_bootstraps_follows_and_answers_like_the_central(tmp_path: Path) -> None:
    """Bootstrap, then an import on the central shows on the replica; CheckIMEI and
    N5g-eir answer there as on the central; Registry is not served."""
    with cluster(tmp_path) as c:
        r = c.add_replica()
        wait_for("SERVING", lambda: r.health() == health_pb2.HealthCheckResponse.SERVING)
        c.converged(r)
        c.manufacturer(2_000, 0)
        c.converged(r)
        with c.central.channel() as a, r.channel() as b:
            central = eir_pb2_grpc.EquipmentIdentityRegisterStub(a)
            copy = eir_pb2_grpc.EquipmentIdentityRegisterStub(b)
            for imei in ("352099001761481", "35209900176148", "490154203237518"):
                request = eir_pb2.CheckIMEIRequest(imei=imei)
                assert copy.CheckIMEI(request) == central.CheckIMEI(request)
        with httpx.Client(http1=False, http2=True, timeout=10) as http:
            for pei in ("imei-352099001761481", "imei-490154203237518", "imeisv-3520990017614823"):
                url = "/n5g-eir-eic/v1/equipment-status?pei=" + pei
                mine = http.get(r.faces["n5g-eir"] + url)
                theirs = http.get(c.central.faces["n5g-eir"] + url)
                assert (mine.status_code, mine.json()) == (theirs.status_code, theirs.json())
        with r.channel() as b:
            registry = registry_pb2_grpc.RegistryStub(b)
            with pytest.raises(grpc.RpcError) as info:
                registry.GetDevice(registry_pb2.GetDeviceRequest(imei="352099001761481"))
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_status_and_verify_say_where_a_replica_stands(tmp_path: Path) -> None:
    """`ceir replica status` prints applied/head/lag; `ceir verify --compare` exits 0 when
    the copies match and 1, naming the range, when one device differs."""
    with cluster(tmp_path) as c:
        r = c.add_replica()
        c.manufacturer(1_000, 0)
        c.converged(r)
        db = str(tmp_path / "r1")
        same = c.ceir("verify", "--db", db, "--compare", c.central.address)
        assert "every digest equal" in same.stdout
        status = c.ceir("replica", "status", "--db", db).stdout
        head = c.central.status().applied_sequence
        assert f"applied sequence  {head:,}" in status
        assert f"head sequence     {head:,}" in status
        assert "lag " in status
        r.stop()
        with open_store(tmp_path / "r1") as store:  # a device only this copy has
            store.put_devices([((86000000000001).to_bytes(8, "big"), Record(Reason.EXEMPT))])
        differ = c.ceir("verify", "--db", db, "--compare", c.central.address, check=False)
        assert differ.returncode == 1
        there = next(x.count for x in c.central.digest().ranges if x.range == "devices:86")
        assert differ.stdout == f"differs: devices:86 ({there + 1:,} rows here, {there:,} there)\n"


def test_a_replica_is_not_serving_until_its_first_bootstrap(tmp_path: Path) -> None:
    """With the central unreachable, a new replica answers health NOT_SERVING."""
    with cluster(tmp_path) as c:
        c.central.kill()
        r = c.add_replica()
        assert r.health() == health_pb2.HealthCheckResponse.NOT_SERVING
        unbooted = c.ceir("replica", "status", "--db", str(tmp_path / "r1"), check=False)
        assert unbooted.returncode == 6
        assert "has not been bootstrapped" in unbooted.stderr
