"""The method -> roles table: which roles may call each RPC, and write each feed kind.

Every RPC the server registers is in :data:`METHOD_RULES` (a test fails otherwise); a
method that is not is refused to everybody, so forgetting one fails closed.
:mod:`ceir.server.app.access` enforces it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ceir.feeds import Kind
from ceir.security.principals import Role

EVERYONE = frozenset(Role)
OPERATIONS = frozenset({Role.MINISTRY, Role.ADMIN})
WRITERS = frozenset({Role.OPERATOR, Role.MANUFACTURER, Role.CUSTOMS, Role.MINISTRY, Role.ADMIN})
REPORTERS = frozenset({Role.OPERATOR, Role.ADMIN})
"""Lost/stolen reports come through operators (the owner's police letter)."""
PAIRERS = frozenset({Role.OPERATOR, Role.MINISTRY, Role.ADMIN})
"""A clone's pairs: an operator pairs its own subscriber's SIM once the owner proved
ownership (:mod:`ceir.clones.actions` checks the network); the reversals — unpair, clear,
greylist — are the ministry's and admin's (:data:`OPERATIONS`)."""


@dataclass(frozen=True, slots=True)
class Rule:
    """Who may call one method."""

    roles: frozenset[Role]
    public: bool = False
    """Also callers who are not authenticated at all (health probes)."""
    rate_limited: bool = False
    """Each client's calls go through its consumer token bucket."""
    write_limited: bool = False
    """Each principal's single writes go through its write token bucket: one request at a
    time must not become a way around the two-person rule for bulk imports."""
    write: bool = False
    """The call changes the register: every one gets an access-log line."""


_EIR = "/ceir.v1.EquipmentIdentityRegister/"
_HEALTH = "/grpc.health.v1.Health/"
_REGISTRY = "/ceir.v1.Registry/"
_WEB = "web:"
_REPLICATION = "/ceir.v1.Replication/"

# The table. Keep it in the README ("Who may call what") when it changes.
METHOD_RULES: dict[str, Rule] = {
    # Operators' EIRs ask before every attach; admins for diagnosis.
    _EIR + "CheckIMEI": Rule(frozenset({Role.OPERATOR, Role.ADMIN})),
    _EIR + "CheckIMEIBatch": Rule(frozenset({Role.OPERATOR, Role.ADMIN})),
    _EIR + "CheckIMEIStream": Rule(frozenset({Role.OPERATOR, Role.ADMIN})),
    _EIR + "CheckPacked": Rule(frozenset({Role.OPERATOR, Role.ADMIN})),
    # The same question from a 5G AMF: N5g-eir over HTTP/2 (ceir.network.n5g_eir), by its
    # TS 29.511 operationId (GET /n5g-eir-eic/v1/equipment-status).
    "n5g-eir:GetEquipmentStatus": Rule(frozenset({Role.OPERATOR, Role.ADMIN})),
    # The consumer check: anyone authenticated, each client through its bucket.
    "/ceir.v1.DeviceCheck/LookupDevice": Rule(EVERYONE, rate_limited=True),
    # The two-person rule: the second person (ceir.feeds.staging checks it is another one).
    "/ceir.v1.Approvals/ListStages": Rule(OPERATIONS),
    "/ceir.v1.Approvals/ApproveStage": Rule(OPERATIONS, write=True),
    "/ceir.v1.Approvals/RejectStage": Rule(OPERATIONS, write=True),
    # Eligibility rules are store policy: read by whoever writes, set by the ministry/admin.
    "/ceir.v1.Approvals/GetEligibility": Rule(WRITERS),
    "/ceir.v1.Approvals/SetEligibility": Rule(OPERATIONS, write=True),
    # Writes: the role table below says which feed kinds each role may write.
    _REGISTRY + "ImportFeed": Rule(WRITERS, write=True),
    _REGISTRY + "Register": Rule(WRITERS, write_limited=True, write=True),
    _REGISTRY + "ReportLostStolen": Rule(REPORTERS, write_limited=True, write=True),
    _REGISTRY + "ClearLostStolen": Rule(REPORTERS, write_limited=True, write=True),
    # A device's full record and history (tokens, never clear personal data).
    _REGISTRY + "GetDevice": Rule(OPERATIONS),
    # Clone pairing (ceir.clones.actions): single audited writes, like Register.
    _REGISTRY + "PairDevice": Rule(PAIRERS, write_limited=True, write=True),
    _REGISTRY + "UnpairDevice": Rule(OPERATIONS, write_limited=True, write=True),
    _REGISTRY + "ClearClone": Rule(OPERATIONS, write_limited=True, write=True),
    _REGISTRY + "GreylistDevice": Rule(OPERATIONS, write_limited=True, write=True),
    # Read replicas bootstrap from the central's snapshot and verify against its digests.
    _REPLICATION + "Snapshot": Rule(frozenset({Role.REPLICA, Role.ADMIN})),
    _REPLICATION + "Digest": Rule(frozenset({Role.REPLICA, Role.ADMIN})),
    _REPLICATION + "Status": Rule(frozenset({Role.REPLICA, Role.OPERATOR, Role.ADMIN})),
    # Load balancers and orchestrators probe without credentials.
    _HEALTH + "Check": Rule(EVERYONE, public=True),
    _HEALTH + "Watch": Rule(EVERYONE, public=True),
    _HEALTH + "List": Rule(EVERYONE, public=True),
    # The schema helps an attacker as much as a developer: admins only.
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Rule(frozenset({Role.ADMIN})),
    # The web face (ceir.web.app), one entry per route. The page is for people in a shop:
    # public, each client through the DeviceCheck bucket it shares with gRPC.
    _WEB + "page": Rule(EVERYONE, public=True, rate_limited=True),
    # The JSON endpoint is LookupDevice over HTTP: the same rule.
    _WEB + "device": Rule(EVERYONE, rate_limited=True),
    # Metrics show traffic per operator: operations only (Prometheus with a bearer token).
    _WEB + "metrics": Rule(OPERATIONS),
    _WEB + "version": Rule(EVERYONE, public=True),
    _WEB + "static": Rule(EVERYONE, public=True),
    _WEB + "favicon": Rule(EVERYONE, public=True),
    # The S13 face (ceir.network.s13): an MME's Diameter node asks as an operator. Diameter
    # carries no bearer token: a peer is an operator by its Origin-Host in --s13-peers
    # (with no list, on loopback only, it is the open default's admin).
    "s13:ME-Identity-Check": Rule(frozenset({Role.OPERATOR, Role.ADMIN})),
}

# Which feed kinds each role may write (ImportFeed, Register, lost/stolen reports). An
# operator's writes are stamped with its operator id (its label), so the audit log says
# which operator reported a visitor, a dump or a theft.
KIND_ROLES: dict[Role, frozenset[Kind]] = {
    Role.OPERATOR: frozenset({Kind.OPERATOR_DUMP, Kind.VISITOR, Kind.LOST_STOLEN}),
    Role.MANUFACTURER: frozenset({Kind.MANUFACTURER}),
    Role.CUSTOMS: frozenset({Kind.CUSTOMS}),
    Role.MINISTRY: frozenset({Kind.EXCEPTION, Kind.TAC}),
    Role.CONSUMER: frozenset(),
    Role.REPLICA: frozenset(),
    Role.ADMIN: frozenset(Kind),
}
