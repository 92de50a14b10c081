"""What the page shows: the visitor's input read leniently, the LookupDevice answer put in
plain words with next steps, and the HTML (jinja2, autoescaped) around it.

The answer itself is :meth:`ceir.server.device_check.DeviceCheck.LookupDevice`'s, so the
page, the JSON endpoint and the gRPC call cannot disagree.
"""

from __future__ import annotations

import enum
import re
import time
from dataclasses import dataclass, field
from typing import Any

import jinja2

from ceir import __version__
from ceir.errors import InvalidImeiError, InvalidReason
from ceir.imei import check_digit, normalize_lenient, parse_lenient
from ceir.v1 import device_check_pb2
from ceir.web import i18n
from ceir.web.i18n import Lang

MAX_INPUT = 200
"""Longest input read; anything longer is answered as a wrong length, unread."""

# What a *#06# screen or a box label puts around the number: the code itself and labels
# like "IMEI:", "IMEI 1:", "IMEISV", "SV:". Each is read as a line break (a text input
# drops the paste's own line breaks), and the first line holding a digit is the number.
_LABELS = re.compile(
    r"\*#06#|(?:imei\s*sv|imeisv|imei(?:\s*[12](?=\s*[:\uff1a]))?|svn|sv|s/n)\s*[:\uff1a]?",
    re.IGNORECASE,
)


def read_pasted(text: str) -> str:
    """The number in what a person typed or pasted: labels and the *#06# code dropped,
    the first line holding a digit kept (a dual-SIM screen lists IMEI 1 first)."""
    text = text[: MAX_INPUT + 1]
    lines = [line.strip() for line in _LABELS.sub("\n", text).splitlines()]
    for line in lines:
        if any(ch.isdigit() for ch in line):
            return line
    return " ".join(line for line in lines if line)


class Tone(enum.Enum):
    """How the result is coloured (and announced): fine, careful, refused."""

    OK = "ok"
    WARN = "warn"
    BAD = "bad"


_TONES = {
    "REGISTERED": Tone.OK,
    "TEMPORARY": Tone.WARN,
    "NOT_REGISTERED_ALLOWED": Tone.WARN,
    "SUSPECTED_CLONE": Tone.WARN,
    "UNKNOWN": Tone.WARN,
    "NOT_REGISTERED": Tone.BAD,
    "BLOCKED": Tone.BAD,
    "EXPIRED": Tone.BAD,
}


def verdict_key(answer: device_check_pb2.LookupDeviceResponse) -> str:
    """Which text the answer gets. A state added later (the suspected-clone state of the
    DUPLICATE reason) is recognised by its name, so its text is ready before it exists."""
    name = device_check_pb2.DeviceState.Name(answer.state).removeprefix("DEVICE_STATE_")
    if "CLONE" in name or "DUPLICATE" in name:
        return "SUSPECTED_CLONE"
    if name == "NOT_REGISTERED" and answer.allowed:
        return "NOT_REGISTERED_ALLOWED"
    return name if name in _TONES else "UNKNOWN"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer in the visitor's language."""

    key: str
    tone: Tone
    title: str
    body: str
    steps: list[str]
    imei: str
    brand: str
    model: str


def verdict(answer: device_check_pb2.LookupDeviceResponse, lang: Lang) -> Verdict:
    key = verdict_key(answer)
    until = answer.valid_until.seconds if answer.HasField("valid_until") else 0
    values = {"date": i18n.date(until, lang)} if until else {"date": "-"}
    canonical = answer.imei
    boxed = "-".join((canonical[:2], canonical[2:8], canonical[8:14], canonical[14:]))
    return Verdict(
        key=key,
        tone=_TONES[key],
        title=i18n.text(lang, f"{key}.title", **values),
        body=i18n.text(lang, f"{key}.body", **values),
        steps=i18n.steps(lang, f"{key}.next", **values),
        imei=boxed,
        brand=answer.brand,
        model=answer.model,
    )


def explain(exc: InvalidImeiError, typed: str, lang: Lang) -> str:
    """What is wrong with *typed* (as read by :func:`read_pasted`), in *lang*."""
    digits = normalize_lenient(typed)
    reason = exc.reason
    if reason is InvalidReason.NON_DIGIT:
        bad = next((ch for ch in digits if not ("0" <= ch <= "9")), "?")
        position = typed.find(bad) + 1 if bad in typed else 1
        return i18n.text(lang, "invalid.NON_DIGIT", char=repr(bad), position=position)
    if reason is InvalidReason.BAD_LENGTH:
        count = len(digits) if len(typed) <= MAX_INPUT else f"{MAX_INPUT}+"
        return i18n.text(lang, "invalid.BAD_LENGTH", count=count)
    if reason is InvalidReason.BAD_CHECK_DIGIT and len(digits) == 15:
        return i18n.text(
            lang, "invalid.BAD_CHECK_DIGIT", given=digits[14], expected=check_digit(digits[:14])
        )
    if reason is InvalidReason.EMPTY:
        return i18n.text(lang, "invalid.EMPTY")
    return i18n.text(lang, "invalid.OUT_OF_RANGE")


def check_text(typed: str) -> str:
    """*typed* as LookupDevice reads it; raises InvalidImeiError (too long included)."""
    cleaned = read_pasted(typed)
    if len(cleaned) > MAX_INPUT:
        raise InvalidImeiError(InvalidReason.BAD_LENGTH, "input too long")
    parse_lenient(cleaned)  # raises with the reason the page explains
    return cleaned


@dataclass(slots=True)
class View:
    """Everything one page shows."""

    lang: Lang
    typed: str = ""
    verdict: Verdict | None = None
    error: str = ""
    notice_title: str = ""
    notice_body: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("ceir.web", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_PAGE = _ENV.get_template("page.html")


def render(view: View) -> str:
    """The HTML of *view*."""
    lang = view.lang
    others = [other for other in Lang if other is not lang]
    return _PAGE.render(
        lang=lang.value,
        t=i18n.TEXT[lang],
        view=view,
        others=[(other.value, _NATIVE[other]) for other in others],
        version=__version__,
        year=time.gmtime().tm_year,
    )


_NATIVE = {Lang.ID: "Bahasa Indonesia", Lang.EN: "English"}
