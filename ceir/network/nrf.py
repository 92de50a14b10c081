"""NRF registration (3GPP TS 29.510 Nnrf_NFManagement): how AMFs find this EIR.

With ``--nrf URL`` the server registers one NFProfile (nfType ``5G_EIR``, one service
``n5g-eir-eic`` version ``v1`` at the N5g-eir face's address) with
``PUT {nrf}/nnrf-nfm/v1/nf-instances/{nfInstanceId}``, then sends a heart-beat
(``PATCH`` with a JSON Patch setting ``/nfStatus`` to ``REGISTERED``) every
``heartBeatTimer`` seconds, as the NRF's answer fixes it, and deregisters
(``DELETE``) on shutdown.

- An NRF that cannot be reached, or refuses, is logged and tried again at the next
  heart-beat: the EIR keeps answering the AMFs that already know it.
- A heart-beat answered 404 (the NRF forgot us, e.g. it restarted) registers again.
- The instance id is a UUID derived from the host name and the face's address, so a
  restarted server keeps its identity in the NRF.

HTTP/2 (cleartext with prior knowledge for ``http://``, ALPN h2 for ``https://``) through
``httpx``; one worker process registers (the NF is one instance, however many workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import uuid
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from ceir import __version__
from ceir.errors import ConfigError
from ceir.network.n5g_eir import API_FULL_VERSION, API_VERSION, SERVICE_NAME

log = logging.getLogger("ceir.network.nrf")

NF_TYPE = "5G_EIR"
API_ROOT = "/nnrf-nfm/v1/nf-instances/"
HEARTBEAT = 10
"""The heart-beat period proposed to the NRF (seconds); the NRF's answer decides."""
TIMEOUT = 5.0
"""Seconds one request to the NRF may take."""


def check_url(url: str) -> str:
    """*url* without a trailing slash if it is an ``http://`` or ``https://`` NRF apiRoot."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--nrf {url!r} is not an http:// or https:// URL of an NRF")
    return url.rstrip("/")


def instance_id(host: str, port: int) -> str:
    """The NF instance id: stable for one host name and face address."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ceir:{socket.gethostname()}:{host}:{port}"))


def _advertised(host: str) -> str:
    """The address AMFs are told to use: *host*, or this host's address for a wildcard."""
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - naming the wildcard, not binding it
        with contextlib.suppress(OSError):
            return socket.gethostbyname(socket.gethostname())
        return "127.0.0.1"
    return host


@dataclass(frozen=True, slots=True)
class Registration:
    """What this EIR tells the NRF about itself."""

    nrf: str
    host: str
    port: int
    tls: bool
    heartbeat: int = HEARTBEAT

    @property
    def nf_instance_id(self) -> str:
        return instance_id(self.host, self.port)

    @property
    def url(self) -> str:
        return self.nrf + API_ROOT + self.nf_instance_id

    def profile(self) -> dict[str, Any]:
        """The NFProfile (TS 29.510 §6.1.6.2.2) with its one NFService."""
        address = _advertised(self.host)
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            ip = None
        endpoint: dict[str, Any] = {"transport": "TCP", "port": self.port}
        profile: dict[str, Any] = {
            "nfInstanceId": self.nf_instance_id,
            "nfType": NF_TYPE,
            "nfStatus": "REGISTERED",
            "heartBeatTimer": self.heartbeat,
        }
        if ip is None:
            profile["fqdn"] = address
        elif ip.version == 4:
            endpoint["ipv4Address"] = address
            profile["ipv4Addresses"] = [address]
        else:
            endpoint["ipv6Address"] = address
            profile["ipv6Addresses"] = [address]
        profile["nfServices"] = [
            {
                "serviceInstanceId": f"{SERVICE_NAME}-1",
                "serviceName": SERVICE_NAME,
                "versions": [{"apiVersionInUri": API_VERSION, "apiFullVersion": API_FULL_VERSION}],
                "scheme": "https" if self.tls else "http",
                "nfServiceStatus": "REGISTERED",
                "ipEndPoints": [endpoint],
            }
        ]
        profile["customInfo"] = {"software": f"ceir {__version__}"}
        return profile


class Endpoint(Protocol):
    """Where the face listens (its port is known once it is started)."""

    host: str
    port: int

    @property
    def tls(self) -> bool: ...


class NrfAgent:
    """Registers with the NRF, heart-beats, deregisters: a face's lifecycle without a port.

    Started after the N5g-eir face (*endpoint*), so the profile carries its bound port.
    """

    def __init__(self, nrf: str, endpoint: Endpoint, client: Any = None) -> None:
        self.nrf = check_url(nrf)
        self.endpoint = endpoint
        self._client = client
        self._task: asyncio.Task[None] | None = None
        self.registered = False
        self.sent = False  # a PUT went out: the NRF may hold our profile (answer or not)
        self.registration = self._registration()
        self.period = float(self.registration.heartbeat)

    def _registration(self) -> Registration:
        return Registration(self.nrf, self.endpoint.host, self.endpoint.port, self.endpoint.tls)

    def describe(self) -> str:
        return f"NRF {self.registration.nrf} (nfInstanceId {self.registration.nf_instance_id})"

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(http1=False, http2=True, timeout=TIMEOUT, verify=True)
        return self._client

    async def start(self) -> None:
        """Register once now (a failure is logged and retried), then heart-beat."""
        self.registration = self._registration()
        await self._register()
        self._task = asyncio.create_task(self._beat(), name="nrf-heartbeat")

    async def stop(self, grace: float | None) -> None:
        """Stop heart-beating and deregister (within *grace*, at most TIMEOUT)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.registered or self.sent:  # a PUT cut short by the stop may have landed
            try:
                response = await self._http().delete(self.registration.url)
                if response.status_code not in (200, 204, 404):
                    log.warning("NRF refused deregistration: HTTP %d", response.status_code)
                else:
                    log.info("deregistered from the NRF %s", self.registration.nrf)
            except Exception as exc:  # noqa: BLE001 - any transport failure: log, go on
                log.warning("cannot deregister from the NRF %s: %s", self.registration.nrf, exc)
            self.registered = self.sent = False
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _register(self) -> None:
        registration = self.registration
        self.sent = True
        try:
            response = await self._http().put(registration.url, json=registration.profile())
        except Exception as exc:  # noqa: BLE001 - unreachable NRF: log, retry at the next beat
            log.warning("cannot register with the NRF %s: %s", registration.nrf, exc)
            return
        if response.status_code not in (200, 201):
            log.warning(
                "the NRF %s refused the registration: HTTP %d",
                registration.nrf,
                response.status_code,
            )
            return
        self.registered = True
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            timer = response.json().get("heartBeatTimer")
            if isinstance(timer, int) and timer > 0:
                self.period = float(timer)
        log.info(
            "registered with the NRF %s as %s (heart-beat every %g s)",
            registration.nrf,
            registration.nf_instance_id,
            self.period,
        )

    async def _beat(self) -> None:
        patch = [{"op": "replace", "path": "/nfStatus", "value": "REGISTERED"}]
        while True:
            await asyncio.sleep(self.period)
            if not self.registered:
                await self._register()
                continue
            try:
                response = await self._http().patch(
                    self.registration.url,
                    json=patch,
                    headers={"content-type": "application/json-patch+json"},
                )
            except Exception as exc:  # noqa: BLE001 - transport failure: log, retry
                log.warning("NRF heart-beat failed: %s", exc)
                continue
            if response.status_code == 404:
                log.warning("the NRF no longer knows this EIR; registering again")
                self.registered = False
                await self._register()
            elif response.status_code not in (200, 204):
                log.warning("the NRF refused a heart-beat: HTTP %d", response.status_code)
