"""Faults, each ending with the replica equal to the central (same sequence, same
per-range digests): a killed replica, a stopped broker, a killed central, a purged
stream, and a replica that was down through 100,000 changes."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

import nats
import pytest

from ceir.replication import STREAM
from ceir.store import changes, open_store
from tests.replication._cluster import CEIR, Cluster, cluster, wait_for

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def _bootstraps(c: Cluster, name: str) -> int:
    out = c.ceir("replica", "status", "--db", str(c.root / name), "--json").stdout
    return int(json.loads(out)["bootstraps"])


def _import_in_background(c: Cluster, rows: int, start: int) -> subprocess.Popen[str]:
    tacs = c.root / "tacs.csv"
    if not tacs.exists():
        c.ceir("gen", "tac", str(tacs), "--rows", "500", "-q")
        c.import_feed("tac", tacs)
    path = c.gen_feed("manufacturer", rows, start)
    return subprocess.Popen(
        [
            *(CEIR, "import", "manufacturer", str(path), "--db", str(c.central_db), "-q"),
            *("--max-new-devices", str(rows + 1), "--rejects", str(path) + ".r"),
            *("--batch-rows", "10000"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_replica_killed_mid_apply_restarts_and_converges(tmp_path: Path) -> None:
    """SIGKILL while the replica applies an import; the restarted one resumes from its
    stored position (no re-bootstrap) and ends equal to the central."""
    with cluster(tmp_path) as c:
        r = c.add_replica()
        c.converged(r)
        before = r.status().applied_sequence
        importing = _import_in_background(c, 100_000, 0)
        wait_for("the replica to apply some", lambda: r.status().applied_sequence > before + 1)
        r.kill()
        out, _ = importing.communicate(timeout=120)
        assert importing.returncode == 0, out
        r.start()
        c.converged(r)
        assert _bootstraps(c, "r1") == 1


def test_broker_stopped_during_an_import_then_restarted(tmp_path: Path) -> None:
    """The broker goes away mid-import: the replica keeps serving; when it is back the
    relay republishes what it missed and the replica converges."""
    with cluster(tmp_path) as c:
        r = c.add_replica()
        c.converged(r)
        importing = _import_in_background(c, 100_000, 0)
        time.sleep(0.3)
        c.broker.stop()
        out, _ = importing.communicate(timeout=120)
        assert importing.returncode == 0, out
        assert r.health() == 1  # SERVING: answers from its store through the outage
        c.broker.start()
        c.converged(r)


def test_central_killed_between_commit_and_publish(tmp_path: Path) -> None:
    """Changes committed while the relay is dead are in the log; the restarted central
    publishes them and the replica converges."""
    with cluster(tmp_path) as c:
        r = c.add_replica()
        c.converged(r)
        c.central.kill()
        c.manufacturer(5_000, 0)  # committed to the central's log, published by nobody
        c.central.start()
        c.converged(r)


def _purge(url: str) -> None:
    async def run() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().purge_stream(STREAM)
        finally:
            await nc.close()

    asyncio.run(run())


def test_purged_stream_makes_a_lagging_replica_bootstrap_again(tmp_path: Path) -> None:
    """A replica that needs changes the stream no longer holds re-bootstraps (it never
    skips ahead) and converges."""
    with cluster(tmp_path) as c:
        r = c.add_replica()
        c.converged(r)
        r.stop()
        c.manufacturer(3_000, 0)
        head = c.central.status().applied_sequence
        wait_for("the relay to publish", lambda: _stream_last(c.broker.url) >= head)
        _purge(c.broker.url)
        r.start()
        c.converged(r)
        assert _bootstraps(c, "r1") == 2


def test_trimmed_log_makes_a_replica_behind_it_bootstrap_again(tmp_path: Path) -> None:
    """With --changes-keep-days 0 the relay trims the log and the stream of what the stream
    acknowledged; a replica that was down needs trimmed entries, so it re-bootstraps and
    converges, while the live one follows on; and when the broker then loses its whole
    stream, the relay starts it again at the log's first entry and both follow on."""
    with cluster(tmp_path, "--changes-keep-days", "0") as c:
        live, down = c.add_replica("r1"), c.add_replica("r2")
        c.converged(live)
        c.converged(down)
        needed = down.status().applied_sequence + 1
        down.stop()
        c.manufacturer(3_000, 0)
        head = c.central.status().applied_sequence
        assert head > needed

        def trimmed() -> bool:
            with open_store(c.central_db, readonly=True) as store:
                first = changes.first(store)
            return first > needed and _stream_first(c.broker.url) > needed

        wait_for("the relay to trim the log and the stream", trimmed, timeout=60)
        assert "trimmed" in c.central.log.read_text()
        with open_store(c.central_db, readonly=True) as store:
            assert changes.head(store)[0] == c.central.status().applied_sequence  # head kept
        down.start()
        c.converged(down)
        assert _bootstraps(c, "r2") == 2
        c.manufacturer(1_000, 10_000)
        c.converged(live)
        c.converged(down)
        # The broker loses everything: the log cannot give back what it trimmed, so the
        # relay starts the new stream at the log's first entry (stream seq = log seq).
        c.broker.stop()
        shutil.rmtree(c.broker.root / "js")
        c.broker.start()
        c.manufacturer(500, 20_000)
        c.converged(live)
        c.converged(down)
        assert "moving the stream on" in c.central.log.read_text()


def _stream_first(url: str) -> int:
    async def run() -> int:
        nc = await nats.connect(url)
        try:
            info = await nc.jetstream().stream_info(STREAM)
            return int(info.state.first_seq)
        finally:
            await nc.close()

    return asyncio.run(run())


def _stream_last(url: str) -> int:
    async def run() -> int:
        nc = await nats.connect(url)
        try:
            info = await nc.jetstream().stream_info(STREAM)
            return int(info.state.last_seq)
        finally:
            await nc.close()

    return asyncio.run(run())


def test_replica_down_through_100000_changes_catches_up(tmp_path: Path) -> None:
    """100,000 changes while the replica is down: it catches up from the stream."""
    with cluster(tmp_path) as c:
        r = c.add_replica()
        c.converged(r)
        r.stop()
        c.manufacturer(100_000, 0)
        r.start()
        c.converged(r, timeout=90)
        assert _bootstraps(c, "r1") == 1
        assert sum(x.count for x in r.digest().ranges if x.range != "tacs") > 100_000
