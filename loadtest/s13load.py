"""``python -m loadtest --face s13``: each operator's MME asks over Diameter S13.

An :class:`S13Node` is the S13 counterpart of :class:`loadtest.engine.Node`: one
Diameter connection per operator (CER/CEA first, as an MME does), one ECR per attach
with the 14-digit IMEI and a Software-Version (what the Open5GS MME sends) and the
subscriber's IMSI as User-Name, many in flight at once. Every ECA is checked: Result-Code
2001 and the Equipment-Status of the device's expected status (S13 carries no reason).
Malformed IMEIs are sent as they are (the IMEI AVP holds the bad text).
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from loadtest import diameter
from loadtest.diameter import Answer, S13Client
from loadtest.engine import ClientSettings, NodeResult, Tally
from loadtest.population import Kind, Operator, Population


class S13Node(Tally):
    """One operator's MME on one S13 connection."""

    def __init__(
        self,
        operator: Operator,
        population: Population,
        rate: float,
        address: str,
        settings: ClientSettings,
        seed: int,
    ) -> None:
        subscribers, devices, self.svns, rng = self._draw(population, operator, seed)
        self.bodies = [devices[s.device].body for s in subscribers]
        self.imsis = [s.imsi for s in subscribers]
        self.expected = [int(devices[s.device].expected[0]) - 1 for s in subscribers]
        self.kinds = [devices[s.device].kind.value for s in subscribers]
        host = f"mme.epc.mnc0{operator.mnc}.mcc510.3gppnetwork.org"
        self.client = S13Client(host, f"epc.mnc0{operator.mnc}.mcc510.3gppnetwork.org")
        # Malformed IMEIs do not fit the fixed-width template: encoded in full, once.
        self.malformed: dict[int, bytes] = {
            j: diameter.ecr(
                host,
                self.client.realm,
                session_id=f"{host};" + "0" * 16,
                imei=devices[s.device].text15,
                user_name=s.imsi,
            )
            for j, s in enumerate(subscribers)
            if devices[s.device].kind is Kind.MALFORMED
        }
        self.texts = [
            devices[s.device].text15 if j in self.malformed else self.bodies[j]
            for j, s in enumerate(subscribers)
        ]
        self.result = NodeResult(operator, rate)
        self.settings = settings
        self.address = address
        self._random = rng.random
        self._n = len(self.bodies)
        self.outstanding = 0
        self.start = 0.0
        self.loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> None:
        host, _, port = self.address.rpartition(":")
        cea = await self.client.connect(host.strip("[]"), int(port))
        if cea is None or cea.result_code != 2001:
            code = None if cea is None else cea.result_code
            raise ConnectionError(f"S13 capabilities exchange refused (Result-Code {code})")
        self.loop = asyncio.get_running_loop()

    async def close(self) -> None:
        await self.client.close()

    async def first(self) -> None:
        """One answered ECR: the connection is up."""
        await self.client.check(self.bodies[0] or "35209900176148", self.imsis[0])

    def fire(self, t: float) -> None:
        """One attach, scheduled at loop time *t*."""
        j = self._admit(t)
        if j is None:
            return
        client = self.client
        hop = client.next_hop()
        prebuilt = self.malformed.get(j)
        if prebuilt is None:
            data = client.template.build(hop, self.bodies[j], self.imsis[j], self.svns[j % 16])
        else:
            patched = bytearray(prebuilt)
            struct.pack_into(">II", patched, 12, hop, hop)
            data = bytes(patched)
        future = client.request_nowait(data, hop)
        future.add_done_callback(lambda f, t=t, j=j: self._done(t, j, f))

    def _done(self, t: float, j: int, future: asyncio.Future[Answer]) -> None:
        assert self.loop is not None
        self.outstanding -= 1
        if future.cancelled() or future.exception() is not None:
            self._error(t, "ConnectionError")
            return
        answer = future.result()
        want = self.expected[j]
        ok = answer.result_code == 2001 and answer.equipment_status == want
        self._answered(
            t,
            j,
            None
            if ok
            else f"answered Result-Code {answer.result_code} Equipment-Status "
            f"{answer.equipment_status}, expected 2001 / {want}",
        )


def nodes(
    population: Population,
    address: str,
    rate: float,
    operators: tuple[Operator, ...],
    settings: ClientSettings,
    seed: int,
) -> list[Any]:
    """One S13 node per operator, the rate shared by market share."""
    total = sum(op.share for op in operators)
    return [
        S13Node(op, population, rate * op.share / total, address, settings, seed + i)
        for i, op in enumerate(operators)
    ]
