"""The open-loop load engine: one EIR node per operator, Poisson attach arrivals.

Each operator's node receives attach events at exponentially distributed intervals (a
Poisson process at its share of the offered rate) whatever the server does, and asks
ceir about the attaching device. Latency is measured from the *scheduled* arrival time
to the answer, so a stall shows up in full instead of slowing the arrivals down
(no coordinated omission). Every answer is compared with the device's expected status
and reason.

Modes:

``coalesced``  ``Client.submit`` per attach: batched on one stream per node (ceir.client)
``stream``     one IMEI per stream message (the client with max_batch 1)
``batch``      the node gathers attaches for --max-delay and sends one CheckIMEIBatch
``unary``      one CheckIMEI call per attach

Faces (``--face``): ``grpc`` asks CheckIMEI in one of the modes above; ``n5g`` asks
N5g-eir as a 5G AMF does (one long-lived HTTP/2 connection per node, one
``GET …/equipment-status?pei=…&supi=…`` per attach), and the answer is checked against
the device's expected status (a malformed IMEI: 400).
"""

from __future__ import annotations

import asyncio
import collections
import enum
import gc
import random
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ceir.client import Client
from ceir.errors import CeirError, RemoteError
from ceir.imei import check_digit
from ceir.record import Status
from ceir.v1 import eir_pb2
from loadtest.population import (
    INVALID,
    OPERATORS,
    Device,
    Kind,
    Operator,
    Population,
    Subscriber,
)
from loadtest.sbi_client import Answer, SbiClient

TICK = 0.0005  # the driver's shortest sleep (event loop timers have ~1 ms resolution)
MAX_IN_FLIGHT = 50_000  # per node: beyond this an attach is counted as an overload error


class Face(enum.Enum):
    """Which door of ceir the nodes ask through."""

    GRPC = "grpc"
    """CheckIMEI over gRPC, as --mode says."""
    S13 = "s13"
    """Diameter ME-Identity-Check, one ECR per attach (:mod:`loadtest.s13load`)."""
    N5G = "n5g"
    """N5g-eir over HTTP/2, one GET per attach on one connection per node."""


N5G_PATH = "/n5g-eir-eic/v1/equipment-status"


def n5g_request(device: Device, digits: int, svn: str, imsi: str) -> tuple[bytes, Answer]:
    """The request path an AMF sends for *device* and the answer ceir must give."""
    if device.kind is not Kind.MALFORMED and digits == 16:
        pei = f"imeisv-{device.body}{svn}"
    elif device.kind is not Kind.MALFORMED and digits == 14:
        pei = f"imei-{device.body}{check_digit(device.body)}"
    else:
        pei = f"imei-{device.text15}"
    path = f"{N5G_PATH}?pei={pei}&supi=imsi-{imsi}".encode()
    if device.expected == INVALID:
        return path, (400, b"")
    return path, (200, f'{{"status":"{Status(device.expected[0]).name}"}}'.encode())


class Mode(enum.Enum):
    COALESCED = "coalesced"
    STREAM = "stream"
    BATCH = "batch"
    UNARY = "unary"


@dataclass
class ClientSettings:
    max_batch: int = 1000
    max_delay: float = 0.001
    timeout: float = 5.0
    face: Face = Face.GRPC


@dataclass
class NodeResult:
    """What one node saw. Times are seconds since the run's start."""

    operator: Operator
    rate: float
    scheduled: array[float] = field(default_factory=lambda: array("d"))
    """Scheduled arrival time of each answered attach."""
    latency: array[float] = field(default_factory=lambda: array("d"))
    """Seconds from scheduled arrival to answer, same order."""
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    error_times: array[float] = field(default_factory=lambda: array("d"))
    wrong: int = 0
    wrong_examples: list[str] = field(default_factory=list)
    offered: int = 0
    answers: collections.Counter[tuple[int, int]] = field(default_factory=collections.Counter)
    """gRPC answers by the (status, reason) the server gave (to compare with /metrics)."""


class Tally:
    """How a node books its answers: when each was scheduled, its latency, and the wrong
    ones with an example each (the gRPC :class:`Node` and ``loadtest.s13load.S13Node``)."""

    result: NodeResult
    start: float
    loop: asyncio.AbstractEventLoop | None
    texts: list[str]
    kinds: list[str]
    outstanding: int
    _n: int
    _random: Callable[[], float]

    @staticmethod
    def _draw(
        population: Population, operator: Operator, seed: int
    ) -> tuple[list[Subscriber], list[Device], list[str], random.Random]:
        """The operator's subscribers, every device, 16 software versions drawn from *seed*
        and the generator, which goes on to pick whose attach comes next."""
        rng = random.Random(seed)
        svns = [f"{rng.randrange(100):02d}" for _ in range(16)]
        return population.subscribers[operator.name], population.devices, svns, rng

    def _admit(self, t: float) -> int | None:
        """A random subscriber's attach at loop time *t*: its index, or None when too many
        requests are in flight already (booked as an Overload error)."""
        j = int(self._random() * self._n)
        self.result.offered += 1
        if self.outstanding >= MAX_IN_FLIGHT:
            self._error(t, "Overload")
            return None
        self.outstanding += 1
        return j

    def _answered(self, t: float, j: int, wrong: str | None) -> None:
        """Book the answer to request *j* sent at *t*; *wrong* says how it was wrong."""
        assert self.loop is not None
        result = self.result
        result.scheduled.append(t - self.start)
        result.latency.append(self.loop.time() - t)
        if wrong is not None:
            result.wrong += 1
            if len(result.wrong_examples) < 10:
                result.wrong_examples.append(
                    f"{result.operator.name}: IMEI {self.texts[j]!r} ({self.kinds[j]}) {wrong}"
                )

    def _error(self, t: float, name: str) -> None:
        self.result.errors[name] += 1
        self.result.error_times.append(t - self.start)


class Node(Tally):
    """One operator's EIR node."""

    def __init__(
        self,
        operator: Operator,
        population: Population,
        rate: float,
        mode: Mode,
        address: str,
        settings: ClientSettings,
        seed: int,
    ) -> None:
        face = settings.face
        subscribers, devices, svns, rng = self._draw(population, operator, seed)
        self.texts = [
            devices[s.device].sent_as(operator.imei_digits, svns[i % 16])
            for i, s in enumerate(subscribers)
        ]
        self.imsis = [s.imsi for s in subscribers]
        self.expected = [tuple(map(int, devices[s.device].expected)) for s in subscribers]
        self.kinds = [devices[s.device].kind.value for s in subscribers]
        self.result = NodeResult(operator, rate)
        self.mode = mode
        self.face = face
        self.settings = settings
        self.address = address
        one = mode is Mode.STREAM
        self.client = Client(
            address if face is Face.GRPC else "127.0.0.1:1",  # n5g: never connected
            max_batch=1 if one else settings.max_batch,
            max_delay=0 if one else settings.max_delay,
            timeout=settings.timeout,
        )
        self.sbi: SbiClient | None = None
        self.n5g: list[tuple[bytes, Answer]] = []
        if face is Face.N5G:
            self.n5g = [
                n5g_request(devices[s.device], operator.imei_digits, svns[i % 16], s.imsi)
                for i, s in enumerate(subscribers)
            ]
        self._random = rng.random
        self._n = len(self.texts)
        self.outstanding = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._buffer: list[tuple[float, int]] = []
        self._timer: asyncio.TimerHandle | None = None
        self.start = 0.0
        self.loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> None:
        self.loop = asyncio.get_running_loop()
        if self.face is Face.N5G:
            self.sbi = await SbiClient.open(self.address)
        else:
            await self.client.connect()

    async def close(self) -> None:
        if self.sbi is not None:
            await self.sbi.close()
        else:
            await self.client.close()

    async def first(self) -> None:
        """One answered attach: the connection is up."""
        if self.sbi is not None:
            await self.sbi.get(self.n5g[0][0])
        else:
            await self.client.check(self.texts[0])

    # -- arrivals ----------------------------------------------------------------------

    def fire(self, t: float) -> None:
        """One attach, scheduled at loop time *t*."""
        j = self._admit(t)
        if j is None:
            return
        mode = self.mode
        if self.sbi is not None:
            future = self.sbi.get(self.n5g[j][0])
            future.add_done_callback(lambda f, t=t, j=j: self._done_n5g(t, j, f))
        elif mode is Mode.COALESCED or mode is Mode.STREAM:

            def done(response: Any, error: CeirError | None, t: float = t, j: int = j) -> None:
                self._done(t, j, response, error)

            self.client.submit(done, self.texts[j], self.imsis[j])
        elif mode is Mode.UNARY:
            task = asyncio.ensure_future(self._unary(t, j))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._buffer.append((t, j))
            if len(self._buffer) >= self.settings.max_batch:
                self._flush()
            elif self._timer is None:
                assert self.loop is not None
                self._timer = self.loop.call_later(self.settings.max_delay, self._flush)

    async def _unary(self, t: float, j: int) -> None:
        try:
            response = await self.client.check_unary(self.texts[j], imsi=self.imsis[j])
        except RemoteError as exc:
            self._done(t, j, None, exc)
        else:
            self._done(t, j, response, None)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        items, self._buffer = self._buffer, []
        if items:
            task = asyncio.ensure_future(self._batch(items))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _batch(self, items: list[tuple[float, int]]) -> None:
        message = eir_pb2.CheckIMEIBatchRequest()
        add = message.requests.add
        for _, j in items:
            add(imei=self.texts[j], imsi=self.imsis[j])
        try:
            responses = await self.client.check_batch(message)
        except RemoteError as exc:
            for t, j in items:
                self._done(t, j, None, exc)
            return
        for (t, j), response in zip(items, responses, strict=True):
            self._done(t, j, response, None)

    # -- answers -----------------------------------------------------------------------

    def _done(self, t: float, j: int, response: Any, error: CeirError | None) -> None:
        assert self.loop is not None
        self.outstanding -= 1
        if error is not None:
            self._error(t, type(error).__name__)
            return
        want = self.expected[j]
        ok = response.status == want[0] and response.reason == want[1]
        self.result.answers[response.status, response.reason] += 1
        self._answered(
            t,
            j,
            None
            if ok
            else f"answered status {response.status} reason {response.reason}, "
            f"expected status {want[0]} reason {want[1]}",
        )

    def _done_n5g(self, t: float, j: int, future: asyncio.Future[Answer]) -> None:
        assert self.loop is not None
        self.outstanding -= 1
        error = future.exception()
        if error is not None:
            self._error(t, type(error).__name__)
            return
        code, body = future.result()
        result = self.result
        result.scheduled.append(t - self.start)
        result.latency.append(self.loop.time() - t)
        want_code, want_body = self.n5g[j][1]
        if code != want_code or (want_body and body != want_body):
            result.wrong += 1
            if len(result.wrong_examples) < 10:
                result.wrong_examples.append(
                    f"{self.result.operator.name}: {self.n5g[j][0].split(b'&')[0].decode()} "
                    f"({self.kinds[j]}) answered {code} {body[:80]!r}, expected {want_code} "
                    f"{want_body.decode() or '(problem)'}"
                )


async def _drive(nodes: list[Any], duration: float, rng: random.Random, timeout: float) -> float:
    """Fire Poisson arrivals at every node for *duration* s, then wait for the answers;
    returns the seconds from the first arrival slot to the last answer."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.01
    end = start + duration
    for node in nodes:
        node.start = start
    gaps = [1.0 / n.result.rate for n in nodes]
    nexts = [start + rng.expovariate(1.0) * g for g in gaps]
    expo = rng.expovariate
    while True:
        now = loop.time()
        for i, node in enumerate(nodes):
            t = nexts[i]
            fire = node.fire
            while t <= now and t < end:
                fire(t)
                t += expo(1.0) * gaps[i]
            nexts[i] = t
        soonest = min(nexts)
        if soonest >= end:
            break
        # Fire in ticks of at least TICK: an attach fired late by the tick still counts
        # its wait in its latency (measured from the scheduled time).
        await asyncio.sleep(max(TICK, soonest - loop.time()))
    drain_until = loop.time() + timeout + 1
    while any(n.outstanding for n in nodes) and loop.time() < drain_until:
        await asyncio.sleep(0.01)
    return loop.time() - start


@dataclass
class RunResult:
    nodes: list[NodeResult]
    duration: float
    """Seconds of arrivals."""
    elapsed: float
    """Seconds until the last answer (or the drain timeout)."""
    client_cpu: float
    server_cpu: float | None
    mode: Mode
    rate: float
    face: Face = Face.GRPC


async def run_load(
    population: Population,
    address: str,
    *,
    rate: float,
    duration: float,
    mode: Mode,
    operators: tuple[Operator, ...] = OPERATORS,
    settings: ClientSettings | None = None,
    seed: int = 1,
    server_cpu: Any = None,
    warmup: float = 0.0,
) -> RunResult:
    """Offer *rate* attaches/s for *duration* s across *operators* (by market share),
    through the face *settings* name: *address* is ``host:port`` for gRPC and S13, the
    N5g-eir apiRoot (``http://host:port``) for n5g."""
    settings = settings or ClientSettings()
    face = settings.face
    total_share = sum(op.share for op in operators)
    nodes: list[Any]
    if face is Face.S13:
        from loadtest import s13load

        nodes = s13load.nodes(population, address, rate, operators, settings, seed)
    else:
        nodes = [
            Node(op, population, rate * op.share / total_share, mode, address, settings, seed + i)
            for i, op in enumerate(operators)
        ]
    for node in nodes:
        await node.open()
    gc.collect()
    gc.freeze()  # the population tables live for the whole run: keep them out of collections
    try:
        # Connections up (one answered attach per node), then *warmup* seconds of load at
        # the same rate whose answers are not counted: start-up transients (HTTP/2 window
        # growth, first page touches) are not what a long-running EIR sees.
        await asyncio.gather(*(n.first() for n in nodes))
        rng = random.Random(seed)
        if warmup > 0:
            await _drive(nodes, warmup, rng, settings.timeout)
            for node in nodes:
                node.result = NodeResult(node.result.operator, node.result.rate)
        cpu0, server0 = time.process_time(), server_cpu() if server_cpu else None
        elapsed = await _drive(nodes, duration, rng, settings.timeout)
        client = time.process_time() - cpu0
        server = server_cpu() - server0 if server_cpu else None
    finally:
        for node in nodes:
            await node.close()
    for node in nodes:
        if node.outstanding:
            node.result.errors["Unanswered"] += node.outstanding
    results = [n.result for n in nodes]
    return RunResult(results, duration, elapsed, client, server, mode, rate, face)
