"""A replica bootstraps from the central's snapshot and follows its changes."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from ceir.v1 import eir_pb2, eir_pb2_grpc, registry_pb2, registry_pb2_grpc
from tests.replication._cluster import cluster, wait_for

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def test_replica_bootstraps_follows_and_answers_like_the_central(tmp_path: Path) -> None:
    """Bootstrap, then an import on the central shows on the replica; answers agree."""
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
            registry = registry_pb2_grpc.RegistryStub(b)
            with pytest.raises(grpc.RpcError) as info:
                registry.GetDevice(registry_pb2.GetDeviceRequest(imei="352099001761481"))
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
