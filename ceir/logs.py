"""Logging: ``--log-format text|json`` and the access log.

JSON lines carry ``time``, ``level``, ``logger``, ``event`` and, on access-log lines,
``request_id``, ``principal``, ``face``, ``method``, ``status`` and ``duration_ms``.
The access log (logger ``ceir.access_log``) has a line for every write and every refused
call; a flood of one kind of line (a client hammering past its rate limit) is cut to a
few lines a second, and the next line that gets through says how many were dropped.

Nothing here ever receives a personal number: callers pass principals' labels, method
names and statuses, never request fields.
"""

from __future__ import annotations

import enum
import json
import logging
import re
import secrets
import time
from typing import Any

ACCESS = logging.getLogger("ceir.access_log")

FIELDS = ("request_id", "principal", "face", "method", "status", "duration_ms", "suppressed")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class LogFormat(enum.Enum):
    TEXT = "text"
    JSON = "json"


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = record.exc_info[0].__name__
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


class _TextFormatter(logging.Formatter):
    """The classic line, with the access fields appended as ``key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = [f"{n}={record.__dict__[n]}" for n in FIELDS if record.__dict__.get(n) is not None]
        return f"{text} {' '.join(extra)}" if extra else text


def configure(level: str, fmt: LogFormat) -> None:
    """Set up the root logger for ``ceir serve``."""
    handler = logging.StreamHandler()
    if fmt is LogFormat.JSON:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def request_id(given: str | None) -> str:
    """The caller's ``x-request-id`` if it is a sane token, else a fresh one."""
    if given and _REQUEST_ID.fullmatch(given):
        return given
    return secrets.token_hex(8)


class _Flood:
    """A token bucket per kind of access line: *rate* lines a second, *burst* at once."""

    def __init__(self, rate: float = 10.0, burst: int = 50) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.buckets: dict[tuple[str, str], tuple[float, float, int]] = {}

    def admit(self, kind: tuple[str, str]) -> int | None:
        """None: drop this line; else how many lines of this kind were dropped before it."""
        now = time.monotonic()
        tokens, at, dropped = self.buckets.get(kind, (self.burst, now, 0))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self.buckets[kind] = (tokens, now, dropped + 1)
            return None
        if len(self.buckets) > 10_000:
            self.buckets.clear()
        self.buckets[kind] = (tokens - 1.0, now, 0)
        return dropped


_FLOOD = _Flood()


def access(
    event: str,
    *,
    face: str,
    method: str,
    status: str,
    principal: str,
    duration: float,
    request: str | None = None,
    level: int = logging.INFO,
) -> None:
    """One access-log line (dropped when its kind floods; see the module docstring)."""
    if not ACCESS.isEnabledFor(level):
        return
    dropped = _FLOOD.admit((face + method, status))
    if dropped is None:
        return
    ACCESS.log(
        level,
        event,
        extra={
            "request_id": request or secrets.token_hex(8),
            "principal": principal,
            "face": face,
            "method": method,
            "status": status,
            "duration_ms": round(duration * 1000, 3),
            "suppressed": dropped or None,
        },
    )
