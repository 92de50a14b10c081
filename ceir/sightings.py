"""The observation seam: which SIM a device attached with, as a core network told us.

CheckIMEI's ``imsi``, N5g-eir's ``supi`` (``imsi-…``) and S13's ``User-Name`` are the IMSI
of an attach. A face that learns one calls an :data:`Observer` with

- the device's 8-byte store key (:func:`ceir.imei.body_key` of its 14-digit body),
- the IMSI as a 16-byte identity token (:meth:`ceir.store.identity.Tokenizer.token` with
  ``IdKind.IMSI``): never the IMSI itself,
- the operator id (MCC-MNC) of the principal that asked; empty without security.

The N5g-eir face (:mod:`ceir.network.n5g_eir`), the S13 face (:mod:`ceir.network.s13`)
and gRPC CheckIMEI in all its forms (:class:`ceir.server.eir.EquipmentIdentityRegister`,
for each request that carries an ``imsi``) call it. Nothing consumes sightings yet:
clone detection (one IMEI on many SIMs at once) is a later issue, and it plugs an
observer in here (``ceir.server.app.create_faces`` passes :func:`ignore` to the network
faces today, and the gRPC servicer gets none, so its bulk path pays nothing).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Observer", "ignore"]

Observer = Callable[[bytes, bytes, str], None]
"""``observe(device_key, imsi_token, operator_id)``; must be cheap (it is on the hot path)."""


def ignore(device_key: bytes, imsi_token: bytes, operator_id: str) -> None:
    """The observer until clone detection exists: sightings are not kept."""
