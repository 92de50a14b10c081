"""The operator client: what an EIR node uses to ask ceir about each attach.

``await client.check(imei, imsi=...)`` asks about one IMEI. Concurrent calls are
coalesced: they wait (at most ``max_delay`` seconds, or until ``max_batch`` IMEIs are
waiting) and go out together as one message on a long-lived ``CheckIMEIStream``, so one
node gets batch throughput from per-attach calls. Answers come back in order on the same
stream and are handed to their callers.

- Deadlines: every IMEI gets an answer or a :class:`~ceir.errors.DeadlineError` within
  ``timeout`` seconds of being asked (or the ``timeout`` given to :meth:`Client.check`).
  A stream that lets a message pass its deadline is taken for stalled and replaced.
- Reconnects: when the stream breaks (server restart, network), the messages it had not
  answered are sent again on a new stream (a lookup is a read, so repeating it is safe),
  with a backoff, at most ``retries`` times per message; then
  :class:`~ceir.errors.UnavailableError`.
- Clear errors: every failure is a :class:`~ceir.errors.RemoteError` subclass that names
  the server and the gRPC status.

:meth:`Client.submit` is the callback form for load generators (no task or future per
IMEI); :meth:`Client.check_unary` and :meth:`Client.check_batch` make one plain RPC.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import grpc

from ceir.errors import (
    CeirError,
    ClientClosedError,
    DeadlineError,
    RejectedError,
    RemoteError,
    UnavailableError,
)
from ceir.v1 import eir_pb2

__all__ = ["Callback", "Client"]

Response = eir_pb2.CheckIMEIResponse
Callback = Callable[[Response | None, CeirError | None], None]
"""Called once per submitted IMEI: ``(response, None)`` or ``(None, error)``."""

_SERVICE = "/ceir.v1.EquipmentIdentityRegister/"
_REJECTED = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)
MAX_BATCH = 10_000  # the server's limit per message


def _error(exc: grpc.RpcError, address: str) -> RemoteError:
    code = exc.code()
    text = f"ceir at {address} answered {code.name}: {exc.details()}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineError(text)
    if code in _REJECTED:
        return RejectedError(text)
    return UnavailableError(text)


class _Batch:
    """One stream message: the callbacks of its IMEIs and its deadline."""

    __slots__ = ("attempts", "callbacks", "deadline", "message")

    def __init__(self, message: bytes, callbacks: list[Callback], deadline: float) -> None:
        self.message = message
        self.callbacks = callbacks
        self.deadline = deadline
        self.attempts = 0

    def absorb(self, other: _Batch) -> None:
        """Take *other*'s IMEIs into this message (protobuf repeated fields concatenate)."""
        self.message += other.message
        self.callbacks += other.callbacks
        self.deadline = min(self.deadline, other.deadline)
        self.attempts = max(self.attempts, other.attempts)

    def fail(self, error: CeirError) -> None:
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback(None, error)

    def deliver(self, response: eir_pb2.CheckIMEIBatchResponse, address: str) -> None:
        callbacks, self.callbacks = self.callbacks, []
        if not callbacks:  # already expired
            return
        answers = response.responses
        if len(answers) != len(callbacks):
            error = UnavailableError(
                f"ceir at {address} sent {len(answers)} answers for {len(callbacks)} IMEIs"
            )
            for callback in callbacks:
                callback(None, error)
            return
        for callback, answer in zip(callbacks, answers, strict=True):
            callback(answer, None)


class Client:
    """An async ceir client for one operator EIR node. Use as ``async with Client(...)``."""

    def __init__(
        self,
        address: str,
        *,
        max_batch: int = 1000,
        max_delay: float = 0.001,
        timeout: float = 2.0,
        retries: int = 3,
        credentials: Any = None,
        metadata: Sequence[tuple[str, str]] = (),
        options: Iterable[tuple[str, Any]] = (),
    ) -> None:
        if not 1 <= max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch {max_batch} must be between 1 and {MAX_BATCH}")
        if max_delay < 0 or timeout <= 0 or retries < 0:
            raise ValueError("max_delay and retries must be >= 0, timeout > 0")
        self.address = address
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.timeout = timeout
        self.retries = retries
        self._credentials = credentials
        self._metadata = tuple(metadata) or None
        self._options = list(options)
        self._channel: Any = None
        self._unary: Any = None
        self._batch: Any = None
        self._pending = eir_pb2.CheckIMEIBatchRequest()
        self._pending_callbacks: list[Callback] = []
        self._timer: asyncio.TimerHandle | None = None
        self._outbox: collections.deque[_Batch] = collections.deque()
        self._inflight: collections.deque[_Batch] = collections.deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._call: Any = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- life ------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the channel and start the stream (connection happens in the background)."""
        if self._channel is not None:
            return
        if self._credentials is None:
            self._channel = grpc.aio.insecure_channel(self.address, options=self._options)
        else:
            self._channel = grpc.aio.secure_channel(
                self.address, self._credentials, options=self._options
            )
        self._loop = asyncio.get_running_loop()
        self._stream = self._channel.stream_stream(
            _SERVICE + "CheckIMEIStream",
            request_serializer=None,  # messages are serialized when flushed
            response_deserializer=eir_pb2.CheckIMEIBatchResponse.FromString,
        )
        self._unary = self._channel.unary_unary(
            _SERVICE + "CheckIMEI",
            request_serializer=eir_pb2.CheckIMEIRequest.SerializeToString,
            response_deserializer=Response.FromString,
        )
        self._batch = self._channel.unary_unary(
            _SERVICE + "CheckIMEIBatch",
            request_serializer=eir_pb2.CheckIMEIBatchRequest.SerializeToString,
            response_deserializer=eir_pb2.CheckIMEIBatchResponse.FromString,
        )
        self._tasks = [
            asyncio.ensure_future(self._supervise()),
            asyncio.ensure_future(self._watch_deadlines()),
        ]

    async def close(self) -> None:
        """Fail what is still waiting with ClientClosedError and close the channel."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        error = ClientClosedError(f"client for ceir at {self.address} was closed")
        self._flush()
        for batch in (*self._inflight, *self._outbox):
            batch.fail(error)
        self._inflight.clear()
        self._outbox.clear()
        if self._call is not None:
            self._call.cancel()
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._channel is not None:
            await self._channel.close()

    # -- the coalesced stream --------------------------------------------------------

    def submit(
        self,
        callback: Callback,
        imei: str,
        imsi: str = "",
        msisdn: str = "",
        request_id: str = "",
    ) -> None:
        """Queue one IMEI; *callback* gets its answer or error (from the event loop)."""
        if self._closed or self._loop is None:
            callback(None, ClientClosedError(f"client for ceir at {self.address} is not open"))
            return
        if msisdn or request_id:
            self._pending.requests.add(imei=imei, imsi=imsi, msisdn=msisdn, request_id=request_id)
        else:
            self._pending.requests.add(imei=imei, imsi=imsi)
        self._pending_callbacks.append(callback)
        if len(self._pending_callbacks) >= self.max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = self._loop.call_later(self.max_delay, self._flush)

    async def check(
        self,
        imei: str,
        *,
        imsi: str = "",
        msisdn: str = "",
        request_id: str = "",
        timeout: float | None = None,
    ) -> Response:
        """The answer for one IMEI, coalesced with concurrent calls. Raises RemoteError."""
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[Response] = loop.create_future()

        def done(response: Response | None, error: CeirError | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(response)  # type: ignore[arg-type]

        self.submit(done, imei, imsi, msisdn, request_id)
        if timeout is None:
            return await future
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise DeadlineError(
                f"no answer from ceir at {self.address} within {timeout:g} s"
            ) from None

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending_callbacks:
            return
        assert self._loop is not None
        message = self._pending.SerializeToString()
        batch = _Batch(message, self._pending_callbacks, self._loop.time() + self.timeout)
        self._pending = eir_pb2.CheckIMEIBatchRequest()
        self._pending_callbacks = []
        self._outbox.append(batch)
        self._wake.set()

    async def _supervise(self) -> None:
        """Keep one stream open: write flushed batches, read answers, reconnect on failure."""
        backoff = 0.05
        while not self._closed:
            call = self._stream(metadata=self._metadata, wait_for_ready=True)
            self._call = call
            reader = asyncio.ensure_future(self._read(call))
            reader.add_done_callback(lambda _task: self._wake.set())
            error: RemoteError = UnavailableError(f"ceir at {self.address} ended the stream")
            try:
                await self._write(call, reader)
                await reader
            except grpc.RpcError as exc:
                error = _error(exc, self.address)
            except RemoteError as exc:
                error = exc
            except asyncio.InvalidStateError:
                pass  # written to a call that had ended: the reader knows why
            except asyncio.CancelledError:
                reader.cancel()
                call.cancel()
                raise
            finally:
                reader.cancel()
            if reader.done() and not reader.cancelled():
                failure = reader.exception()
                if isinstance(failure, grpc.RpcError):
                    error = _error(failure, self.address)
                elif isinstance(failure, RemoteError):
                    error = failure
            if self._closed:
                return
            if self._requeue(error):
                backoff = 0.05
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    async def _write(self, call: Any, reader: asyncio.Task[None]) -> None:
        outbox, inflight = self._outbox, self._inflight
        limit = self.max_batch
        while not reader.done():
            while outbox and not reader.done():
                batch = outbox.popleft()
                if not batch.callbacks:
                    continue  # every IMEI in it is past its deadline: not worth sending
                # Batches that queued up while the last write was under way go out as one
                # message: under load, messages grow instead of multiplying.
                while outbox and len(batch.callbacks) + len(outbox[0].callbacks) <= limit:
                    queued = outbox.popleft()
                    if queued.callbacks:
                        batch.absorb(queued)
                batch.attempts += 1
                inflight.append(batch)
                await call.write(batch.message)
            self._wake.clear()
            if not outbox and not reader.done():
                await self._wake.wait()

    async def _read(self, call: Any) -> None:
        inflight = self._inflight
        address = self.address
        while True:
            response = await call.read()
            if response is grpc.aio.EOF:
                return
            if not inflight:
                raise UnavailableError(f"ceir at {address} answered a message not sent")
            inflight.popleft().deliver(response, address)

    def _requeue(self, error: RemoteError) -> bool:
        """After a broken stream: send unanswered batches again, or fail them.

        Returns whether the stream had answered everything (a clean restart)."""
        clean = not self._inflight
        rejected = isinstance(error, RejectedError)
        while self._inflight:
            batch = self._inflight.pop()
            if not batch.callbacks:
                continue
            if not rejected and batch.attempts <= self.retries:
                self._outbox.appendleft(batch)
            else:
                batch.fail(error)
        return clean

    async def _watch_deadlines(self) -> None:
        """Fail batches past their deadline; replace a stream that let one pass."""
        assert self._loop is not None
        tick = min(0.05, self.timeout / 4)
        while not self._closed:
            await asyncio.sleep(tick)
            now = self._loop.time()
            stalled = False
            for queue in (self._inflight, self._outbox):
                for batch in queue:
                    if batch.deadline > now:
                        break
                    if batch.callbacks:
                        stalled = stalled or queue is self._inflight
                        batch.fail(
                            DeadlineError(
                                f"no answer from ceir at {self.address} within "
                                f"{self.timeout:g} s (attempts: {batch.attempts})"
                            )
                        )
            while self._outbox and not self._outbox[0].callbacks:
                self._outbox.popleft()
            if stalled and self._call is not None:
                self._call.cancel()

    # -- plain RPCs ------------------------------------------------------------------

    def _rpc(self, rpc: Any) -> Any:
        if self._closed or self._channel is None:
            raise ClientClosedError(f"client for ceir at {self.address} is not open")
        return rpc

    async def check_unary(
        self, imei: str, *, imsi: str = "", msisdn: str = "", request_id: str = ""
    ) -> Response:
        """One CheckIMEI call for one IMEI (no coalescing)."""
        rpc = self._rpc(self._unary)
        request = eir_pb2.CheckIMEIRequest(
            imei=imei, imsi=imsi, msisdn=msisdn, request_id=request_id
        )
        try:
            response: Response = await rpc(
                request, timeout=self.timeout, metadata=self._metadata, wait_for_ready=True
            )
        except grpc.RpcError as exc:
            raise _error(exc, self.address) from None
        return response

    async def check_batch(
        self, requests: Sequence[eir_pb2.CheckIMEIRequest] | eir_pb2.CheckIMEIBatchRequest
    ) -> Sequence[Response]:
        """One CheckIMEIBatch call; answers in request order."""
        rpc = self._rpc(self._batch)
        if isinstance(requests, eir_pb2.CheckIMEIBatchRequest):
            message = requests
        else:
            message = eir_pb2.CheckIMEIBatchRequest(requests=requests)
        try:
            response = await rpc(
                message, timeout=self.timeout, metadata=self._metadata, wait_for_ready=True
            )
        except grpc.RpcError as exc:
            raise _error(exc, self.address) from None
        return response.responses  # type: ignore[no-any-return]
