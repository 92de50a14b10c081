"""The simulated country: five operators, their subscribers, and the devices they carry.

Indonesia (MCC 510) as the CEIR went live in 2020: five mobile operators with
approximate market shares. Every subscriber carries one device drawn from a configurable
mix of registration kinds, and every device carries the answer ceir must give for it
(status and reason), because the register is loaded from feeds written from the same
devices (:mod:`loadtest.fill`). Generation is deterministic for a seed and a "now".
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from ceir.imei import check_digit
from ceir.record import Reason, Status

MCC = "510"
DAY = 86_400


@dataclass(frozen=True)
class Operator:
    """One mobile network operator and how its EIR sends IMEIs."""

    name: str
    mnc: str
    share: float
    """Share of the simulated subscribers (and of the attach traffic)."""
    subscribers_millions: int
    """Real-world order of magnitude, for the report only."""
    imei_digits: int
    """What its core network sends: 14 (S13 IMEI), 15 (with check digit) or 16 (IMEISV)."""

    @property
    def plmn(self) -> str:
        return f"{MCC}-{self.mnc}"


OPERATORS = (
    Operator("Telkomsel", "10", 0.46, 170, 16),
    Operator("Indosat Ooredoo", "01", 0.16, 60, 15),
    Operator("XL Axiata", "11", 0.16, 58, 14),
    Operator("Tri (Hutchison)", "89", 0.12, 45, 15),
    Operator("Smartfren", "09", 0.10, 35, 16),
)


class Kind(enum.Enum):
    """How a device stands in the register (the device mix)."""

    MANUFACTURER = "manufacturer"
    CUSTOMS = "customs"
    GRANDFATHERED = "grandfathered"
    TEMPORARY = "temporary"
    EXPIRED = "expired"
    EXEMPT = "exempt"
    LOST_STOLEN = "lost-stolen"
    UNREGISTERED = "unregistered"
    MALFORMED = "malformed"


DEFAULT_MIX = {
    Kind.MANUFACTURER: 0.60,
    Kind.CUSTOMS: 0.05,
    Kind.GRANDFATHERED: 0.20,
    Kind.TEMPORARY: 0.03,
    Kind.EXPIRED: 0.01,
    Kind.EXEMPT: 0.005,
    Kind.LOST_STOLEN: 0.02,
    Kind.UNREGISTERED: 0.06,
    Kind.MALFORMED: 0.025,
}

# The answer for each kind in the whitelist regime (unknown devices are refused).
EXPECTED = {
    Kind.MANUFACTURER: (Status.WHITELISTED, Reason.REGISTERED),
    Kind.CUSTOMS: (Status.WHITELISTED, Reason.REGISTERED),
    Kind.GRANDFATHERED: (Status.WHITELISTED, Reason.GRANDFATHERED),
    Kind.TEMPORARY: (Status.WHITELISTED, Reason.TEMPORARY),
    Kind.EXPIRED: (Status.BLACKLISTED, Reason.EXPIRED),
    Kind.EXEMPT: (Status.WHITELISTED, Reason.EXEMPT),
    Kind.LOST_STOLEN: (Status.BLACKLISTED, Reason.LOST_STOLEN),
    Kind.UNREGISTERED: (Status.BLACKLISTED, Reason.NOT_REGISTERED),
}
INVALID = (Status.BLACKLISTED, Reason.INVALID_IMEI)

# TAC prefixes of real reporting bodies (35, 86, 01, 49); the models are invented.
BRANDS = ("Nusantara", "Garuda", "Komodo", "Merapi", "Rinjani", "Bromo", "Toba", "Sumba")


def parse_mix(text: str) -> dict[Kind, float]:
    """``manufacturer=0.6,customs=0.05,...``: kinds not named keep weight 0."""
    mix = dict.fromkeys(Kind, 0.0)
    for item in text.split(","):
        name, _, weight = item.partition("=")
        try:
            mix[Kind(name.strip())] = float(weight)
        except ValueError:
            names = ", ".join(k.value for k in Kind)
            raise ValueError(
                f"bad mix item {item!r}: use KIND=WEIGHT with KIND in {names}"
            ) from None
    if sum(mix.values()) <= 0:
        raise ValueError("the mix gives no device any weight")
    return mix


def format_mix(mix: dict[Kind, float]) -> str:
    return ",".join(f"{k.value}={w:g}" for k, w in mix.items() if w)


@dataclass
class Device:
    kind: Kind
    body: str
    """The 14-digit body (empty for a malformed IMEI)."""
    text15: str
    """What an operator sending 15 digits sends (for malformed ones: the bad text)."""
    expected: tuple[Status, Reason]

    def sent_as(self, digits: int, svn: str) -> str:
        """The IMEI as an operator whose network sends *digits* digits puts it."""
        if self.kind is Kind.MALFORMED or digits == 15:
            return self.text15
        return self.body if digits == 14 else self.body + svn


@dataclass
class Subscriber:
    imsi: str
    device: int
    """Index into Population.devices."""


@dataclass
class Population:
    seed: int
    now: int
    mix: dict[Kind, float]
    devices: list[Device] = field(default_factory=list)
    subscribers: dict[str, list[Subscriber]] = field(default_factory=dict)
    """Per operator name."""
    tacs: list[tuple[str, str, str]] = field(default_factory=list)
    """(tac, brand, model) of every TAC in use."""

    def by_kind(self, kind: Kind) -> Iterator[Device]:
        return (d for d in self.devices if d.kind is kind)


def _tacs(rng: random.Random, count: int) -> list[tuple[str, str, str]]:
    prefixes = ("35", "35", "35", "86", "86", "01", "49")
    seen: set[str] = set()
    out = []
    while len(out) < count:
        tac = rng.choice(prefixes) + f"{rng.randrange(10**6):06d}"
        if tac in seen:
            continue
        seen.add(tac)
        brand = rng.choice(BRANDS)
        out.append((tac, brand, f"{brand[0]}{rng.randrange(1, 40)} {rng.choice('ABCX')}"))
    return out


_MALFORMED = ("hex", "short", "bad-check-digit", "all-zeros")


def _malformed(rng: random.Random, n: int, body: str) -> tuple[str, tuple[Status, Reason]]:
    variety = _MALFORMED[n % len(_MALFORMED)]
    if variety == "hex":
        at = rng.randrange(14)
        return body[:at] + rng.choice("ABCDEF") + body[at + 1 :] + "0", INVALID
    if variety == "short":
        return body[:13], INVALID
    if variety == "bad-check-digit":
        return body + str((check_digit(body) + rng.randrange(1, 10)) % 10), INVALID
    # Fifteen zeros are well formed (the Luhn digit of zeros is 0) but never registered.
    return "0" * 15, EXPECTED[Kind.UNREGISTERED]


def generate(
    *, devices: int, mix: dict[Kind, float], seed: int, now: int, tacs: int = 300
) -> Population:
    """*devices* subscribers (one device each) spread over the operators by share."""
    rng = random.Random(seed)
    population = Population(seed, now, mix, tacs=_tacs(rng, tacs))
    kinds = [k for k, w in mix.items() if w > 0]
    weights = [mix[k] for k in kinds]
    chosen = rng.choices(kinds, weights, k=devices)
    bodies: set[str] = set()
    for n, kind in enumerate(chosen):
        while True:
            body = rng.choice(population.tacs)[0] + f"{rng.randrange(10**6):06d}"
            if body not in bodies and body != "0" * 14:
                bodies.add(body)
                break
        if kind is Kind.MALFORMED:
            text, expected = _malformed(rng, n, body)
            body = ""
        else:
            text, expected = body + str(check_digit(body)), EXPECTED[kind]
        population.devices.append(Device(kind, body, text, expected))
    order = list(range(devices))
    rng.shuffle(order)
    start = 0
    for i, op in enumerate(OPERATORS):
        end = devices if i == len(OPERATORS) - 1 else start + round(devices * op.share)
        population.subscribers[op.name] = [
            Subscriber(f"{MCC}{op.mnc}{rng.randrange(10**10):010d}", d) for d in order[start:end]
        ]
        start = end
    return population
