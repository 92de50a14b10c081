"""The observation seam: which subscriber identity a device was seen with, and where.

A core network's question carries the attach's IMSI (S13 ``User-Name``, N5g-eir
``supi``, CheckIMEI's ``imsi``). The faces turn it into an identity token
(:mod:`ceir.identity`, kind IMSI) at once and hand the pair to one
:class:`Observer`, so the register can later see one IMEI on many SIMs (clone
detection is a later issue: this is only the place it will plug in). The clear IMSI
goes no further than the face that tokenised it.
"""

from __future__ import annotations

import enum
from typing import NamedTuple, Protocol

__all__ = ["DISCARD", "Door", "Observer", "Sighting"]


class Door(enum.Enum):
    """Through which face a device was asked about."""

    GRPC = "grpc"
    N5G_EIR = "n5g-eir"
    S13 = "s13"


class Sighting(NamedTuple):
    """A device seen with a subscriber: the IMEI's 14-digit body and the IMSI's token."""

    body: str
    imsi_token: bytes
    door: Door


class Observer(Protocol):
    """Receives every sighting a face makes (called on the serving loop: be quick)."""

    def saw(self, sighting: Sighting) -> None: ...


class _Discard:
    """The observer until clone detection exists: sightings are not kept."""

    def saw(self, sighting: Sighting) -> None:
        del sighting


DISCARD: Observer = _Discard()
