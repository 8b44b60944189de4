"""Queue order and bounded priority jumps, without I/O.

Every caller in a queue has a sort key in microseconds: its queue join time minus the time
credit of its priority (`JumpSettings.credit_s`), or, for an explicit position, just ahead of
the caller now at that position. Two bounds then apply to a caller J placed by priority:

* the key is never below `joined_at - max_jump_s`, so J never passes anyone who joined more
  than `max_jump_s` before J;
* J never passes a caller who joined before J and has already been passed `max_passes` times:
  J's key is moved to just behind such a caller.

Callers of one priority stay in join order: J never goes ahead of a caller who joined before J
with the same or a higher priority, even one that an earlier pass limit pushed back. Only an
explicit position request may break that order.

Every caller J passes that joined before J gets its `passes` count raised by one. Both stores
call `plan_insert` with the callers of the queue (waiting and offered) and store its result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from acd.model import JumpSettings, time_key


@dataclass(frozen=True, slots=True)
class Slot:
    """The part of a queue entry that ordering needs."""

    entry_id: str
    key: int
    joined_key: int
    passes: int
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Placement:
    """Placement of a caller: its new key, the ids of earlier callers it passed (which count
    against the pass limit) and the ids of every caller it went ahead of."""

    key: int
    passed: tuple[str, ...]
    overtaken: tuple[str, ...]


def desired_key(
    joined_at: float,
    priority: int,
    jump: JumpSettings,
    slots: Iterable[Slot] = (),
    position: int | None = None,
) -> int:
    """Return the key a caller asks for, before the pass limit is applied.

    With `position` (1-based) the caller asks to go just ahead of the caller now at that
    position, but never earlier than `joined_at - max_jump_s`.
    """
    key = time_key(joined_at - jump.credit_s(priority))
    if position is not None:
        ordered = sorted(slots, key=lambda s: (s.key, s.entry_id))
        if 1 <= position <= len(ordered):
            key = min(key, ordered[position - 1].key - 1)
        floor = time_key(joined_at - jump.max_jump_s)
        key = max(key, floor)
    return key


def plan_insert(
    slots: Iterable[Slot],
    entry_id: str,
    joined_key: int,
    wanted_key: int,
    max_passes: int,
    old_key: int | None = None,
    priority: int | None = None,
) -> Placement:
    """Apply the pass limit and the per-priority join order to a caller asking for `wanted_key`.

    `slots` are the other callers of the queue. `old_key` is the caller's current key when it
    is re-sorted after a priority change (None for a new caller); only callers that were ahead
    of it before can count as passed. `priority` is the caller's priority, or None for an
    explicit position request, which may pass callers of its own priority.
    """

    def was_ahead(slot: Slot) -> bool:
        return old_key is None or (slot.key, slot.entry_id) < (old_key, entry_id)

    def is_earlier(slot: Slot) -> bool:
        return slot.joined_key < joined_key and was_ahead(slot)

    def blocks(slot: Slot) -> bool:
        if slot.joined_key >= joined_key:
            return False
        if priority is not None and slot.priority >= priority:
            return True
        return was_ahead(slot) and slot.passes >= max_passes

    ordered = sorted(slots, key=lambda s: (s.key, s.entry_id))
    key = wanted_key
    for slot in ordered:
        if (slot.key, slot.entry_id) <= (key, entry_id):
            continue
        if blocks(slot):
            key = slot.key + 1
    behind = [slot for slot in ordered if (slot.key, slot.entry_id) > (key, entry_id)]
    passed = tuple(slot.entry_id for slot in behind if is_earlier(slot))
    overtaken = tuple(slot.entry_id for slot in behind if was_ahead(slot))
    return Placement(key=key, passed=passed, overtaken=overtaken)
