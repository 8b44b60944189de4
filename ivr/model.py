"""The YAML flow format as Pydantic models.

A flow file is one mapping: flow settings, optional intents, and `steps`, a
mapping from step id to step. Each step has a `type` that selects its model.
These models validate the file at the edge; the engine reads them as frozen
values and never changes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from ivr.recording import RecordingAction

BargeIn = Literal["none", "dtmf", "speech", "any"]
DTMF_KEYS = frozenset("0123456789*#ABCD")


class FlowModel(BaseModel):
    """Base of every flow model: unknown keys are errors, numbers may stand for text."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        coerce_numbers_to_str=True,
        populate_by_name=True,
    )


class Prompt(FlowModel):
    """Something played to the caller: a text for the synthesizer or a WAV file.

    `text` may contain `{{ variable }}` templates. `audio` is a path to a
    16-bit mono PCM WAV file, relative to the flow file.
    """

    text: str | None = None
    audio: str | None = None
    voice: str | None = None
    rate_wpm: int | None = Field(default=None, ge=80, le=450)

    @model_validator(mode="after")
    def _one_source(self) -> Prompt:
        if (self.text is None) == (self.audio is None):
            raise ValueError("a prompt needs exactly one of 'text' or 'audio'")
        return self


PromptSpec = str | Prompt


class StepOptions(FlowModel):
    """Keys that every step type accepts."""

    recording: RecordingAction | None = Field(
        default=None,
        description=(
            "Call recording action applied when the step is entered, before its prompt: "
            "start, stop, pause or resume."
        ),
    )


class StepBase(StepOptions):
    next: str | None = Field(
        default=None,
        description="Step to run after this one; by default the following step in the file.",
    )


class SayStep(StepBase):
    """Play a prompt."""

    type: Literal["say"]
    text: str | None = None
    audio: str | None = None
    voice: str | None = None
    rate_wpm: int | None = Field(default=None, ge=80, le=450)
    barge_in: BargeIn = "none"

    @model_validator(mode="after")
    def _one_source(self) -> SayStep:
        if (self.text is None) == (self.audio is None):
            raise ValueError("a say step needs exactly one of 'text' or 'audio'")
        return self

    def prompt(self) -> Prompt:
        return Prompt(text=self.text, audio=self.audio, voice=self.voice, rate_wpm=self.rate_wpm)


class DtmfSpec(FlowModel):
    """DTMF collection settings of a gather step."""

    max_digits: int = Field(default=1, ge=1, le=64)
    min_digits: int = Field(default=1, ge=1, le=64)
    terminator: str | None = Field(default="#", description="Key that ends entry early, or null.")
    inter_digit_timeout_s: float = Field(default=3.0, gt=0, le=60)
    pattern: str | None = Field(
        default=None, description="Regular expression the whole entry must match."
    )

    @field_validator("terminator")
    @classmethod
    def _terminator_is_key(cls, value: str | None) -> str | None:
        if value is not None and value not in DTMF_KEYS:
            raise ValueError("terminator must be one DTMF key: 0-9, *, #, A-D")
        return value

    @model_validator(mode="after")
    def _digit_range(self) -> DtmfSpec:
        if self.min_digits > self.max_digits:
            raise ValueError("min_digits is greater than max_digits")
        return self


class SpeechSpec(FlowModel):
    """Speech recognition and understanding settings of a gather step."""

    language: str | None = Field(default=None, description="BCP 47 tag; the flow's by default.")
    phrases: list[str] | None = Field(
        default=None, description="Grammar phrases for the recognizer; null for free-form."
    )
    intents: list[str] | None = Field(
        default=None,
        description="Flow intents to match the utterance against; none means keep the words.",
    )
    min_confidence: float = Field(default=0.3, ge=0, le=1)
    end_silence_ms: int | None = Field(
        default=None,
        ge=100,
        le=5000,
        description="Silence in ms that ends an utterance; the flow's if null.",
    )


class GatherStep(StepBase):
    """Play a prompt and collect DTMF and/or speech, with retries."""

    type: Literal["gather"]
    prompt: PromptSpec | None = None
    dtmf: DtmfSpec | None = None
    speech: SpeechSpec | None = None
    into: str | None = Field(default=None, description="Variable that receives the input value.")
    timeout_s: float = Field(default=5.0, gt=0, le=120, description="Wait for the first input.")
    total_timeout_s: float = Field(default=30.0, gt=0, le=600)
    retries: int = Field(default=2, ge=0, le=10)
    no_input_prompt: PromptSpec | None = None
    no_match_prompt: PromptSpec | None = None
    barge_in: BargeIn = "any"
    on: dict[str, str] = Field(
        default_factory=dict,
        description="Outcome to step id: input values, intents, default, no_input, no_match.",
    )

    @model_validator(mode="after")
    def _has_input(self) -> GatherStep:
        if self.dtmf is None and self.speech is None:
            raise ValueError("a gather step needs 'dtmf', 'speech' or both")
        return self


class MenuOption(FlowModel):
    key: str | None = Field(default=None, description="DTMF key that selects this option.")
    phrases: list[str] = Field(default_factory=list, description="Words the caller may say.")
    intent: str | None = None
    goto: str

    @field_validator("key")
    @classmethod
    def _key_is_dtmf(cls, value: str | None) -> str | None:
        if value is not None and value not in DTMF_KEYS:
            raise ValueError("key must be one DTMF key: 0-9, *, #, A-D")
        return value


class MenuStep(StepBase):
    """Press-or-say menu: each option has a DTMF key and/or phrases or an intent."""

    type: Literal["menu"]
    prompt: PromptSpec
    options: list[MenuOption] = Field(min_length=1)
    language: str | None = None
    timeout_s: float = Field(default=5.0, gt=0, le=120)
    retries: int = Field(default=2, ge=0, le=10)
    no_input_prompt: PromptSpec | None = None
    no_match_prompt: PromptSpec | None = None
    barge_in: BargeIn = "any"
    min_confidence: float = Field(default=0.3, ge=0, le=1)
    on: dict[str, str] = Field(default_factory=dict, description="no_input and no_match targets.")


class SetStep(StepBase):
    """Set variables; string values are templates."""

    type: Literal["set"]
    values: dict[str, Any] = Field(min_length=1)


class TimeWindow(FlowModel):
    between: str | None = Field(default=None, description="HH:MM-HH:MM, may wrap midnight.")
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = None
    timezone: str = "UTC"

    @field_validator("between")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = value.split("-")
        if len(parts) != 2 or not all(_is_hhmm(p.strip()) for p in parts):
            raise ValueError("expected HH:MM-HH:MM, for example 09:00-17:30")
        return value


def _is_hhmm(text: str) -> bool:
    hours, _, minutes = text.partition(":")
    return (
        hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60
    ) and len(minutes) == 2


class CallerMatch(FlowModel):
    in_: list[str] | None = Field(default=None, alias="in")
    prefix: list[str] | None = None
    matches: str | None = None


class Condition(FlowModel):
    """One test; all fields given must hold. `all`, `any` and `not` combine tests."""

    var: str | None = None
    eq: Any = None
    ne: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    not_in: list[Any] | None = None
    matches: str | None = None
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    exists: bool | None = None
    time: TimeWindow | None = None
    caller: CallerMatch | None = None
    all_: list[Condition] | None = Field(default=None, alias="all")
    any_: list[Condition] | None = Field(default=None, alias="any")
    not_: Condition | None = Field(default=None, alias="not")

    @model_validator(mode="after")
    def _well_formed(self) -> Condition:
        compares = [
            name
            for name in ("eq", "ne", "in_", "not_in", "matches", "gt", "ge", "lt", "le", "exists")
            if getattr(self, name) is not None
        ]
        if compares and self.var is None:
            raise ValueError("a comparison needs 'var'")
        if self.var is not None and not compares:
            raise ValueError(
                "'var' needs a comparison: eq, ne, in, not_in, matches, gt, ge, lt, le or exists"
            )
        if not (self.var or self.time or self.caller or self.all_ or self.any_ or self.not_):
            raise ValueError("empty condition")
        return self


class BranchCase(FlowModel):
    if_: Condition = Field(alias="if")
    goto: str


class BranchStep(StepBase):
    """Go to the first case whose condition holds, else to `otherwise` or `next`."""

    type: Literal["branch"]
    cases: list[BranchCase] = Field(min_length=1)
    otherwise: str | None = None


class HttpStep(StepBase):
    """Call a web service and copy fields of its JSON response into variables."""

    type: Literal["http"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: dict[str, Any] | None = Field(default=None, alias="json")
    timeout_s: float = Field(default=3.0, gt=0, le=60)
    retries: int = Field(default=1, ge=0, le=5)
    backoff_s: float = Field(default=0.2, ge=0, le=10)
    save: dict[str, str] = Field(
        default_factory=dict, description="Variable to dotted path in the JSON response."
    )
    on_error: str | None = Field(default=None, description="Step after a failed request.")


class PriorityRule(FlowModel):
    """Raise the priority and add skills when the condition holds."""

    if_: Condition = Field(alias="if")
    priority: int = Field(ge=0, le=9)
    skills: list[str] = Field(default_factory=list)
    reason: str = Field(
        default="priority",
        pattern=r"^[a-z0-9_.-]{1,32}$",
        description="Short token the ACD logs with the priority jump, such as vip.",
    )


class QueueStep(StepOptions):
    """Hand the caller to the ACD; the session ends with the queue request."""

    type: Literal["queue"]
    queue: str = Field(description="Queue name; a template.")
    priority: int = Field(default=0, ge=0, le=9, description="0 is normal, 9 the highest.")
    reason: str = Field(
        default="queue",
        pattern=r"^[a-z0-9_.-]{1,32}$",
        description=(
            "Short token the ACD logs with a jump and the agent sees, used when no rule "
            "raised the step's own priority."
        ),
    )
    skills: list[str] = Field(default_factory=list, description="Templates.")
    rules: list[PriorityRule] = Field(default_factory=list)
    context: dict[str, str] | None = Field(
        default=None,
        description=(
            "Templates of the facts shown to the agent; by default caller, flow, language "
            "and intent."
        ),
    )
    announcement: PromptSpec | None = None
    on_error: str | None = None


class TransferStep(StepOptions):
    """Transfer the call to a SIP URI or number on the flow's allow-list."""

    type: Literal["transfer"]
    target: str = Field(description="SIP URI or number; a template.")
    announcement: PromptSpec | None = None
    on_error: str | None = None


class RecordStep(StepBase):
    """Record a voicemail from the caller."""

    type: Literal["record"]
    prompt: PromptSpec | None = None
    max_duration_s: float = Field(default=120.0, gt=0, le=3600)
    silence_timeout_s: float = Field(default=5.0, gt=0, le=60)
    beep: bool = True
    terminator: str | None = "#"
    into: str = "recording"


class SubflowStep(StepBase):
    """Run another flow by name; its `return` step comes back here."""

    type: Literal["subflow"]
    flow: str


class ReturnStep(StepOptions):
    """Return from a subflow to the step after the calling `subflow` step."""

    type: Literal["return"]


class HangupStep(StepOptions):
    """End the call, optionally after a goodbye prompt."""

    type: Literal["hangup"]
    prompt: PromptSpec | None = None
    reason: str = "normal"


Step = Annotated[
    SayStep
    | GatherStep
    | MenuStep
    | SetStep
    | BranchStep
    | HttpStep
    | QueueStep
    | TransferStep
    | RecordStep
    | SubflowStep
    | ReturnStep
    | HangupStep,
    Field(discriminator="type"),
]

TERMINAL_TYPES = frozenset({"queue", "transfer", "return", "hangup"})


class Intent(FlowModel):
    """An intent with example phrases per language (a language subtag such as en, zh, ko)."""

    examples: dict[str, list[str]] = Field(min_length=1)
    description: str | None = None


class NluSettings(FlowModel):
    engine: Literal["auto", "e5", "tfidf"] = "auto"
    threshold: float | None = Field(
        default=None, ge=0, le=1, description="Minimum score; the engine's default if null."
    )
    margin: float | None = Field(
        default=None, ge=0, le=1, description="Minimum lead over the second intent."
    )


class SatisfactionRule(FlowModel):
    """At caller turn `at_turn`, if mean satisfaction is below `below`, go to `goto`."""

    at_turn: int = Field(ge=1, le=100)
    below: float = Field(ge=-1, le=1)
    goto: str


class Flow(FlowModel):
    """One call flow."""

    flow: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Flow name.")
    description: str | None = None
    language: str = "en-US"
    voice: str = "en-us"
    rate_wpm: int = Field(default=160, ge=80, le=450)
    numbers: list[str] = Field(
        default_factory=list, description="Called numbers routed to this flow."
    )
    default: bool = Field(default=False, description="Use for numbers that no flow lists.")
    start: str | None = Field(
        default=None, description="First step; the first in the file if null."
    )
    variables: dict[str, Any] = Field(default_factory=dict)
    intents: dict[str, Intent] = Field(default_factory=dict)
    nlu: NluSettings = Field(default_factory=NluSettings)
    transfer_allow: list[str] = Field(
        default_factory=list, description="Glob patterns of allowed transfer targets."
    )
    satisfaction: list[SatisfactionRule] = Field(default_factory=list)
    end_silence_ms: int | None = Field(
        default=None,
        ge=100,
        le=5000,
        description="Silence in ms that ends an utterance; the media leg's (600) if null.",
    )
    max_steps: int = Field(default=200, ge=1, le=10000, description="Loop guard per call.")
    steps: dict[str, Step] = Field(min_length=1)
    _base_dir: Path = PrivateAttr(default_factory=Path)

    @property
    def base_dir(self) -> Path:
        """Folder that relative audio paths are resolved against (the flow file's)."""
        return self._base_dir

    def with_base_dir(self, base_dir: Path) -> Flow:
        self._base_dir = base_dir
        return self

    @property
    def start_step(self) -> str:
        return self.start if self.start is not None else next(iter(self.steps))

    def following(self, step_id: str) -> str | None:
        """Return the step after `step_id` in file order, or None for the last."""
        ids = list(self.steps)
        index = ids.index(step_id)
        return ids[index + 1] if index + 1 < len(ids) else None
