"""Load the simulated population into a ceir store through the real feeds.

Writes one CSV per feed kind (the formats ``ceir import`` documents) from the devices
of a :class:`~loadtest.population.Population` and runs ``ceir import`` on each, in the
order the channels depend on (TACs first, lost/stolen reports last). A row rejected or a
file refused is an error: the load test needs every device to have its known answer.

A built registry is reused when its parameters (seed, devices, mix) match.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ceir.feeds import Kind as FeedKind
from ceir.feeds.kinds import feed_for
from loadtest.population import DAY, Kind, Population, format_mix, generate

_CUTOFF = 1_600_180_000  # 2020-09-15T14:20Z, before the grandfathering cutoff


def _columns(kind: str) -> list[str]:
    """A feed kind's header, as its feed declares it (not a second copy here)."""
    return list(feed_for(FeedKind(kind)).fields)


def _iso(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _date(t: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t))


def write_feeds(population: Population, folder: Path) -> list[tuple[str, Path, int]]:
    """The feed files for *population*: ``(kind, path, rows)`` in import order."""
    folder.mkdir(parents=True, exist_ok=True)
    now = population.now
    brand_of = {tac: (brand, model) for tac, brand, model in population.tacs}
    feeds: list[tuple[str, list[str], list[list[str]]]] = [
        (
            "tac",
            _columns("tac"),
            [[t, b, m, "Smartphone"] for t, b, m in population.tacs],
        ),
    ]
    manufacturer = [
        [
            d.text15,
            *brand_of[d.body[:8]],
            f"TPP-{d.body[:8]}",
            f"MKR-{brand_of[d.body[:8]][0][:3].upper()}",
            _date(now - 200 * DAY),
        ]
        for d in population.devices
        if d.kind in (Kind.MANUFACTURER, Kind.LOST_STOLEN)
    ]
    feeds.append(("manufacturer", _columns("manufacturer"), manufacturer))
    customs = [
        [
            d.text15,
            f"BC-{n:08d}",
            "PASSPORT",
            f"X{n:08d}",
            _date(now - 30 * DAY),
            "PASSENGER",
            "true",
        ]
        for n, d in enumerate(population.by_kind(Kind.CUSTOMS))
    ]
    feeds.append(("customs", _columns("customs"), customs))
    dump = [
        [d.text15, f"51010{n:010d}", f"62811{n:08d}", _iso(_CUTOFF - (n % 900) * DAY)]
        for n, d in enumerate(population.by_kind(Kind.GRANDFATHERED))
    ]
    feeds.append(("operator-dump", _columns("operator-dump"), dump))
    visitors = [
        [d.text15, f"V{n:08d}", _iso(now - 10 * DAY), _iso(now + 60 * DAY)]
        for n, d in enumerate(population.by_kind(Kind.TEMPORARY))
    ] + [
        [d.text15, f"W{n:08d}", _iso(now - 100 * DAY), _iso(now - 20 * DAY)]
        for n, d in enumerate(population.by_kind(Kind.EXPIRED))
    ]
    feeds.append(("visitor", _columns("visitor"), visitors))
    exempt = [
        [d.text15, "DIPLOMAT", f"KEMLU-{n:05d}", ""]
        for n, d in enumerate(population.by_kind(Kind.EXEMPT))
    ]
    feeds.append(("exception", _columns("exception"), exempt))
    stolen = [
        [d.text15, f"POLRI-{n:07d}", "BLOCK", _iso(now - 2 * DAY)]
        for n, d in enumerate(population.by_kind(Kind.LOST_STOLEN))
    ]
    feeds.append(("lost-stolen", _columns("lost-stolen"), stolen))
    out = []
    for kind, header, rows in feeds:
        if not rows:
            continue
        path = folder / f"{kind}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        out.append((kind, path, len(rows)))
    return out


def _ceir() -> list[str]:
    return [sys.executable, "-c", "from ceir.cli import run; run()"]


def load(population: Population, db: Path, work: Path, *, quiet: bool = False) -> float:
    """Import *population*'s feeds into a new store at *db*; returns the seconds it took."""
    if db.exists():
        shutil.rmtree(db)
    started = time.perf_counter()
    for kind, path, rows in write_feeds(population, work / "feeds"):
        command = [
            *_ceir(),
            "import",
            kind,
            str(path),
            "--db",
            str(db),
            "--create",
            "--quiet",
            "--max-new-devices",
            str(rows),
            # The simulator builds its own register as one principal: a national-size
            # population (or its lost-stolen feed) must not wait for a second principal.
            "--stage-above",
            "0",
            "--stage-lost-stolen-above",  # its 2% lost-stolen feed is a mass blacklisting
            "0",
            "--rejects",
            str(work / f"{kind}.rejects.csv"),
        ]
        result = subprocess.run(  # noqa: S603 - this interpreter running ceir, fixed args
            command, capture_output=True, text=True, check=False
        )
        if result.returncode != 0 or "reject report" in result.stdout:
            raise RuntimeError(
                f"ceir import {kind} {path} failed (exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        if not quiet:
            print(f"  ceir import {kind:<13} {rows:>9,} rows: {result.stdout.strip()}")
    return time.perf_counter() - started


def prepare(
    *, devices: int, mix: dict[Kind, float], seed: int, work: Path, quiet: bool = False
) -> tuple[Population, Path]:
    """The population and a store holding it, built through ``ceir import`` or reused."""
    db = work / "store"
    marker = work / "registry.json"
    spec = {"seed": seed, "devices": devices, "mix": format_mix(mix)}
    if marker.exists() and (db / "data.mdb").exists():
        saved = json.loads(marker.read_text())
        # Temporary registrations run 60 days from the build: rebuild well before that.
        fresh = time.time() - saved.get("now", 0) < 30 * DAY
        if fresh and {k: saved.get(k) for k in spec} == spec:
            population = generate(devices=devices, mix=mix, seed=seed, now=saved["now"])
            return population, db
    now = int(time.time())
    population = generate(devices=devices, mix=mix, seed=seed, now=now)
    if not quiet:
        print(f"loading {devices:,} devices into {db} through ceir import ...")
    took = load(population, db, work, quiet=quiet)
    marker.write_text(json.dumps({**spec, "now": now, "load_seconds": round(took, 2)}))
    return population, db
