"""Who may call what: the one interceptor that enforces :mod:`ceir.security.roles`.

Every RPC the server registers is in :data:`METHOD_RULES` (a test fails otherwise); a
method that is not is refused to everybody, so forgetting one fails closed. The
interceptor also

- authenticates the caller (client certificate first, then ``authorization: Bearer``),
  and puts the principal in :data:`ceir.security.principals.CURRENT` for the handler;
- rate-limits the consumer check per client (RESOURCE_EXHAUSTED + ``retry-after``);
- bounds client streams: at most ``max_stream_messages`` messages, and no more than
  ``stream_idle`` seconds of silence between two of them;
- ends a call whose handler raises a domain error with the status ``errors`` gives it
  (:func:`ceir.server.app.status_for`: the table stays there), so each call passes through
  one Python frame between grpc and the servicer, built once per method.

Refusals say as little as possible: ``UNAUTHENTICATED: authentication required`` and
``PERMISSION_DENIED: permission denied``, whatever the reason; the log says more.
With no security configured every caller is :data:`ceir.security.principals.OPEN` (an admin
on loopback), as the embedded default always was. Configured security never degrades to
that: a token file that is missing, empty or lists nobody refuses every call.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from ceir import logs, metrics, version_text
from ceir.config import Settings, field_default
from ceir.errors import CeirError, ForbiddenError
from ceir.feeds import Kind
from ceir.security.principals import (
    CURRENT,
    OPEN,
    Principal,
    current,
    principal_from_certificate,
)
from ceir.security.roles import KIND_ROLES, METHOD_RULES, Rule
from ceir.security.tokens import TokenBook
from ceir.security.trust import REVOKED, RevokedError, Trust
from ceir.server.ratelimit import RateLimiter
from ceir.server.transport import Security

log = logging.getLogger("ceir.server.access")


def allow_kind(kind: Kind) -> None:
    """Raise ForbiddenError unless the calling principal may write feeds of *kind*."""
    principal = current()
    if kind not in KIND_ROLES[principal.role]:
        log.warning("denied a %s write to %s", kind.value, principal.label)
        raise ForbiddenError(DENIED)


def actor(context: Any) -> str:
    """Who the audit log names for the call: the principal; without security, the peer."""
    principal = current()
    if principal is OPEN:
        return f"grpc:{context.peer()}"
    return principal.label


UNAUTHENTICATED = "authentication required"
DENIED = "permission denied"


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Bounds on one client stream."""

    max_messages: int = field_default(Settings, "max_stream_messages")
    idle: float = field_default(Settings, "stream_idle")
    """Seconds a client stream may stay silent before it is ended."""


class AccessInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authenticates, authorises, rate-limits and bounds every call."""

    def __init__(
        self,
        *,
        tokens: TokenBook | None = None,
        certificates: bool = False,
        limiter: RateLimiter | None = None,
        write_limiter: RateLimiter | None = None,
        stream_limits: StreamLimits | None = None,
        rules: dict[str, Rule] | None = None,
        errors: Callable[[CeirError], grpc.StatusCode] | None = None,
        trust: Trust | None = None,
    ) -> None:
        self.trust = trust if trust is not None else Trust(tokens)
        """The token book and certificate deny-list, shared with the other faces and
        reloaded in place (:mod:`ceir.security.trust`)."""
        self.certificates = certificates
        # Configured tokens never degrade to open: a book with nobody in it (a missing or
        # emptied file) refuses every call. Open is only "no security configured at all".
        self.secure = certificates or self.trust.tokens is not None
        self.limiter = limiter
        self.write_limiter = write_limiter
        self.stream_limits = stream_limits or StreamLimits()
        self.rules = METHOD_RULES if rules is None else rules
        self.errors = errors
        """The status for a domain error a handler raises (ceir.server.app's table); None:
        left to grpc."""
        self._cert_cache: OrderedDict[bytes, Principal | None] = OrderedDict()
        # Gated handlers by (method, registered handler): built on a method's first call.
        self._gated: dict[tuple[str, int], tuple[Any, Any]] = {}

    @property
    def tokens(self) -> TokenBook | None:
        """The bearer tokens in force now (None: no token authentication)."""
        return self.trust.tokens

    # -- who is calling ----------------------------------------------------------------

    def _from_certificate(self, context: Any) -> Principal | None:
        pems = context.auth_context().get("x509_pem_cert")
        if not pems:
            return None
        pem = pems[0]
        if self.trust.revoked(pem):
            raise RevokedError(REVOKED)
        if pem in self._cert_cache:
            self._cert_cache.move_to_end(pem)
            return self._cert_cache[pem]
        principal = principal_from_certificate(pem)
        self._cert_cache[pem] = principal
        if len(self._cert_cache) > 1024:
            self._cert_cache.popitem(last=False)
        return principal

    def _from_token(self, context: Any) -> Principal | None:
        if self.tokens is None:
            return None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, token = value.partition(" ")
                if scheme.lower() == "bearer":
                    return self.tokens.authenticate(token.strip())
        return None

    def authenticate(self, context: Any) -> Principal | None:
        """The caller's principal; OPEN without security; None if unknown."""
        if not self.secure:
            return OPEN
        principal = self._from_certificate(context) if self.certificates else None
        return principal or self._from_token(context)

    # -- the gate ------------------------------------------------------------------------

    def admitted(self, method: str) -> Principal | None:
        """The principal every call to *method* gets without looking at the call, if there
        is one: without security, OPEN where the rule lets admins in and nothing limits
        the rate. None: each call goes through :meth:`admit`."""
        rule = self.rules.get(method)
        if self.secure or rule is None or OPEN.role not in rule.roles:
            return None
        if (rule.rate_limited and self.limiter is not None) or (
            rule.write_limited and self.write_limiter is not None
        ):
            return None
        return OPEN

    async def admit(self, method: str, context: Any) -> Principal | None:
        """The principal if the call may go on (None: anonymous, public); else abort (raises)."""
        rule = self.rules.get(method)
        try:
            principal = self.authenticate(context)
        except RevokedError:
            metrics.refused(_face(method), metrics.Refusal.REVOKED)
            _refusal(f"revoked client certificate calling {method} from {context.peer()}",
                     method, None, grpc.StatusCode.UNAUTHENTICATED, context)  # fmt: skip
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, REVOKED)
        if principal is None:
            if rule is not None and rule.public:
                return None
            metrics.refused(_face(method), metrics.Refusal.UNAUTHENTICATED)
            _refusal(f"unauthenticated call to {method} from {context.peer()}", method, None,
                     grpc.StatusCode.UNAUTHENTICATED, context)  # fmt: skip
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED)
        assert principal is not None  # abort raises
        if rule is None or principal.role not in rule.roles:
            metrics.refused(_face(method), metrics.Refusal.DENIED)
            _refusal(f"denied {method} to {principal.label} from {context.peer()}", method,
                     principal, grpc.StatusCode.PERMISSION_DENIED, context)  # fmt: skip
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, DENIED)
        assert rule is not None
        limiter = self.limiter if rule.rate_limited else None
        if rule.write_limited:
            limiter = self.write_limiter
        if limiter is not None:
            key = principal.label if self.secure else _peer_host(context.peer())
            wait = limiter.take(key)
            if wait:
                metrics.rate_limited(_face(method), method.rsplit("/", 1)[-1])
                _refusal("rate limited", method, principal, grpc.StatusCode.RESOURCE_EXHAUSTED,
                         context)  # fmt: skip
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "rate limit exceeded; retry later",
                    trailing_metadata=(("retry-after", RateLimiter.retry_after(wait)),),
                )
        return principal

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None:
            if self.secure:  # do not tell strangers which methods exist
                return grpc.unary_unary_rpc_method_handler(self._refuse(method))
            return None
        if method not in self.rules:
            log.error("%s is registered but not in the access table: refused to all", method)
            return grpc.unary_unary_rpc_method_handler(self._refuse(method))
        # grpc hands back the same registered handler object on every call: gate it once.
        # Only registered methods get here, so the cache is as small as the table.
        key = (method, id(handler))
        cached = self._gated.get(key)
        if cached is not None and cached[0] is handler:
            return cached[1]
        gated = _wrap(handler, method, self)
        if len(self._gated) < 4 * len(self.rules):
            self._gated[key] = (handler, gated)  # holds handler: its id stays its own
        return gated

    def _refuse(self, method: str) -> Callable[[Any, Any], Awaitable[None]]:
        async def refuse(request: Any, context: Any) -> None:
            await self.admit(method, context)

        return refuse

    async def bounded(
        self, requests: AsyncIterator[Any], decode: Decoder, context: Any
    ) -> AsyncIterator[Any]:
        """*requests* decoded, ended with an error when the stream is too long or too quiet."""
        limits = self.stream_limits
        count = 0
        iterator = aiter(requests)
        while True:
            try:
                async with asyncio.timeout(limits.idle):  # a timer, not a task per message
                    message = await anext(iterator)
            except StopAsyncIteration:
                return
            except TimeoutError:
                await context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"no message for {limits.idle:g} s; stream closed",
                )
            count += 1
            if count > limits.max_messages:
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"more than {limits.max_messages} messages in one stream; open a new one",
                )
            yield await decoded(decode, message, context)


Decoder = Callable[[bytes], Any] | None
MALFORMED = "malformed request message"


async def decoded(decode: Decoder, raw: bytes, context: Any) -> Any:
    """*raw* decoded; a malformed message ends the call with INVALID_ARGUMENT, quietly.

    (Left to grpc, it would be UNKNOWN with a traceback in the log for every bad message:
    a cheap way to flood the log.)
    """
    if decode is None:
        return raw
    try:
        return decode(raw)
    except DecodeError:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, MALFORMED)


def _peer_host(peer: str) -> str:
    """``ipv4:127.0.0.1:5000`` -> ``ipv4:127.0.0.1``: one bucket per address, not per port."""
    host, _, _port = peer.rpartition(":")
    return host or peer


_OK = grpc.StatusCode.OK
_HEALTH = "/grpc.health.v1.Health/"
VERSION_METADATA = (("ceir-version", version_text()),)
"""Health answers carry it: the version and store schema ``ceir --version`` prints."""


def _face(method: str) -> metrics.Face:
    """The metrics face of a gRPC method: DeviceCheck's own, every other gRPC."""
    if method.startswith("/ceir.v1.DeviceCheck/"):
        return metrics.Face.DEVICE_CHECK
    return metrics.Face.GRPC


def _request_id(context: Any) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id" and isinstance(value, str):
            return logs.request_id(value)
    return logs.request_id(None)


def _refusal(event: str, method: str, principal: Principal | None, code: Any, context: Any) -> None:
    """The access-log line of a call the gate refuses (floods cut: see ceir.logs)."""
    logs.access(
        event,
        face=_face(method).value,
        method=method.rsplit("/", 1)[-1],
        status=code.name,
        principal=principal.label if principal is not None else "anonymous",
        duration=0.0,
        request=_request_id(context),
        level=logging.WARNING,
    )


def _done(
    face: metrics.Face,
    method: str,
    principal: Principal | None,
    started: float,
    code: Any,
    write: bool,
    context: Any,
) -> None:
    """Record one finished call: its latency, and an access-log line for a write."""
    elapsed = time.perf_counter() - started
    metrics.request(face, method, principal.operator_id if principal is not None else "", elapsed)
    if write:
        logs.access(
            "write",
            face=face.value,
            method=method,
            status=code.name,
            principal=principal.label if principal is not None else "anonymous",
            duration=elapsed,
            request=_request_id(context),
        )


# Inline on purpose (one frame per call), hence long.
def _wrap(handler: Any, method: str, gate: AccessInterceptor) -> Any:  # noqa: PLR0915
    """*handler* with the gate in front of it, of the same kind (unary/stream)."""
    kind = (handler.request_streaming, handler.response_streaming)
    inner = {
        (False, False): handler.unary_unary,
        (False, True): handler.unary_stream,
        (True, False): handler.stream_unary,
        (True, True): handler.stream_stream,
    }[kind]
    streaming_in = kind[0]
    decode = handler.request_deserializer
    admitted = gate.admitted(method)
    errors = gate.errors
    face = _face(method)
    short = method.rsplit("/", 1)[-1]
    rule = gate.rules.get(method)
    write = rule is not None and rule.write
    health = method.startswith(_HEALTH)
    # One Python frame between grpc and the servicer: admission, decoding (as decoded()
    # does), the call and the translation of a domain error into its status, inline.

    if inspect.isasyncgenfunction(inner):

        async def generator(request: Any, context: Any) -> AsyncIterator[Any]:
            started = time.perf_counter()
            principal = admitted if admitted is not None else await gate.admit(method, context)
            if principal is not None:
                CURRENT.set(principal)
            if health:
                context.set_trailing_metadata(VERSION_METADATA)
            if streaming_in:
                request = gate.bounded(request, decode, context)
            elif decode is not None:
                try:
                    request = decode(request)
                except DecodeError:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, MALFORMED)
            code = _OK
            try:
                async for item in inner(request, context):
                    yield item
            except CeirError as exc:
                if errors is None:
                    raise
                code = errors(exc)
                await context.abort(code, str(exc))
            finally:
                _done(face, short, principal, started, code, write, context)

        behaviour: Any = generator
    else:

        async def coroutine(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            principal = admitted if admitted is not None else await gate.admit(method, context)
            if principal is not None:
                CURRENT.set(principal)
            if health:
                context.set_trailing_metadata(VERSION_METADATA)
            if streaming_in:
                request = gate.bounded(request, decode, context)
            elif decode is not None:
                try:
                    request = decode(request)
                except DecodeError:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, MALFORMED)
            code = _OK
            try:
                return await inner(request, context)
            except CeirError as exc:
                if errors is None:
                    raise
                code = errors(exc)
                await context.abort(code, str(exc))
            finally:
                _done(face, short, principal, started, code, write, context)

        behaviour = coroutine

    factory = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[kind]
    return factory(
        behaviour,
        request_deserializer=None,  # decoded by the gate: see decoded()
        response_serializer=handler.response_serializer,
    )


def from_settings(
    settings: Settings, errors: Callable[[CeirError], grpc.StatusCode] | None = None
) -> tuple[AccessInterceptor, Security]:
    """The interceptor and transport security *settings* ask for; it answers a domain
    error with ``errors(exc)``."""
    security = Security.from_settings(settings)
    trust = Trust.load(settings.tokens, settings.cert_deny)
    limiter = (
        RateLimiter(settings.consumer_rate, settings.consumer_burst)
        if settings.consumer_rate > 0
        else None
    )
    writes = (
        RateLimiter(settings.write_rate, settings.write_burst) if settings.write_rate > 0 else None
    )
    interceptor = AccessInterceptor(
        trust=trust,
        certificates=security.mutual,
        limiter=limiter,
        write_limiter=writes,
        stream_limits=StreamLimits(settings.max_stream_messages, settings.stream_idle),
        errors=errors,
    )
    return interceptor, security
