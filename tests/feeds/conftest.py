"""Fixtures for feed tests: a temporary store that is always closed, and feed files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ceir.feeds import Kind
from ceir.feeds.base import Options
from ceir.feeds.importer import import_file
from ceir.feeds.summary import ImportSummary
from ceir.imei import check_digit
from ceir.store import Store, TacInfo, open_store

TAC = "35209900"
ACTOR = "test:tester"


def imei(serial: int, tac: str = TAC) -> str:
    """A valid 15-digit IMEI with *tac*."""
    body = f"{tac}{serial:06d}"
    return f"{body}{check_digit(body)}"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "db")
    s.put_tacs([TacInfo(TAC, "Nusantara", "N1", "Smartphone")])
    try:
        yield s
    finally:
        s.close()


Importer = Callable[..., ImportSummary]


@pytest.fixture
def run(store: Store, tmp_path: Path) -> Importer:
    """run(kind, text, name=..., **options) -> the summary of importing *text*."""
    counter = iter(range(1_000_000))

    def go(kind: str, text: str, name: str | None = None, **options: Any) -> ImportSummary:
        path = tmp_path / (name or f"feed{next(counter)}.csv")
        path.write_text(text, encoding="utf-8")
        return import_file(
            store,
            Kind(kind),
            path,
            actor=ACTOR,
            options=Options(**options),
            report=path.with_name(path.name + ".rejects.csv"),
        )

    return go


def csv_text(header: str, *rows: str) -> str:
    return "\n".join((header, *rows)) + "\n"
