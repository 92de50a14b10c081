"""Upstream sightings survive a replica's stop: real ``ceir serve``, ``ceir replica`` and
nats-server processes. Sightings recorded while the broker is away wait in the replica's
outbox across a SIGKILL and a SIGTERM, go out once it is back, and the central takes
each message once (a re-sent one is skipped)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from ceir.clones.recorder import DeviceDay
from ceir.clones.upstream import STREAM, Outbox
from ceir.imei import parse
from ceir.record import Reason, Status
from ceir.replication.keys import generate, load_signing_key
from ceir.store import Store, audit, clones, demo, open_store
from ceir.store.clonetables import Sighting, operator_code
from ceir.store.tables import Tables
from ceir.v1 import eir_pb2, eir_pb2_grpc
from loadtest.edge import NatsServer
from tests.replication._cluster import Proc, wait_for

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

IMEI = "352099001761481"
KEY = parse(IMEI).key
OP = "510-10"
SIMS = [f"5101000000{n:05d}" for n in range(10)]  # ten SIMs: the duplicate threshold


@contextlib.contextmanager
def _readonly(path: Path) -> Iterator[Store]:
    with open_store(path, readonly=True) as store:
        yield store


def _ours(path: Path) -> int:
    """How many SIMs the replica at *path* has recorded with the device."""
    with _readonly(path) as store:
        return len(clones.sightings(store, KEY))


def _waiting(path: Path) -> int:
    with _readonly(path) as store, store.snapshot() as tables:
        return tables.outbox.waiting()


def _check(node: Proc, sims: list[str]) -> list[tuple[int, int]]:
    with node.channel() as channel:
        stub = eir_pb2_grpc.EquipmentIdentityRegisterStub(channel)
        batch = [eir_pb2.CheckIMEIRequest(imei=IMEI, imsi=s) for s in sims]
        reply = stub.CheckIMEIBatch(eir_pb2.CheckIMEIBatchRequest(requests=batch), timeout=10)
        return [(r.status, r.reason) for r in reply.responses]


def _serving(node: Proc) -> None:
    wait_for("SERVING", lambda: node.health() == health_pb2.HealthCheckResponse.SERVING)


async def _republish(url: str) -> int:
    """Publish every message of the observations stream again under a fresh message id
    (as a replica would after the broker's duplicate window); returns how many."""
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(STREAM)
        n = 0
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(STREAM, seq)
            await js.publish(msg.subject, msg.data, headers={"Nats-Msg-Id": f"again-{seq}"})
            n += 1
        return n
    finally:
        await nc.close()


def test_sightings_wait_in_the_outbox_across_sigkill_and_sigterm(tmp_path: Path) -> None:
    """Broker down: five SIMs recorded at the replica, SIGKILL; five more, SIGTERM; the
    outbox holds them. Broker back, replica restarted: the outbox drains, the central holds
    the ten SIMs' tokens once and greylists the device once, the replica answers
    GREYLISTED to nine SIMs and WHITELISTED to the first-seen pair. Every message sent
    again under a new message id is skipped at the central: nothing changes."""
    signing, verify = generate(tmp_path / "keys")
    op_private, op_public = generate(tmp_path / "op")
    opkeys = tmp_path / "operator-keys"
    opkeys.mkdir()
    (opkeys / f"{OP}.pem").write_bytes(op_public.read_bytes())
    with open_store(tmp_path / "central") as store:
        demo.load(store)
    broker = NatsServer(tmp_path / "nats")
    broker.start()
    central = Proc(
        ["serve", "--db", str(tmp_path / "central"), "--publish", broker.url,
         "--signing-key", str(signing), "--observation-keys", str(opkeys), "--observe"],
        tmp_path / "central.log",
    )  # fmt: skip
    r1 = Proc(
        ["replica", "--db", str(tmp_path / "r1"), "--nats", broker.url, "--verify-key",
         str(verify), "--operator", OP, "--observations-key", str(op_private), "--observe"],
        tmp_path / "r1.log",
    )  # fmt: skip
    try:
        central.start()
        r1.args += ["--source", central.address]
        r1.start()
        _serving(r1)
        broker.stop()
        assert set(_check(r1, SIMS[:5])) == {(Status.WHITELISTED, Reason.REGISTERED)}
        wait_for("five SIMs recorded", lambda: _ours(tmp_path / "r1") == 5)
        assert _waiting(tmp_path / "r1") >= 1
        r1.stop(signal.SIGKILL)
        r1.start()
        _serving(r1)
        assert _waiting(tmp_path / "r1") >= 1  # what the killed one had not sent
        _check(r1, SIMS[5:])
        wait_for("ten SIMs recorded", lambda: _ours(tmp_path / "r1") == 10)
        r1.stop(signal.SIGTERM)
        waiting = _waiting(tmp_path / "r1")
        assert waiting >= 2
        broker.start()
        r1.start()
        wait_for("the outbox to drain", lambda: _waiting(tmp_path / "r1") == 0, 60)

        def greylisted() -> bool:
            with _readonly(tmp_path / "central") as store:
                return [c.state.name for c in clones.iter_clones(store)] == ["GREYLISTED"]

        wait_for("the central to greylist the device", greylisted, 60)
        assert asyncio.run(_republish(broker.url)) >= waiting
        wait_for("the re-sent messages skipped", lambda: "skipped" in central.log.read_text())
        with _readonly(tmp_path / "central") as store, store.snapshot() as tables:
            sightings = clones.sightings(store, KEY)
            history = [e.action for e in audit.history(store, KEY)]
            dropped = tables.observations.get(KEY)[0]
        assert len(sightings) == len({s.token for s in sightings}) == 10
        assert {s.namespace for s in sightings} == {operator_code(OP)}
        assert history.count(audit.Action.GREYLISTED) == 1
        assert dropped == 0  # none counted past the cap: each SIM counted once

        def replicated() -> bool:
            return sum(a[0] == Status.GREYLISTED for a in _check(r1, SIMS)) == 9

        wait_for("the replica to greylist the clones", replicated, 60)
        answers = _check(r1, SIMS)
        assert answers.count((Status.WHITELISTED, Reason.REGISTERED)) == 1
        log = (tmp_path / "central.log").read_text() + (tmp_path / "r1.log").read_text()
        assert [s for s in SIMS if s in log] == []
    finally:
        r1.kill()
        central.kill()
        broker.stop()


def test_the_outbox_is_bounded_and_numbers_survive_a_drain(tmp_path: Path) -> None:
    """Past its limit the outbox drops new messages (counted); the numbers go on after
    every message was deleted, so the central never takes a new one for a re-send."""
    private, _public = generate(tmp_path / "k")
    outbox = Outbox(load_signing_key(private), OP, limit=2)
    op = operator_code(OP)
    day = [DeviceDay(KEY, 1, 1, (Sighting(b"t" * 16, op, op, 5, 6),))]
    with open_store(tmp_path / "r") as store:

        def add(tables: Tables) -> None:
            outbox(tables, day)

        for _ in range(3):
            store.write(add)
        with store.snapshot() as tables:
            waiting = tables.outbox.oldest(10)
        assert [seq for seq, _ in waiting] == [1, 2]
        assert outbox.lost == 1
        store.write(lambda tables: tables.outbox.delete([1, 2]))
        store.write(add)
        with store.snapshot() as tables:
            assert [seq for seq, _ in tables.outbox.oldest(10)] == [3]
            assert tables.outbox.waiting() == 1


def test_the_central_takes_each_number_once_and_a_new_epoch_afresh(tmp_path: Path) -> None:
    """The ingest merges a message once per (operator, epoch, sequence), in the same
    transaction as its mark; a replica store made anew (another epoch) starts at 1 again
    and is taken; an unnumbered message is always taken."""
    from ceir.clones.conditions import DEFAULT_CONDITIONS
    from ceir.clones.recorder import Recorder
    from ceir.clones.upstream import Ingestor, Upstream
    from ceir.replication.broker import Broker
    from ceir.store.identity import tokenizer_for

    op = operator_code(OP)
    with open_store(tmp_path / "c") as store:
        recorder = Recorder(store, tokenizer_for(store), conditions=DEFAULT_CONDITIONS)
        ingest = Ingestor(Broker("nats://127.0.0.1:1"), {}, recorder)

        def up(epoch: int, seq: int, token: bytes) -> Upstream:
            day = DeviceDay(KEY, 1, 1, (Sighting(token, op, op, 5, 5),))
            return Upstream(op, epoch, seq, 0, (day,))

        assert ingest._ingest([up(7, 1, b"a" * 16), up(7, 2, b"b" * 16)]) == 2
        assert ingest._ingest([up(7, 2, b"b" * 16), up(7, 1, b"a" * 16)]) == 0
        assert ingest.skipped == 2
        assert ingest._ingest([up(9, 1, b"c" * 16), up(0, 0, b"d" * 16)]) == 2
        assert ingest._ingest([up(0, 0, b"d" * 16)]) == 1
        assert {s.token[:1] for s in clones.sightings(store, KEY)} == {b"a", b"b", b"c", b"d"}
