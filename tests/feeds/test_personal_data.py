"""No clear personal number in the store file, the logs, the reports or any response."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ceir.feeds import Kind
from ceir.feeds.base import Options
from ceir.feeds.history import device_history
from ceir.feeds.importer import import_file
from ceir.imei import parse
from ceir.store import open_store

from .conftest import ACTOR, csv_text, imei

NIKS = ["3171012345678901", "3171019876543210"]
PASSPORTS = ["C4471234", "X9988776"]
MSISDNS = ["+6281234567890", "+6285599887766"]
IMSIS = ["510101234567890"]
CLEAR = [*NIKS, *PASSPORTS, *MSISDNS, *IMSIS]


def _feeds(tmp_path: Path) -> list[tuple[Kind, Path]]:
    files = {
        Kind.CUSTOMS: csv_text(
            "imei,declaration_no,id_type,id_number,arrival_date,channel,tax_paid",
            f"{imei(1)},BC-1,NIK,{NIKS[0]},2024-01-10,PASSENGER,true",
            f"{imei(2)},BC-2,NIK,{NIKS[0]},2024-01-10,PASSENGER,true",
            f"{imei(3)},BC-3,NIK,{NIKS[0]},2024-01-10,PASSENGER,true",  # over quota
            f"{imei(4)},BC-4,NIK,{NIKS[1]},2024-01-10,PASSENGER,false",  # unpaid
            f"{imei(5)},BC-5,PASSPORT,{PASSPORTS[0]},2024-02-10,SHIPMENT,true",
            f"3520990000,BC-6,PASSPORT,{PASSPORTS[1]},2024-02-10,SHIPMENT,true",  # bad IMEI
        ),
        Kind.VISITOR: csv_text(
            "imei,passport_number,registered_at,valid_until",
            f"{imei(10)},{PASSPORTS[0]},2024-01-01,2024-02-01",
            f"{imei(11)},{PASSPORTS[1]},2024-01-01,2024-12-01",  # too long
        ),
        Kind.OPERATOR_DUMP: csv_text(
            "imei,imsi,msisdn,first_seen",
            f"{imei(20)},{IMSIS[0]},{MSISDNS[0]},2019-01-01",
            f"{imei(21)},{IMSIS[0]},{MSISDNS[1]},2024-01-01",  # after the cutoff
        ),
    }
    out = []
    for kind, text in files.items():
        path = tmp_path / f"{kind.value}.csv"
        path.write_text(text)
        out.append((kind, path))
    return out


def test_no_clear_personal_number_anywhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Import feeds holding personal numbers; grep the LMDB file, logs, reports, summaries
    and device histories for them: none is found, but the devices are registered."""
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with open_store(tmp_path / "db") as store:
        for kind, path in _feeds(tmp_path):
            report = tmp_path / f"{kind.value}.rejects.csv"
            summary = import_file(
                store, kind, path, actor=ACTOR, options=Options(max_bad_ratio=1), report=report
            )
            texts += [repr(summary), summary.line(), report.read_text()]
            assert summary.accepted >= 1
        for serial in (1, 2, 5, 10, 20):
            history = device_history(store, parse(imei(serial)))
            texts += ["\n".join(history.lines()), repr(history)]
            assert history.record is not None
        assert "tok_" in "".join(texts)
    data = b"".join(p.read_bytes() for p in (tmp_path / "db").iterdir() if p.is_file())
    texts.append(caplog.text)
    for value in CLEAR:
        assert value.encode() not in data, value
        assert value.lstrip("+").encode() not in data, value
        for text in texts:
            assert value not in text, value
