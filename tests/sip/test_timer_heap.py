"""The timer table of `TransactionUser` against a brute-force model.

Random arms, rearms, disarms, transaction forgets and ticks run on a virtual
clock, both on the real table (heap with lazy deletion) and on a plain dict
that finds the earliest timer with `min`. After every step the two must agree
on `next_deadline()`, and every tick must fire the same timers in the same
order. Deadlines are random floats, so no two timers share one and the
firing order is defined by the deadline alone.
"""

from __future__ import annotations

import random

import pytest

from signaling.sip import tu
from signaling.sip.transaction import Timer
from signaling.sip.tu import CoreConfig, TimerKey, TransactionUser

# A transaction arms only the timers of its own state machine, and `_forget` relies on it.
TIMERS_OF_KIND = {"server": list(tu._SERVER_TIMERS), "client": list(tu._CLIENT_TIMERS)}
CALL_TIMERS = ["2xx", "ack", "session", "unanswered", "refresh"]
# Owners whose call timer rearms itself from its handler, like a 2xx retransmission.
REARM_DELAY = 0.25


class RecordingCore(TransactionUser):
    """A transaction user whose owner timers record their firing and may rearm."""

    def __init__(self) -> None:
        super().__init__(CoreConfig(), ("INVITE",))
        self.fired: list[tuple[str, str, str]] = []

    def _fire_owner_timer(self, kind: str, owner: str, name: str) -> None:
        self.fired.append((kind, owner, name))
        if name == "2xx" and owner.endswith("0"):
            self._arm(kind, owner, name, self._now + REARM_DELAY)

    def _fire(self, kind: str, owner: str, name: Timer | str) -> None:
        # No transactions exist here, so transaction timers are only recorded.
        if kind in ("server", "client"):
            self.fired.append((kind, owner, str(name)))
        else:
            self._fire_owner_timer(kind, owner, str(name))


class TimerModel:
    """The timer table as a dict that is scanned for every question."""

    def __init__(self) -> None:
        self.timers: dict[TimerKey, float] = {}
        self.now = 0.0
        self.fired: list[tuple[str, str, str]] = []

    def next_deadline(self) -> float | None:
        return min(self.timers.values()) if self.timers else None

    def forget(self, kind: str, owner: str) -> None:
        for key in [key for key in self.timers if key[0] == kind and key[1] == owner]:
            del self.timers[key]

    def tick(self, now: float) -> None:
        self.now = max(self.now, now)
        while self.timers:
            key = min(self.timers, key=self.timers.__getitem__)
            if self.timers[key] > now:
                return
            del self.timers[key]
            kind, owner, name = key
            self.fired.append((kind, owner, str(name)))
            if name == "2xx" and owner.endswith("0") and kind not in ("server", "client"):
                self.timers[key] = self.now + REARM_DELAY


def random_key(rng: random.Random, owners: int) -> TimerKey:
    owner = f"o{rng.randrange(owners)}"
    kind = rng.choice(["server", "client", "call", "registration"])
    if kind in ("server", "client"):
        return (kind, owner, rng.choice(TIMERS_OF_KIND[kind]))
    return (kind, owner, rng.choice(CALL_TIMERS))


@pytest.mark.parametrize("slack", [0, tu._HEAP_SLACK])
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_timer_table_matches_model(seed: int, slack: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # A slack of 0 rebuilds the heap whenever stale entries outnumber live ones.
    monkeypatch.setattr(tu, "_HEAP_SLACK", slack)
    rng = random.Random(seed)
    core = RecordingCore()
    model = TimerModel()
    owners = 200
    for step in range(6000):
        choice = rng.random()
        if choice < 0.45:
            kind, owner, name = random_key(rng, owners)
            deadline = core._now + rng.uniform(0.001, 40.0)
            core._arm(kind, owner, name, deadline)
            model.timers[(kind, owner, name)] = deadline
        elif choice < 0.75:
            # Mostly disarm an armed timer, so stale heap entries pile up.
            if model.timers and rng.random() < 0.8:
                kind, owner, name = rng.choice(list(model.timers))
            else:
                kind, owner, name = random_key(rng, owners)
            core._disarm(kind, owner, name)
            model.timers.pop((kind, owner, name), None)
        elif choice < 0.85:
            kind = rng.choice(["server", "client"])
            owner = f"o{rng.randrange(owners)}"
            core._forget(kind, owner)
            model.forget(kind, owner)
        else:
            now = core._now + rng.uniform(0.0, 3.0)
            core.tick(now)
            model.tick(now)
            assert core.fired == model.fired, f"firing order differs at step {step}"
        assert core.next_deadline() == model.next_deadline(), f"deadline differs at step {step}"

    final = core._now + 100.0
    core.tick(final)
    model.tick(final)
    assert core.fired == model.fired
    assert len(model.fired) > 500


def test_timer_heap_drops_disarmed_entries() -> None:
    core = RecordingCore()
    for index in range(20000):
        core._arm("call", f"c{index}", "unanswered", 120.0 + index)
    for index in range(20000):
        core._disarm("call", f"c{index}", "unanswered")

    assert core.next_deadline() is None
    assert len(core._timer_heap) <= 2048

    core._arm("call", "late", "ack", 5.0)
    core.tick(10.0)
    assert core.fired == [("call", "late", "ack")]


def test_forget_keeps_other_owners_timers() -> None:
    core = RecordingCore()
    for timer in TIMERS_OF_KIND["server"]:
        core._arm("server", "mine", timer, 1.0)
        core._arm("server", "other", timer, 2.0)
    for timer in TIMERS_OF_KIND["client"]:
        core._arm("client", "mine", timer, 3.0)
    core._arm("call", "mine", "ack", 4.0)

    core._forget("server", "mine")
    assert core.next_deadline() == 2.0

    core.tick(10.0)
    fired_owners = {(kind, owner) for kind, owner, _ in core.fired}
    assert fired_owners == {("server", "other"), ("client", "mine"), ("call", "mine")}
    assert len(core.fired) == len(TIMERS_OF_KIND["server"]) + len(TIMERS_OF_KIND["client"]) + 1
