"""The two-person rule for bulk writes: stage, then approve (or reject, or let expire).

An import that would add more new devices than the threshold is not applied: the file
is kept in the store's ``stages`` table with who submitted it. Lookups never read that
table, so a stage is invisible until a second principal — a different one, with the
ministry or admin role — approves it; then the import runs as the submitter's, and the
audit log's origin names both (``actor``: ``<stager> approved by <approver>``). A
rejected or expired stage is deleted: nothing of it ever reaches the devices; the audit
log records the decision (who, which file digest, how many devices), no row data.

Layout of ``stages``: 4-byte stage id + 4-byte part number -> part 0 is the JSON
description, parts 1.. are the file's bytes in 1 MiB pieces, encrypted (AES-256-GCM,
the stage id and part number as associated data) with a key kept *outside* the store,
in ``<db>.stage-key`` (mode 0600): a staged customs or visitor file holds personal
numbers, and neither the store file nor its backups may hold them in clear.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ceir.config import (
    DEFAULT_CHANNEL_DAILY_ABOVE,
    DEFAULT_CHANNEL_DAILY_LOST_STOLEN_ABOVE,
    DEFAULT_STAGE_ABOVE,
    DEFAULT_STAGE_LOST_STOLEN_ABOVE,
)
from ceir.errors import (
    ConfigError,
    FeedFormatError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    StageExpiredError,
    StageMismatchError,
    StoreError,
)
from ceir.feeds import Format, ImportState, Kind, StageState, eligibility, volume
from ceir.feeds.base import Options
from ceir.feeds.importer import ImportSummary, import_file
from ceir.feeds.sample import sample_rows
from ceir.feeds.source import private_copy
from ceir.security.principals import Principal, Role
from ceir.store import Store, audit
from ceir.store.env import spool_file, spool_path
from ceir.store.identity import tokenizer_for
from ceir.store.tables import Stages, Tables

__all__ = [
    "APPROVERS",
    "DEFAULT_STAGE_ABOVE",
    "DEFAULT_STAGE_LOST_STOLEN_ABOVE",
    "DEFAULT_STAGE_TTL",
    "Stage",
    "approve",
    "list_stages",
    "purge_expired",
    "reject",
    "submit",
]

DEFAULT_STAGE_TTL = 7 * 86_400
APPROVERS = frozenset({Role.MINISTRY, Role.ADMIN})
_PART = 1 << 20


@dataclass(frozen=True, slots=True)
class Stage:
    """A staged import."""

    id: int
    kind: Kind
    file: str
    digest: str
    format: Format
    staged_by: str
    rows: int
    new_devices: int
    created_at: int
    expires_at: int
    options: dict[str, Any]
    changes: int = 0
    """Devices whose answer the file changes (new ones included): what the threshold counts."""
    staged_person: str = ""
    """The person behind the stager's credential; the approver must be another person."""
    why: str = ""
    columns: list[str] = field(default_factory=list)
    sample: list[tuple[int, list[str]]] = field(default_factory=list)
    """A few rows as the approver sees them (:mod:`ceir.feeds.sample`): line, values."""
    """The rolling 24-hour count it would pass (:mod:`ceir.feeds.volume`); empty when the
    file alone passes its threshold."""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Stage:
        """The stage a ``stages`` record (JSON) describes."""
        sample = [(int(line), list(values)) for line, values in record.get("sample", [])]
        kind, fmt = Kind(record["kind"]), Format(record["format"])
        return cls(**{**record, "kind": kind, "format": fmt, "sample": sample})

    def option_texts(self) -> list[tuple[str, str]]:
        """The import's rules and thresholds as ``ceir import`` flags name them."""
        out = []
        for name, value in sorted(self.options.items()):
            if name == "cutoff" and isinstance(value, int):
                text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))
            else:
                text = "default" if value is None else str(value).lower()
            out.append((name.replace("_", "-"), text))
        return out

    def line(self) -> str:
        """What ``ceir import`` prints for a staged file."""
        until = time.strftime("%Y-%m-%d %H:%M", time.gmtime(self.expires_at))
        return (
            f"staged {self.kind} {self.file} as stage {self.id}: {self.rows:,} rows, "
            f"{self.new_devices:,} new devices"
            + (
                f", {self.changes - self.new_devices:,} changed"
                if self.changes > self.new_devices
                else ""
            )
            + (f" ({self.why})" if self.why else "")
            + "; nothing is written until a second principal (ministry or admin) runs "
            f"`ceir approve {self.id} --digest {self.digest}` (before {until} UTC)"
        )


def key_path(store: Store) -> Path:
    """Where the stage encryption key of *store* lives: beside the store, not in it."""
    return store.path.with_name(f"{store.path.name}.stage-key")


def _cipher(store: Store, *, create: bool) -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    path = key_path(store)
    if create and not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(AESGCM.generate_key(bit_length=256))
    try:
        return AESGCM(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot use the stage key {path}: {exc}") from exc


def submit(
    store: Store,
    kind: Kind,
    path: Path,
    *,
    actor: str,
    stage_above: int = DEFAULT_STAGE_ABOVE,
    stage_lost_stolen_above: int = DEFAULT_STAGE_LOST_STOLEN_ABOVE,
    channel_daily_above: int = DEFAULT_CHANNEL_DAILY_ABOVE,
    channel_daily_lost_stolen_above: int = DEFAULT_CHANNEL_DAILY_LOST_STOLEN_ABOVE,
    ttl: int = DEFAULT_STAGE_TTL,
    clock: Callable[[], float] = time.time,
    private: bool = False,
    person: str = "",
    **kwargs: Any,
) -> ImportSummary | Stage:
    """Import *path*, or stage it when it changes more than *stage_above* devices' answers
    (new devices, blocks, unblocks, upgrades; *stage_lost_stolen_above* for lost-stolen),
    or when it would take its principal (*person*, else *actor*) past that threshold, or
    its channel past *channel_daily_above*, within 24 hours (:mod:`ceir.feeds.volume`).

    The file is read from one private copy (*private*: *path* is one already), so the
    bytes staged are the bytes checked. *kwargs* go to
    :func:`ceir.feeds.importer.import_file` (fmt, options, report, name...).
    """
    if not private:
        with private_copy(store, path) as copy:
            kwargs.setdefault("name", path.name)
            return submit(
                store, kind, copy, actor=actor, stage_above=stage_above,
                stage_lost_stolen_above=stage_lost_stolen_above,
                channel_daily_above=channel_daily_above,
                channel_daily_lost_stolen_above=channel_daily_lost_stolen_above,
                ttl=ttl, clock=clock, private=True, person=person, **kwargs,
            )  # fmt: skip
    limits = volume.Limits(
        stage_above=stage_above,
        stage_lost_stolen_above=stage_lost_stolen_above,
        channel_daily_above=channel_daily_above,
        channel_daily_lost_stolen_above=channel_daily_lost_stolen_above,
    )
    who = volume.principal_key(actor, person)
    why: list[str] = []
    # The eligibility rules are the store's; the caller's options may only tighten them.
    rules = eligibility.read(store)
    given = kwargs.get("options")
    options = eligibility.options(rules) if given is None else eligibility.clamp(rules, given)
    kwargs["options"] = options
    above = limits.principal(kind)
    if above is not None and kind is Kind.OPERATOR_DUMP and rules.late(options.cutoff, clock()):
        above = 0  # any grandfathering at all needs a second principal
        why.append(
            f"grandfathering more than {rules.late_grandfathering_days} days after the cutoff "
            f"({eligibility.instant(options.cutoff)}) needs approval"
        )

    def admit(changes: int) -> bool:
        """Counted in the store's rolling window, in one write: two workers (or a worker
        and a local import) cannot both pass under the limit."""
        if changes <= 0:
            return True
        at = clock()
        why.append(store.write(lambda t: volume.admit(t, kind, who, changes, limits, at)))
        return not why[-1]

    summary = import_file(
        store,
        kind,
        path,
        actor=actor,
        clock=clock,
        stage_above=above,
        admit=admit,
        private=True,
        **kwargs,
    )
    if summary.state is not ImportState.NEEDS_APPROVAL:
        return summary
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != summary.digest:
        raise FeedFormatError(f"{summary.file} changed while it was checked; send it again")
    columns, sample = sample_rows(
        path, kind, summary.format, summary.rows, tokenizer_for(store), name=summary.file
    )
    now = int(clock())
    try:
        cipher = _cipher(store, create=True)
    except FileExistsError:  # another process created it just now
        cipher = _cipher(store, create=False)

    def put(tables: Tables) -> Stage:
        stage = Stage(
            id=tables.next_stage_id(),
            kind=kind,
            file=summary.file,
            digest=summary.digest,
            format=summary.format,
            staged_by=actor,
            staged_person=person,
            rows=summary.rows,
            new_devices=summary.added,
            changes=summary.added + summary.changed,
            created_at=now,
            expires_at=now + ttl,
            options=asdict(options),
            why="; ".join(w for w in why if w),
            columns=columns,
            sample=sample,
        )
        parts = []
        for i in range(0, max(len(data), 1), _PART):
            part = 1 + i // _PART
            nonce = os.urandom(12)
            aad = Stages.aad(stage.id, part)
            parts.append(nonce + cipher.encrypt(nonce, data[i : i + _PART], aad))
        tables.stages.put(stage.id, asdict(stage), parts)
        _record(tables, stage, StageState.STAGED, actor, now)
        return stage

    return store.write(put)


def _record(tables: Tables, stage: Stage, state: StageState, actor: str, now: int) -> None:
    """An origin in the audit log for a stage decision (no row data, no personal data)."""
    audit.new_origin(
        tables,
        {
            "kind": stage.kind,
            "file": stage.file,
            "digest": stage.digest,
            "actor": actor,
            "state": f"stage-{state}",
            "stage": stage.id,
            "new_devices": stage.new_devices,
            "started_at": now,
            "finished_at": now,
            "rows": stage.rows,
            "rows_done": 0,
        },
    )


def get(store: Store, stage_id: int) -> Stage:
    """Stage *stage_id*, or NotFoundError."""
    with store.snapshot() as tables:
        found = tables.stages.record(stage_id)
    if found is None:
        raise NotFoundError(f"there is no stage {stage_id} (approved, rejected or expired?)")
    return Stage.from_record(found)


def _stages(store: Store) -> list[Stage]:
    with store.snapshot() as tables:
        return [Stage.from_record(record) for record in tables.stages.records()]


def list_stages(store: Store, *, now: float | None = None) -> list[Stage]:
    """Stages not yet expired, oldest first."""
    at = time.time() if now is None else now
    return [stage for stage in _stages(store) if stage.expires_at > at]


def _drop(store: Store, stage: Stage, state: StageState, actor: str, now: int) -> None:
    def drop(tables: Tables) -> None:
        if tables.stages.record(stage.id) is not None:
            tables.stages.delete(stage.id)
            _record(tables, stage, state, actor, now)

    store.write(drop)


def approve(
    store: Store,
    stage_id: int,
    approver: Principal,
    *,
    digest: str,
    clock: Callable[[], float] = time.time,
    report: Path | None = None,
) -> tuple[Stage, ImportSummary]:
    """Apply stage *stage_id* on *approver*'s word; returns it and the import's summary.

    The approver must have the ministry or admin role, must not be the submitter, and
    must name the *digest* (hex SHA-256) of the stage it was shown: another digest is
    refused (StageMismatchError), so an approval can never reach a file it did not see.
    Approving again after a crash mid-approval finishes the same import (a no-op if it
    had completed).
    """
    stage = get(store, stage_id)
    now = int(clock())
    if approver.role not in APPROVERS:
        raise ForbiddenError("only a ministry or admin principal may approve a stage")
    stager = stage.staged_person or _name(stage.staged_by)
    if (
        approver.label == stage.staged_by
        or approver.name == _name(stage.staged_by)
        or approver.person_id == stager
    ):
        raise ForbiddenError(
            f"stage {stage_id} was submitted by {stage.staged_by}: a second, different "
            "principal must approve it"
        )
    _check_digest(stage, digest)
    if stage.expires_at <= now:
        _drop(store, stage, StageState.EXPIRED, approver.label, now)
        raise StageExpiredError(f"stage {stage_id} expired unapproved and has been dropped")
    data = _file_bytes(store, stage_id)
    if hashlib.sha256(data).hexdigest() != stage.digest:
        raise StoreError(
            f"stage {stage_id} does not match its digest {stage.digest[:12]}: the stage was "
            "altered; reject it"
        )
    # Decrypted into a nameless spool file inside the store's directory, never $TMPDIR.
    with spool_file(store) as f:
        f.write(data)
        f.flush()
        summary = import_file(
            store,
            stage.kind,
            spool_path(f),
            private=True,
            actor=f"{stage.staged_by} approved by {approver.label}",
            fmt=stage.format,
            options=eligibility.clamp(eligibility.read(store), Options(**stage.options)),
            clock=clock,
            report=report,
            name=stage.file,
        )
    _drop(store, stage, StageState.APPROVED, approver.label, now)
    return stage, summary


def _check_digest(stage: Stage, digest: str) -> None:
    named = digest.strip().lower()
    if not named:
        raise InvalidRequestError(
            f"name the digest of stage {stage.id} you were shown (ceir stages): "
            f"ceir approve {stage.id} --digest HEX"
        )
    if named != stage.digest:
        shown = named[:16] if all(c in "0123456789abcdef" for c in named) else "(not hex)"
        raise StageMismatchError(
            f"stage {stage.id} has digest {stage.digest[:16]}…, not {shown}: you were shown "
            "another file; look again with `ceir stages` (nothing was applied)"
        )


def reject(
    store: Store, stage_id: int, by: Principal, *, clock: Callable[[], float] = time.time
) -> Stage:
    """Drop stage *stage_id*: nothing of it reaches the register."""
    if by.role not in APPROVERS:
        raise ForbiddenError("only a ministry or admin principal may reject a stage")
    stage = get(store, stage_id)
    _drop(store, stage, StageState.REJECTED, by.label, int(clock()))
    return stage


def purge_expired(store: Store, *, now: float | None = None, actor: str = "purge") -> list[Stage]:
    """Drop every expired stage; returns them."""
    at = time.time() if now is None else now
    expired = [stage for stage in _stages(store) if stage.expires_at <= at]
    for stage in expired:
        _drop(store, stage, StageState.EXPIRED, actor, int(at))
    return expired


def _file_bytes(store: Store, stage_id: int) -> bytes:
    from cryptography.exceptions import InvalidTag

    cipher = _cipher(store, create=False)
    parts = []
    with store.snapshot() as tables:
        for part, sealed in tables.stages.parts(stage_id):
            try:
                parts.append(cipher.decrypt(sealed[:12], sealed[12:], Stages.aad(stage_id, part)))
            except InvalidTag as exc:
                raise ConfigError(
                    f"stage {stage_id} cannot be decrypted with {key_path(store)}: "
                    "wrong key or damaged stage"
                ) from exc
    return b"".join(parts)


def _name(label: str) -> str:
    """The name in a principal label ``role:name[@operator]``."""
    return label.partition(":")[2].partition("@")[0]
