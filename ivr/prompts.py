"""Turn flow prompts into audio: text through a synthesizer, WAV files from disk."""

from __future__ import annotations

import wave
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ivr.model import Prompt, PromptSpec
from ivr.templates import Template
from media.audio import PcmAudio

MAX_WAV_BYTES = 50_000_000


class Synthesizer(Protocol):
    """Text-to-speech as the IVR needs it (media.tts.EspeakSynthesizer fits)."""

    async def synthesize(self, text: str, *, voice: str = "en-us", rate_wpm: int = 160) -> PcmAudio:
        """Return `text` spoken as 16-bit mono PCM.

        Raises ValueError for invalid arguments (such as an unknown voice) and
        RuntimeError when the engine fails.
        """
        ...


class SilentSynthesizer:
    """A synthesizer that returns silence, 60 ms per word, for text-only channels."""

    def __init__(self, sample_rate: int = 8000) -> None:
        self.sample_rate = sample_rate

    async def synthesize(self, text: str, *, voice: str = "en-us", rate_wpm: int = 160) -> PcmAudio:
        samples = max(1, len(text.split())) * self.sample_rate * 60 // 1000
        return PcmAudio(b"\x00\x00" * samples, self.sample_rate)


def load_wav(path: Path) -> PcmAudio:
    """Read a 16-bit mono PCM WAV file; raise ValueError for any other format."""
    if path.stat().st_size > MAX_WAV_BYTES:
        raise ValueError(f"{path}: WAV file is larger than {MAX_WAV_BYTES} bytes")
    try:
        with wave.open(str(path), "rb") as reader:
            if reader.getsampwidth() != 2 or reader.getnchannels() != 1:
                raise ValueError(
                    f"{path}: expected 16-bit mono PCM, got {8 * reader.getsampwidth()}-bit "
                    f"with {reader.getnchannels()} channels"
                )
            frames = reader.readframes(reader.getnframes())
            return PcmAudio(frames, reader.getframerate())
    except wave.Error as exc:
        raise ValueError(f"{path}: not a PCM WAV file: {exc}") from exc


def as_prompt(spec: PromptSpec) -> Prompt:
    return Prompt(text=spec) if isinstance(spec, str) else spec


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    """A prompt ready to play; `text` is the rendered text or the WAV path."""

    audio: PcmAudio
    text: str
    source: str


class PromptRenderer:
    """Render prompts of one flow; WAV files are read once and cached."""

    def __init__(
        self,
        synthesizer: Synthesizer,
        *,
        base_dir: Path,
        voice: str,
        rate_wpm: int,
    ) -> None:
        self._synthesizer = synthesizer
        self._base_dir = base_dir
        self._voice = voice
        self._rate_wpm = rate_wpm
        self._wav_cache: dict[Path, PcmAudio] = {}

    async def render(self, spec: PromptSpec, variables: Mapping[str, Any]) -> RenderedPrompt:
        """Return the audio of `spec`; raises TemplateError, ValueError or OSError."""
        prompt = as_prompt(spec)
        if prompt.audio is not None:
            path = self._base_dir / prompt.audio
            audio = self._wav_cache.get(path)
            if audio is None:
                audio = load_wav(path)
                self._wav_cache[path] = audio
            return RenderedPrompt(audio, prompt.audio, "audio")
        assert prompt.text is not None
        text = Template(prompt.text).render(variables)
        audio = await self._synthesizer.synthesize(
            text,
            voice=prompt.voice or self._voice,
            rate_wpm=prompt.rate_wpm or self._rate_wpm,
        )
        return RenderedPrompt(audio, text, "text")
