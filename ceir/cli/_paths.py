"""Paths a command is given, checked before anything is written: one line, never a traceback."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ceir.config import DEFAULT_DB
from ceir.errors import OutputError, StoreError

F = TypeVar("F", bound=Callable[..., Any])


def create_option(fn: F) -> F:
    """Add ``--create`` to a command that writes to the store at ``--db``."""
    return click.option(
        "--create",
        is_flag=True,
        help=f"Make a new store if --db names none (the default {DEFAULT_DB} is always made): "
        "without it a mistyped --db is refused (exit 5), not silently a new empty store.",
    )(fn)


def require_store(db: Path, *, create: bool) -> None:
    """Refuse a --db that holds no store, unless *create* or it is the default path."""
    from ceir.store import exists

    if create or exists(db) or db == DEFAULT_DB:
        return
    if db.exists() and not db.is_dir():
        raise StoreError(f"{db} is a file, not a store directory: give --db a directory")
    raise StoreError(f"no ceir store at {db}; check --db, or give --create to make a new one")


def require_writable(path: Path, what: str, consequence: str) -> None:
    """Raise OutputError now if *path* cannot be written later (leaving no file behind)."""
    existed = path.exists()
    try:
        with path.open("a"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write {what} {path}: {exc.strerror}; {consequence}") from exc
    if not existed:
        with contextlib.suppress(OSError):
            path.unlink()
