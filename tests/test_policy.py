"""ceir.policy: every rule of the whitelist regime and its variants."""

from __future__ import annotations

import pytest

from ceir.config import UnknownStatus
from ceir.policy import INVALID, Decision, Policy
from ceir.record import Reason, Record, Source, Status

NOW = 1_800_000_000


@pytest.mark.parametrize(
    "reason", [Reason.REGISTERED, Reason.GRANDFATHERED, Reason.TEMPORARY, Reason.EXEMPT]
)
@pytest.mark.parametrize("source", [s for s in Source if s is not Source.NONE])
def test_registered_is_whitelisted_with_reason_and_source(reason: Reason, source: Source) -> None:
    """A registration without expiry is WHITELISTED with its own reason and source."""
    decision = Policy().decide(Record(reason, source, registered_at=NOW - 10), NOW)
    assert decision == Decision(Status.WHITELISTED, reason, source, 0)


@pytest.mark.parametrize("unknown", list(UnknownStatus))
def test_unknown_device_gets_the_regime_status(unknown: UnknownStatus) -> None:
    """No record: NOT_REGISTERED with the regime's status (black, grey or white)."""
    decision = Policy(unknown.status).decide(None, NOW)
    assert decision == Decision(Status[unknown.name], Reason.NOT_REGISTERED, Source.NONE, 0)


def test_default_regime_is_whitelist() -> None:
    """By default (Indonesia's whitelist regime) an unknown device is BLACKLISTED."""
    assert Policy().decide(None, NOW).status is Status.BLACKLISTED


@pytest.mark.parametrize("unknown", list(UnknownStatus))
@pytest.mark.parametrize(
    "record",
    [
        Record(Reason.REGISTERED, Source.MANUFACTURER, lost_stolen=True),
        Record(Reason.EXEMPT, Source.MINISTRY, lost_stolen=True),
        Record(Reason.TEMPORARY, Source.OPERATOR, lost_stolen=True, expires_at=NOW + 100),
        Record(Reason.TEMPORARY, Source.OPERATOR, lost_stolen=True, expires_at=NOW - 100),
        Record(Reason.NONE, Source.NONE, lost_stolen=True),
    ],
)
def test_lost_stolen_beats_everything(unknown: UnknownStatus, record: Record) -> None:
    """Lost/stolen is BLACKLISTED / LOST_STOLEN whatever the registration and the regime."""
    decision = Policy(unknown.status).decide(record, NOW)
    assert (decision.status, decision.reason) == (Status.BLACKLISTED, Reason.LOST_STOLEN)
    assert decision.source is record.source


@pytest.mark.parametrize("unknown", list(UnknownStatus))
def test_record_without_registration_or_block_is_unknown(unknown: UnknownStatus) -> None:
    """A record with neither registration nor block (a cleared report) reads as unknown."""
    assert Policy(unknown.status).decide(Record(), NOW) == Policy(unknown.status).decide(None, NOW)


@pytest.mark.parametrize("reason", [Reason.TEMPORARY, Reason.EXEMPT])
def test_expiry_is_decided_at_read_time(reason: Reason) -> None:
    """Before expires_at WHITELISTED; at and after it BLACKLISTED / EXPIRED, same record."""
    record = Record(reason, Source.OPERATOR, registered_at=NOW - 100, expires_at=NOW)
    policy = Policy()
    assert policy.decide(record, NOW - 1) == Decision(
        Status.WHITELISTED, reason, Source.OPERATOR, NOW
    )
    assert policy.decide(record, NOW - 0.001).status is Status.WHITELISTED
    assert policy.decide(record, NOW) == Decision(
        Status.BLACKLISTED, Reason.EXPIRED, Source.OPERATOR, NOW
    )
    assert policy.decide(record, NOW + 86_400).reason is Reason.EXPIRED


@pytest.mark.parametrize("unknown", list(UnknownStatus))
def test_expired_is_blacklisted_in_every_regime(unknown: UnknownStatus) -> None:
    """An expired temporary registration is refused even where unknown devices attach."""
    record = Record(Reason.TEMPORARY, Source.OPERATOR, expires_at=NOW - 1)
    assert Policy(unknown.status).decide(record, NOW).status is Status.BLACKLISTED


def test_decide_fields_matches_decide() -> None:
    """The raw-field entry point used by the lookup path gives the same decisions."""
    policy = Policy()
    for record in (
        Record(Reason.REGISTERED, Source.CUSTOMS),
        Record(Reason.TEMPORARY, Source.OPERATOR, expires_at=NOW - 1),
        Record(Reason.TEMPORARY, Source.OPERATOR, expires_at=NOW + 1),
        Record(Reason.GRANDFATHERED, Source.OPERATOR, lost_stolen=True),
        Record(),
    ):
        flags = 1 if record.lost_stolen else 0
        assert policy.decide_fields(
            record.reason, record.source, flags, record.expires_at, NOW
        ) == policy.decide(record, NOW)


def test_invalid_decision() -> None:
    """A malformed IMEI is BLACKLISTED / INVALID_IMEI with no source."""
    assert Decision(Status.BLACKLISTED, Reason.INVALID_IMEI, Source.NONE, 0) == INVALID
