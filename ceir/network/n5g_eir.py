"""N5g-eir EquipmentIdentityCheck (3GPP TS 29.511) over HTTP/2: what a 5G AMF asks.

``GET /n5g-eir-eic/v1/equipment-status?pei=imei-<15>|imeisv-<16>[&supi=imsi-…]
[&gpsi=msisdn-…][&supported-features=…]`` is answered from the same store and policy
as CheckIMEI (:meth:`ceir.lookup.Checker.check_one`): 200 ``{"status": …}`` with the
same EquipmentStatus. Everything else is a ProblemDetails (``application/problem+json``,
TS 29.500 §5.2.7):

=====  ==============================  ===========================================
 400   MANDATORY_QUERY_PARAM_MISSING    no ``pei``
 400   MANDATORY_QUERY_PARAM_INCORRECT  a malformed ``pei``, a bad check digit, a
                                        ``mac-``/``eui-`` PEI (no IMEI to check)
 400   OPTIONAL_QUERY_PARAM_INCORRECT   a malformed ``supi``, ``gpsi`` or
                                        ``supported-features``
 401   (none)                           security is on and the call names nobody
 403   (none)                           the principal's role may not ask
 404   ERROR_EQUIPMENT_UNKNOWN          a valid PEI not in the register, with
                                        ``sbi_unknown = not-found`` (else 200 with
                                        the ``--unknown-status`` answer)
 404   RESOURCE_URI_STRUCTURE_NOT_FOUND any other path
 405   (none)                           any method but GET (``allow: GET``)
 500   SYSTEM_FAILURE                   a failure inside ceir (logged, never sent)
=====  ==============================  ===========================================

``supi`` and ``gpsi`` are personal data: they are never logged or echoed; a ``supi``
that is an IMSI reaches the observation seam (:mod:`ceir.sightings`) as an identity
token only.
"""

from __future__ import annotations

import enum
import json
import logging
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from ceir import logs, metrics
from ceir.config import Settings, UnknownAnswer, field_default, format_address
from ceir.errors import CeirError, ConfigError
from ceir.imei import check_digit
from ceir.lookup import Checker
from ceir.network._http2 import Http2Server, Request, Response, tls_context
from ceir.policy import Policy
from ceir.record import Reason, Status
from ceir.security.principals import OPEN, Principal, Role, principal_from_certificate
from ceir.security.roles import METHOD_RULES
from ceir.security.tokens import TokenBook
from ceir.security.trust import REVOKED, RevokedError, Trust
from ceir.server.transport import Security, TransportLimits
from ceir.sightings import Observer
from ceir.store import Store
from ceir.v1 import eir_pb2

log = logging.getLogger("ceir.network.n5g_eir")

SERVICE_NAME = "n5g-eir-eic"
API_VERSION = "v1"
API_FULL_VERSION = "1.4.0"
"""The TS 29.511 OpenAPI version whose shape this follows (the same from Rel-15 on)."""
RESOURCE = f"/{SERVICE_NAME}/{API_VERSION}/equipment-status"
OPERATION = "n5g-eir:GetEquipmentStatus"
"""This face's entry in the method -> roles table (:data:`ceir.security.roles.METHOD_RULES`)."""
OPERATIONS = (OPERATION,)

_RESOURCE = RESOURCE.encode()
_PROBLEM = b"application/problem+json"
_JSON = b"application/json"
_COMPACT = (",", ":")
_BODY = {
    status: json.dumps({"status": status.name}, separators=_COMPACT).encode() for status in Status
}
_IMEI = re.compile(r"imei-([0-9]{15})")
_IMEISV = re.compile(r"imeisv-([0-9]{16})")
_SUPI = re.compile(r"(imsi-([0-9]{5,15}))|(nai-.+)")
_GPSI = re.compile(r"(msisdn-[0-9]{5,15})|(extid-.+@.+)")
_FEATURES = re.compile(r"[A-Fa-f0-9]*")
_MAX_FIELDS = 16


class Cause(enum.Enum):
    """The ProblemDetails ``cause`` values this face sends (TS 29.500 / TS 29.511)."""

    MANDATORY_QUERY_PARAM_MISSING = "MANDATORY_QUERY_PARAM_MISSING"
    MANDATORY_QUERY_PARAM_INCORRECT = "MANDATORY_QUERY_PARAM_INCORRECT"
    OPTIONAL_QUERY_PARAM_INCORRECT = "OPTIONAL_QUERY_PARAM_INCORRECT"
    ERROR_EQUIPMENT_UNKNOWN = "ERROR_EQUIPMENT_UNKNOWN"
    RESOURCE_URI_STRUCTURE_NOT_FOUND = "RESOURCE_URI_STRUCTURE_NOT_FOUND"
    SYSTEM_FAILURE = "SYSTEM_FAILURE"


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
}


def problem(
    status: int,
    detail: str,
    cause: Cause | None = None,
    invalid: tuple[tuple[str, str], ...] = (),
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> Response:
    """A ProblemDetails response (TS 29.571 ``ProblemDetails``)."""
    body: dict[str, object] = {"title": _TITLES[status], "status": status, "detail": detail}
    if cause is not None:
        body["cause"] = cause.value
    if invalid:
        body["invalidParams"] = [{"param": p, "reason": r} for p, r in invalid]
    return Response(status, json.dumps(body, separators=_COMPACT).encode(), _PROBLEM, headers)


class BadQueryError(CeirError):
    """A query parameter of an N5g-eir request is missing or malformed."""

    def __init__(self, param: str, reason: str, cause: Cause) -> None:
        super().__init__(f"query {param}: {reason}")
        self.param = param
        self.reason = reason
        self.cause = cause

    def response(self) -> Response:
        return problem(
            400,
            f"query parameter {self.param} {self.reason}",
            self.cause,
            ((f"query {self.param}", self.reason),),
        )


def imei_of_pei(pei: str) -> str:
    """The IMEI digits (15, check digit verified, or the 16 of an IMEISV) of a PEI;
    BadQueryError when it is not an IMEI PEI (TS 29.571 ``Pei``)."""
    found = _IMEI.fullmatch(pei)
    if found is not None:
        digits = found.group(1)
        if int(digits[14]) != check_digit(digits[:14]):
            raise BadQueryError("pei", "has a wrong IMEI check digit (Luhn)", _INCORRECT)
        return digits
    found = _IMEISV.fullmatch(pei)
    if found is not None:
        return found.group(1)
    if pei.startswith(("mac-", "eui-")):
        raise BadQueryError(
            "pei", "is a MAC or EUI-64 address; this register holds IMEIs only", _INCORRECT
        )
    if pei.startswith("imeisv-"):
        raise BadQueryError("pei", "must be imeisv- followed by 16 digits", _INCORRECT)
    if pei.startswith("imei-"):
        raise BadQueryError("pei", "must be imei- followed by 15 digits", _INCORRECT)
    raise BadQueryError("pei", "must be imei-<15 digits> or imeisv-<16 digits>", _INCORRECT)


_INCORRECT = Cause.MANDATORY_QUERY_PARAM_INCORRECT
_OPTIONAL = Cause.OPTIONAL_QUERY_PARAM_INCORRECT


@dataclass(frozen=True, slots=True)
class Query:
    """The parameters of one equipment-status request, checked."""

    imei: str
    """The digits of the PEI: 15 (check digit verified) or 16 (an IMEISV)."""
    imsi: str = ""
    """The IMSI digits of an ``imsi-`` SUPI; empty otherwise. Personal data."""


def parse_query(raw: bytes) -> Query:
    """The checked parameters of a query string; BadQueryError if one is wrong."""
    if raw.startswith(b"pei=") and b"&" not in raw and b"%" not in raw and b"+" not in raw:
        # What AMFs send: one parameter, nothing to unquote.
        return Query(imei_of_pei(raw[4:].decode("ascii", "replace")))
    try:
        text = raw.decode("ascii")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=_MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise BadQueryError(
            "pei", "cannot be read: the query string is not URL-encoded ASCII", _INCORRECT
        ) from None
    seen: dict[str, str] = {}
    for name, value in pairs:
        if name in seen:
            cause = _INCORRECT if name == "pei" else _OPTIONAL
            raise BadQueryError(name, "is given more than once", cause)
        seen[name] = value
    if "pei" not in seen:
        raise BadQueryError("pei", "is missing", Cause.MANDATORY_QUERY_PARAM_MISSING)
    imei = imei_of_pei(seen["pei"])
    imsi = ""
    supi = seen.get("supi")
    if supi is not None:
        found = _SUPI.fullmatch(supi)
        if found is None:
            raise BadQueryError("supi", "must be imsi-<5 to 15 digits> or nai-<NAI>", _OPTIONAL)
        imsi = found.group(2) or ""
    gpsi = seen.get("gpsi")
    if gpsi is not None and _GPSI.fullmatch(gpsi) is None:
        raise BadQueryError("gpsi", "must be msisdn-<5 to 15 digits> or extid-<id>", _OPTIONAL)
    features = seen.get("supported-features")
    if features is not None and _FEATURES.fullmatch(features) is None:
        raise BadQueryError("supported-features", "must be hexadecimal digits", _OPTIONAL)
    return Query(imei, imsi)


@dataclass(frozen=True, slots=True)
class HttpGate:
    """Who may ask, over HTTP: the principals and roles gRPC has (``ceir.access``).

    A client certificate (mutual TLS) names the principal first, else an
    ``authorization: Bearer`` token from ``ceir token add``. With neither configured,
    every caller is :data:`ceir.auth.OPEN` (loopback only, as for gRPC).
    """

    roles: frozenset[Role]
    trust: Trust = field(default_factory=Trust)
    """The gRPC gate's tokens and certificate deny-list: a reload there is one here."""
    certificates: bool = False

    @property
    def tokens(self) -> TokenBook | None:
        return self.trust.tokens

    @property
    def secure(self) -> bool:
        return self.certificates or self.tokens is not None

    def principal(self, request: Request) -> Principal | None:
        """The caller; None if it names nobody this server knows. RevokedError: its client
        certificate is on the deny-list (checked at every request: the list may change)."""
        if not self.secure:
            return OPEN
        connection = request.connection
        if self.certificates and connection.certificate is not None:
            if self.trust.revoked(connection.certificate):
                raise RevokedError(REVOKED)
            cached = connection.cache.get("principal", False)
            if cached is False:
                cached = principal_from_certificate(connection.certificate)
                connection.cache["principal"] = cached
            if isinstance(cached, Principal):
                return cached
        tokens = self.trust.tokens
        if tokens is not None:
            header = request.headers.get(b"authorization", b"")
            scheme, _, token = header.partition(b" ")
            if scheme.lower() == b"bearer":
                return tokens.authenticate(token.strip().decode("ascii", "replace"))
        return None


UNAUTHENTICATED = problem(
    401, "authentication required", headers=((b"www-authenticate", b"Bearer"),)
)
DENIED = problem(403, "permission denied")
CERTIFICATE_REVOKED = problem(401, REVOKED)
NO_SUCH_RESOURCE = problem(
    404,
    "no such resource; this server offers GET " + RESOURCE,
    Cause.RESOURCE_URI_STRUCTURE_NOT_FOUND,
)
WRONG_METHOD = problem(405, "only GET is allowed on " + RESOURCE, headers=((b"allow", b"GET"),))
FAILURE = problem(500, "the register could not answer; try again", Cause.SYSTEM_FAILURE)
UNKNOWN = problem(404, "the equipment is not in the register", Cause.ERROR_EQUIPMENT_UNKNOWN)


_FACE = metrics.Face.N5G_EIR
OPERATION_NAME = OPERATION.removeprefix("n5g-eir:")
"""The operationId (TS 29.511), the method label of the face's metrics."""


class EquipmentStatusService:
    """Answers N5g-eir requests (the HTTP/2 layer's handler)."""

    def __init__(
        self,
        checker: Checker,
        gate: HttpGate,
        *,
        unknown: UnknownAnswer = UnknownAnswer.STATUS,
        observe: Observer | None = None,
    ) -> None:
        self.checker = checker
        self.gate = gate
        self.unknown = unknown
        self.observe = observe
        self._ok = {status: Response(200, body, _JSON) for status, body in _BODY.items()}
        self._request: Callable[..., eir_pb2.CheckIMEIRequest] = eir_pb2.CheckIMEIRequest

    def __call__(self, request: Request) -> Response:
        started = time.perf_counter()
        response, operator = self._answer(request, started)
        metrics.request(_FACE, OPERATION_NAME, operator, time.perf_counter() - started)
        return response

    def _answer(self, request: Request, started: float) -> tuple[Response, str]:  # noqa: PLR0911 - one per answer
        """The response, and the caller's operator id for the metrics ("" if none)."""
        path, _, query = request.path.partition(b"?")
        if path != _RESOURCE:
            return NO_SUCH_RESOURCE, ""
        if request.method != b"GET":
            return WRONG_METHOD, ""
        try:
            principal = self.gate.principal(request)
        except RevokedError:
            _refused("401", "revoked certificate", started)
            metrics.refused(_FACE, metrics.Refusal.REVOKED)
            return CERTIFICATE_REVOKED, ""
        if principal is None:
            _refused("401", "anonymous", started)
            metrics.refused(_FACE, metrics.Refusal.UNAUTHENTICATED)
            return UNAUTHENTICATED, ""
        if principal.role not in self.gate.roles:
            _refused("403", principal.label, started)
            metrics.refused(_FACE, metrics.Refusal.DENIED)
            return DENIED, principal.operator_id
        try:
            parsed = parse_query(query)
        except BadQueryError as exc:
            return exc.response(), principal.operator_id
        try:
            answer = self.checker.check_one(self._request(imei=parsed.imei, imsi=parsed.imsi))
        except CeirError:
            log.exception("N5g-eir lookup failed")
            return FAILURE, principal.operator_id
        metrics.answer_code(_FACE, answer.status, answer.reason)
        if parsed.imsi and self.observe is not None:
            key = int(parsed.imei[:14]).to_bytes(8, "big")
            self.observe(key, parsed.imsi, principal.operator_id)
        if int(answer.reason) == Reason.NOT_REGISTERED and self.unknown is UnknownAnswer.NOT_FOUND:
            return UNKNOWN, principal.operator_id
        return self._ok[Status(answer.status)], principal.operator_id


def _refused(status: str, principal: str, started: float) -> None:
    """The access-log line of a refused call (flood-cut like every face's)."""
    logs.access(
        "refused",
        face=_FACE.value,
        method=OPERATION_NAME,
        status=status,
        principal=principal,
        duration=time.perf_counter() - started,
        level=logging.WARNING,
    )


def on_error() -> Response:
    """What a request gets when the handler itself fails (a bug): 500, nothing more."""
    return FAILURE


class N5gEirFace:
    """The N5g-eir face of one server process: the service on an HTTP/2 listener."""

    def __init__(
        self,
        service: EquipmentStatusService,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
        per_address: int = field_default(Settings, "max_connections_per_address"),
    ) -> None:
        self.service = service
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.reuse_port = reuse_port
        self.per_address = per_address
        """Most concurrent connections from one address (0: no cap)."""
        self._server = Http2Server(service, on_error)

    @property
    def tls(self) -> bool:
        return self.ssl_context is not None

    @property
    def url(self) -> str:
        """The apiRoot AMFs are configured with (``http://host:port``)."""
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{format_address(self.host, self.port)}"

    async def start(self) -> None:
        """Bind (port 0: any free port, then :attr:`port` is the bound one) and accept."""
        try:
            self.port = await self._server.listen(
                self.host,
                self.port,
                ssl_context=self.ssl_context,
                reuse_port=self.reuse_port,
                per_address=self.per_address,
                handshake_timeout=TransportLimits().handshake_timeout,
            )
        except OSError as exc:
            where = format_address(self.host, self.port)
            raise ConfigError(f"--sbi: cannot listen on {where}: {exc.strerror}") from exc

    async def stop(self, grace: float | None) -> None:
        await self._server.stop(grace)

    def describe(self) -> str:
        h2 = "HTTP/2 over TLS, ALPN h2" if self.ssl_context is not None else "h2c"
        return f"N5g-eir on {self.url} ({h2}, security as gRPC)"


def create_face(
    settings: Settings,
    store: Store,
    observe: Observer | None = None,
    trust: Trust | None = None,
    paired: Callable[[bytes, str], bool] | None = None,
) -> N5gEirFace | None:
    """The N5g-eir face *settings* ask for on *store* (not started); None with ``--sbi off``.

    Security is gRPC's: the same TLS files, client CA, token file and loopback rule
    (a non-loopback address needs TLS and authentication, or ``--insecure``).
    """
    address = settings.sbi_address
    if address is None:
        return None
    host, port = address
    security = Security(
        tls_cert=settings.tls_cert,
        tls_key=settings.tls_key,
        client_ca=settings.client_ca,
        insecure=settings.insecure,
    )
    if trust is None:  # alone (tests); beside gRPC it shares the gate's
        trust = Trust.load(settings.tokens, settings.cert_deny)
    rule = METHOD_RULES.get(OPERATION)
    gate = HttpGate(
        roles=rule.roles if rule is not None else frozenset(),  # missing: refused to all
        trust=trust,  # tokens configured, even empty: never open (as ceir.server.access)
        certificates=security.mutual,
    )
    security.check(host, authenticated=gate.secure)
    context = None
    if security.tls:
        security.credentials()  # the same checks (readable, key matches) as gRPC's
        assert settings.tls_cert is not None
        assert settings.tls_key is not None
        try:
            context = tls_context(
                str(settings.tls_cert),
                str(settings.tls_key),
                str(settings.client_ca) if settings.client_ca is not None else None,
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--sbi: cannot set up TLS: {exc}") from exc
    service = EquipmentStatusService(
        Checker(store, Policy(settings.unknown_status.status), paired=paired),
        gate,
        unknown=settings.sbi_unknown,
        observe=observe,
    )
    return N5gEirFace(
        service,
        host,
        port,
        ssl_context=context,
        reuse_port=settings.workers > 1,
        per_address=settings.max_connections_per_address,
    )
