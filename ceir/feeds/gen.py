"""Synthetic feeds of any size, with a chosen share of realistic dirt (tests, benchmarks,
the load test's registry).

Deterministic for a seed. Devices are TAC + serial drawn from disjoint ranges per kind
(``start`` moves the range), so files of different kinds do not collide. TACs come from
a fixed pool: ``tac_entry(0..POOL-1)``; ``gen tac --rows POOL`` writes exactly the TACs
the device feeds use, so import it first.

Dirt, on a *dirt* share of rows: bad check digits, hex characters, short IMEIs, a
leading zero lost in a spreadsheet (7-digit TACs, 14-digit IMEIs), repeated rows, bad or
non-ISO dates, missing fields, bad enum values. Rule outcomes (unpaid tax, a third device
on one arrival, devices seen after the cutoff, over-long visits) appear on their own.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

from ceir.errors import OutputError
from ceir.feeds import Format, Kind
from ceir.imei import check_digit

__all__ = ["POOL", "device_imei", "generate", "rows", "tac_entry", "write_rows"]

POOL = 500
"""How many TACs the device feeds draw from."""
REGION = 50_000_000
"""Serial indexes per kind: kind k uses [k * REGION, (k + 1) * REGION)."""
_BRANDS = (
    ("Samsung", "Galaxy A"),
    ("Apple", "iPhone "),
    ("Xiaomi", "Redmi Note "),
    ("Oppo", "Reno"),
    ("vivo", "Y"),
    ("realme", "C"),
    ("Infinix", "Hot "),
    ("Tecno", "Spark "),
    ("Nokia", "G"),
    ("Advan", "G"),
)
_TYPES = ("Smartphone", "Smartphone", "Smartphone", "Tablet", "Feature phone")
_DAY = 86_400


def tac_entry(j: int) -> tuple[str, str, str, str]:
    """The *j*-th TAC of the synthetic TAC database: (tac, brand, model, device type)."""
    prefix = "01" if j % 10 == 0 else f"{35 + j % 60:02d}"
    tac = f"{prefix}{(j * 7919 + 123_457) % 1_000_000:06d}"
    brand, series = _BRANDS[j % len(_BRANDS)]
    return tac, brand, f"{series}{10 + j % 90}", _TYPES[j % len(_TYPES)]


_POOL_TACS = [tac_entry(j)[0] for j in range(POOL)]


def device_imei(index: int) -> str:
    """The 15-digit IMEI of serial index *index* (bijective for index < POOL * 10**6)."""
    tac = _POOL_TACS[index % POOL]
    snr = (index // POOL * 7919 + 4_711) % 1_000_000
    body = f"{tac}{snr:06d}"
    return f"{body}{check_digit(body)}"


def _date(rng: random.Random, start: int, days: int) -> str:
    import time

    return time.strftime("%Y-%m-%d", time.gmtime(start + rng.randrange(days) * _DAY))


_2023 = 1_672_531_200  # 2023-01-01
_2016 = 1_451_606_400  # 2016-01-01


class _Rows:
    """Clean rows of one kind; ``row(i)`` is the i-th."""

    def __init__(self, kind: Kind, seed: int, start: int, now: int) -> None:
        self.kind = kind
        self.rng = random.Random(seed)
        self.base = start if start >= 0 else (kind.code - 1) * REGION
        self.now = now
        self.identity = ""
        self.arrival = ""
        self.left = 0

    def imei(self, i: int) -> str:
        return device_imei(self.base + i)

    def row(self, i: int) -> list[str]:
        if self.kind is Kind.TAC:
            return list(tac_entry(self.base + i))
        return _MAKERS[self.kind](self, i, self.imei(i))

    def manufacturer(self, i: int, imei: str) -> list[str]:
        j = (self.base + i) % POOL  # the TAC device_imei() chose
        _, brand, model, _ = tac_entry(j)
        return [imei, brand, model, f"TPP-{j:05d}", f"M{j % 97:04d}", _date(self.rng, _2023, 900)]

    def customs(self, i: int, imei: str) -> list[str]:
        rng = self.rng
        if self.left == 0:
            self.identity = f"{rng.randrange(10**15, 10**16)}"
            self.arrival = _date(rng, _2023, 900)
            self.left = rng.choice((1, 1, 1, 2, 2, 3))  # 3: one over the quota
        self.left -= 1
        paid = "true" if rng.random() > 0.03 else "false"
        id_type = "NIK" if rng.random() < 0.7 else "PASSPORT"
        number = self.identity if id_type == "NIK" else f"X{self.identity[:8]}"
        channel = "PASSENGER" if rng.random() < 0.8 else "SHIPMENT"
        return [imei, f"BC-{i:09d}", id_type, number, self.arrival, channel, paid]

    def operator_dump(self, i: int, imei: str) -> list[str]:
        rng = self.rng
        seen = _date(rng, _2016, 365 * 4 + 300)  # some after the 2020-09-15 cutoff
        imsi = f"510{rng.choice(('10', '11', '01', '21', '89'))}{rng.randrange(10**10):010d}"
        return [imei, imsi, f"+628{rng.randrange(10**9, 10**10)}", seen]

    def visitor(self, i: int, imei: str) -> list[str]:
        rng = self.rng
        start = self.now - rng.randrange(120) * _DAY  # some already expired
        length = rng.choice((7, 14, 30, 60, 90, 90, 120))  # 120: too long
        return [
            imei,
            f"{rng.choice('ABCEKLMN')}{rng.randrange(10**7, 10**8)}",
            _date(rng, start, 1),
            _date(rng, start + length * _DAY, 1),
        ]

    def exception(self, i: int, imei: str) -> list[str]:
        rng = self.rng
        until = "" if rng.random() < 0.5 else _date(rng, self.now, 700)
        category = rng.choice(("DIPLOMAT", "STATE_GUEST", "VIP"))
        return [imei, category, f"KEMLU/{i:06d}", until]

    def lost_stolen(self, i: int, imei: str) -> list[str]:
        # Blocks of manufacturer-registered devices; some unblocked.
        device = device_imei((Kind.MANUFACTURER.code - 1) * REGION + i)
        action = "BLOCK" if self.rng.random() < 0.9 else "UNBLOCK"
        return [device, f"POLRI/{i:07d}", action, _date(self.rng, self.now - 365 * _DAY, 365)]


_MAKERS: dict[Kind, Callable[[_Rows, int, str], list[str]]] = {
    Kind.MANUFACTURER: _Rows.manufacturer,
    Kind.CUSTOMS: _Rows.customs,
    Kind.OPERATOR_DUMP: _Rows.operator_dump,
    Kind.VISITOR: _Rows.visitor,
    Kind.EXCEPTION: _Rows.exception,
    Kind.LOST_STOLEN: _Rows.lost_stolen,
}


def _dirty_tac(row: list[str], rng: random.Random) -> list[str]:
    choice = rng.randrange(4)
    if choice == 0:
        row[0] = row[0].lstrip("0")[-7:]  # a 7-digit TAC
    elif choice == 1:
        row[0] = f" {row[0]}"
    elif choice == 2:
        row[0] = row[0][:6]
    else:
        row[1] = ""
    return row


def _bad_date(row: list[str], rng: random.Random) -> list[str]:
    dated = [j for j in range(1, len(row)) if len(row[j]) == 10 and row[j][4] == "-"]
    if not dated:
        row[0] = ""
        return row
    j = rng.choice(dated)
    y, m, d = row[j].split("-")
    row[j] = f"{d}/{m}/{y}" if rng.random() < 0.5 else f"{y}-{m}-3{d[1]}"
    return row


_ENUM_COLUMN = {Kind.CUSTOMS: 2, Kind.LOST_STOLEN: 2}


def _dirty(row: list[str], kind: Kind, rng: random.Random, previous: list[str] | None) -> list[str]:
    """*row* with one realistic defect."""
    row = list(row)
    if kind is Kind.TAC:
        return _dirty_tac(row, rng)
    choice = rng.randrange(8)
    imei = row[0]
    if choice == 3 and previous is not None:  # a repeated row
        return list(previous)
    if choice == 5:  # a date that is not ISO 8601
        return _bad_date(row, rng)
    if choice == 6:  # a missing field
        row[rng.randrange(len(row))] = ""
    elif choice == 7 and kind in _ENUM_COLUMN:  # an enum out of its set
        j = _ENUM_COLUMN[kind]
        row[j] = row[j].lower() if rng.random() < 0.5 else "UNKNOWN"
    elif choice == 0:  # bad check digit
        row[0] = imei[:14] + str((int(imei[14]) + 1 + rng.randrange(9)) % 10)
    elif choice == 1:  # hex from a broken handset
        k = rng.randrange(8, 14)
        row[0] = imei[:k] + rng.choice("ABCDEF") + imei[k + 1 :]
    elif choice == 4:  # spreadsheet: leading zero lost, or scientific notation
        row[0] = imei.lstrip("0") if imei.startswith("0") else f"{int(imei):.6E}"
    else:  # short, or a digit lost in the middle
        row[0] = imei[: rng.randrange(10, 14)] if choice == 2 else imei[:7] + imei[8:]
    return row


def rows(
    kind: Kind, n: int, *, dirt: float = 0.0, seed: int = 0, start: int = -1, now: int = 0
) -> Iterator[list[str]]:
    """*n* rows of *kind*, a *dirt* share of them with one defect each."""
    import time

    clean = _Rows(kind, seed, start, now or int(time.time()))
    dirt_rng = random.Random(seed ^ 0x5EED)
    previous: list[str] | None = None
    for i in range(n):
        row = clean.row(i)
        if dirt and dirt_rng.random() < dirt:
            row = _dirty(row, kind, dirt_rng, previous)
        else:
            previous = row
        yield row


def write_rows(
    kind: Kind,
    rows: Iterable[Sequence[str]],
    out: IO[str],
    fmt: Format = Format.CSV,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write *rows* of *kind* as a feed file (CSV with a header, or JSON Lines); returns
    how many. The writer the reader (:mod:`ceir.feeds.reader`) must read back exactly."""
    from ceir.feeds.kinds import feed_for  # the column names are the feed's own

    fields = feed_for(kind).fields
    n = 0
    if fmt is Format.JSONL:
        for row in rows:
            out.write(json.dumps(dict(zip(fields, row, strict=True)), ensure_ascii=False) + "\n")
            n += 1
            if progress is not None and n % 100_000 == 0:
                progress(100_000)
        return n
    writer = csv.writer(out)  # RFC 4180 CRLF: a lone "\r" in a value gets quoted too
    writer.writerow(fields)
    batch: list[Sequence[str]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == 100_000:
            writer.writerows(batch)
            n += len(batch)
            batch.clear()
            if progress is not None:
                progress(100_000)
    writer.writerows(batch)
    return n + len(batch)


def generate(
    kind: Kind,
    n: int,
    out: Path | IO[str],
    *,
    dirt: float = 0.0,
    seed: int = 0,
    fmt: Format = Format.CSV,
    start: int = -1,
    now: int = 0,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write a feed of *n* rows to *out* (a path or a text stream); returns *n*."""
    if isinstance(out, Path):
        try:
            with out.open("w", encoding="utf-8", newline="") as f:
                return generate(
                    kind,
                    n,
                    f,
                    dirt=dirt,
                    seed=seed,
                    fmt=fmt,
                    start=start,
                    now=now,
                    progress=progress,
                )
        except OSError as exc:
            raise OutputError(f"cannot write {out}: {exc.strerror}") from exc
    data = rows(kind, n, dirt=dirt, seed=seed, start=start, now=now)
    return write_rows(kind, data, out, fmt, progress)
