"""The web face: the consumer check page, ``GET /api/v1/devices/{imei}``, ``/metrics`` and
``/version`` (aiohttp, in the worker's asyncio loop, beside the gRPC server).

- Answers come from :meth:`DeviceCheck.LookupDevice` on the worker's store and policy: the
  page, the JSON and the gRPC call give the same answer.
- Who may call what is the access table's (:data:`ceir.security.roles.METHOD_RULES`,
  keys ``web:<route>``): the page is public, the JSON endpoint is LookupDevice's rule,
  ``/metrics`` is for operations. Principals are the gRPC ones: a client certificate
  (mutual TLS) or ``Authorization: Bearer``; with no security configured everybody is
  the loopback admin, and the face listens on loopback only, as gRPC does.
- Checks share the DeviceCheck token bucket of the client (same key as gRPC): 429 with
  ``Retry-After`` and a page that says when to try again.
- Every response carries a strict Content-Security-Policy (no script, no third-party
  anything), ``nosniff``, no referrer and no framing. Errors never show internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import ipaddress
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from google.protobuf import json_format

from ceir import __version__, logs, metrics
from ceir.config import DEFAULT_GRACE, Settings, field_default, format_address
from ceir.errors import CeirError, ConfigError, InvalidImeiError
from ceir.metrics import Face as MetricFace
from ceir.policy import Policy
from ceir.security.principals import OPEN, Principal, principal_from_certificate
from ceir.security.roles import METHOD_RULES, Rule
from ceir.security.tokens import TokenBook
from ceir.security.trust import REVOKED, Trust
from ceir.server.connections import capped
from ceir.server.device_check import DeviceCheck
from ceir.server.ratelimit import RateLimiter
from ceir.server.transport import Security, TransportLimits
from ceir.store import SCHEMA_VERSION, Store
from ceir.v1 import device_check_pb2
from ceir.web import describe, i18n, page

log = logging.getLogger("ceir.web")

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}
RULE_PREFIX = "web:"
ROUTES = {
    "page": "/",
    "device": "/api/v1/devices/{imei}",
    "metrics": "/metrics",
    "version": "/version",
    "static": "/static/style.css",
    "favicon": "/favicon.ico",
}
"""Route name -> path. Each name is in the access table as ``web:<name>``."""

_CSS = importlib.resources.files("ceir.web").joinpath("static/style.css").read_bytes()
_JSON = "application/json"
_PRINCIPAL: web.RequestKey[Principal | None] = web.RequestKey("principal")


def version_info() -> dict[str, Any]:
    """What ``/version`` says (and ``ceir --version``, the start-up line, health)."""
    return {"version": __version__, "schema": SCHEMA_VERSION}


@dataclass(frozen=True, slots=True)
class WebSettings:
    """What the web face needs beyond the store (from :class:`ceir.config.Settings`)."""

    host: str
    port: int
    reuse_port: bool = False
    grace: float = DEFAULT_GRACE
    per_address: int = field_default(Settings, "max_connections_per_address")
    """Most concurrent connections from one address (0: no cap)."""


class _Site(web.BaseSite):
    """aiohttp's TCPSite with the per-address connection cap and a TLS handshake timeout
    (aiohttp has no per-connection hook: the cap wraps the protocol factory)."""

    def __init__(
        self,
        runner: web.AppRunner,
        settings: WebSettings,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=1024)
        self.settings = settings
        self.bound: asyncio.Server | None = None

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{format_address(self.settings.host, self.settings.port)}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        s = self.settings
        self.bound = await asyncio.get_running_loop().create_server(
            capped(server, s.per_address, "web"),
            s.host,
            s.port,
            ssl=self._ssl_context,
            ssl_handshake_timeout=(
                TransportLimits().handshake_timeout if self._ssl_context is not None else None
            ),
            backlog=self._backlog,
            reuse_port=s.reuse_port or None,
        )
        self._server = self.bound


class _Refused(Exception):  # noqa: N818 - a control-flow signal inside this module, not an error
    def __init__(self, status: int, cause: metrics.Refusal, title: str = "") -> None:
        super().__init__(status)
        self.status = status
        self.cause = cause
        self.title = title


class WebFace:
    """The consumer page and the operations endpoints on one HTTP port."""

    def __init__(
        self,
        settings: WebSettings,
        store: Store,
        policy: Policy,
        *,
        limiter: RateLimiter | None = None,
        tokens: TokenBook | None = None,
        certificates: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        rules: dict[str, Rule] | None = None,
        trust: Trust | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.check = DeviceCheck(store, policy, face=MetricFace.WEB)
        self.limiter = limiter
        # The gRPC gate's: a reload there is a reload here. Configured tokens, even none,
        # never degrade to open.
        self.trust = trust if trust is not None else Trust(tokens)
        self.certificates = certificates
        self.secure = certificates or self.trust.tokens is not None
        self.ssl_context = ssl_context
        self.rules = METHOD_RULES if rules is None else rules
        self.port = 0
        self._runner: web.AppRunner | None = None

    # -- process life ----------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate], client_max_size=4096)
        handlers: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {
            "page": self._page,
            "device": self._device,
            "metrics": self._metrics,
            "version": self._version,
            "static": self._static,
            "favicon": self._favicon,
        }
        for name, path in ROUTES.items():
            app.router.add_get(path, handlers[name], name=name, allow_head=True)
        app.on_response_prepare.append(_secure_headers)
        return app

    async def start(self) -> None:
        metrics.set_build(__version__, SCHEMA_VERSION)
        runner = web.AppRunner(
            self.app(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=self.settings.grace,
            keepalive_timeout=30.0,
        )
        await runner.setup()
        site = _Site(runner, self.settings, self.ssl_context)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"cannot listen on {self.address(self.settings.port)} for --web: {exc.strerror}"
            ) from exc
        self._runner = runner
        sockets = site.bound.sockets if site.bound is not None else ()  # the real port
        self.port = int(sockets[0].getsockname()[1]) if sockets else self.settings.port

    async def stop(self, grace: float | None) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def address(self, port: int) -> str:
        host = self.settings.host
        host = f"[{host}]" if ":" in host else host
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{host}:{port}"

    def describe(self) -> str:
        return describe(self.settings.host, self.port, tls=self.ssl_context is not None)

    # -- who is calling ----------------------------------------------------------------

    def principal(self, request: web.Request) -> Principal | None:
        """The caller's principal; OPEN without security; None if anonymous."""
        if not self.secure:
            return OPEN
        if self.certificates and request.transport is not None:
            tls = request.transport.get_extra_info("ssl_object")
            der = tls.getpeercert(binary_form=True) if tls is not None else None
            if der:
                pem = ssl.DER_cert_to_PEM_cert(der).encode()
                if self.trust.revoked(pem):  # refused, whatever token the request carries
                    raise _Refused(401, metrics.Refusal.REVOKED, REVOKED)
                found = principal_from_certificate(pem)
                if found is not None:
                    return found
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        tokens = self.trust.tokens
        if tokens is not None and scheme.lower() == "bearer":
            return tokens.authenticate(token.strip())
        return None

    def client_key(self, request: web.Request, principal: Principal | None) -> str:
        """The rate-limit key: the principal when authenticated, else the address, spelt as
        the gRPC gate spells a peer, so one client has one bucket across both faces."""
        if self.secure and principal is not None:
            return principal.label
        remote = request.remote or "unknown"
        try:
            if ipaddress.ip_address(remote).version == 6:
                return f"ipv6:[{remote}]"
        except ValueError:
            return remote
        return f"ipv4:{remote}"

    @web.middleware
    async def _gate(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        started = time.perf_counter()
        rid = logs.request_id(request.headers.get("X-Request-Id"))
        route = request.match_info.route.name or "missing"
        principal: Principal | None = None
        response: web.StreamResponse
        try:
            rule = self.rules.get(RULE_PREFIX + route) if route != "missing" else None
            principal = self.principal(request)
            request[_PRINCIPAL] = principal
            if route != "missing":
                self._admit(rule, principal)
            response = await handler(request)
        except _Refused as refusal:
            metrics.refused(MetricFace.WEB, refusal.cause)
            response = self._refusal(request, refusal.status, refusal.title)
        except web.HTTPException as exc:
            response = self._http_error(request, exc)
        except Exception as exc:  # the edge: no internals to the visitor
            log.exception("web %s failed: %s", route, type(exc).__name__)
            response = self._failure(request)
        response.headers["X-Request-Id"] = rid
        elapsed = time.perf_counter() - started
        operator = principal.operator_id if principal is not None else ""
        metrics.request(MetricFace.WEB, route, operator, elapsed)
        if response.status in (401, 403, 429):
            logs.access(
                "refused",
                face=MetricFace.WEB.value,
                method=route,
                status=str(response.status),
                principal=principal.label if principal is not None else "anonymous",
                duration=elapsed,
                request=rid,
                level=logging.WARNING,
            )
        return response

    def _admit(self, rule: Rule | None, principal: Principal | None) -> None:
        if rule is None:  # not in the table: nobody (fail closed)
            raise _Refused(403, metrics.Refusal.DENIED)
        if principal is None:
            if rule.public:
                return
            raise _Refused(401, metrics.Refusal.UNAUTHENTICATED)
        if principal.role not in rule.roles:
            raise _Refused(403, metrics.Refusal.DENIED)

    def _take(self, request: web.Request) -> float:
        """Take a DeviceCheck token for the caller: 0.0, or the seconds until one is due."""
        if self.limiter is None:
            return 0.0
        return self.limiter.take(self.client_key(request, request.get(_PRINCIPAL)))

    # -- the page ----------------------------------------------------------------------

    async def _page(self, request: web.Request) -> web.StreamResponse:
        lang = _lang(request)
        typed = request.query.get("imei")
        if typed is None:
            return _html(page.render(page.View(lang)))
        shown = typed[: page.MAX_INPUT]
        wait = self._take(request)
        if wait:
            return self._limited_page(lang, shown, wait)
        try:
            cleaned = page.check_text(typed)
        except InvalidImeiError as exc:
            metrics.refused(MetricFace.WEB, metrics.Refusal.INVALID)
            view = page.View(
                lang, typed=shown, error=page.explain(exc, page.read_pasted(typed), lang)
            )
            return _html(page.render(view), status=400)
        answer = await self._lookup(cleaned)
        view = page.View(lang, typed=shown, verdict=page.verdict(answer, lang))
        return _html(page.render(view))

    def _limited_page(self, lang: i18n.Lang, typed: str, wait: float) -> web.Response:
        retry = RateLimiter.retry_after(wait)
        metrics.rate_limited(MetricFace.WEB, "page")
        clock = time.strftime("%H:%M:%S", time.gmtime(time.time() + int(retry)))
        view = page.View(
            lang,
            typed=typed,
            notice_title=i18n.text(lang, "limited.title"),
            notice_body=i18n.text(lang, "limited.body", seconds=retry, clock=clock),
        )
        response = _html(page.render(view), status=429)
        response.headers["Retry-After"] = retry
        return response

    async def _lookup(self, text: str) -> device_check_pb2.LookupDeviceResponse:
        request = device_check_pb2.LookupDeviceRequest(imei=text)
        return await self.check.LookupDevice(request, None)

    # -- the JSON endpoint ---------------------------------------------------------------

    async def _device(self, request: web.Request) -> web.StreamResponse:
        wait = self._take(request)
        if wait:
            metrics.rate_limited(MetricFace.WEB, "device")
            retry = RateLimiter.retry_after(wait)
            body = _error("RATE_LIMITED", f"rate limit exceeded; retry in {retry} s")
            response = web.Response(status=429, text=body, content_type=_JSON)
            response.headers["Retry-After"] = retry
            return response
        text = request.match_info["imei"]
        try:
            if len(text) > page.MAX_INPUT:
                page.check_text(text)  # raises: too long
            answer = await self._lookup(text)
        except InvalidImeiError as exc:
            metrics.refused(MetricFace.WEB, metrics.Refusal.INVALID)
            body = _error("INVALID_IMEI", exc.message, reason=exc.reason.name)
            return web.Response(status=400, text=body, content_type=_JSON)
        body = json_format.MessageToJson(
            answer, always_print_fields_with_no_presence=True, indent=None
        )
        return web.Response(text=body, content_type=_JSON)

    # -- operations ----------------------------------------------------------------------

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        with contextlib.suppress(CeirError):
            usage = self.store.usage()
            metrics.set_store(
                size_bytes=usage.file_bytes,
                map_bytes=usage.map_bytes,
                used_ratio=usage.used_ratio,
                devices=usage.devices,
            )
        body = await asyncio.to_thread(metrics.exposition)
        response = web.Response(body=body)
        response.headers["Content-Type"] = metrics.CONTENT_TYPE
        return response

    async def _version(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=json.dumps(version_info()), content_type=_JSON)

    async def _static(self, request: web.Request) -> web.StreamResponse:
        response = web.Response(body=_CSS, content_type="text/css", charset="utf-8")
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response

    async def _favicon(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    # -- errors ----------------------------------------------------------------------------

    def _refusal(self, request: web.Request, status: int, title: str = "") -> web.Response:
        title = title or {401: "authentication required", 403: "permission denied"}.get(
            status, "refused"
        )
        if request.path.startswith("/api/"):
            code = "UNAUTHENTICATED" if status == 401 else "PERMISSION_DENIED"
            return web.Response(status=status, text=_error(code, title), content_type=_JSON)
        response = web.Response(status=status, text=title + "\n")
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="ceir"'
        return response

    def _http_error(self, request: web.Request, exc: web.HTTPException) -> web.Response:
        if request.path.startswith("/api/"):
            body = _error("NOT_FOUND" if exc.status == 404 else "BAD_REQUEST", exc.reason)
            return web.Response(status=exc.status, text=body, content_type=_JSON)
        lang = _lang(request)
        view = page.View(
            lang,
            notice_title=i18n.text(lang, "missing.title"),
            notice_body=i18n.text(lang, "missing.body"),
        )
        response = _html(page.render(view), status=exc.status)
        if exc.status == 405:
            response.headers["Allow"] = "GET, HEAD"
        return response

    def _failure(self, request: web.Request) -> web.Response:
        if request.path.startswith("/api/"):
            return web.Response(
                status=500, text=_error("INTERNAL", "internal error"), content_type=_JSON
            )
        lang = _lang(request)
        view = page.View(
            lang,
            notice_title=i18n.text(lang, "failed.title"),
            notice_body=i18n.text(lang, "failed.body"),
        )
        return _html(page.render(view), status=500)


def ssl_context(security: Security) -> ssl.SSLContext:
    """The TLS context of the gRPC port's certificate, for the web port; with a client
    CA, certificates are asked for (optional: the page is public) and verified."""
    assert security.tls_cert is not None
    assert security.tls_key is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(security.tls_cert, security.tls_key)
        if security.client_ca is not None:
            context.load_verify_locations(security.client_ca)
            context.verify_mode = ssl.CERT_OPTIONAL
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot use the TLS files for --web: {exc}") from exc
    return context


def _lang(request: web.Request) -> i18n.Lang:
    return i18n.choose(request.query.get("lang"), request.headers.get("Accept-Language"))


def _html(text: str, status: int = 200) -> web.Response:
    response = web.Response(text=text, status=status, content_type="text/html", charset="utf-8")
    response.headers["Cache-Control"] = "no-store"
    return response


def _error(code: str, message: str, **extra: str) -> str:
    return json.dumps({"error": {"code": code, "message": message, **extra}})


async def _secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(_HEADERS)
    response.headers["Server"] = "ceir"
    if request.secure:
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
