"""Principals and roles: who is calling, and as what.

Every caller is a :class:`Principal` with exactly one :class:`Role`. It comes from the
client certificate (mutual TLS) or from a bearer token (:mod:`ceir.security.tokens`); the
access interceptor (:mod:`ceir.server.access`) puts it in :data:`CURRENT` for the duration of
the call, so handlers stamp writes with it (:func:`current`).

In a client certificate the principal is written as
``CN=<name>`` plus the URI subject alternative names ``urn:ceir:role:<role>`` and, for
operators, ``urn:ceir:operator:<MCC-MNC>``. A certificate without a role URI names
nobody.
"""

from __future__ import annotations

import contextvars
import enum
import re
from dataclasses import dataclass

from ceir.errors import ConfigError

ROLE_URI = "urn:ceir:role:"
OPERATOR_URI = "urn:ceir:operator:"
PERSON_URI = "urn:ceir:person:"
_OPERATOR_ID = re.compile(r"\d{3}-\d{2,3}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class Role(enum.Enum):
    """What a principal may do is decided by its role alone."""

    OPERATOR = "operator"
    """A mobile operator's EIR and back office: CheckIMEI; its own dumps, visitors, lost/stolen."""
    MANUFACTURER = "manufacturer"
    """A maker or importer registering type-approved production."""
    CUSTOMS = "customs"
    """Customs registering passengers' and shipments' devices after tax."""
    MINISTRY = "ministry"
    """The ministry: exceptions, approvals of staged bulk writes, audit."""
    CONSUMER = "consumer"
    """The public (through a portal): DeviceCheck only, rate-limited."""
    ADMIN = "admin"
    """Operations: everything, including approvals."""
    REPLICA = "replica"
    """An operator-site read replica: the central's signed snapshot, digests and status."""


def check_operator_id(operator_id: str) -> str:
    """*operator_id* if it is an MCC-MNC such as ``510-10``; else a ConfigError."""
    if not _OPERATOR_ID.fullmatch(operator_id):
        raise ConfigError(
            f"operator id {operator_id!r} is not an MCC-MNC such as 510-10 (3 digits, dash, "
            "2 or 3 digits)"
        )
    return operator_id


def check_name(name: str) -> str:
    """*name* if it is a usable principal name (letters, digits, ``.``, ``_``, ``-``)."""
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"principal name {name!r} must be 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True, slots=True)
class Principal:
    """One authenticated caller."""

    name: str
    role: Role
    operator_id: str = ""
    """The operator's MCC-MNC; set for operators only."""
    via: str = "token"
    """How it was authenticated: ``certificate``, ``token`` or ``open`` (no security)."""
    person: str = ""
    """The person the credential belongs to (``ceir token add --person``, a certificate's
    ``urn:ceir:person:`` URI); two tokens of one person are one person to the two-person
    rule. Empty: the principal's name."""

    def __post_init__(self) -> None:
        if self.person:
            check_name(self.person)
        if (self.role is Role.OPERATOR) != bool(self.operator_id):
            raise ConfigError(
                f"principal {self.name!r}: an operator needs an operator id (MCC-MNC) "
                "and only an operator may have one"
            )
        if self.operator_id:
            check_operator_id(self.operator_id)

    @property
    def person_id(self) -> str:
        """Who stands behind the credential, for the two-person rule."""
        return self.person or self.name

    @property
    def label(self) -> str:
        """How audit records and logs name the principal: ``role:name[@operator]``."""
        at = f"@{self.operator_id}" if self.operator_id else ""
        return f"{self.role.value}:{self.name}{at}"


def operator_in(actor: str) -> str:
    """The operator id (MCC-MNC) of the principal an audit actor names, or ``""`` when it
    is not an operator (ministry, admin, a local command, the open default). For a staged
    import (``<stager> approved by <approver>``) the stager is the one who writes."""
    submitter = actor.split(" approved by ", 1)[0]
    role, _, rest = submitter.partition(":")
    if role != Role.OPERATOR.value:
        return ""
    return rest.rpartition("@")[2] if "@" in rest else ""


OPEN = Principal("local", Role.ADMIN, via="open")
"""Whoever calls a server with no security configured (embedded default, loopback only)."""

CURRENT: contextvars.ContextVar[Principal] = contextvars.ContextVar("ceir_principal")


def current() -> Principal:
    """The principal of the call being handled (:data:`OPEN` outside any call)."""
    return CURRENT.get(OPEN)


def principal_from_certificate(pem: bytes) -> Principal | None:
    """The principal a client certificate names, or None if it names none.

    The certificate has already been verified against the client CA by TLS.
    """
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_pem_x509_certificate(pem)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    except (ValueError, x509.ExtensionNotFound):
        return None
    roles = [u.removeprefix(ROLE_URI) for u in uris if u.startswith(ROLE_URI)]
    operators = [u.removeprefix(OPERATOR_URI) for u in uris if u.startswith(OPERATOR_URI)]
    persons = [u.removeprefix(PERSON_URI) for u in uris if u.startswith(PERSON_URI)]
    if len(names) != 1 or len(roles) != 1 or len(operators) > 1 or len(persons) > 1:
        return None
    try:
        return Principal(
            check_name(str(names[0].value)),
            Role(roles[0]),
            operators[0] if operators else "",
            via="certificate",
            person=persons[0] if persons else "",
        )
    except (ValueError, ConfigError):
        return None
