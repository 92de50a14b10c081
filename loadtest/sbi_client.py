"""A lean HTTP/2 client (h2c prior knowledge) for load tests: what an AMF's EIR client is.

One connection, many concurrent streams (up to the server's MAX_CONCURRENT_STREAMS;
more wait in a queue), frames written once per event-loop turn. python-hyper ``h2``
does the framing; httpx would be the load generator's bottleneck long before ceir's.
"""

from __future__ import annotations

import asyncio
import collections
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions

Answer = tuple[int, bytes]
"""HTTP status and body."""


class SbiClient(asyncio.Protocol):
    """``await SbiClient.open(url)``, then ``client.get(path)`` -> Future[(status, body)]."""

    def __init__(self, authority: str) -> None:
        self.authority = authority.encode()
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_event_loop()
        self.streams: dict[int, tuple[asyncio.Future[Answer], list[bytes], list[int]]] = {}
        self.queue: collections.deque[tuple[bytes, asyncio.Future[Answer]]] = collections.deque()
        self._flush_scheduled = False
        self.closed: asyncio.Future[None] = self.loop.create_future()

    @classmethod
    async def open(cls, url: str) -> SbiClient:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"{url!r}: expected http://HOST:PORT")
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(
            lambda: cls(parts.netloc), parts.hostname, parts.port
        )
        return protocol

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.h2.initiate_connection()
        self._write()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        error = ConnectionError(f"connection lost: {exc}")
        for future, _, _ in self.streams.values():
            if not future.done():
                future.set_exception(error)
        for _, future in self.queue:
            if not future.done():
                future.set_exception(error)
        self.streams.clear()
        self.queue.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            if self.transport is not None:
                self.transport.close()
            self.connection_lost(exc)
            return
        for event in events:
            self._event(event)
        self._start_queued()
        self._write()

    def _event(self, event: h2.events.Event) -> None:
        stream = getattr(event, "stream_id", None) or 0
        if isinstance(event, h2.events.ResponseReceived):
            entry = self.streams.get(stream)
            if entry is not None:
                entry[2].extend(int(v) for k, v in event.headers or () if k == b":status")
        elif isinstance(event, h2.events.DataReceived):
            self.h2.acknowledge_received_data(event.flow_controlled_length or 0, stream)
            entry = self.streams.get(stream)
            if entry is not None:
                entry[1].append(event.data or b"")
        elif isinstance(event, h2.events.StreamEnded):
            entry = self.streams.pop(stream, None)
            if entry is not None and not entry[0].done():
                entry[0].set_result((entry[2][0] if entry[2] else 0, b"".join(entry[1])))
        elif isinstance(event, h2.events.StreamReset):
            entry = self.streams.pop(stream, None)
            if entry is not None and not entry[0].done():
                entry[0].set_exception(ConnectionError("stream reset by the server"))
        elif isinstance(event, h2.events.ConnectionTerminated) and self.transport:
            self.transport.close()

    # -- requests ---------------------------------------------------------------------------

    def get(self, path: bytes) -> asyncio.Future[Answer]:
        """GET *path* (with its query string); the future holds (status, body)."""
        future: asyncio.Future[Answer] = self.loop.create_future()
        if self.transport is None:
            future.set_exception(ConnectionError("not connected"))
            return future
        self.queue.append((path, future))
        self._start_queued()
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._write)
        return future

    def _start_queued(self) -> None:
        limit = self.h2.remote_settings.max_concurrent_streams
        while self.queue and len(self.streams) < limit:
            path, future = self.queue.popleft()
            stream = self.h2.get_next_available_stream_id()
            self.h2.send_headers(
                stream,
                [
                    (b":method", b"GET"),
                    (b":scheme", b"http"),
                    (b":authority", self.authority),
                    (b":path", path),
                ],
                end_stream=True,
            )
            self.streams[stream] = (future, [], [])

    def _write(self) -> None:
        self._flush_scheduled = False
        data = self.h2.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    async def close(self) -> None:
        if self.transport is not None:
            self.h2.close_connection()
            self._write()
            self.transport.close()
            await asyncio.wait_for(self.closed, 5)
