"""Metrics every face records, in Prometheus form: one registry across worker processes.

``ceir serve`` gives its workers a private ``PROMETHEUS_MULTIPROC_DIR`` (wiped at start,
dead workers marked: :mod:`ceir.server.supervisor`) before this module is imported, so
``/metrics`` on any worker answers for all of them. Without that variable (a test's
in-process server) the metrics live in this process's default registry.

The API is a handful of functions the faces call (gRPC methods, N5g-eir, S13,
DeviceCheck, the web page); each caches its labelled child, so the hot path is one
dict lookup and the value writes (about 2.5 us per call in multi-process mode).
Label values are closed sets (faces, methods, statuses, reasons, operator ids):
never an IMEI, never a personal number.
"""

from __future__ import annotations

import collections
import enum
import os
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.exposition import generate_latest

from ceir.record import Reason, Status

__all__ = [
    "CONTENT_TYPE",
    "DropStage",
    "Face",
    "answer_tally",
    "approval",
    "enabled",
    "exposition",
    "import_rows",
    "imported",
    "rate_limited",
    "refused",
    "request",
    "set_build",
    "set_replica",
    "set_store",
    "sightings_dropped",
]

ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NO_OPERATOR = "-"
"""The operator label of calls made by anyone who is not an operator."""


class Face(enum.Enum):
    """The doors a request can come through."""

    GRPC = "grpc"
    N5G_EIR = "n5g-eir"
    S13 = "s13"
    DEVICE_CHECK = "device-check"
    WEB = "web"


class DropStage(enum.Enum):
    """Where a sighting can be dropped (bounded queues, never a delayed answer)."""

    HANDOFF = "handoff"
    """In a worker: its pending sightings full, or the recorder process away or behind."""
    RECORDER = "recorder"
    """In the recorder process: more received than it can write."""


# Latency buckets from 50 us (a cached lookup) to 2.5 s (a slow import call).
_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)

REQUEST_SECONDS = Histogram(
    "ceir_request_duration_seconds",
    "Time to answer one call, per face, method and calling operator (_count: calls).",
    ("face", "method", "operator"),
    buckets=_BUCKETS,
)
ANSWERS = Counter(
    "ceir_answers_total",
    "Devices answered, per face, equipment status and reason.",
    ("face", "status", "reason"),
)
BATCH_DEVICES = Counter(
    "ceir_batch_devices_total",
    "Devices answered inside batch and stream messages, per face and method.",
    ("face", "method"),
)
RATE_LIMITED = Counter(
    "ceir_rate_limited_total",
    "Calls refused by a per-client rate limit (429 / RESOURCE_EXHAUSTED).",
    ("face", "method"),
)
REFUSED = Counter(
    "ceir_refused_total",
    "Calls refused before they ran: unauthenticated, permission denied, invalid input.",
    ("face", "cause"),
)
IMPORT_ROWS = Counter(
    "ceir_import_rows_total",
    "Feed rows read by imports, per feed kind and outcome (accepted, or the reject reason).",
    ("kind", "outcome"),
)
IMPORTS = Counter(
    "ceir_imports_total",
    "Feed imports per kind and result (imported, staged, refused).",
    ("kind", "result"),
)
APPROVALS = Counter(
    "ceir_approvals_total",
    "Second-person decisions on staged imports (approved, rejected).",
    ("decision",),
)
REPLICA_APPLIED = Gauge(
    "ceir_replica_applied_sequence",
    "Last audit sequence number this replica has applied.",
    multiprocess_mode="livemostrecent",
)
REPLICA_HEAD = Gauge(
    "ceir_replica_head_sequence",
    "Newest audit sequence number the primary has published, as this replica last saw it.",
    multiprocess_mode="livemostrecent",
)
REPLICA_LAG = Gauge(
    "ceir_replica_lag_seconds",
    "Age of the newest change this replica has applied, relative to the primary's head.",
    multiprocess_mode="livemostrecent",
)
STORE_BYTES = Gauge(
    "ceir_store_size_bytes",
    "Bytes the store's data file takes on disk.",
    multiprocess_mode="livemostrecent",
)
STORE_MAP_BYTES = Gauge(
    "ceir_store_map_size_bytes",
    "The store's map size (address space).",
    multiprocess_mode="livemostrecent",
)
STORE_MAP_USED = Gauge(
    "ceir_store_map_used_ratio",
    "Fraction of the store's map in use (pages used / map pages).",
    multiprocess_mode="livemostrecent",
)
STORE_DEVICES = Gauge(
    "ceir_store_devices", "Devices in the register.", multiprocess_mode="livemostrecent"
)
SIGHTINGS_DROPPED = Counter(
    "ceir_sightings_dropped_total",
    "Sightings (IMSIs seen with a device) not recorded for clone detection, per stage.",
    ("stage",),
)

BUILD = Gauge(
    "ceir_build_info",
    "The running ceir version and the store's schema version (value 1).",
    ("version", "schema"),
    multiprocess_mode="livemax",
)

_request_children: dict[tuple[str, str, str], Any] = {}
_answer_children: dict[tuple[str, str, str], Any] = {}


def request(face: Face, method: str, operator: str, seconds: float) -> None:
    """One call through *face* to *method* by *operator* (MCC-MNC, or ``-``) took *seconds*."""
    key = (face.value, method, operator or NO_OPERATOR)
    child = _request_children.get(key)
    if child is None:
        child = _request_children[key] = REQUEST_SECONDS.labels(*key)
    child.observe(seconds)


def answer(face: Face, status: enum.Enum, reason: enum.Enum, count: int = 1) -> None:
    """*count* devices were answered *status* for *reason* through *face*."""
    key = (face.value, status.name, reason.name)
    child = _answer_children.get(key)
    if child is None:
        child = _answer_children[key] = ANSWERS.labels(*key)
    child.inc(count)


_code_children: dict[tuple[Face, int, int], Any] = {}


def answer_code(face: Face, status: int, reason: int, count: int = 1) -> None:
    """:func:`answer` for the wire numbers of :class:`~ceir.record.Status` and
    :class:`~ceir.record.Reason` (a response's fields), without building enums."""
    key = (face, status, reason)
    child = _code_children.get(key)
    if child is None:
        names = (face.value, Status(status).name, Reason(reason).name)
        child = _code_children[key] = ANSWERS.labels(*names)
    child.inc(count)


def answer_packed(face: Face, results: bytes) -> None:
    """Count CheckPacked's result bytes, ``(reason << 2) | status`` each."""
    for code, count in collections.Counter(results).items():
        answer_code(face, code & 3, code >> 2, count)


def answer_tally(face: Face, tally: Mapping[tuple[int, int], int]) -> None:
    """Count a batch's answers from its tally, (status, reason) wire numbers -> devices
    (:data:`ceir.lookup.Tally`): one increment per distinct pair, not per device."""
    for (status, reason), count in tally.items():
        answer_code(face, status, reason, count)


_batch_children: dict[tuple[Face, str], Any] = {}


def batch_devices(face: Face, method: str, count: int) -> None:
    """*count* devices answered in one batch or stream message, per method (their
    answers by status and reason go to :func:`answer_tally`)."""
    key = (face, method)
    child = _batch_children.get(key)
    if child is None:
        child = _batch_children[key] = BATCH_DEVICES.labels(face.value, method)
    child.inc(count)


def rate_limited(face: Face, method: str) -> None:
    RATE_LIMITED.labels(face.value, method).inc()


class Refusal(enum.Enum):
    """Why a call was refused before it ran."""

    UNAUTHENTICATED = "unauthenticated"
    REVOKED = "revoked"
    """A client certificate on the deny-list (``--cert-deny``)."""
    DENIED = "denied"
    INVALID = "invalid"


def refused(face: Face, cause: Refusal) -> None:
    REFUSED.labels(face.value, cause.value).inc()


def import_rows(kind: str, outcome: str, count: int) -> None:
    """*count* rows of a *kind* feed were accepted (``outcome="accepted"``) or rejected
    for the reason *outcome*."""
    if count:
        IMPORT_ROWS.labels(kind, outcome).inc(count)


class ImportResult(enum.Enum):
    IMPORTED = "imported"
    STAGED = "staged"
    REFUSED = "refused"


def imported(
    kind: str,
    result: ImportResult,
    accepted: int = 0,
    rejected: Mapping[str, int] | None = None,
) -> None:
    """One import of a *kind* feed ended *result*, with its rows' outcomes."""
    IMPORTS.labels(kind, result.value).inc()
    import_rows(kind, "accepted", accepted)
    for reason, count in (rejected or {}).items():
        import_rows(kind, reason, count)


class Decision(enum.Enum):
    APPROVED = "approved"
    REJECTED = "rejected"


def approval(decision: Decision) -> None:
    APPROVALS.labels(decision.value).inc()


def sightings_dropped(stage: DropStage, count: int) -> None:
    """*count* sightings dropped at *stage*."""
    SIGHTINGS_DROPPED.labels(stage.value).inc(count)


def set_replica(*, applied: int, head: int, lag_seconds: float) -> None:
    """For the replication follower: where it is, where the primary is, how far behind."""
    REPLICA_APPLIED.set(applied)
    REPLICA_HEAD.set(head)
    REPLICA_LAG.set(lag_seconds)


def set_store(*, size_bytes: int, map_bytes: int, used_ratio: float, devices: int) -> None:
    STORE_BYTES.set(size_bytes)
    STORE_MAP_BYTES.set(map_bytes)
    STORE_MAP_USED.set(used_ratio)
    STORE_DEVICES.set(devices)


def set_build(version: str, schema: int) -> None:
    BUILD.labels(version, str(schema)).set(1)


def _nothing(*args: object) -> None:
    """What a recording function does once metrics are off."""


_enabled = True


def enabled() -> bool:
    """Whether this process records metrics (a face skips counting work when not)."""
    return _enabled


def disable() -> None:
    """Record nothing from now on in this process (``ceir serve --no-metrics``: to
    measure what recording costs). ``/metrics`` still answers, with what it had."""
    global _enabled  # noqa: PLW0603 - one switch for the whole process, set once at start
    _enabled = False
    module = globals()
    for name in (
        "request",
        "answer",
        "answer_code",
        "answer_packed",
        "answer_tally",
        "batch_devices",
        "rate_limited",
        "refused",
        "sightings_dropped",
    ):
        module[name] = _nothing


def exposition() -> bytes:
    """The text format of every worker's metrics (or this process's, without a dir)."""
    if os.environ.get(ENV):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()
