"""Call recording as a flow controls it: the actions, the states and their transitions.

A call's recording is one file per call. It starts in OFF, `start` opens it
(RECORDING), `pause` and `resume` switch between RECORDING and PAUSED, and
`stop` closes it for good (STOPPED). An action that does not apply in the
current state, such as `pause` before `start` or `start` after `stop`,
changes nothing. The engine reports that as an event with `changed` false
and goes on to the step.
"""

from __future__ import annotations

import enum
from typing import Literal, Protocol, runtime_checkable

RecordingAction = Literal["start", "stop", "pause", "resume"]
RECORDING_ACTIONS: tuple[RecordingAction, ...] = ("start", "stop", "pause", "resume")


class CallRecordingState(enum.StrEnum):
    OFF = "off"
    RECORDING = "recording"
    PAUSED = "paused"
    STOPPED = "stopped"


_TRANSITIONS: dict[tuple[CallRecordingState, str], CallRecordingState] = {
    (CallRecordingState.OFF, "start"): CallRecordingState.RECORDING,
    (CallRecordingState.RECORDING, "pause"): CallRecordingState.PAUSED,
    (CallRecordingState.PAUSED, "resume"): CallRecordingState.RECORDING,
    (CallRecordingState.RECORDING, "stop"): CallRecordingState.STOPPED,
    (CallRecordingState.PAUSED, "stop"): CallRecordingState.STOPPED,
}


def next_recording_state(state: CallRecordingState, action: str) -> CallRecordingState:
    """Return the state after `action`; an action that does not apply leaves `state` as is.

    Raises ValueError for a name that is not a recording action.
    """
    if action not in RECORDING_ACTIONS:
        raise ValueError(
            f"invalid recording action {action!r}: expected one of {', '.join(RECORDING_ACTIONS)}"
        )
    return _TRANSITIONS.get((state, action), state)


@runtime_checkable
class CallRecordingControl(Protocol):
    """A `CallChannel` whose whole call can be recorded (needed by the `recording` step option).

    `control_recording` applies the action at once and returns the state
    after it. An action that does not apply leaves the state unchanged.
    """

    @property
    def recording_state(self) -> CallRecordingState: ...

    def control_recording(self, action: RecordingAction) -> CallRecordingState: ...
