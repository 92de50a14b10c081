"""A small HTTP/2 server on asyncio: python-hyper's ``h2`` does the framing, this the I/O.

Why ``h2`` on the worker's own loop rather than an ASGI server (measured in
``loadtest/sbi_servers.py``, a row of ``./scripts/bench``):

- the face must run in the loop of every ``ceir serve`` worker, beside gRPC, share the
  worker's store, bind with ``SO_REUSEPORT`` and drain on SIGTERM; an asyncio
  ``Protocol`` is exactly that, with no second runtime or thread pool;
- a 5G core's AMF authenticates with a client certificate: the principal comes from the
  peer certificate of the TLS connection, which ASGI servers such as granian do not hand
  to the application;
- hypercorn closes every connection after 1,000 requests (AMF connections are long-lived).

What this layer guarantees: cleartext HTTP/2 with prior knowledge (``h2c``) or TLS with
ALPN ``h2``; PINGs and SETTINGS acknowledged by ``h2`` the moment they are read; no cap on
requests per connection; a protocol error closes that connection only (GOAWAY); request
bodies are bounded; on stop, a GOAWAY naming the last stream answered, then close.

Handlers are synchronous (an EIR answer is one store read): every request completed by
one read from the socket is answered before the next read, in one write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from ceir.server.connections import capped

log = logging.getLogger("ceir.network.http2")
# h2 and hpack log every decoded header at DEBUG, :path included, and the query string
# carries personal data (supi, gpsi): their logs stay off, whatever the root level.
for _name in ("h2", "hpack"):
    logging.getLogger(_name).setLevel(logging.WARNING)

MAX_BODY = 16 * 1024
"""Largest request body kept (an EIR GET has none); more resets the stream."""
MAX_HEADER_LIST = 16 * 1024
MAX_CONCURRENT_STREAMS = 256


@dataclass(slots=True)
class Request:
    """One HTTP/2 request as the handler sees it (header names lower-case, as bytes)."""

    method: bytes
    path: bytes
    """The ``:path`` pseudo-header: path and query string."""
    headers: dict[bytes, bytes]
    connection: ConnectionInfo
    body: bytes = b""


@dataclass(slots=True)
class ConnectionInfo:
    """What the handler may know about the connection a request came on."""

    peer: str
    tls: bool
    certificate: bytes | None = None
    """The client's certificate (PEM) when mutual TLS verified one."""
    cache: dict[str, object] = field(default_factory=dict)
    """The handler's per-connection memo (e.g. the certificate's principal)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: tuple[tuple[bytes, bytes], ...] = ()


Handler = Callable[[Request], Response]


def _pem(der: bytes) -> bytes:
    return ssl.DER_cert_to_PEM_cert(der).encode()


class _Stream:
    __slots__ = ("body", "headers", "too_big")

    def __init__(self, headers: dict[bytes, bytes]) -> None:
        self.headers = headers
        self.body = bytearray()
        self.too_big = False


class _Connection(asyncio.Protocol):
    """One client connection: bytes in, ``h2`` events, handler, bytes out."""

    def __init__(self, server: Http2Server) -> None:
        self.server = server
        self.h2 = h2.connection.H2Connection(config=server.h2_config)
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, _Stream] = {}
        self.pending: dict[int, bytes] = {}  # response bodies waiting for flow-control window
        self.info = ConnectionInfo(peer="", tls=False)
        self.last_stream = 0

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.info.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.info.tls = True
            if ssl_object.selected_alpn_protocol() not in (None, "h2"):
                transport.close()
                return
            der = ssl_object.getpeercert(binary_form=True)
            if der:
                self.info.certificate = _pem(der)
        with contextlib.suppress(OSError):
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)
        self.h2.initiate_connection()
        self.h2.update_settings(
            {
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
            }
        )
        transport.write(self.h2.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        self.streams.clear()
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # h2 has queued a GOAWAY with the right error code: send it and hang up.
            log.debug("HTTP/2 protocol error from %s: %s", self.info.peer, exc)
            transport.write(self.h2.data_to_send())
            transport.close()
            return
        for event in events:
            self._event(event)
        out = self.h2.data_to_send()
        if out:
            transport.write(out)

    # -- events ---------------------------------------------------------------------------

    def _event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._on_request(event)
        elif isinstance(event, h2.events.DataReceived):
            self._on_data(event)
        elif isinstance(event, h2.events.StreamEnded):
            assert event.stream_id is not None
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None:
                self._answer(event.stream_id, stream.headers, bytes(stream.body))
        elif isinstance(event, h2.events.StreamReset):
            assert event.stream_id is not None
            self.streams.pop(event.stream_id, None)
            self.pending.pop(event.stream_id, None)
        elif isinstance(event, h2.events.WindowUpdated):
            self._flush_pending()
        elif isinstance(event, h2.events.ConnectionTerminated) and self.transport is not None:
            self.transport.write(self.h2.data_to_send())
            self.transport.close()

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        headers: dict[bytes, bytes] = dict(event.headers or ())
        assert event.stream_id is not None
        if event.stream_ended is not None:  # HEADERS with END_STREAM: a GET
            self._answer(event.stream_id, headers, b"")
        else:
            self.streams[event.stream_id] = _Stream(headers)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        stream_id = event.stream_id
        assert stream_id is not None
        self.h2.acknowledge_received_data(event.flow_controlled_length or 0, stream_id)
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        stream.body += event.data or b""
        if len(stream.body) > MAX_BODY:
            del self.streams[stream_id]
            self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
        elif event.stream_ended is not None:
            del self.streams[stream_id]
            self._answer(stream_id, stream.headers, bytes(stream.body))

    def _answer(self, stream_id: int, headers: dict[bytes, bytes], body: bytes) -> None:
        request = Request(
            method=headers.get(b":method", b""),
            path=headers.get(b":path", b""),
            headers=headers,
            connection=self.info,
            body=body,
        )
        try:
            response = self.server.handler(request)
        except Exception:  # a bug must not take the connection down with it
            log.exception("handler failed")
            response = self.server.on_error()
        self.last_stream = max(self.last_stream, stream_id)
        self._send(stream_id, response)

    def _send(self, stream_id: int, response: Response) -> None:
        body = response.body
        self.h2.send_headers(
            stream_id,
            [
                (b":status", str(response.status).encode()),
                (b"content-type", response.content_type),
                (b"content-length", str(len(body)).encode()),
                *response.headers,
            ],
        )
        if self.h2.local_flow_control_window(stream_id) >= len(body) and len(body) <= (
            self.h2.max_outbound_frame_size
        ):
            self.h2.send_data(stream_id, body, end_stream=True)
        else:
            self.pending[stream_id] = body
            self._flush_pending()

    def _flush_pending(self) -> None:
        for stream_id, body in list(self.pending.items()):
            try:
                window = self.h2.local_flow_control_window(stream_id)
            except h2.exceptions.StreamClosedError:
                del self.pending[stream_id]
                continue
            size = min(window, self.h2.max_outbound_frame_size, len(body))
            if size <= 0:
                continue
            last = size == len(body)
            self.h2.send_data(stream_id, body[:size], end_stream=last)
            if last:
                del self.pending[stream_id]
            else:
                self.pending[stream_id] = body[size:]

    def goaway(self) -> None:
        """Tell the client no new streams will be answered, then close."""
        if self.transport is None:
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.close_connection(last_stream_id=self.last_stream)
        self.transport.write(self.h2.data_to_send())
        if not self.pending:
            self.transport.close()


class Http2Server:
    """A listening HTTP/2 server calling *handler* for every request.

    Use :meth:`listen` (binds; port 0 picks one), then :meth:`stop`.
    """

    def __init__(self, handler: Handler, on_error: Callable[[], Response]) -> None:
        self.handler = handler
        self.on_error = on_error
        self.h2_config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_outbound_headers=False,  # ours are built right; theirs are validated
            normalize_outbound_headers=False,
        )
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    async def listen(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        reuse_port: bool,
        per_address: int = 0,
        handshake_timeout: float | None = None,
    ) -> int:
        """Bind and start accepting; returns the bound port. *per_address*: most concurrent
        connections from one address (0: no cap); *handshake_timeout*: seconds a TLS
        handshake may take."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            capped(lambda: _Connection(self), per_address, "N5g-eir"),
            host,
            port,
            ssl=ssl_context,
            ssl_handshake_timeout=handshake_timeout if ssl_context is not None else None,
            reuse_port=reuse_port or None,
            backlog=1024,
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self, grace: float | None) -> None:
        """Stop accepting, GOAWAY every connection, give pending answers *grace* s."""
        if self._server is None:
            return
        self._server.close()
        for connection in list(self.connections):
            connection.goaway()
        deadline = asyncio.get_running_loop().time() + (grace or 0)
        while self.connections and asyncio.get_running_loop().time() < deadline:
            if not any(c.pending for c in self.connections):
                break
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
        self.connections.clear()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), timeout=1.0)
        self._server = None


def tls_context(
    cert: str, key: str, client_ca: str | None, *, alpn: tuple[str, ...] = ("h2",)
) -> ssl.SSLContext:
    """A server TLS context offering ALPN *alpn*; with *client_ca*, client certificates
    signed by it are required (mutual TLS)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(list(alpn))
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
