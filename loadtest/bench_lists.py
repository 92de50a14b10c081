"""``./scripts/bench-lists``: what exporting the blacklist costs, against a bare scan.

One store in a temporary directory: ``--devices`` registered devices of which
``--blacklisted`` are reported lost or stolen (each block with its audit entry, as the
lost-stolen feed writes them). Then, in the same run and on the same warm store:

- a bare cursor scan of ``devices`` (every key and record, nothing else done): the floor;
- taking the blacklist (the scan plus each blocked device's audit lookup for its date);
- ``ceir lists export`` without a base (CSV, zip, the run's snapshot stored);
- ``ceir lists export --base`` of that run after ``--changes`` blocks were lifted and as
  many made (the deltas too).

Each line gives seconds, rows per second and the ratio to the bare scan.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ceir.lists.blacklist import blacklist
from ceir.lists.export import ExportOptions, export
from ceir.record import FLAG_LOST_STOLEN, Reason, Record, Source
from ceir.store import Store, audit, open_store
from ceir.store.tables import Tables

_BATCH = 200_000
_TAC = 35209900 * 10**6
_DAY = 86400


def _key(i: int, spread: int) -> bytes:
    return (_TAC + i * spread).to_bytes(8)


def fill(store: Store, devices: int, blacklisted: int, at: int) -> None:
    """*devices* registered devices, every (devices // blacklisted)-th one blocked."""
    every = max(1, devices // max(1, blacklisted))
    white = Record(Reason.REGISTERED, Source.MANUFACTURER, registered_at=at - 400 * _DAY)
    lost = Record(Reason.REGISTERED, Source.MANUFACTURER, True, at - 400 * _DAY)
    packed_white, packed_lost = white.pack(), lost.pack()
    blocked = 0
    for start in range(0, devices, _BATCH):
        ids = range(start, min(devices, start + _BATCH))
        pairs, changes = [], []
        for i in ids:
            key = _key(i, 7)
            if i % every == 0 and blocked < blacklisted:
                blocked += 1
                pairs.append((key, packed_lost))
                changes.append(audit.Change(key, audit.Action.BLOCK, packed_white, packed_lost))
            else:
                pairs.append((key, packed_white))

        def put(
            tables: Tables,
            pairs: list[tuple[bytes, bytes]] = pairs,
            changes: list[audit.Change] = changes,
        ) -> None:
            origin = audit.new_origin(tables, {"kind": "bench", "actor": "bench:lists"})
            tables.devices.put_pairs(pairs)
            audit.append(tables, changes, at - _DAY, origin)

        store.write(put)


def flip(store: Store, devices: int, changes: int, at: int) -> None:
    """Toggle the lost/stolen flag of 2 x *changes* devices spread over the store (about
    half lift a block, half make one), audited."""

    def put(tables: Tables) -> None:
        origin = audit.new_origin(tables, {"kind": "bench", "actor": "bench:lists"})
        out, pairs = [], []
        step = max(1, devices // max(1, 2 * changes))
        for i in range(0, devices, step)[: 2 * changes]:
            key = _key(i + i // step % 2, 7)  # every other one off the blocked stride
            old = tables.devices.packed(key)
            if old is None:
                continue
            lost = old[2] & FLAG_LOST_STOLEN
            new = old[:2] + bytes((old[2] ^ FLAG_LOST_STOLEN,)) + old[3:]
            action = audit.Action.UNBLOCK if lost else audit.Action.BLOCK
            out.append(audit.Change(key, action, old, new))
            pairs.append((key, new))
        tables.devices.put(dict(pairs))
        audit.append(tables, out, at, origin)

    store.write(put)


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    t = time.perf_counter()
    n = fn()
    return time.perf_counter() - t, n


def bare_scan(store: Store) -> int:
    with store.snapshot() as tables:
        return sum(1 for _ in tables.devices.packed_items())


def take(store: Store, at: int) -> int:
    with store.snapshot() as tables:
        return len(blacklist(tables, at))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench-lists", description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=2_000_000, help="registered devices")
    parser.add_argument("--blacklisted", type=int, default=1_000_000, help="of them blocked")
    parser.add_argument("--changes", type=int, default=10_000, help="blocks lifted (and made)")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: temp)")
    args = parser.parse_args(argv)
    at = int(time.time())
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        with open_store(root / "db") as store:
            t, _ = timed(lambda: fill(store, args.devices, args.blacklisted, at) or 0)
            print(f"fill: {args.devices:,} devices, {args.blacklisted:,} blocked in {t:.1f} s")
            bare_scan(store)  # warm the page cache for every measurement alike
            scan_s, scanned = timed(lambda: bare_scan(store))
            rows: list[tuple[str, float, int]] = [("bare cursor scan of devices", scan_s, scanned)]
            rows.append(("take the blacklist", *timed(lambda: take(store, at))))
            start = time.perf_counter()
            first = export(store, root / "one", now=at)
            rows.append(("export, full only", time.perf_counter() - start, first.rows["blacklist"]))
            flip(store, args.devices, args.changes, at + 1)
            start = time.perf_counter()
            second = export(store, root / "two", ExportOptions(base=first.run.run), now=at + 2)
            rows.append(
                ("export, full + deltas", time.perf_counter() - start, second.rows["blacklist"])
            )
    print(f"{'step':<30} {'seconds':>8} {'rows':>11} {'rows/s':>11} {'x scan':>7}")
    for name, seconds, n in rows:
        print(f"{name:<30} {seconds:>8.2f} {n:>11,} {n / seconds:>11,.0f} {seconds / scan_s:>7.1f}")


if __name__ == "__main__":
    main()
