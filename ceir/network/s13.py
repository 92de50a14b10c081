"""S13 ME-Identity-Check over Diameter (TS 29.272): a 4G MME asks ceir about a device.

``ceir serve --s13 HOST:PORT`` runs this face in the asyncio loop of every worker (the
port shared with ``SO_REUSEPORT`` when there are several). It is a Diameter *responder*
over TCP, one :class:`_Peer` protocol per connection:

- the first message must be a CER. A peer whose Origin-Host is not in ``--s13-peers``
  gets a CEA with 3010 DIAMETER_UNKNOWN_PEER and is disconnected (with no peer list, only
  allowed on loopback, any Origin-Host is accepted); one that does not advertise S13
  (16777252) or relay gets 5010 DIAMETER_NO_COMMON_APPLICATION. Otherwise the CEA says
  2001 and advertises Vendor-Specific-Application-Id {10415, 16777252} and
  Supported-Vendor-Id 10415;
- DWR gets a DWA; DPR a DPA, and the connection closes;
- the peer's operator (MCC-MNC, the ``operator`` label of its metrics and the operator
  of its sightings) is its ``--s13-peers HOST=MCC-MNC`` entry, else what its CER's
  Origin-Realm names in 3GPP form (``epc.mnc010.mcc510.3gppnetwork.org``: 510-10,
  :mod:`ceir.network._plmn`); a peer with neither has its ECRs' metrics counted under
  the MCC-MNC of the User-Name's IMSI (the subscriber's home network; at most
  :data:`MAX_IMSI_OPERATORS` such labels per process, then ``-``);
- an ECR gets an ECA with its Session-Id and the hop-by-hop and end-to-end ids copied,
  Auth-Session-State 1, and Result-Code 2001 with Equipment-Status 0/1/2 — the decision
  CheckIMEI gives for the same IMEI at the same moment, from the same
  :class:`ceir.lookup.Checker`. An unknown device gets the ``--unknown-status`` answer,
  or Experimental-Result 5422 with ``--s13-unknown not-found``; a missing
  Terminal-Information or IMEI gets 5005 DIAMETER_MISSING_AVP with Failed-AVP; a
  malformed IMEI gets Equipment-Status 1, as CheckIMEI answers it;
- other requests get 3001 (3007 for the S13 command under another application);
- bytes that are not Diameter close that connection only.

``User-Name`` (the IMSI) goes to the observer (:mod:`ceir.sightings`), which tokenises it
before anything is stored; it is never logged or kept in clear. For a device the clone
detector flagged it also picks the answer: a paired SIM keeps the device's own status.

On :meth:`S13Face.stop` the listener closes, every open peer gets a DPR (REBOOTING, so
it fails over to another EIR) and the face waits up to the grace period for them to
answer or hang up, then closes what is left.

python-diameter does the message codec; its ``Node`` is not used: it runs its own
threads and select loop, where this face must live in the worker's asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from ceir import metrics
from ceir.config import Settings, UnknownAnswer, field_default
from ceir.imei import body_key
from ceir.lookup import Checker
from ceir.network import _diameter as dia
from ceir.network import _ecr, _plmn
from ceir.network._diameter import Command, FramingError, ResultCode
from ceir.policy import INVALID
from ceir.record import Reason, Status
from ceir.security.principals import Role
from ceir.security.roles import METHOD_RULES
from ceir.server.connections import capped
from ceir.sightings import Observer, ignore
from ceir.store import Store
from ceir.v1 import eir_pb2

__all__ = ["S13Face", "S13Options"]

_FACE = metrics.Face.S13

log = logging.getLogger("ceir.network.s13")

_WRITE_HIGH = 256 * 1024  # stop reading a peer that does not read its answers
CER_TIMEOUT = 10.0
"""Seconds a new connection has to send its CER before it is closed (a silent socket
must not hold a connection slot forever)."""
_CHECK = eir_pb2.CheckIMEIRequest
OPERATION = "s13:ME-Identity-Check"
"""This face's entry in the method -> roles table (:data:`ceir.security.roles.METHOD_RULES`)."""
MAX_IMSI_OPERATORS = 64
"""Distinct operator labels a process takes from IMSIs (peers name the rest): a bound on
the metrics' label sets whatever User-Names arrive."""
_ECR_HEAD = Command.ME_IDENTITY_CHECK.to_bytes(3, "big") + dia.S13_APPLICATION.to_bytes(4, "big")


@dataclass(frozen=True, slots=True)
class S13Options:
    """What the face is told (from :class:`ceir.config.Settings`; no defaults here)."""

    host: str
    port: int
    origin_host: str
    origin_realm: str
    peers: frozenset[str]
    """Origin-Hosts allowed to connect (lower case); empty: any (loopback only)."""
    unknown_not_found: bool
    """Unknown devices get Experimental-Result 5422 instead of an Equipment-Status."""
    reuse_port: bool = False
    operators: Mapping[str, str] = field(default_factory=dict)
    """Origin-Host (lower case) -> the operator id it is counted under (``HOST=MCC-MNC``)."""
    per_address: int = field_default(Settings, "max_connections_per_address")
    """Most concurrent connections from one address (0: no cap)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> S13Options | None:
        """The face's options; None when ``--s13 off``."""
        address = settings.s13_address
        if address is None:
            return None
        return cls(
            host=address[0],
            port=address[1],
            origin_host=settings.diameter_host,
            origin_realm=settings.diameter_realm,
            peers=frozenset(settings.s13_peer_operators),
            unknown_not_found=settings.s13_unknown is UnknownAnswer.NOT_FOUND,
            reuse_port=settings.workers > 1,
            operators={h: o for h, o in settings.s13_peer_operators.items() if o},
            per_address=settings.max_connections_per_address,
        )


class _State(enum.Enum):
    WAIT_CER = "wait-cer"
    OPEN = "open"
    DISCONNECTING = "disconnecting"
    """This node sent a DPR: requests are still answered until the DPA comes."""
    CLOSING = "closing"


class S13Face:
    """The S13 Diameter face: create, :meth:`start` (binds), :meth:`stop`."""

    def __init__(
        self,
        options: S13Options,
        checker: Checker,
        store: Store | None = None,
        observer: Observer = ignore,
    ) -> None:
        self.options = options
        self.checker = checker
        self.store = store
        """None: User-Names are not observed."""
        self.observer = observer
        self.identity = dia.Identity(options.origin_host, options.origin_realm)
        self.port = options.port
        self.peers: set[_Peer] = set()
        self._server: asyncio.base_events.Server | None = None
        self._answers = _ecr.Answers(self.identity, dia.sample_ecr())
        # Listed peers are operators; with no list (loopback only) a peer is the open
        # default's admin. A role the table does not admit (or no entry) refuses every peer.
        rule = METHOD_RULES.get(OPERATION)
        role = Role.OPERATOR if options.peers else Role.ADMIN
        self._admitted = rule is not None and role in rule.roles
        self._imsi_operators: set[str] = set()

    async def start(self) -> None:
        """Bind and listen; :attr:`port` is then the bound port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            capped(lambda: _Peer(self), self.options.per_address, "S13"),
            self.options.host,
            self.options.port,
            reuse_port=self.options.reuse_port or None,
            backlog=1024,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    def describe(self) -> str:
        """The start-up line's part about this face."""
        o = self.options
        host = f"[{o.host}]" if ":" in o.host else o.host
        peers = ", ".join(sorted(o.peers)) if o.peers else "any (loopback only)"
        unknown = "5422" if o.unknown_not_found else "the --unknown-status answer"
        return (
            f"S13 Diameter on {host}:{self.port} as {o.origin_host} (realm {o.origin_realm}), "
            f"peers {peers}, unknown devices get {unknown}"
        )

    async def stop(self, grace: float | None) -> None:
        """Stop listening, send every open peer a DPR, wait up to *grace* s for them to
        go, then close the rest."""
        if self._server is not None:
            self._server.close()
        for peer in list(self.peers):
            peer.disconnect()
        deadline = time.monotonic() + (grace or 0.0)
        while self.peers and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for peer in list(self.peers):
            peer.abort()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # -- the decision ---------------------------------------------------------------

    def allowed(self, origin_host: str) -> bool:
        """Whether a peer with this Origin-Host may connect (3010 otherwise)."""
        if not self._admitted:
            return False
        return not self.options.peers or origin_host.lower() in self.options.peers

    def operator_of(self, origin_host: str, origin_realm: str) -> str:
        """The operator id of a peer: its configured one, else what its realm names."""
        configured = self.options.operators.get(origin_host.lower())
        return configured or _plmn.from_realm(origin_realm)

    def _label(self, operator: str, user: str | None) -> str:
        """The metrics' operator: the peer's, else the User-Name IMSI's home network."""
        if operator or not user:
            return operator
        derived = _plmn.from_imsi(user)
        known = self._imsi_operators
        if derived in known:
            return derived
        if derived and len(known) < MAX_IMSI_OPERATORS:
            known.add(derived)
            return derived
        return ""

    def answer_ecr(self, ecr: Any, operator: str = "") -> tuple[bytes, str]:
        """The ECA for one ECR from a peer of *operator*, and its metrics' operator."""
        identity = self.identity
        if not ecr.session_id:
            failed = [dia.missing_session_id()]
            return identity.eca(ecr, result=ResultCode.MISSING_AVP, failed=failed), operator
        info = ecr.terminal_information
        if info is None:
            failed = [dia.missing_terminal_information()]
            return identity.eca(ecr, result=ResultCode.MISSING_AVP, failed=failed), operator
        imei = info.imei
        if not imei:
            failed = [dia.missing_imei()]
            return identity.eca(ecr, result=ResultCode.MISSING_AVP, failed=failed), operator
        user = dia.text(ecr.user_name) if ecr.user_name else None
        status = self._status(str(imei), user, operator)
        label = self._label(operator, user)
        if status is None:
            return identity.eca(ecr, result=ResultCode.ERROR_EQUIPMENT_UNKNOWN), label
        return identity.eca(ecr, equipment_status=status), label

    def answer_fast(self, raw: bytes, operator: str = "") -> tuple[bytes, str] | None:
        """:meth:`answer_ecr` for an ECR of the common shape without python-diameter's
        objects (:mod:`ceir.network._ecr`); None when the ECR needs the library path."""
        fields = _ecr.scan(raw)
        if fields is None:
            return None
        status = self._status(fields.imei, fields.user_name, operator)
        answer = self._answers.eca(raw, fields.session_id, status)
        return answer, self._label(operator, fields.user_name)

    def _status(self, text: str, user: str | None, operator: str) -> int | None:
        """The Equipment-Status for an IMEI AVP's *text* (None: 5422), the decision of
        CheckIMEI (for the SIM of the User-Name, when given), which goes to the observer
        with the peer's *operator*."""
        if len(text) in (14, 15) and text.isascii() and text.isdigit():
            response = self.checker.check_one(_CHECK(imei=text, imsi=user or ""))
            status, reason = int(response.status), int(response.reason)
            if user and self.store is not None and reason != Reason.INVALID_IMEI:
                self._observe(text[:14], user, operator)
        else:  # TS 29.272: 14 digits, or 15; anything else is what CheckIMEI calls invalid
            status, reason = int(INVALID.status), int(INVALID.reason)
        metrics.answer_code(_FACE, status, reason)
        if reason == Reason.NOT_REGISTERED and self.options.unknown_not_found:
            return None
        return Status(status).gpp_value

    def _observe(self, body: str, imsi: str, operator: str) -> None:
        """Hand the sighting to the observer (which tokenises the IMSI before storing)."""
        self.observer(body_key(body), imsi, operator)


class _Peer(asyncio.Protocol):
    """One Diameter connection."""

    def __init__(self, face: S13Face) -> None:
        self.face = face
        self.state = _State.WAIT_CER
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self._cer_timer: asyncio.TimerHandle | None = None
        self.origin = ""
        self.operator = ""
        """The peer's operator id (:meth:`S13Face.operator_of`), once its CER is in."""
        self.address = ""
        self.local = ""

    @property
    def closing(self) -> bool:
        return self.state is _State.CLOSING

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is not an asyncio.Transport subclass, but is one.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=_WRITE_HIGH)
        peer = transport.get_extra_info("peername") or ("?", 0)
        sock = transport.get_extra_info("sockname") or ("127.0.0.1", 0)
        self.address = f"{peer[0]}:{peer[1]}"
        self.local = str(sock[0])
        self.face.peers.add(self)
        self._cer_timer = asyncio.get_running_loop().call_later(CER_TIMEOUT, self._no_cer)

    def _no_cer(self) -> None:
        if self.state is _State.WAIT_CER and self.transport is not None:
            log.warning(
                "S13 connection from %s closed: no CER within %g s", self.address, CER_TIMEOUT
            )
            self.state = _State.CLOSING
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.face.peers.discard(self)
        if self._cer_timer is not None:
            self._cer_timer.cancel()
        if self.state is _State.OPEN:
            log.info("S13 peer %s (%s) disconnected", self.origin, self.address)

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or self.state is _State.CLOSING:
            return
        self.buffer += data
        out: list[bytes] = []
        try:
            for raw in dia.split(self.buffer):
                reply = self._handle(raw)
                if reply:
                    out.append(reply)
                if self.closing:
                    break
        except FramingError as exc:
            log.warning("S13 connection from %s closed: %s", self.address, exc)
            self.state = _State.CLOSING
        except Exception as exc:  # noqa: BLE001 - one bad message must not stop the face
            # A message that decodes but that the codec cannot answer (a library error on
            # odd AVP values): that connection only, one line, never the values.
            log.warning(
                "S13 connection from %s closed: cannot answer (%s)",
                self.address,
                type(exc).__name__,
            )
            self.state = _State.CLOSING
        if out:
            transport.write(b"".join(out))
        if self.state is _State.CLOSING:
            transport.close()

    def _handle(self, raw: bytes) -> bytes:  # noqa: PLR0911 - one answer per command
        if (
            raw[4] & dia.FLAG_REQUEST
            and raw[5:12] == _ECR_HEAD
            and self.state is not _State.WAIT_CER
        ):
            started = time.perf_counter()
            fast = self.face.answer_fast(raw, self.operator)
            if fast is not None:
                metrics.request(_FACE, "ECR", fast[1], time.perf_counter() - started)
                return fast[0]
        message = dia.decode(raw)
        header = message.header
        if not header.is_request:
            if header.command_code == Command.DISCONNECT_PEER and (
                self.state is _State.DISCONNECTING
            ):
                self.state = _State.CLOSING
            return b""  # this node sends no other requests: stray answers are ignored
        code = header.command_code
        if self.state is _State.WAIT_CER:
            if code != Command.CAPABILITIES_EXCHANGE:
                raise FramingError(f"command {code} before the capabilities exchange")
            return self._cer(message)
        if code == Command.ME_IDENTITY_CHECK:
            if header.application_id != dia.S13_APPLICATION:
                return self.face.identity.error(message, ResultCode.APPLICATION_UNSUPPORTED)
            started = time.perf_counter()
            answer, operator = self.face.answer_ecr(message, self.operator)
            metrics.request(_FACE, "ECR", operator, time.perf_counter() - started)
            return answer
        if code == Command.DEVICE_WATCHDOG:
            return self.face.identity.dwa(message)
        if code == Command.DISCONNECT_PEER:
            self.state = _State.CLOSING
            return self.face.identity.dpa(message)
        if code == Command.CAPABILITIES_EXCHANGE:  # again, on an open connection
            return self.face.identity.cea(message, ResultCode.SUCCESS, self.local)
        return self.face.identity.error(message, ResultCode.COMMAND_UNSUPPORTED)

    def _cer(self, cer: Any) -> bytes:
        origin = dia.text(cer.origin_host)
        identity = self.face.identity
        if not self.face.allowed(origin):
            log.warning("S13 peer %r from %s refused: not in --s13-peers", origin, self.address)
            self.state = _State.CLOSING
            return identity.cea(cer, ResultCode.UNKNOWN_PEER, self.local)
        if not dia.advertises_s13(cer):
            log.warning("S13 peer %r from %s refused: no S13 application", origin, self.address)
            self.state = _State.CLOSING
            return identity.cea(cer, ResultCode.NO_COMMON_APPLICATION, self.local)
        self.origin = origin
        self.operator = self.face.operator_of(origin, dia.text(cer.origin_realm))
        self.state = _State.OPEN
        if self._cer_timer is not None:
            self._cer_timer.cancel()
        log.info(
            "S13 peer %s (%s) connected, operator %s",
            origin,
            self.address,
            self.operator or "unknown (its ECRs count under their IMSIs' networks)",
        )
        return identity.cea(cer, ResultCode.SUCCESS, self.local)

    def disconnect(self) -> None:
        """Ask an open peer to disconnect (DPR); close a connection still in CER."""
        if self.transport is None:
            return
        if self.state is _State.OPEN:
            self.state = _State.DISCONNECTING
            hop = secrets.randbits(32)
            self.transport.write(self.face.identity.dpr(hop, dia.DisconnectCause.REBOOTING))
        else:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            with contextlib.suppress(Exception):
                self.transport.abort()
