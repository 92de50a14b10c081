"""Which operator (MCC-MNC, ``510-10``) a core-network peer or subscriber belongs to.

A Diameter peer's realm in 3GPP form names its network (TS 23.003 §19.2):
``epc.mnc<MNC>.mcc<MCC>.3gppnetwork.org``, the MNC always written with three digits — a
two-digit MNC gets a leading ``0`` (Telkomsel, 510-10: ``epc.mnc010.mcc510...``). An
IMSI starts with the MCC and the MNC, but how many digits the MNC has is not in the
IMSI: it is the numbering plan's (ITU-T E.212), per country. So the realm is
authoritative and the IMSI only a fallback, read with the small table below; a country
whose MNCs come in both lengths answers nothing rather than a guess. Pure: no I/O.
"""

from __future__ import annotations

import re

__all__ = ["from_imsi", "from_realm"]

_REALM = re.compile(r"(?:^|\.)mnc(\d{3})\.mcc(\d{3})\.3gppnetwork\.org\.?$", re.IGNORECASE)

# MCCs whose MNCs are all three digits (E.212): North America and the Caribbean,
# Mexico, Honduras, Argentina, Colombia. Every other MCC is read as two-digit MNCs
# (Indonesia, 510, among them), except the mixed ones.
_THREE_DIGIT = frozenset(
    {
        "302", "310", "311", "312", "313", "314", "315", "316", "330", "334", "338",
        "342", "344", "346", "348", "352", "354", "356", "358", "360", "365", "366",
        "376", "708", "722", "732",
    }
)  # fmt: skip
_MIXED = frozenset({"405", "502"})
"""MCCs with both two- and three-digit MNCs (India's 405, Malaysia's 502)."""


def _country(mcc: str) -> bool:
    """Whether *mcc* is a country's code (first digit 2-7; 0xx, 1xx and 9xx are not)."""
    return "2" <= mcc[0] <= "7"


def from_realm(realm: str) -> str:
    """The MCC-MNC a 3GPP realm (or host name under one) names; ``""`` when it is not of
    that form, or its MNC length cannot be told (a mixed country, MNC ``0xy``)."""
    match = _REALM.search(realm)
    if match is None:
        return ""
    mnc, mcc = match.groups()
    if not _country(mcc):
        return ""
    if mnc[0] == "0" and mcc not in _THREE_DIGIT:
        if mcc in _MIXED:
            return ""
        mnc = mnc[1:]
    return f"{mcc}-{mnc}"


def from_imsi(imsi: str) -> str:
    """The MCC-MNC of an IMSI's home network by the MNC-length table; ``""`` for what is
    not an IMSI (6 to 15 digits) or where the length cannot be told."""
    if not (6 <= len(imsi) <= 15 and imsi.isascii() and imsi.isdigit()):
        return ""
    mcc = imsi[:3]
    if not _country(mcc) or mcc in _MIXED:
        return ""
    return f"{mcc}-{imsi[3:6] if mcc in _THREE_DIGIT else imsi[3:5]}"
