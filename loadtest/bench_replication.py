"""``./scripts/bench-replication``: how fast the operator edge follows the central register.

One run on this machine, all on loopback: a NATS JetStream broker, ``ceir serve
--publish`` and N ``ceir replica`` processes (one worker each). It prints

- commit -> visible-on-replica lag, p50/p99/max per replica, while importing a feed of
  ``--rows`` rows and while idle with a trickle of single writes (``--rate`` per second).
  A change is visible on a node when it is committed in the store that node's lookups
  read (its applied sequence, read from its store every 5 ms by this process: the nodes
  do no work for the bench). Two commit times are shown: the stamp the central's log records (taken
  inside the write transaction, before it commits: for a big import batch this includes
  the central's own commit), and the moment the change is visible on the central (the
  transaction committed: what "commit -> visible" means), and the gap between the two;
- the CPU seconds each process (with its workers) used during the import;
- the catch-up rate of a replica that was down while ``--rows`` more rows were imported;
- the bootstrap time of a replica from a ``--bootstrap-devices`` snapshot;
- unary CheckIMEI throughput on a replica and on the central, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import resource
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import grpc

from ceir.record import Reason, Record, Source
from ceir.replication.keys import generate
from ceir.store import Store, changes, open_store
from ceir.store import replica as position
from ceir.v1 import (
    eir_pb2,
    eir_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    replication_pb2,
    replication_pb2_grpc,
)
from loadtest.edge import CEIR, NatsServer, Node, central, replica

_POLL = 0.005
_IDLE = 5.0


class Watcher(threading.Thread):
    """Polls one node's store (read-only, from this process, so the node does no work
    for it) every 5 ms: a change is visible on a node once it is committed in the store
    the node's lookups read (a replica's applied sequence, the central's log head);
    remembers when each sequence was first seen."""

    def __init__(self, node: Node) -> None:
        super().__init__(daemon=True)
        self.node = node
        self.db = Path(node.args[node.args.index("--db") + 1])
        self.central = node.args[0] == "serve"
        self.seen: dict[int, float] = {}
        self.applied = 0
        self.running = True
        self.store = open_store(self.db, readonly=True)
        """Open while it runs; one environment per store and process (LMDB's rule)."""

    def _position(self, store: Store) -> int:
        if self.central:
            return changes.head(store)[0]
        state = position.state(store)
        return 0 if state is None else state.applied

    def run(self) -> None:
        with self.store as store:
            while self.running:
                applied = self._position(store)
                now = time.time()
                for seq in range(self.applied + 1, applied + 1):
                    self.seen.setdefault(seq, now)
                self.applied = max(self.applied, applied)
                time.sleep(_POLL)


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _name(node: Node) -> str:
    return node.args[2].rsplit("/", 1)[-1]


def _row(name: str, since: dict[int, float], seen: dict[int, float], seqs: range) -> str:
    lags = [max(0.0, seen[s] - since[s]) * 1000 for s in seqs if s in seen and s in since]
    if not lags:
        return f"  {name:<12} (nothing seen)"
    return (
        f"  {name:<12}{_percentile(lags, 50):>9.1f}{_percentile(lags, 99):>9.1f}{max(lags):>9.1f}"
    )


def _lags(hub: Watcher, watchers: list[Watcher], first: int, last: int) -> None:
    stamped = {e.seq: e.committed_ms / 1000 for e in changes.entries(hub.store, first - 1, last)}
    seqs = range(first, last + 1)
    print(f"  {last - first + 1:,} change-log entries (sequences {first:,}..{last:,})")
    print("  from the commit time the central's log records:")
    print(f"  {'replica':<12}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    print(_row("(central)", stamped, hub.seen, seqs))
    for w in watchers:
        print(_row(_name(w.node), stamped, w.seen, seqs))
    print("  from the moment the change is visible on the central (committed):")
    for w in watchers:
        print(_row(_name(w.node), hub.seen, w.seen, seqs))


def _named(nodes: list[Node]) -> list[tuple[str, Node]]:
    return [(_name(n), n) for n in nodes]


def _tree(pid: int) -> list[int]:
    """*pid* and its descendants."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += parents.get(p, [])
    return out


def _cpu(procs: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) each process tree (by its root's pid) used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, root in procs.items():
        total = 0
        for pid in _tree(root):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        out[name] = total / tick
    return out


def _head(node: Node) -> int:
    with grpc.insecure_channel(node.address) as channel:
        stub = replication_pb2_grpc.ReplicationStub(channel)
        return int(stub.Status(replication_pb2.ReplicationStatusRequest()).applied_sequence)


def _wait_applied(watchers: list[Watcher], head: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while any(w.applied < head for w in watchers):
        if time.monotonic() > deadline:
            raise RuntimeError("replicas did not catch up in time")
        time.sleep(0.05)


def _unlimited() -> tuple[str, ...]:
    """Central flags that lift the write limits (a benchmark, not a second person's
    decision): the rate, the two-person rule and, where this ceir has them, the rolling
    24-hour channel limits (the trickle follows a 1 M-row import)."""
    flags = ("--write-rate", "0", "--stage-above", "0", "--no-demo")
    shown = subprocess.run([CEIR, "serve", "--help"], capture_output=True, text=True, check=True)  # noqa: S603
    if "--channel-daily-above" in shown.stdout:
        flags += ("--channel-daily-above", "0")
    return flags


def _ceir(*args: str) -> None:
    done = subprocess.run([CEIR, *args], capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode:
        raise RuntimeError(f"ceir {args[0]} exited {done.returncode}: {done.stderr.strip()}")


def _feed(root: Path, rows: int, start: int) -> Path:
    path = root / f"manufacturer-{start}.csv"
    _ceir("gen", "manufacturer", str(path), "--rows", str(rows), "--start", str(start), "-q")
    return path


def _import(db: Path, path: Path, rows: int, batch_rows: int | None) -> float:
    started = time.monotonic()
    batch = () if batch_rows is None else ("--batch-rows", str(batch_rows))
    _ceir(
        *("import", "manufacturer", str(path), "--db", str(db), "-q", *batch),
        *("--max-new-devices", str(rows + 1), "--rejects", str(path) + ".rejects.csv"),
        *("--stage-above", "0"),  # a benchmark, not a second person's decision
    )
    return time.monotonic() - started


def _trickle(node: Node, path: Path, rate: float, seconds: float) -> int:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    sent = 0
    with grpc.insecure_channel(node.address) as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)
        started = time.monotonic()
        for row in rows:
            due = started + sent / rate
            if due - started > seconds:
                break
            time.sleep(max(0.0, due - time.monotonic()))
            stub.Register(
                registry_pb2.RegisterRequest(
                    kind=registry_pb2.FEED_KIND_MANUFACTURER, fields=row, request_id=f"t{sent}"
                ),
                timeout=10,
            )
            sent += 1
    return sent


async def _throughput(address: str, imeis: list[str], seconds: float, inflight: int = 32) -> float:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = eir_pb2_grpc.EquipmentIdentityRegisterStub(channel)
        done = 0
        stop = time.monotonic() + seconds

        async def worker(n: int) -> None:
            nonlocal done
            i = n
            while time.monotonic() < stop:
                await stub.CheckIMEI(eir_pb2.CheckIMEIRequest(imei=imeis[i % len(imeis)]))
                done += 1
                i += inflight

        started = time.monotonic()
        await asyncio.gather(*(worker(n) for n in range(inflight)))
        return done / (time.monotonic() - started)


def _bootstrap(root: Path, broker: NatsServer, keys: tuple[Path, Path], devices: int) -> None:
    """A central holding *devices* devices; time a new replica's bootstrap from it."""
    db = root / "big"
    record = Record(Reason.REGISTERED, Source.MANUFACTURER, registered_at=1_700_000_000).pack()
    started = time.monotonic()
    with open_store(db) as store:
        step = 1_000_000
        for low in range(0, devices, step):
            bodies = (35_000_000_000_000 + n * 7 for n in range(low, min(devices, low + step)))
            pairs = [(b.to_bytes(8, "big"), record) for b in bodies]
            store.write(lambda t, p=pairs: t.devices.append(p))
    print(f"  built a {devices:,}-device store in {time.monotonic() - started:.1f} s")
    big = Node(
        ["serve", "--db", str(db), "--no-demo", "--signing-key", str(keys[0])],
        root / "big.log",
    ).start()
    try:
        node = replica(root, "fresh", broker, big.address, keys[1])
        started = time.monotonic()
        node.start()
        with grpc.insecure_channel(node.address) as channel:
            from grpc_health.v1 import health_pb2, health_pb2_grpc

            stub = health_pb2_grpc.HealthStub(channel)
            while stub.Check(health_pb2.HealthCheckRequest()).status != 1:
                time.sleep(0.05)
        took = time.monotonic() - started
        print(
            f"  bootstrap of {devices:,} devices: {took:.1f} s from `ceir replica` start to "
            f"SERVING ({devices / took:,.0f} devices/s)"
        )
        node.stop()
    finally:
        big.stop()


def main() -> None:  # noqa: PLR0915 - one run, told in order
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicas", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per import")
    parser.add_argument("--rate", type=float, default=100.0, help="trickle writes per second")
    parser.add_argument("--trickle-seconds", type=float, default=10.0)
    parser.add_argument("--bootstrap-devices", type=int, default=10_000_000)
    parser.add_argument("--seconds", type=float, default=3.0, help="each throughput round")
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds per server")
    parser.add_argument(
        "--batch-rows", type=int, help="rows per import transaction (default: the importer's)"
    )
    parser.add_argument("--bootstrap-only", action="store_true", help="only the bootstrap figure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ceir-bench-repl-") as tmp:
        root = Path(tmp)
        keys = generate(root / "keys")
        if args.bootstrap_only:
            with NatsServer.running(root / "nats") as broker:
                print(f"bootstrap ({args.bootstrap_devices:,} devices):")
                _bootstrap(root, broker, keys, args.bootstrap_devices)
            return
        broker = NatsServer(root / "nats")
        broker.start()
        hub = central(root, broker, keys[0], *_unlimited())
        nodes: list[Node] = []
        try:
            hub.start()
            tacs = root / "tacs.csv"
            _ceir("gen", "tac", str(tacs), "--rows", "500", "-q")
            _ceir("import", "tac", str(tacs), "--db", str(root / "central"), "-q")
            feed1, feed2 = _feed(root, args.rows, 0), _feed(root, args.rows, args.rows)
            trickle = _feed(root, int(args.rate * args.trickle_seconds) + 10, 5 * args.rows)
            nodes += [
                replica(root, f"r{i + 1}", broker, hub.address, keys[1]).start()
                for i in range(args.replicas)
            ]
            watchers = [Watcher(n) for n in nodes]
            hub_watch = Watcher(hub)
            for w in [hub_watch, *watchers]:
                w.start()
            _wait_applied(watchers, _head(hub))
            print(f"replication bench: {args.replicas} replicas, 1 worker each, loopback")

            first = _head(hub) + 1
            procs = {name: n.proc.pid for name, n in [("central", hub), *_named(nodes)] if n.proc}
            procs["broker"] = broker.proc.pid if broker.proc else 0
            cpu = _cpu(procs)
            time.sleep(_IDLE)
            idle = {k: v - cpu[k] for k, v in _cpu(procs).items()}
            print(
                f"  CPU seconds in {_IDLE:g} s idle (the heart-beats, the relay's poll): "
                + ", ".join(f"{k} {v:.2f}" for k, v in idle.items())
            )
            cpu = _cpu(procs)
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            me = resource.getrusage(resource.RUSAGE_SELF)
            took = _import(root / "central", feed1, args.rows, args.batch_rows)
            last = _head(hub)
            _wait_applied(watchers, last)
            used = {k: v - cpu[k] for k, v in _cpu(procs).items()}
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            used["importer"] = (
                after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
            )
            mine = resource.getrusage(resource.RUSAGE_SELF)
            used["bench polling"] = mine.ru_utime + mine.ru_stime - me.ru_utime - me.ru_stime
            per = "default" if args.batch_rows is None else f"{args.batch_rows:,}"
            print(
                f"\nimporting a {args.rows:,}-row feed ({took:.1f} s import, {per} rows per "
                "transaction):"
            )
            _lags(hub_watch, watchers, first, last)
            print(
                "  CPU seconds during the import: "
                + ", ".join(f"{k} {v:.1f}" for k, v in used.items())
            )

            first = _head(hub) + 1
            sent = _trickle(hub, trickle, args.rate, args.trickle_seconds)
            last = _head(hub)
            _wait_applied(watchers, last)
            print(f"\nidle with a trickle: {sent:,} single writes at {args.rate:g}/s:")
            _lags(hub_watch, watchers, first, last)

            down = nodes[-1]
            down.stop()
            watchers[-1].running = False
            took = _import(root / "central", feed2, args.rows, args.batch_rows)
            head = _head(hub)
            started = time.monotonic()
            down.start()
            while _head(down) < head:
                time.sleep(0.02)
            caught = time.monotonic() - started
            print(
                f"\ncatch-up: a replica down through {args.rows:,} changes caught up in "
                f"{caught:.1f} s from its restart ({args.rows / caught:,.0f} records/s)"
            )

            imeis = [row["imei"] for row in csv.DictReader(feed1.open())]
            random.Random(1).shuffle(imeis)
            imeis = imeis[:50_000]
            for w in [hub_watch, *watchers]:
                w.running = False
            # Alternating rounds: the machine is shared, so one long run each would
            # compare two different moments of its load.
            rounds: list[tuple[float, float]] = []
            for _ in range(args.rounds):
                on_central = asyncio.run(_throughput(hub.address, imeis, args.seconds))
                on_replica = asyncio.run(_throughput(nodes[0].address, imeis, args.seconds))
                rounds.append((on_central, on_replica))
            c_med = statistics.median(c for c, _ in rounds)
            r_med = statistics.median(r for _, r in rounds)
            ratio = statistics.median(r / c for c, r in rounds)
            print(
                f"\nunary CheckIMEI, 32 in flight, 1 worker, {args.rounds} alternating rounds "
                f"of {args.seconds:g} s: central median {c_med:,.0f}/s, replica median "
                f"{r_med:,.0f}/s; replica/central per round: median {ratio:.2f} "
                f"({', '.join(f'{r / c:.2f}' for c, r in rounds)})"
            )
            for node in nodes:
                node.stop()
            nodes = []
            print(f"\nbootstrap ({args.bootstrap_devices:,} devices):")
            _bootstrap(root, broker, keys, args.bootstrap_devices)
        finally:
            for node in nodes:
                node.stop()
            hub.stop()
            broker.stop()


if __name__ == "__main__":
    main()
