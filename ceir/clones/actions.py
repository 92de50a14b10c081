"""A principal's clone commands: pair, unpair, clear, greylist — and the pair check.

Pairing is open to operator, ministry and admin principals (an operator pairs a SIM of
its own network — the IMSI's MCC-MNC, or a token its own site made — after the owner
proved ownership); unpairing, clearing and greylisting (undoing a clear, or flagging by
hand) to ministry and admin (:mod:`ceir.security.roles`). Each is an audited transition,
in the change log like every write, so replicas get it. A SIM is named by its IMSI
(tokenised at once with the site's key: never stored) or by a token an operator's site
made with its own key (``--token tok_… --operator MCC-MNC``): the central never needs that
IMSI. The Registry RPCs (``PairDevice`` ...) and ``ceir clones`` both call these.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ceir.clones.conditions import DEFAULT_GRACE_DAYS
from ceir.clones.detector import Transitions
from ceir.errors import ForbiddenError, InvalidRequestError, NotFoundError
from ceir.record import FLAG_CLONE_BLOCK, FLAG_CLONE_GREY, Record
from ceir.security.principals import Role
from ceir.security.roles import OPERATIONS, PAIRERS
from ceir.store import Store, audit, clones
from ceir.store.clonetables import CloneInfo, CloneState, PairKind, operator_code
from ceir.store.identity import IdKind, Tokenizer
from ceir.store.tables import Tables

__all__ = [
    "PairMatcher",
    "SimRef",
    "Standing",
    "clear",
    "greylist",
    "own_sim",
    "pair",
    "standing",
]

_TOKEN_PREFIX = "tok_"  # noqa: S105 - the identity-token text form, not a secret


class PairMatcher:
    """``paired(device_key, imsi)`` for :class:`ceir.lookup.Checker`: the SIM's token in
    this site's namespace (0 at the central, the operator's code at its replica)."""

    __slots__ = ("namespace", "store", "tokenizer")

    def __init__(self, store: Store, tokenizer: Tokenizer, namespace: int = 0) -> None:
        self.store = store
        self.tokenizer = tokenizer
        self.namespace = namespace

    def __call__(self, key: bytes, imsi: str) -> bool:
        token = self.tokenizer.token(IdKind.IMSI, imsi)
        with self.store.snapshot() as tables:
            return tables.pairs.has(key, self.namespace, token)


class SimRef:
    """A SIM as a command names it: a clear IMSI, or an operator site's token."""

    __slots__ = ("namespace", "token")

    def __init__(self, namespace: int, token: bytes) -> None:
        self.namespace = namespace
        self.token = token

    @classmethod
    def of(
        cls,
        tokenizer: Tokenizer,
        *,
        imsi: str | None = None,
        token: str | None = None,
        operator: str = "",
    ) -> SimRef:
        if (imsi is None) == (token is None):
            raise InvalidRequestError("name the SIM by --imsi or by --token, not both")
        if imsi is not None:
            if not (5 <= len(imsi) <= 15 and imsi.isdigit()):
                raise InvalidRequestError("the IMSI must be 5 to 15 digits")
            return cls(0, tokenizer.token(IdKind.IMSI, imsi))
        assert token is not None
        code = operator_code(operator)
        raw = token.removeprefix(_TOKEN_PREFIX)
        if not code:
            raise InvalidRequestError("a --token needs the --operator (MCC-MNC) whose key made it")
        try:
            value = bytes.fromhex(raw)
        except ValueError:
            value = b""
        if len(value) != 16 or not token.startswith(_TOKEN_PREFIX):
            raise InvalidRequestError("a token is tok_ and 32 hex digits")
        return cls(code, value)


def own_sim(operator: str, *, imsi: str | None, token_operator: str) -> None:
    """ForbiddenError unless the SIM is of operator *operator*'s network: an IMSI
    beginning with its MCC-MNC, or a token its own site made."""
    if imsi is not None:
        if not imsi.startswith(operator.replace("-", "")):
            raise ForbiddenError(
                f"operator {operator} pairs SIMs of its own network only (IMSIs beginning "
                f"{operator.replace('-', '')})"
            )
    elif token_operator != operator:
        raise ForbiddenError(
            f"operator {operator} pairs SIMs by the tokens of its own site only, not "
            f"{token_operator or 'the central'}'s"
        )


def _check(role: Role, allowed: frozenset[Role], what: str) -> None:
    if role not in allowed:
        names = ", ".join(sorted(r.value for r in allowed))
        raise ForbiddenError(f"{what} is for {names} principals, not {role.value}")


def _record(tables: Tables, key: bytes) -> Record:
    record = tables.devices.record(key)
    if record is None:
        raise NotFoundError("the device is not in the register")
    return record


def pair(
    store: Store,
    key: bytes,
    sim: SimRef,
    *,
    actor: str,
    role: Role,
    now: int,
    remove: bool = False,
    request: str = "",
) -> bool:
    """Pair (or with *remove*, unpair) the SIM with device *key*; False if it already was
    (or was not) a pair. *request* names the call in the audit log."""
    if remove:
        _check(role, OPERATIONS, "unpairing")
    else:
        _check(role, PAIRERS, "pairing")

    def run(tables: Tables) -> bool:
        record = _record(tables, key)
        if tables.pairs.has(key, sim.namespace, sim.token) != remove:
            return False
        moves = Transitions(tables, actor, now, request or ("unpair" if remove else "pair"))
        kind = None if remove else PairKind.EXPLICIT
        clones.put_pair(tables, key, sim.namespace, sim.token, kind, now, moves.ops)
        action = audit.Action.UNPAIRED if remove else audit.Action.PAIRED
        moves.record(key, action, record, record)
        moves.commit()
        return True

    return store.write(run)


def clear(store: Store, key: bytes, *, actor: str, role: Role, now: int, request: str = "") -> bool:
    """Clear a flagged device: its answers no longer depend on the SIM, and conditions are
    not applied to it again until :func:`greylist`. False if it was not flagged."""
    _check(role, OPERATIONS, "clearing a clone state")

    def run(tables: Tables) -> bool:
        record = _record(tables, key)
        info = tables.clones.get(key)
        if info is None or info.state is CloneState.CLEARED:
            return False
        moves = Transitions(tables, actor, now, request or "clear")
        cleared = CloneInfo(CloneState.CLEARED, info.conditions, info.flagged_day, 0, now)
        clones.put_state(tables, key, cleared, moves.ops)
        moves.record(key, audit.Action.CLEARED, record, replace(record, clone=0))
        moves.commit()
        return True

    return store.write(run)


def greylist(
    store: Store,
    key: bytes,
    *,
    actor: str,
    role: Role,
    now: int,
    grace_days: int = DEFAULT_GRACE_DAYS,
    request: str = "",
) -> bool:
    """Greylist a device by hand (undoes :func:`clear`); BLACKLISTED after *grace_days*
    for every SIM but its pairs. False if it already was."""
    _check(role, OPERATIONS, "greylisting")

    def run(tables: Tables) -> bool:
        record = _record(tables, key)
        if not record.registered:
            raise InvalidRequestError("the device is not registered; it is refused anyway")
        info = tables.clones.get(key)
        if info is not None and info.state in (CloneState.GREYLISTED, CloneState.BLOCKED):
            return False
        today = now // 86400
        state = CloneState.BLOCKED if grace_days == 0 else CloneState.GREYLISTED
        bits = info.conditions if info else 0
        new_info = CloneInfo(state, bits, today, today + grace_days, now)
        moves = Transitions(tables, actor, now, request or "greylist")
        clones.put_state(tables, key, new_info, moves.ops)
        flag = FLAG_CLONE_BLOCK if grace_days == 0 else FLAG_CLONE_GREY
        action = audit.Action.DUPLICATE_BLOCKED if grace_days == 0 else audit.Action.GREYLISTED
        moves.record(key, action, record, replace(record, clone=flag))
        moves.commit()
        return True

    return store.write(run)


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a device stands after a command: its clone state, record and pair count."""

    state: CloneState | None
    record: Record | None
    pairs: int


def standing(store: Store, key: bytes) -> Standing:
    with store.snapshot() as tables:
        info = tables.clones.get(key)
        return Standing(
            None if info is None else info.state,
            tables.devices.record(key),
            sum(1 for _ in tables.pairs.of_device(key)),
        )
