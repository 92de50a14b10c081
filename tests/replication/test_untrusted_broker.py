"""The broker is not trusted: junk, forged and replayed messages published onto the
stream are refused, counted and logged; service and later changes go on."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceir.imei import parse
from ceir.record import Reason, Record, Source
from ceir.replication import STREAM, SUBJECT
from ceir.replication.wire import seal_change
from ceir.store import changes
from ceir.v1 import common_pb2, eir_pb2, eir_pb2_grpc
from tests.replication._cluster import cluster, wait_for

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

# Not in the register: the forger wants it whitelisted on every network.
TARGET = "35999999123456"


async def _publish_rogues(url: str, head: int) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.publish(SUBJECT, b"\x00junk bytes, not a ceir message", stream=STREAM)
        whitelist = Record(Reason.REGISTERED, Source.MANUFACTURER, registered_at=int(time.time()))
        body = changes.pack_ops(devices=[(parse(TARGET).key, whitelist.pack())])[0]
        forged = seal_change(Ed25519PrivateKey.generate(), head + 1, int(time.time() * 1000), body)
        await js.publish(SUBJECT, forged, stream=STREAM)
        first = await js.get_msg(STREAM, 1)
        await js.publish(SUBJECT, first.data, stream=STREAM)  # a valid message, replayed
    finally:
        await nc.close()


def test_junk_forgeries_and_replays_are_refused_and_later_changes_arrive(tmp_path: Path) -> None:
    """Three rogue messages are refused (and counted); the relay raises an alarm on the
    broken sequence and carries on; the next import still reaches the replica."""
    with cluster(tmp_path) as c:
        r = c.add_replica()
        c.converged(r)
        asyncio.run(_publish_rogues(c.broker.url, c.central.status().applied_sequence))
        c.manufacturer(500, 0)
        c.converged(r)
        wait_for("three refusals", lambda: r.status().refused >= 3)
        # At least the three: a follower that re-subscribes (a stall under load) reads the
        # rogue messages again and refuses — and counts — them again.
        assert r.status().refused >= 3
        log = r.log.read_text()
        assert "refused a junk message" in log
        assert "refused a forged message" in log
        assert "refused a replay message" in log
        # The relay notices the broken sequence at its next publish or its periodic check.
        wait_for("the relay's alarm", lambda: "ALARM relay" in c.central.log.read_text())
        for server in (r, c.central):
            with server.channel() as channel:
                stub = eir_pb2_grpc.EquipmentIdentityRegisterStub(channel)
                reply = stub.CheckIMEI(eir_pb2.CheckIMEIRequest(imei=TARGET))
            assert reply.status == common_pb2.EQUIPMENT_STATUS_BLACKLISTED
