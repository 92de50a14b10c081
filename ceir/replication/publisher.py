"""The relay: the central register's change log -> the ``CEIR_CHANGES`` stream.

It runs beside the gRPC server (one relay per central site) and polls the log's head, so
changes committed by any process — the servers, ``ceir import``, ``ceir purge`` — are
published in commit order. Each message carries its log sequence as ``Nats-Msg-Id``
(a duplicate publish is dropped by the broker) and the stream sequence it expects to
follow as ``Nats-Expected-Last-Sequence`` (the relay is the only writer). When that
expectation fails, someone else published on the stream: the relay raises an alarm
(log line and counter), takes the stream as it is and carries on; replicas order by the
signed log sequence inside each message, so later changes still arrive. Whenever the
stream is behind the log (the broker lost its tail, the relay restarted, the broker was
away), the relay republishes from the log: the log, not the broker, is the truth.

A signed heart-beat with the head sequence goes out on ``ceir.heartbeat`` every half
second, so a replica can tell "caught up" from "stalled".

Retention: once a minute the relay trims the log of the entries older than
``--changes-keep-days`` that the stream has acknowledged (never the head entry, which
numbers the next change), then purges the stream below the log's new first entry, so the
log always holds at least what the stream holds and can republish any tail the broker
loses. A replica that needs a trimmed entry finds the stream starting past it and
re-bootstraps. When the stream is behind the log's first entry (the broker lost more
than the log still holds), the relay moves the stream's next sequence on to that entry
(a purge up to it), so stream sequence = log sequence still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceir.config import DEFAULT_CHANGES_KEEP_DAYS
from ceir.errors import RefusedMessageError
from ceir.replication import HEARTBEAT_SUBJECT, STREAM, SUBJECT, wire
from ceir.replication.broker import Broker, BrokerTask, ensure_stream
from ceir.store import Store, changes

__all__ = ["Relay"]

log = logging.getLogger("ceir.replication")

_WRONG_LAST_SEQUENCE = 10071  # JetStream's err_code for a failed expected-last-sequence
_WRONG_LAST_MSG_ID = 10070  # ... and for a failed expected-last-msg-id
_FOREIGN = (_WRONG_LAST_SEQUENCE, _WRONG_LAST_MSG_ID)
_ACK_TIMEOUT = 5.0
_BATCH = 64  # entries per publish window (each at most changes.MAX_ENTRY_BYTES)
_SCAN_BACK = 64  # how many of the stream's last messages a resync looks at


class _Resync(Exception):  # noqa: N818 - control flow inside the relay, never escapes
    """Look at the stream again before publishing more."""


class Relay(BrokerTask):
    """Publishes the change log of *store* on the broker until stopped."""

    task_name = "ceir-relay"

    def __init__(
        self,
        store: Store,
        broker: Broker,
        key: Ed25519PrivateKey,
        *,
        poll: float = 0.005,
        heartbeat: float = 0.5,
        check_every: float = 5.0,
        keep_days: float = DEFAULT_CHANGES_KEEP_DAYS,
        trim_every: float = 60.0,
    ) -> None:
        super().__init__()
        self.store = store
        self.broker = broker
        self.key = key
        self.public = key.public_key()
        self.poll = poll
        self.heartbeat = heartbeat
        self.check_every = check_every
        self.keep_ms = int(keep_days * 86_400_000)
        self.trim_every = min(trim_every, max(self.keep_ms / 1000, check_every))
        """How often to trim: a minute, more often when retention is that short (tests)."""
        self.trimmed = 0
        """Log entries trimmed so far."""
        self.published = 0
        """The last log sequence known to be on the stream."""
        self.stream_last = 0
        """The stream's last sequence, whoever published it."""
        self.alarms = 0
        self._foreign_seen = 0  # the highest stream sequence already alarmed as foreign
        self.republished = 0
        self._inbox = ""
        self._acks: dict[str, asyncio.Future[Any]] | None = None
        self._token = 0
        self._trimming: asyncio.Task[None] | None = None

    def describe(self) -> str:
        return f"publishing changes to {self.broker.url} (stream {STREAM})"

    async def _run(self) -> None:
        while self._nc is None:
            try:
                self._nc = await self.broker.connect("ceir-relay")
            except Exception as exc:  # noqa: BLE001 - broker away at start: keep trying
                log.warning(
                    "relay: cannot reach the broker %s (%s); retrying", self.broker.url, exc
                )
                await asyncio.sleep(1.0)
        js = self._nc.jetstream()
        while True:
            try:
                await self._resync(js)
                await self._relay(js)
            except _Resync:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - broker trouble: wait, look again
                log.warning("relay: %s: %s; retrying", type(exc).__name__, exc)
                await asyncio.sleep(0.5)

    async def _resync(self, js: Any) -> None:
        """Learn where the stream stands: its last sequence and our last message on it."""
        info = await ensure_stream(js, STREAM, SUBJECT)
        state = info.state
        head, _ = changes.head(self.store)
        # The highest signed sequence among the last messages: a replayed old message
        # verifies too, so the first one found is not enough.
        found = [0]
        foreign = []
        if state.messages:
            low = max(state.first_seq, state.last_seq - _SCAN_BACK + 1)
            for seq in range(state.last_seq, low - 1, -1):
                got = await self._ours(js, seq)
                if got == 0:
                    foreign.append(seq)
                found.append(got or 0)
        fresh = [seq for seq in foreign if seq > self._foreign_seen]
        if fresh:
            self._foreign_seen = max(fresh)
            self._alarm(f"{len(fresh)} message(s) up to sequence {self._foreign_seen}")
        ours = max(found)
        if not ours:  # empty (purged or new), or only others' messages: stream seq = log seq
            ours = min(state.last_seq, head)
        if ours < self.published:
            log.warning(
                "relay: the stream holds changes up to %d only, the log up to %d; republishing",
                ours,
                head,
            )
            self.republished += self.published - ours
        self.published = min(ours, head)
        self.stream_last = state.last_seq
        first = changes.first(self.store)
        if first > self.published + 1 and state.last_seq < first - 1:
            # The log no longer holds what the stream lacks (trimmed): start the stream at
            # the log's first entry, so stream sequence = log sequence; replicas behind it
            # find a gap and re-bootstrap.
            log.warning(
                "relay: the stream ends at %d and the log was trimmed up to %d; moving the "
                "stream on to %d (replicas behind it bootstrap again)",
                state.last_seq,
                first - 1,
                first,
            )
            await js.purge_stream(STREAM, seq=first)
            self.published = first - 1
            self.stream_last = first - 1

    async def _ours(self, js: Any, seq: int) -> int | None:
        """The log sequence of the relay's message at stream *seq*; 0 for a message the
        relay did not sign (foreign); None when the stream no longer holds *seq*."""
        from nats.js.errors import NotFoundError

        try:
            msg = await js.get_msg(STREAM, seq)
        except NotFoundError:
            return None
        try:
            return wire.open_change(self.public, msg.data or b"").seq
        except RefusedMessageError:
            return 0

    def _alarm(self, what: str) -> None:
        """Someone else published on the stream: said once for the foreign messages a look
        at the stream finds (after a refused publish or the periodic check)."""
        self.alarms += 1
        log.error(
            "ALARM relay: stream %s has a message the relay did not publish (%s); someone "
            "else can publish on the broker. Replicas refuse what does not verify; carrying on",
            STREAM,
            what,
        )

    async def _relay(self, js: Any) -> None:
        last_beat = last_check = last_trim = 0.0
        while True:
            head, head_ms = changes.head(self.store)
            if head > self.published:
                await self._publish(js, changes.entries(self.store, self.published, _BATCH))
                continue
            now = time.monotonic()
            if now - last_beat >= self.heartbeat:
                last_beat = now
                beat = wire.seal_heartbeat(self.key, head, head_ms, int(time.time() * 1000))
                await self._nc.publish(HEARTBEAT_SUBJECT, beat)
            if now - last_check >= self.check_every:
                last_check = now
                info = await js.stream_info(STREAM)
                if info.state.last_seq != self.stream_last:
                    log.warning(
                        "relay: stream last sequence is %d, expected %d; looking again",
                        info.state.last_seq,
                        self.stream_last,
                    )
                    raise _Resync
            if now - last_trim >= self.trim_every and self._idle_trimmer():
                last_trim = now
                self._trimming = asyncio.create_task(self._trim(js, self.published))
            await asyncio.sleep(self.poll)

    def _idle_trimmer(self) -> bool:
        return self._trimming is None or self._trimming.done()

    async def _trim(self, js: Any, published: int) -> None:
        """Trim the log up to *published* (what the stream acknowledged) by retention, then
        the stream below the log's new first entry. In its own task and thread: a write
        transaction may wait for an import's, and publishing must not."""
        before = int(time.time() * 1000) - self.keep_ms
        try:
            done = await asyncio.to_thread(
                changes.trim, self.store, below=published + 1, before_ms=before
            )
            if not done.entries:
                return
            self.trimmed += done.entries
            await js.purge_stream(STREAM, seq=done.first)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - trimming waits for the next round
            log.warning("relay: trimming the change log failed (%s); trying again later", exc)
            return
        log.info(
            "relay: trimmed %d change-log entries (%d bytes) older than %g days; the log "
            "and the stream now start at %d",
            done.entries,
            done.bytes,
            self.keep_ms / 86_400_000,
            done.first,
        )

    async def stop(self, grace: float | None = None) -> None:
        if self._trimming is not None:
            self._trimming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._trimming
        await super().stop(grace)

    async def _publish(self, js: Any, batch: list[changes.Entry]) -> None:
        """Publish *batch* as one window: every message sent, then the acks awaited in order.

        Each message expects the stream sequence its predecessor will get, and from the
        second on also that predecessor's ``Nats-Msg-Id`` as the stream's last, so none is
        stored unless the one before it was stored just before it: a foreign message (or a
        duplicate) anywhere in the window makes the rest of it fail, never leaves a hole.
        """
        from nats.js.errors import APIError

        if self._acks is None:
            await self._listen()
        sent: list[tuple[int, asyncio.Future[Any]]] = []
        expected = self.stream_last
        try:
            for entry in batch:
                headers = {
                    "Nats-Msg-Id": str(entry.seq),
                    "Nats-Expected-Last-Sequence": str(expected),
                }
                if sent:
                    headers["Nats-Expected-Last-Msg-Id"] = str(sent[-1][0])
                data = wire.seal_change(self.key, entry.seq, entry.committed_ms, entry.body)
                sent.append((entry.seq, await self._send(data, headers)))
                expected += 1
            for seq, pending in sent:
                try:
                    ack = await asyncio.wait_for(pending, timeout=_ACK_TIMEOUT)
                except TimeoutError:
                    raise TimeoutError(f"no ack for change {seq} in {_ACK_TIMEOUT:g} s") from None
                except APIError as exc:
                    if exc.err_code not in _FOREIGN:
                        raise
                    # Foreign messages follow stream_last: the look again finds them and
                    # says so once (the periodic check may have found them first).
                    log.info(
                        "relay: expected last sequence %d refused (%s); looking again",
                        self.stream_last,
                        exc.description,
                    )
                    raise _Resync from None
                self.published = seq
                if ack.duplicate:
                    # Already on the stream: the rest of the window expected one message
                    # more than there is, so it was refused; send it again from here.
                    return
                self.stream_last = ack.seq
        finally:
            for _, pending in sent:
                pending.cancel()  # no-op once resolved
            if self._acks is not None:
                self._acks.clear()  # one window at a time: a late ack finds nothing

    async def _listen(self) -> None:
        """Subscribe to this relay's own ack inbox (one per connection)."""
        self._inbox = self._nc.new_inbox()
        self._acks = {}
        await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_ack)

    async def _send(self, data: bytes, headers: dict[str, str]) -> asyncio.Future[Any]:
        """Publish one message to the stream; the future gets its ack (or its error).

        (nats-py's ``publish_async`` never resolves a refused publish, so not that.)
        """
        assert self._acks is not None
        self._token += 1
        token = str(self._token)
        pending: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._acks[token] = pending
        headers["Nats-Expected-Stream"] = STREAM
        await self._nc.publish(SUBJECT, data, reply=f"{self._inbox}.{token}", headers=headers)
        return pending

    async def _on_ack(self, msg: Any) -> None:
        import json

        from nats.js import api
        from nats.js.errors import APIError, NoStreamResponseError

        pending = (self._acks or {}).get(msg.subject.rsplit(".", 1)[-1])
        if pending is None or pending.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            pending.set_exception(NoStreamResponseError())
            return
        try:
            resp = json.loads(msg.data)
            if "error" in resp:
                APIError.from_error(resp["error"])  # always raises, as the right subclass
            pending.set_result(api.PubAck.from_response(resp))
        except APIError as exc:
            pending.set_exception(exc)
        except (ValueError, TypeError, KeyError) as exc:
            pending.set_exception(exc)
