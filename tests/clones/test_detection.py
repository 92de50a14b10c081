"""Clone detection on the central register: sightings -> condition -> greylist -> pairs ->
the (IMEI, IMSI) answer, and the reversals, all audited and in the change log."""

from __future__ import annotations

from pathlib import Path

import pytest

from ceir.clones.actions import PairMatcher, SimRef, clear, greylist, pair
from ceir.clones.conditions import DEFAULT_CONDITIONS, CloneAction, Condition, load_conditions
from ceir.clones.recorder import Recorder
from ceir.errors import ConfigError, ForbiddenError, NotFoundError
from ceir.imei import body_key
from ceir.lookup import Checker
from ceir.policy import Policy
from ceir.record import Reason, Record, Source, Status
from ceir.security.principals import Role
from ceir.store import Store, audit, changes, clones
from ceir.store.clonetables import MAX_SIGHTINGS, CloneState, ConditionKind, PairKind
from ceir.store.identity import IdKind, tokenizer_for
from ceir.v1 import eir_pb2

BODY = "35209900176148"
IMEI = BODY + "1"
KEY = body_key(BODY)
DAY = 86400
T0 = 1_800_000_000  # a fixed moment: the scenario's clock, injected
OWNER = "510100000000001"
CLONES = [f"5101100000{n:05d}" for n in range(12)]  # another operator's SIMs


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def site(store: Store) -> tuple[Store, Recorder, Checker, Clock]:
    store.put_devices([(KEY, Record(Reason.REGISTERED, Source.MANUFACTURER))])
    clock = Clock(T0)
    tokenizer = tokenizer_for(store)
    recorder = Recorder(store, tokenizer, conditions=DEFAULT_CONDITIONS, clock=clock)
    checker = Checker(store, Policy(), clock, paired=PairMatcher(store, tokenizer))
    return store, recorder, checker, clock


def _answer(checker: Checker, imsi: str = "") -> tuple[Status, Reason]:
    one = checker.check_one(eir_pb2.CheckIMEIRequest(imei=IMEI, imsi=imsi))
    batch = checker.check_many([eir_pb2.CheckIMEIRequest(imei=IMEI, imsi=imsi)]).responses[0]
    fast = eir_pb2.CheckIMEIBatchResponse.FromString(
        checker.check_batch([eir_pb2.CheckIMEIRequest(imei=IMEI, imsi=imsi)] * 3)
    ).responses
    assert {(r.status, r.reason) for r in fast} == {(one.status, one.reason)}
    assert (batch.status, batch.reason) == (one.status, one.reason)
    return Status(one.status), Reason(one.reason)


def test_ten_sims_greylist_the_device_and_pair_the_first_seen(site: tuple) -> None:
    """Ten distinct IMSIs within 120 days: GREYLISTED / DUPLICATE for every SIM but the
    first seen (the owner's), which stays WHITELISTED; without an IMSI, GREYLISTED."""
    store, recorder, checker, clock = site
    recorder.observe(KEY, OWNER, "")
    recorder.flush()
    for n, imsi in enumerate(CLONES[:8]):
        clock.at = T0 + (n + 1) * DAY
        recorder.observe(KEY, imsi, "")
        recorder.flush()
    assert _answer(checker, CLONES[0]) == (Status.WHITELISTED, Reason.REGISTERED)
    assert [c.state for c in clones.iter_clones(store)] == []
    clock.at = T0 + 10 * DAY
    recorder.observe(KEY, CLONES[8], "")
    recorder.flush()
    [flagged] = clones.iter_clones(store)
    assert flagged.state is CloneState.GREYLISTED
    assert flagged.conditions == ("duplicate_threshold",)
    assert flagged.block_day == (T0 + 10 * DAY) // DAY + 60
    [paired] = clones.iter_pairs(store)
    assert paired.kind is PairKind.FIRST_SEEN
    assert paired.token == tokenizer_for(store).token(IdKind.IMSI, OWNER)
    assert _answer(checker, OWNER) == (Status.WHITELISTED, Reason.REGISTERED)
    assert _answer(checker, CLONES[3]) == (Status.GREYLISTED, Reason.DUPLICATE)
    assert _answer(checker) == (Status.GREYLISTED, Reason.DUPLICATE)
    actions = [e.action for e in audit.history(store, KEY)]
    assert actions[-2:] == [audit.Action.GREYLISTED, audit.Action.PAIRED]


def test_after_the_grace_every_sim_but_the_pair_is_blacklisted(site: tuple) -> None:
    """60 days after the greylisting the sweep blocks the device: BLACKLISTED / DUPLICATE
    for an unpaired SIM and without an IMSI; the owner's SIM keeps WHITELISTED."""
    store, recorder, checker, clock = site
    recorder.observe(KEY, OWNER, "")
    for imsi in CLONES[:9]:
        recorder.observe(KEY, imsi, "")
    recorder.flush()
    clock.at = T0 + 59 * DAY
    assert recorder.sweep_now() == 0
    clock.at = T0 + 60 * DAY
    assert recorder.sweep_now() == 1
    [flagged] = clones.iter_clones(store)
    assert flagged.state is CloneState.BLOCKED
    assert _answer(checker, OWNER) == (Status.WHITELISTED, Reason.REGISTERED)
    assert _answer(checker, CLONES[0]) == (Status.BLACKLISTED, Reason.DUPLICATE)
    assert _answer(checker) == (Status.BLACKLISTED, Reason.DUPLICATE)
    assert audit.history(store, KEY)[-1].action is audit.Action.DUPLICATE_BLOCKED


def test_two_operators_within_an_hour_greylist_at_once(site: tuple) -> None:
    """The same device attached through two operators within 60 minutes (simultaneity)."""
    store, recorder, _checker, clock = site
    recorder.observe(KEY, OWNER, "510-10")
    recorder.flush()
    clock.at = T0 + 3 * 3600  # three hours later on another network: not simultaneous
    recorder.observe(KEY, CLONES[0], "510-11")
    recorder.flush()
    assert list(clones.iter_clones(store)) == []
    clock.at += 1800
    recorder.observe(KEY, OWNER, "510-10")
    recorder.flush()
    [flagged] = clones.iter_clones(store)
    assert flagged.conditions == ("simultaneity",)


def test_a_report_condition_only_suspects(store: Store) -> None:
    """A condition whose action is report records SUSPECTED and leaves answers alone."""
    store.put_devices([(KEY, Record(Reason.REGISTERED, Source.MANUFACTURER))])
    tokenizer = tokenizer_for(store)
    report = (Condition(ConditionKind.DUPLICATE_THRESHOLD, threshold=2, action=CloneAction.REPORT),)
    recorder = Recorder(store, tokenizer, conditions=report, clock=Clock(T0))
    recorder.observe(KEY, OWNER, "")
    recorder.observe(KEY, CLONES[0], "")
    recorder.flush()
    [flagged] = clones.iter_clones(store)
    assert flagged.state is CloneState.SUSPECTED
    assert store.get(KEY) == Record(Reason.REGISTERED, Source.MANUFACTURER)


def test_sightings_are_bounded_and_hold_tokens_only(site: tuple) -> None:
    """Past the cap only a count grows; the store holds no IMSI digits."""
    store, recorder, _checker, _clock = site
    imsis = [f"510109{n:09d}" for n in range(MAX_SIGHTINGS + 8)]
    for imsi in imsis:
        recorder.observe(KEY, imsi, "")
    recorder.flush()
    with store.snapshot() as tables:
        dropped, kept = tables.observations.get(KEY)
    assert (dropped, len(kept)) == (8, MAX_SIGHTINGS)
    raw = (store.path / "data.mdb").read_bytes()
    assert not [i for i in imsis if i.encode() in raw]


def test_pairing_and_reversals_are_audited_and_logged(site: tuple) -> None:
    """An operator pairs a SIM, ministry/admin unpair, clear and greylist again (an
    operator may not); each is an audit entry and a change-log operation (replicas get
    pairs and states)."""
    store, recorder, checker, clock = site
    for imsi in [OWNER, *CLONES[:9]]:
        recorder.observe(KEY, imsi, "")
    recorder.flush()
    sim = SimRef.of(tokenizer_for(store), imsi=CLONES[5])
    now = int(clock())
    assert pair(store, KEY, sim, actor="op", role=Role.OPERATOR, now=now)
    assert not pair(store, KEY, sim, actor="op", role=Role.OPERATOR, now=now)
    assert _answer(checker, CLONES[5]) == (Status.WHITELISTED, Reason.REGISTERED)
    with pytest.raises(ForbiddenError):
        pair(store, KEY, sim, actor="op", role=Role.OPERATOR, now=now, remove=True)
    assert pair(store, KEY, sim, actor="min", role=Role.MINISTRY, now=now, remove=True)
    assert _answer(checker, CLONES[5]) == (Status.GREYLISTED, Reason.DUPLICATE)
    with pytest.raises(ForbiddenError):
        clear(store, KEY, actor="op", role=Role.OPERATOR, now=now)
    assert clear(store, KEY, actor="min", role=Role.MINISTRY, now=now)
    assert _answer(checker, CLONES[0]) == (Status.WHITELISTED, Reason.REGISTERED)
    recorder.observe(KEY, "510119999999999", "")
    recorder.flush()
    assert [c.state for c in clones.iter_clones(store)] == [CloneState.CLEARED]
    assert greylist(store, KEY, actor="min", role=Role.ADMIN, now=now, grace_days=0)
    assert _answer(checker, CLONES[0]) == (Status.BLACKLISTED, Reason.DUPLICATE)
    actions = [e.action.name for e in audit.history(store, KEY)][-5:]
    assert actions == ["PAIRED", "PAIRED", "UNPAIRED", "CLEARED", "DUPLICATE_BLOCKED"]
    ops = {
        op
        for entry in changes.entries(store, 0, 10_000)
        for op, _key, _value in changes.unpack_ops(entry.body)
    }
    assert {changes.Op.CLONE_PUT, changes.Op.PAIR_PUT, changes.Op.PAIR_DELETE} <= ops
    with pytest.raises(NotFoundError):
        pair(store, body_key("35209900176149"), sim, actor="op", role=Role.ADMIN, now=now)


def test_unregistered_devices_are_not_flagged(store: Store) -> None:
    """A device not in the register is refused anyway: no state, no pair."""
    recorder = Recorder(store, tokenizer_for(store), conditions=DEFAULT_CONDITIONS)
    for imsi in [OWNER, *CLONES]:
        recorder.observe(KEY, imsi, "")
    recorder.flush()
    assert list(clones.iter_clones(store)) == []


def test_conditions_file(tmp_path: Path) -> None:
    """A TOML file configures conditions; a malformed one is a one-line ConfigError."""
    good = tmp_path / "c.toml"
    good.write_text(
        '[[condition]]\nname = "duplicate_threshold"\nthreshold = 3\nperiod_days = 30\n'
        'grace_days = 7\naction = "greylist"\nreason = "DUPLICATE"\n'
    )
    [c] = load_conditions(good)
    assert (c.kind, c.threshold, c.period_days, c.grace_days) == (
        ConditionKind.DUPLICATE_THRESHOLD,
        3,
        30,
        7,
    )
    for text, fragment in [
        ('[[condition]]\nname = "nope"\n', "is not one of"),
        ('[[condition]]\nname = "simultaneity"\nminutes = 0\n', "minutes must be"),
        ('[[condition]]\nname = "simultaneity"\nreason = "LOST_STOLEN"\n', "reason must be"),
        ("[[condition]\n", "not valid TOML"),
        ("x = 1\n", "no [[condition]]"),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=fragment.replace("[", r"\[")) as err:
            load_conditions(bad)
        assert "\n" not in str(err.value)
