"""The clone scenario (issue 14, Done means): five operators' replicas, the central
register, a real nats-server, simulated days.

Every device has an owner SIM at one operator and attaches through that operator's replica
(real gRPC CheckIMEIBatch with the IMSI) every simulated day. A share of the devices
(``--clone-share``, 1%) are cloned: from day 1 on, one to three SIMs of *other* operators
attach with the same IMEI within the same hour as the owner. Another share of genuine
owners (``--switch-share``) move to a new SIM at another operator once, hours apart: they
must not be flagged. Replicas record their own SIMs, send counts and their own tokens
upstream (stream CEIR_OBSERVATIONS, signed); the central ingests, evaluates the conditions
and greylists; the change log brings flags and pairs back to every replica. The clock of
every recorder is the simulation's (``create_server(clock=)``); the condition grace is
``--grace-days`` so that blocking happens within the run.

Printed: precision and recall of the detection, genuine owners (paired SIMs) refused
(must be 0), cloned SIMs refused after the grace, and the time from the second operator's
attach to GREYLISTED on every replica (wall clock, p50/p95/max over the cloned devices).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc

from ceir.config import Settings
from ceir.record import FLAGS_CLONE, Reason, Record, Source, Status
from ceir.replication.keys import generate
from ceir.server.app import CeirServer, create_server
from ceir.store import Store, changes, clones, open_store, replica
from ceir.store.clonetables import CloneState
from ceir.v1 import eir_pb2, eir_pb2_grpc
from loadtest.edge import NatsServer

T = TypeVar("T")

OPERATORS = ("510-01", "510-10", "510-11", "510-21", "510-89")
DAY = 86400
T0 = 1_800_000_000 // DAY * DAY  # a midnight: the simulation's day 0
_OFF = {"s13": "off", "web": "off", "sbi": "off", "workers": 1, "demo": False, "port": 0}


@dataclass(frozen=True)
class ScenarioConfig:
    devices: int = 200_000
    clone_share: float = 0.01
    switch_share: float = 0.005
    days: int = 4
    grace_days: int = 2
    batch: int = 2000
    seed: int = 14


@dataclass
class ScenarioResult:
    devices: int
    cloned: int
    switched: int
    flagged: int
    true_positives: int
    owners_refused: int
    owners_checked: int
    clone_sims_refused: int
    clone_sims_checked: int
    greylist_seconds: list[float] = field(default_factory=list)
    days: int = 0
    wall_seconds: float = 0.0

    @property
    def precision(self) -> float:
        return self.true_positives / self.flagged if self.flagged else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.cloned if self.cloned else 1.0

    def lines(self) -> list[str]:
        lat = sorted(self.greylist_seconds)

        def q(p: float) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

        return [
            f"devices {self.devices:,}  operators {len(OPERATORS)}  simulated days {self.days}  "
            f"cloned {self.cloned:,}  SIM switchers {self.switched:,}",
            f"detection: flagged {self.flagged:,}  precision {self.precision:.4f}  "
            f"recall {self.recall:.4f}",
            f"genuine owners (paired SIMs) refused: {self.owners_refused} of "
            f"{self.owners_checked:,}",
            f"cloned SIMs refused after the grace: {self.clone_sims_refused:,} of "
            f"{self.clone_sims_checked:,}",
            f"second operator's attach -> GREYLISTED on every replica ({len(lat)} devices): "
            f"p50 {q(0.5):.2f} s  p95 {q(0.95):.2f} s  max {q(1.0):.2f} s",
            f"wall time {self.wall_seconds:.0f} s",
        ]


class SimClock:
    def __init__(self) -> None:
        self.at = float(T0)

    def __call__(self) -> float:
        return self.at


class _Loop:
    """An asyncio loop in a thread: the servers live there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(300)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def body(i: int) -> str:
    return f"35{i:012d}"


def imsi(op: str, n: int) -> str:
    return op.replace("-", "") + f"{n:010d}"


@dataclass
class Population:
    owner_op: list[int]
    cloned: dict[int, list[tuple[int, str]]]
    """Device -> (operator index, IMSI) of each clone SIM."""
    switched: dict[int, tuple[int, str]]
    """Device -> the operator and SIM its owner moves to on day 2."""

    @classmethod
    def make(cls, cfg: ScenarioConfig) -> Population:
        rng = random.Random(cfg.seed)
        n = cfg.devices
        owner = [i % len(OPERATORS) for i in range(n)]
        picked = rng.sample(range(n), int(n * cfg.clone_share) + int(n * cfg.switch_share))
        cut = int(n * cfg.clone_share)
        cloned = {}
        for i in picked[:cut]:
            others = [k for k in range(len(OPERATORS)) if k != owner[i]]
            ops = rng.sample(others, rng.choice((1, 2, 3)))
            cloned[i] = [(k, imsi(OPERATORS[k], n + 4 * i + j)) for j, k in enumerate(ops)]
        switched = {}
        for i in picked[cut:]:
            k = rng.choice([k for k in range(len(OPERATORS)) if k != owner[i]])
            switched[i] = (k, imsi(OPERATORS[k], 5 * n + i))
        return cls(owner, cloned, switched)

    def owner_sim(self, i: int, day: int) -> tuple[int, str]:
        if i in self.switched and day >= 2:
            return self.switched[i]
        return self.owner_op[i], imsi(OPERATORS[self.owner_op[i]], i)


class Cluster:
    """The central register and one replica per operator, in this process."""

    def __init__(self, root: Path, cfg: ScenarioConfig, clock: SimClock) -> None:
        self.root = root
        self.cfg = cfg
        self.clock = clock
        self.loop = _Loop()
        self.stores: list[Store] = []
        self.servers: list[CeirServer] = []
        self.ports: list[int] = []
        self.channels: list[grpc.Channel] = []
        self.stubs: list[Any] = []

    def _start(self, settings: Settings, store: Store) -> int:
        async def start() -> tuple[CeirServer, int]:
            made = create_server(settings, store, clock=self.clock)
            await made[0].start()
            return made

        server, port = self.loop.run(start())
        self.servers.append(server)
        self.stores.append(store)
        self.ports.append(port)
        return port

    def start(self, broker: NatsServer) -> None:
        root, cfg = self.root, self.cfg
        signing, verify = generate(root / "keys")
        opkeys = root / "operator-keys"
        opkeys.mkdir()
        signers = {}
        for op in OPERATORS:
            private, public = generate(root / f"keys-{op}")
            (opkeys / f"{op}.pem").write_bytes(public.read_bytes())
            signers[op] = private
        conditions = root / "conditions.toml"
        conditions.write_text(
            "".join(
                f'[[condition]]\nname = "{name}"\ngrace_days = {cfg.grace_days}\n'
                for name in ("duplicate_threshold", "simultaneity")
            )
        )
        central = open_store(root / "central")
        packed = Record(Reason.REGISTERED, Source.MANUFACTURER, registered_at=T0 - DAY)
        for lo in range(0, cfg.devices, 50_000):
            hi = min(cfg.devices, lo + 50_000)
            central.put_devices((int(body(i)).to_bytes(8, "big"), packed) for i in range(lo, hi))
        port = self._start(
            Settings(
                db=central.path,
                publish=broker.url,
                signing_key=signing,
                observation_keys=opkeys,
                clone_conditions=conditions,
                observe=True,
                **_OFF,  # type: ignore[arg-type]
            ),
            central,
        )
        for op in OPERATORS:
            store = open_store(root / op)
            self._start(
                Settings(
                    db=store.path,
                    nats=broker.url,
                    source=f"127.0.0.1:{port}",
                    verify_key=verify,
                    operator=op,
                    observations_key=signers[op],
                    observe=True,
                    **_OFF,  # type: ignore[arg-type]
                ),
                store,
            )
        self.wait_replicated()
        for p in self.ports[1:]:
            channel = grpc.insecure_channel(
                f"127.0.0.1:{p}", options=[("grpc.max_receive_message_length", 64 << 20)]
            )
            self.channels.append(channel)
            self.stubs.append(eir_pb2_grpc.EquipmentIdentityRegisterStub(channel))

    @property
    def replicas(self) -> list[Store]:
        return self.stores[1:]

    def wait_replicated(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            head = changes.head(self.stores[0])[0]
            states = [replica.state(s) for s in self.replicas]
            if all(st is not None and st.applied >= head for st in states):
                return
            time.sleep(0.1)
        raise RuntimeError("the replicas did not catch up with the central")

    def check(self, op: int, sims: list[tuple[int, str]]) -> list[tuple[int, int]]:
        """CheckIMEIBatch (IMEI body, IMSI) at operator *op*'s replica; (status, reason)."""
        out: list[tuple[int, int]] = []
        for lo in range(0, len(sims), self.cfg.batch):
            part = sims[lo : lo + self.cfg.batch]
            request = eir_pb2.CheckIMEIBatchRequest(
                requests=[eir_pb2.CheckIMEIRequest(imei=body(i), imsi=s) for i, s in part]
            )
            response = self.stubs[op].CheckIMEIBatch(request, timeout=120)
            out += [(r.status, r.reason) for r in response.responses]
        return out

    def flushed(self) -> None:
        """Every recorder has written what it queued, the central has ingested what the
        replicas sent, and the replicas have applied the central's log."""
        time.sleep(0.5)
        for server in self.servers:
            for face in server.faces:
                recorder = getattr(face, "recorder", None)
                if recorder is not None:
                    recorder.flush()
        time.sleep(1.5)  # upstream publish, ingest, relay, follow
        self.wait_replicated()

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
        for server in reversed(self.servers):
            try:
                self.loop.run(server.stop(0))
            except TimeoutError:  # a loaded machine: the figures are taken already
                continue
        self.loop.close()
        for store in self.stores:
            store.close()


def _flagged_everywhere(stores: list[Store], keys: list[bytes]) -> list[bool]:
    flags = [[v is not None and v[2] & FLAGS_CLONE for v in s.get_many(keys)] for s in stores]
    return [all(col) for col in zip(*flags, strict=True)]


def _attach_day(cluster: Cluster, pop: Population, day: int) -> list[int]:
    """Every owner attaches at its operator; returns the statuses of the owners' answers."""
    by_op: dict[int, list[tuple[int, str]]] = {}
    for i in range(cluster.cfg.devices):
        op, sim = pop.owner_sim(i, day)
        if day == 2 and i in pop.switched:
            old = pop.owner_op[i]
            by_op.setdefault(old, []).append((i, imsi(OPERATORS[old], i)))
            continue
        by_op.setdefault(op, []).append((i, sim))
    statuses = []
    for op, sims in sorted(by_op.items()):
        statuses += [s for s, _r in cluster.check(op, sims)]
    return statuses


def run(root: Path, cfg: ScenarioConfig, log: Callable[[str], None] = print) -> ScenarioResult:
    started = time.monotonic()
    pop = Population.make(cfg)
    clock = SimClock()
    with NatsServer.running(root / "nats") as broker:
        cluster = Cluster(root, cfg, clock)
        try:
            cluster.start(broker)
            log(f"cluster up: {cfg.devices:,} devices on the central and 5 replicas")
            result = _simulate(cluster, pop, clock, log)
            result.wall_seconds = time.monotonic() - started
            for line in result.lines():  # before the shutdown, which a loaded box may drag out
                log(line)
        finally:
            cluster.close()
    return result


def _simulate(
    cluster: Cluster, pop: Population, clock: SimClock, log: Callable[[str], None]
) -> ScenarioResult:
    cfg = cluster.cfg
    owners_refused = owners_checked = 0
    latencies: list[float] = []
    for day in range(cfg.days):
        clock.at = T0 + day * DAY + 3600
        statuses = _attach_day(cluster, pop, day)
        owners_refused += sum(s == Status.BLACKLISTED for s in statuses)
        owners_checked += len(statuses)
        cluster.flushed()
        if day >= 1:
            clock.at = T0 + day * DAY + 3600 + 1200  # twenty minutes after the owners
            clone_sims: dict[int, list[tuple[int, str]]] = {}
            for i, sims in pop.cloned.items():
                for op, sim in sims:
                    clone_sims.setdefault(op, []).append((i, sim))
            sent = time.monotonic()
            for op, sims in sorted(clone_sims.items()):
                cluster.check(op, sims)
            if day == 1:
                latencies = _time_to_greylist(cluster, list(pop.cloned), sent)
        if day == 2:
            clock.at = T0 + day * DAY + 12 * 3600
            by_new: dict[int, list[tuple[int, str]]] = {}
            for i, (op, sim) in pop.switched.items():
                by_new.setdefault(op, []).append((i, sim))
            for op, sims in sorted(by_new.items()):
                cluster.check(op, sims)
        cluster.flushed()
        n_flagged = sum(1 for _ in clones.iter_clones(cluster.stores[0]))
        log(f"day {day}: {len(statuses):,} owner attaches; {n_flagged:,} devices flagged")
    # The last check: every owner and every clone SIM once more, after the grace.
    clock.at = T0 + cfg.days * DAY + 3600
    cluster.flushed()
    statuses = _attach_day(cluster, pop, cfg.days)
    owners_refused += sum(s == Status.BLACKLISTED for s in statuses)
    owners_checked += len(statuses)
    clone_refused = clone_checked = 0
    by_op: dict[int, list[tuple[int, str]]] = {}
    for i, sims in pop.cloned.items():
        for op, sim in sims:
            by_op.setdefault(op, []).append((i, sim))
    for op, sims in sorted(by_op.items()):
        answers = cluster.check(op, sims)
        clone_refused += sum(s == Status.BLACKLISTED for s, _r in answers)
        clone_checked += len(answers)
    flagged = {
        c.key
        for c in clones.iter_clones(cluster.stores[0])
        if c.state in (CloneState.GREYLISTED, CloneState.BLOCKED)
    }
    truth = {int(body(i)).to_bytes(8, "big") for i in pop.cloned}
    return ScenarioResult(
        devices=cfg.devices,
        cloned=len(truth),
        switched=len(pop.switched),
        flagged=len(flagged),
        true_positives=len(flagged & truth),
        owners_refused=owners_refused,
        owners_checked=owners_checked,
        clone_sims_refused=clone_refused,
        clone_sims_checked=clone_checked,
        greylist_seconds=latencies,
        days=cfg.days,
    )


def _time_to_greylist(cluster: Cluster, devices: list[int], sent: float) -> list[float]:
    """Seconds from *sent* until each device carries a clone flag on every replica."""
    keys = [int(body(i)).to_bytes(8, "big") for i in devices]
    done: dict[bytes, float] = {}
    deadline = time.monotonic() + 120
    while len(done) < len(keys) and time.monotonic() < deadline:
        now = time.monotonic()
        waiting = [k for k in keys if k not in done]
        for key, flagged in zip(
            waiting, _flagged_everywhere(cluster.replicas, waiting), strict=True
        ):
            if flagged:
                done[key] = now - sent
        time.sleep(0.02)
    return list(done.values())
