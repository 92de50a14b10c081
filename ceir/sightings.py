"""The observation seam: which SIM a device attached with, as a core network told us.

CheckIMEI's ``imsi``, N5g-eir's ``supi`` (``imsi-…``) and S13's ``User-Name`` are the IMSI
of an attach. A face that learns one calls an :data:`Observer` with

- the device's 8-byte store key (:func:`ceir.imei.body_key` of its 14-digit body),
- the IMSI as the network sent it (in memory only: the observer tokenises it before
  anything is stored, and nothing logs it),
- the operator id (MCC-MNC) of the principal that asked; empty without security.

The N5g-eir face (:mod:`ceir.network.n5g_eir`), the S13 face (:mod:`ceir.network.s13`)
and gRPC CheckIMEI in all its forms (:class:`ceir.server.eir.EquipmentIdentityRegister`,
for each request that carries an ``imsi``) call it. ``ceir serve`` plugs in the clone
detector's recorder (:class:`ceir.clones.recorder.Recorder`): it only queues the sighting
and returns; a background thread tokenises and writes in batches, off the hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ceir.errors import InvalidImeiError
from ceir.imei import check_digit, parse

__all__ = ["BatchObserver", "Observer", "ignore", "sightings_of"]

Observer = Callable[[bytes, str, str], None]
"""``observe(device_key, imsi, operator_id)``; must be cheap (it is on the hot path)."""

BatchObserver = Callable[[Sequence[Any], str], None]
"""``observe_batch(check_imei_requests, operator_id)``: a whole batch at once, parsed later
(:func:`sightings_of`) off the hot path."""


def ignore(device_key: bytes, imsi: str, operator_id: str) -> None:
    """The observer when recording is off (``--no-observe``): sightings are not kept."""


def sightings_of(requests: Sequence[Any]) -> list[tuple[bytes, str]]:
    """(device key, IMSI) of each CheckIMEI request with an ``imsi`` and a valid IMEI."""
    out = []
    for request in requests:
        sim = request.imsi
        if not sim:
            continue
        text = request.imei
        n = len(text)
        if 14 <= n <= 16 and text.isascii() and text.isdigit():
            # The plain forms, as the lookup's fast path takes them (15: check digit).
            if n != 15 or ord(text[14]) - 48 == check_digit(text[:14]):
                out.append((int(text[:14]).to_bytes(8, "big"), sim))
            continue
        try:
            out.append((parse(text).key, sim))
        except InvalidImeiError:
            continue
    return out
