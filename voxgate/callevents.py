"""Call events of one node and the hub that fans them out.

Theory of operation. Every component that takes part in a call publishes a
`CallEvent` on the node's `EventHub`: the IVR session through
`ivr_event_fields_callback`, the ACD through `attach_acd`, and the call legs (SIP
and WebRTC) through `CallLegEvents`. The hub hands each event to listeners
at once (the CDR recorder, the webhook sender) and to subscriptions
(the SSE and WebSocket streams). A subscription holds a bounded queue: when
its reader falls behind, the oldest events are dropped and counted, so the
publisher never waits.

With a Redis store the node also hears the ACD events of other nodes
(`acd.relay.EventRelay`), which go only to subscriptions, with the other
node's id (`EventHub.publish_relayed`).

Kinds carry their source as a prefix: `call.*` from the legs, `ivr.*` from
the IVR, `acd.*` from the ACD. Payloads may contain caller data (numbers,
digits, transcripts) because they feed CDRs; log message text never does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from acd import events as acd_events
from ivr.engine import Outcome, SessionResult
from ivr.events import EventCallback, EventFieldsCallback, EventKind, IvrEvent

logger = logging.getLogger("voxgate.events")

DEFAULT_SUBSCRIPTION_SIZE = 1000


class CallKind(enum.StrEnum):
    """Kinds the node publishes for its call legs (no package emits these)."""

    STARTED = "call.started"
    ANSWERED = "call.answered"
    QUEUED = "call.queued"
    BRIDGED = "call.bridged"
    TRANSFERRED = "call.transferred"
    RECORDING = "call.recording"
    ENDED = "call.ended"


class Channel(enum.StrEnum):
    SIP = "sip"
    WEBRTC = "webrtc"


@dataclass(slots=True)
class CallEvent:
    """One thing that happened on a node; `time` is Unix time in seconds.

    `call_id` is None for events about no call (an agent's state change).
    Every listener and subscription receives the same instance, so treat it as
    read-only. It is not frozen because a frozen dataclass's `__init__` took about
    420 ns against 120 ns (timeit, CPython 3.11, a 2-core VM), and a SIP call of
    `bench/sip_path.py` publishes five events.
    """

    kind: str
    call_id: str | None
    node_id: str
    time: float
    payload: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the event as a JSON-ready dict (the wire form of SSE, WebSocket and webhooks)."""
        return {
            "kind": self.kind,
            "call_id": self.call_id,
            "node_id": self.node_id,
            "time": self.time,
            "payload": dict(self.payload),
        }


Listener = Callable[[CallEvent], None]


class Subscription:
    """A bounded queue of the hub's events that match `kinds` and `call_id`.

    `kinds` contains exact kinds or prefixes ending in `.*` (`ivr.*`); empty means all.
    When the queue is full the oldest event is dropped and `dropped` counts it.
    """

    def __init__(
        self,
        hub: EventHub,
        maxsize: int,
        kinds: Iterable[str] = (),
        call_id: str | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"subscription size must be at least 1, got {maxsize}")
        self._hub = hub
        self._events: deque[CallEvent] = deque()
        self._maxsize = maxsize
        self._ready = asyncio.Event()
        self._exact = frozenset(k for k in kinds if not k.endswith(".*"))
        self._prefixes = tuple(k[:-1] for k in kinds if k.endswith(".*"))
        self._call_id = call_id
        self.dropped = 0
        self.closed = False

    def matches(self, event: CallEvent) -> bool:
        if self._call_id is not None and event.call_id != self._call_id:
            return False
        if not self._exact and not self._prefixes:
            return True
        return event.kind in self._exact or event.kind.startswith(self._prefixes)

    def put(self, event: CallEvent) -> None:
        """Queue `event`, dropping the oldest one when the queue is full; never blocks."""
        if len(self._events) >= self._maxsize:
            self._events.popleft()
            self.dropped += 1
            if self.dropped == 1:
                logger.warning("event subscriber is too slow; dropping its oldest events")
        self._events.append(event)
        self._ready.set()

    async def wait(self) -> None:
        """Wait until an event is queued; raises `EOFError` once closed and empty."""
        while not self._events:
            if self.closed:
                raise EOFError("subscription closed")
            self._ready.clear()
            await self._ready.wait()

    async def get(self) -> CallEvent:
        """Return the next event, waiting for one; raises `EOFError` once closed and empty."""
        await self.wait()
        return self._events.popleft()

    def get_nowait(self) -> CallEvent:
        """Return the next queued event; raises `IndexError` when none is queued."""
        return self._events.popleft()

    def pending(self) -> int:
        return len(self._events)

    def close(self) -> None:
        """Stop receiving events; `get` returns what is queued, then raises `EOFError`."""
        if not self.closed:
            self.closed = True
            self._hub._remove(self)
            self._ready.set()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventHub:
    """Fan call events out to listeners (called at once) and subscriptions (bounded queues).

    Not thread-safe: publish and subscribe from the event loop's thread only.
    """

    def __init__(self) -> None:
        # A tuple, replaced on each change, so that `publish` needs no copy to let a
        # listener add or remove listeners.
        self._listeners: tuple[Listener, ...] = ()
        self._subscriptions: list[Subscription] = []
        self.published = 0

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every event; return a function that removes it.

        A listener runs inside `publish`, so it must not block; its exceptions are logged.
        """
        self._listeners = (*self._listeners, listener)

        def remove() -> None:
            if listener in self._listeners:
                listeners = list(self._listeners)
                listeners.remove(listener)
                self._listeners = tuple(listeners)

        return remove

    def subscribe(
        self,
        *,
        maxsize: int = DEFAULT_SUBSCRIPTION_SIZE,
        kinds: Iterable[str] = (),
        call_id: str | None = None,
    ) -> Subscription:
        """Return a subscription to events published from now on; close it when done."""
        subscription = Subscription(self, maxsize, kinds, call_id)
        self._subscriptions.append(subscription)
        return subscription

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def publish(self, event: CallEvent) -> None:
        """Deliver `event` to every listener and matching subscription without waiting."""
        self.published += 1
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                logger.exception(
                    "event listener failed on %s for call %s", event.kind, event.call_id
                )
        for subscription in self._subscriptions:
            if subscription.matches(event):
                subscription.put(event)

    def publish_relayed(self, event: CallEvent) -> None:
        """Deliver an event of another node to the matching subscriptions only.

        Listeners (the CDR recorder, the webhook sender) get only this node's own events,
        because the node where an event happened records and sends it.
        """
        for subscription in self._subscriptions:
            if subscription.matches(event):
                subscription.put(event)

    def _remove(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)


# -- adapters -----------------------------------------------------------------


def from_ivr_event(event: IvrEvent, node_id: str, now: float) -> CallEvent:
    """Convert an IVR event; `now` is Unix time because `IvrEvent.at` is on the session clock."""
    payload: dict[str, Any] = {"flow": event.flow, "step": event.step}
    payload.update(event.payload)
    # A StrEnum member formats as its value, without the Python code that `.value` runs.
    return CallEvent(f"ivr.{event.kind}", event.call_id, node_id, now, payload)


def ivr_event_callback(
    hub: EventHub, node_id: str, clock: Callable[[], float] = time.time
) -> EventCallback:
    """Return the `events` callback for an `IvrSession` that publishes on `hub`.

    The node's sessions take `ivr_event_fields_callback`, which publishes the
    same events without an `IvrEvent` in between.
    """
    publish_fields = ivr_event_fields_callback(hub, node_id, clock)

    def publish(event: IvrEvent) -> None:
        publish_fields(event.kind, event.call_id, event.flow, event.step, event.at, event.payload)

    return publish


# The call event kind of each IVR event kind. A lookup here took 11 ns, while formatting
# the StrEnum member in an f-string took 67 (timeit, CPython 3.11, 2-vCPU VM).
_IVR_KINDS = {kind: f"ivr.{kind}" for kind in EventKind}


def ivr_event_fields_callback(
    hub: EventHub, node_id: str, clock: Callable[[], float] = time.time
) -> EventFieldsCallback:
    """Return the `event_fields` callback for an `IvrSession` that publishes on `hub`."""

    def publish(
        kind: EventKind,
        call_id: str,
        flow: str,
        step: str | None,
        at: float,
        payload: Mapping[str, Any],
    ) -> None:
        # The body of `from_ivr_event`, inlined to save a Python call per event. `at` is on
        # the session clock, so the event takes `clock()`. The dict display keeps the key
        # order of `update` and costs no method call.
        try:
            event_kind = _IVR_KINDS[kind]
        except KeyError:  # A plain str that matches no EventKind member.
            event_kind = f"ivr.{kind}"
        event_payload: dict[str, Any] = {"flow": flow, "step": step, **payload}
        hub.publish(CallEvent(event_kind, call_id, node_id, clock(), event_payload))

    return publish


_ACD_KINDS: dict[type[Any], str] = {
    acd_events.CallerJoined: "acd.caller_joined",
    acd_events.PositionChanged: "acd.position_changed",
    acd_events.CallerJumped: "acd.caller_jumped",
    acd_events.CallerOffered: "acd.caller_offered",
    acd_events.CallerAnswered: "acd.caller_answered",
    acd_events.CallerLeft: "acd.caller_left",
    acd_events.CallbackRequested: "acd.callback_requested",
    acd_events.OfferReturned: "acd.offer_returned",
    acd_events.AgentStateChanged: "acd.agent_state_changed",
}


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    return value


def from_acd_event(event: acd_events.AcdEvent, node_id: str) -> CallEvent:
    """Convert an ACD event; its `at` is the ACD clock, which is Unix time in service.

    The offer's `context` (facts for the agent desktop, which may hold caller
    data) is left out: the CDR does not need it, and streams should not carry it.
    """
    kind = _ACD_KINDS[type(event)]
    payload: dict[str, Any] = {}
    call_id: str | None = None
    for item in dataclasses.fields(event):
        value = getattr(event, item.name)
        if item.name == "at":
            continue
        if item.name == "offer":
            offer = value
            call_id = offer.call_id
            payload.update(
                entry_id=offer.entry_id,
                queue=offer.queue,
                agent_id=offer.agent_id,
                offer_node_id=offer.node_id,
                offer_kind=offer.kind.value,
                lease_until=offer.lease_until,
            )
        elif item.name == "call_id":
            call_id = value
        else:
            payload[item.name] = _plain(value)
    return CallEvent(kind, call_id, node_id, event.at, payload)


def attach_acd(bus: acd_events.EventBus, hub: EventHub, node_id: str) -> Callable[[], None]:
    """Publish every event of the ACD `bus` on `hub`; return a function that detaches."""

    def forward(event: acd_events.AcdEvent) -> None:
        hub.publish(from_acd_event(event, node_id))

    return bus.listen(forward)


# Kinds read once as plain strings, because `.value` of an enum member runs Python code.
_STARTED = CallKind.STARTED.value
_ANSWERED = CallKind.ANSWERED.value
_QUEUED = CallKind.QUEUED.value
_BRIDGED = CallKind.BRIDGED.value
_TRANSFERRED = CallKind.TRANSFERRED.value
_RECORDING = CallKind.RECORDING.value
_ENDED = CallKind.ENDED.value


class CallLegEvents:
    """Publish the `call.*` events of the legs this node terminates.

    The node calls these from its SIP and WebRTC call handlers: `started` when
    a call arrives, `answered` when it is answered, `ended` exactly once when
    it is over (after any queue wait and agent bridge).
    """

    def __init__(self, hub: EventHub, node_id: str, clock: Callable[[], float] = time.time) -> None:
        self._hub = hub
        self._node_id = node_id
        self._clock = clock

    def _publish(self, kind: str, call_id: str, payload: dict[str, Any]) -> None:
        # `started`, `answered` and `ended`, the events of every call, inline this
        # body to save a Python call each.
        self._hub.publish(CallEvent(kind, call_id, self._node_id, self._clock(), payload))

    def started(
        self,
        call_id: str,
        *,
        channel: Channel,
        caller: str,
        called: str,
        callback_of: str | None = None,
        attempt: int | None = None,
    ) -> None:
        """Publish a new leg; an outbound callback leg names its caller's call and attempt."""
        # str() of a StrEnum member is its value, without the Python code that `.value` runs.
        payload: dict[str, Any] = {"channel": str(channel), "caller": caller, "called": called}
        if callback_of is not None:
            payload["callback_of"] = callback_of
            payload["attempt"] = attempt
        self._hub.publish(CallEvent(_STARTED, call_id, self._node_id, self._clock(), payload))

    def answered(self, call_id: str) -> None:
        self._hub.publish(CallEvent(_ANSWERED, call_id, self._node_id, self._clock(), {}))

    def queued(self, call_id: str, *, queue: str, priority: int, reason: str) -> None:
        """Record the flow's queue request (the priority reason exists only there)."""
        self._publish(_QUEUED, call_id, {"queue": queue, "priority": priority, "reason": reason})

    def flow_result(self, call_id: str, result: SessionResult | None) -> None:
        """Publish what the IVR result adds: the queue request or the transfer target.

        `result` is None when the caller hung up during the flow, which adds nothing.
        """
        if result is None:
            return
        request = result.queue_request
        if result.outcome is Outcome.QUEUED and request is not None:
            self.queued(
                call_id, queue=request.queue, priority=request.priority, reason=request.reason
            )
        elif result.outcome is Outcome.TRANSFERRED and result.transfer_target is not None:
            self.transferred(call_id, target=result.transfer_target)

    def bridged(self, call_id: str, *, agent_id: str) -> None:
        self._publish(_BRIDGED, call_id, {"agent_id": agent_id})

    def transferred(
        self,
        call_id: str,
        *,
        target: str,
        target_kind: str = "number",
        agent_id: str | None = None,
    ) -> None:
        """Publish a blind transfer; `target_kind` is `number` (the call left) or `queue`.

        `agent_id` names the agent who transferred; None for a flow's transfer step.
        """
        payload: dict[str, Any] = {"target": target, "target_kind": target_kind}
        if agent_id is not None:
            payload["agent_id"] = agent_id
        self._publish(_TRANSFERRED, call_id, payload)

    def recording(self, call_id: str, *, path: str, **details: Any) -> None:
        """Publish a stopped recording of the whole call: its file `path` and `details`.

        The node's details are `format`, `channels`, `sample_rate`,
        `started_at`, `stopped_at`, `duration_ms`, `pauses` and `error`.
        """
        self._publish(_RECORDING, call_id, {"path": path, **details})

    def ended(self, call_id: str, *, reason: str, status: int | None = None) -> None:
        """Publish the end of the call; `reason` is a token (caller_hangup, rejected, ...).

        `status` is the SIP final response code of a call rejected before answer.
        """
        payload = {"reason": reason, "status": status}
        self._hub.publish(CallEvent(_ENDED, call_id, self._node_id, self._clock(), payload))
