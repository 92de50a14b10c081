"""A store held open by another process, as `ceir serve` holds it."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ceir.errors import StoreError
from ceir.store.backup import exclusive


@contextlib.contextmanager
def held_open(db: Path, timeout: float = 20.0) -> Iterator[None]:
    """Another Python process has *db* open (and `exclusive` refuses) inside the block."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"from ceir.store import open_store; s = open_store({str(db)!r}); input()"],
        stdin=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with exclusive(db):
                    pass
            except StoreError:
                break
            time.sleep(0.05)
        yield
    finally:
        holder.communicate(b"\n", timeout=timeout)
