"""The gRPC ``Registry`` servicer: feed files, single registrations, lost/stolen reports
and a device's full record, through the same importer as ``ceir import``.

Handlers keep the proto's PascalCase names and raise domain errors, which
:mod:`ceir.server.app` translates. Single writes run in a worker thread, so lookups on the
event loop go on meanwhile; a fed file is imported in a child process
(:mod:`ceir.server.imports`). Who asks is the *actor* function's answer for the call
(the peer address by default; the authenticated principal when access control is on).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from ceir import metrics
from ceir.clones import actions
from ceir.clones.conditions import DEFAULT_GRACE_DAYS
from ceir.config import (
    DEFAULT_CHANNEL_DAILY_ABOVE,
    DEFAULT_CHANNEL_DAILY_LOST_STOLEN_ABOVE,
    DEFAULT_STAGE_LOST_STOLEN_ABOVE,
)
from ceir.errors import (
    FeedRefusedError,
    InvalidRequestError,
    LimitError,
    NotFoundError,
)
from ceir.feeds import Format, ImportState, Kind, eligibility, volume
from ceir.feeds.base import Options
from ceir.feeds.history import HistoryEntry, device_history
from ceir.feeds.single import OneChange, apply_one
from ceir.feeds.staging import Stage
from ceir.feeds.summary import ImportSummary
from ceir.imei import parse, parse_lenient
from ceir.policy import Policy
from ceir.record import Record
from ceir.security.principals import Role, current
from ceir.server.imports import Imports, Job
from ceir.store import Store, audit
from ceir.store.env import spool_file
from ceir.store.identity import tokenizer_for
from ceir.v1 import common_pb2, registry_pb2, registry_pb2_grpc

__all__ = ["MAX_IMPORT_BYTES", "Registry", "peer_actor"]

log = logging.getLogger("ceir.server.registry")

MAX_IMPORT_BYTES = 8 << 30
"""Largest feed file ImportFeed accepts (8 GiB)."""
MAX_FILENAME = 255
MAX_REQUEST_ID = 128
IMPORT_WORKERS = 2
"""Import processes a serving process runs at once (imports of different principals run
side by side; more wait for a free one)."""
IMPORT_BATCH_ROWS = 2_000
"""Rows per write transaction of a served import: a single write waits for LMDB's one
writer, so a batch is kept short (a 250,000-row batch held ReportLostStolen for 3 s)."""


def checked_text(value: str, name: str, limit: int) -> str:
    """*value* if it is printable and at most *limit* characters; else InvalidRequestError.

    A request id or file name is written to the audit log and the server log: a newline
    or an escape sequence in it would forge a line there."""
    if len(value) > limit:
        raise InvalidRequestError(f"{name} is longer than {limit} characters")
    if not value.isprintable():
        raise InvalidRequestError(f"{name} contains control characters")
    return value


# The proto's enums name the Python ones: FEED_KIND_<Kind.name>, FEED_FORMAT_<Format.name>,
# HISTORY_ACTION_<Action.name>. A member missing on either side fails at import.
FEED_KINDS = {kind: registry_pb2.FeedKind.Value(f"FEED_KIND_{kind.name}") for kind in Kind}
FEED_FORMATS = {f: registry_pb2.FeedFormat.Value(f"FEED_FORMAT_{f.name}") for f in Format}
HISTORY_ACTIONS = {
    a: registry_pb2.HistoryAction.Value(f"HISTORY_ACTION_{a.name}") for a in audit.Action
}
_KINDS = {value: kind for kind, value in FEED_KINDS.items()}
_FORMATS: dict[int, Format | None] = {
    registry_pb2.FEED_FORMAT_AUTO: None,
    **{value: fmt for fmt, value in FEED_FORMATS.items()},
}
_STATES = {
    ImportState.DONE: registry_pb2.IMPORT_STATE_DONE,
    ImportState.ALREADY_IMPORTED: registry_pb2.IMPORT_STATE_ALREADY_IMPORTED,
    ImportState.REFUSED: registry_pb2.IMPORT_STATE_REFUSED,
    ImportState.NEEDS_APPROVAL: registry_pb2.IMPORT_STATE_STAGED,
}


def peer_actor(context: Any) -> str:
    """The caller as the audit log names it without access control: its peer address."""
    return f"grpc:{context.peer()}"


def _kind(value: registry_pb2.FeedKind.ValueType) -> Kind:
    kind = _KINDS.get(value)
    if kind is None:
        raise InvalidRequestError("kind is missing or unknown; set a FeedKind")
    return kind


def _record(record: Record | None) -> registry_pb2.DeviceRecord:
    out = registry_pb2.DeviceRecord(present=record is not None)
    if record is not None:
        out.reason = common_pb2.Reason.ValueType(record.reason)
        out.source = common_pb2.Source.ValueType(record.source)
        out.lost_stolen = record.lost_stolen
        if record.registered_at:
            out.registered_at.seconds = record.registered_at
        if record.expires_at:
            out.expires_at.seconds = record.expires_at
    return out


def _staged(stage: Stage) -> registry_pb2.ImportFeedResponse:
    return registry_pb2.ImportFeedResponse(
        state=registry_pb2.IMPORT_STATE_STAGED,
        digest=stage.digest,
        format=FEED_FORMATS[stage.format],
        rows=stage.rows,
        added=stage.new_devices,
        message=stage.line(),
        stage_id=stage.id,
    )


def _summary(s: ImportSummary) -> registry_pb2.ImportFeedResponse:
    return registry_pb2.ImportFeedResponse(
        state=_STATES[s.state],
        import_id=s.origin,
        digest=s.digest,
        format=FEED_FORMATS[s.format],
        rows=s.rows,
        added=s.added,
        changed=s.changed,
        unchanged=s.unchanged,
        rejected=s.rejected_total,
        rejected_by_reason=s.rejected,
        first_rejects=[
            registry_pb2.Reject(
                line=r.line, field=r.field, reason=r.reason, message=r.message, fix=r.fix
            )
            for r in s.first_rejects
        ],
        warnings=s.warnings,
        elapsed_seconds=s.elapsed,
        message=s.message,
    )


def _history(h: HistoryEntry) -> registry_pb2.HistoryEntry:
    e = h.entry
    out = registry_pb2.HistoryEntry(
        seq=e.seq,
        action=HISTORY_ACTIONS[e.action],
        before=_record(e.old),
        after=_record(e.new),
        actor=h.actor,
        import_id=e.origin,
        file=str(h.origin.get("file", "")),
        line=e.line,
        request=str(h.origin.get("request", "")),
    )
    out.at.seconds = e.at
    return out


class Registry(registry_pb2_grpc.RegistryServicer):
    """Writes to the register and reads a device's full record."""

    def __init__(
        self,
        store: Store,
        policy: Policy,
        *,
        actor: Callable[[Any], str] = peer_actor,
        max_import_bytes: int = MAX_IMPORT_BYTES,
        allow: Callable[[Kind], None] = lambda kind: None,
        stage_above: int = 0,
        stage_lost_stolen_above: int = DEFAULT_STAGE_LOST_STOLEN_ABOVE,
        channel_daily_above: int = DEFAULT_CHANNEL_DAILY_ABOVE,
        channel_daily_lost_stolen_above: int = DEFAULT_CHANNEL_DAILY_LOST_STOLEN_ABOVE,
        import_workers: int = IMPORT_WORKERS,
        import_batch_rows: int = IMPORT_BATCH_ROWS,
    ) -> None:
        self.store = store
        self.policy = policy
        self.actor = actor
        self.max_import_bytes = max_import_bytes
        self.allow = allow
        """Raises ForbiddenError when the caller may not write *kind* (ceir.server.access)."""
        self.stage_above = stage_above
        """Two-person rule: files changing more devices' answers are staged (0: never)."""
        self.stage_lost_stolen_above = stage_lost_stolen_above
        """The same for lost-stolen files, whose blocks cut phones off (0: never)."""
        self.limits = volume.Limits(
            stage_above=stage_above,
            stage_lost_stolen_above=stage_lost_stolen_above,
            channel_daily_above=channel_daily_above,
            channel_daily_lost_stolen_above=channel_daily_lost_stolen_above,
        )
        """The same thresholds bound a principal over 24 hours, files and single writes
        together, and the channel limits every principal of a channel (ceir.feeds.volume)."""
        self.imports = Imports(import_workers)
        """Served imports run in child processes (:mod:`ceir.server.imports`)."""
        self.import_batch_rows = import_batch_rows
        self._importing: set[str] = set()
        """Principals (actors) with an import running: one at a time each."""

    async def close(self) -> None:
        """Kill the running imports' processes (the server is stopping)."""
        await self.imports.close()

    async def ImportFeed(
        self, request_iterator: AsyncIterator[registry_pb2.ImportFeedRequest], context: Any
    ) -> registry_pb2.ImportFeedResponse:
        actor = self.actor(context)
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("header"):
            raise InvalidRequestError("the first ImportFeed message must carry the header")
        header = first.header
        kind = _kind(header.kind)
        self.allow(kind)
        name = Path(checked_text(header.filename, "filename", MAX_FILENAME)).name
        name = name or f"{kind.value}-feed"
        if actor in self._importing:
            raise LimitError("this principal already has an import running; wait for it to finish")
        self._importing.add(actor)
        try:
            # The upload goes to a nameless file in the store's own spool (0700), never
            # to $TMPDIR: a killed import leaves no clear-text personal numbers behind.
            with spool_file(self.store) as f:
                size = 0
                async for message in request_iterator:
                    if message.HasField("header"):
                        raise InvalidRequestError("only the first message may carry a header")
                    size += len(message.chunk)
                    if size > self.max_import_bytes:
                        raise LimitError(
                            f"feed file is larger than {self.max_import_bytes:,} bytes"
                        )
                    f.write(message.chunk)
                f.flush()
                return await self._submit(f, kind, actor, name, header)
        finally:
            self._importing.discard(actor)

    async def _submit(
        self, f: Any, kind: Kind, actor: str, name: str, header: registry_pb2.ImportHeader
    ) -> registry_pb2.ImportFeedResponse:
        job = Job(
            db=str(self.store.path),
            kind=kind,
            fd=f.fileno(),
            actor=actor,
            name=name,
            person=current().person_id,
            fmt=_FORMATS.get(header.format),
            # The store's eligibility rules (a caller sends none: they are policy).
            options=eligibility.options(
                eligibility.read(self.store), Options(batch_rows=self.import_batch_rows)
            ),
            stage_above=self.stage_above,
            stage_lost_stolen_above=self.stage_lost_stolen_above,
            channel_daily_above=self.limits.channel_daily_above,
            channel_daily_lost_stolen_above=self.limits.channel_daily_lost_stolen_above,
        )
        try:
            # In a child process: the serving process's interpreter stays with the calls
            # it serves, so single writes and lookups keep their latency meanwhile.
            result = await self.imports.run(job, f)
        except FeedRefusedError as exc:
            refused: Any = exc.summary
            log.warning("ImportFeed from %s: %s", actor, exc)
            metrics.imported(kind.value, metrics.ImportResult.REFUSED, rejected=refused.rejected)
            return _summary(refused)
        if isinstance(result, Stage):
            log.info("ImportFeed from %s: staged as %s", actor, result.id)
            metrics.imported(kind.value, metrics.ImportResult.STAGED)
            return _staged(result)
        log.info("ImportFeed from %s: %s", actor, result.line())
        metrics.imported(
            kind.value,
            metrics.ImportResult.IMPORTED,
            accepted=result.added + result.changed + result.unchanged,
            rejected=result.rejected,
        )
        return _summary(result)

    async def _apply(
        self, context: Any, kind: Kind, fields: dict[str, str], request: str
    ) -> registry_pb2.DeviceChange:
        self.allow(kind)
        call = functools.partial(
            apply_one, self.store, kind, fields, actor=self.actor(context), request=request,
            limits=self.limits, person=current().person_id,
        )  # fmt: skip
        change: OneChange = await asyncio.to_thread(call)
        decision = self.policy.decide(change.after, time.time())
        if change.unchanged:
            outcome = registry_pb2.CHANGE_OUTCOME_UNCHANGED
        elif change.added:
            outcome = registry_pb2.CHANGE_OUTCOME_ADDED
        else:
            outcome = registry_pb2.CHANGE_OUTCOME_CHANGED
        return registry_pb2.DeviceChange(
            imei=change.imei.canonical,
            outcome=outcome,
            before=_record(change.before),
            after=_record(change.after),
            status=common_pb2.EquipmentStatus.ValueType(decision.status),
            reason=common_pb2.Reason.ValueType(decision.reason),
            audit_seq=change.audit_seq,
        )

    async def Register(
        self, request: registry_pb2.RegisterRequest, context: Any
    ) -> registry_pb2.DeviceChange:
        kind = _kind(request.kind)
        request_id = checked_text(request.request_id, "request_id", MAX_REQUEST_ID)
        return await self._apply(
            context, kind, dict(request.fields), f"Register {request_id}".strip()
        )

    def _lost_stolen(self, request: registry_pb2.LostStolenRequest, action: str) -> dict[str, str]:
        seconds = request.reported_at.seconds if request.HasField("reported_at") else time.time()
        reported = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(seconds))
        return {
            "imei": request.imei,
            "report_ref": request.report_ref,
            "action": action,
            "reported_at": reported,
        }

    async def ReportLostStolen(
        self, request: registry_pb2.LostStolenRequest, context: Any
    ) -> registry_pb2.DeviceChange:
        fields = self._lost_stolen(request, "BLOCK")
        request_id = checked_text(request.request_id, "request_id", MAX_REQUEST_ID)
        name = f"ReportLostStolen {request_id}".strip()
        return await self._apply(context, Kind.LOST_STOLEN, fields, name)

    async def ClearLostStolen(
        self, request: registry_pb2.LostStolenRequest, context: Any
    ) -> registry_pb2.DeviceChange:
        fields = self._lost_stolen(request, "UNBLOCK")
        request_id = checked_text(request.request_id, "request_id", MAX_REQUEST_ID)
        name = f"ClearLostStolen {request_id}".strip()
        return await self._apply(context, Kind.LOST_STOLEN, fields, name)

    async def GetDevice(
        self, request: registry_pb2.GetDeviceRequest, context: Any
    ) -> registry_pb2.Device:
        imei = parse_lenient(request.imei)
        history = device_history(self.store, imei, self.policy)
        if history.record is None and not history.entries:
            raise NotFoundError(f"the register holds nothing for IMEI {imei.canonical}")
        d = history.decision
        device = registry_pb2.Device(
            imei=imei.canonical,
            tac=imei.tac,
            status=common_pb2.EquipmentStatus.ValueType(d.status),
            reason=common_pb2.Reason.ValueType(d.reason),
            source=common_pb2.Source.ValueType(d.source),
            state=_record(history.record),
            history=[_history(h) for h in history.entries],
        )
        for kind, values in history.details.items():
            device.details[kind].fields.update(values)
        info = self.store.tac(imei.tac)
        if info is not None:
            device.brand, device.model, device.device_type = (
                info.brand,
                info.model,
                info.device_type,
            )
        return device

    # -- clone pairing (ceir.clones.actions, the same calls as `ceir clones`) ----------

    async def _clone_change(
        self, context: Any, imei: str, call: Callable[[bytes, str, Role, int], bool]
    ) -> registry_pb2.CloneChange:
        parsed = parse(imei)
        actor, role = self.actor(context), current().role
        now = int(time.time())

        def run() -> tuple[bool, actions.Standing]:
            changed = call(parsed.key, actor, role, now)
            return changed, actions.standing(self.store, parsed.key)

        changed, after = await asyncio.to_thread(run)
        out = registry_pb2.CloneChange(imei=parsed.canonical, changed=changed, pairs=after.pairs)
        if after.state is not None:
            out.state = registry_pb2.CloneState.ValueType(after.state)
        if after.record is not None:
            d = self.policy.decide(after.record, now)
            out.status = common_pb2.EquipmentStatus.ValueType(d.status)
            out.reason = common_pb2.Reason.ValueType(d.reason)
        return out

    async def _pairing(
        self, request: registry_pb2.PairRequest, context: Any, *, remove: bool
    ) -> registry_pb2.CloneChange:
        name = "UnpairDevice" if remove else "PairDevice"
        what = f"{name} {checked_text(request.request_id, 'request_id', MAX_REQUEST_ID)}"
        which = request.WhichOneof("sim")
        imsi = request.imsi if which == "imsi" else None
        token = request.token if which == "token" else None
        principal = current()
        token_operator = request.token_operator
        if principal.role is Role.OPERATOR:
            token_operator = token_operator or principal.operator_id
            actions.own_sim(principal.operator_id, imsi=imsi, token_operator=token_operator)
        sim = actions.SimRef.of(
            tokenizer_for(self.store), imsi=imsi, token=token, operator=token_operator
        )

        def call(key: bytes, actor: str, role: Role, now: int) -> bool:
            return actions.pair(
                self.store, key, sim, actor=actor, role=role, now=now, remove=remove,
                request=what.strip(),
            )  # fmt: skip

        return await self._clone_change(context, request.imei, call)

    async def PairDevice(
        self, request: registry_pb2.PairRequest, context: Any
    ) -> registry_pb2.CloneChange:
        return await self._pairing(request, context, remove=False)

    async def UnpairDevice(
        self, request: registry_pb2.PairRequest, context: Any
    ) -> registry_pb2.CloneChange:
        return await self._pairing(request, context, remove=True)

    async def ClearClone(
        self, request: registry_pb2.CloneRequest, context: Any
    ) -> registry_pb2.CloneChange:
        what = f"ClearClone {checked_text(request.request_id, 'request_id', MAX_REQUEST_ID)}"

        def call(key: bytes, actor: str, role: Role, now: int) -> bool:
            return actions.clear(
                self.store, key, actor=actor, role=role, now=now, request=what.strip()
            )

        return await self._clone_change(context, request.imei, call)

    async def GreylistDevice(
        self, request: registry_pb2.GreylistRequest, context: Any
    ) -> registry_pb2.CloneChange:
        what = f"GreylistDevice {checked_text(request.request_id, 'request_id', MAX_REQUEST_ID)}"
        grace = request.grace_days if request.HasField("grace_days") else DEFAULT_GRACE_DAYS

        def call(key: bytes, actor: str, role: Role, now: int) -> bool:
            return actions.greylist(
                self.store, key, actor=actor, role=role, now=now, grace_days=grace,
                request=what.strip(),
            )  # fmt: skip

        return await self._clone_change(context, request.imei, call)
