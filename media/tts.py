"""Prompt audio: espeak-ng speech synthesis with a cache, and WAV prompt files.

`EspeakSynthesizer` drives the libespeak-ng 1.52 that the `espeakng-loader`
package ships, through ctypes. The library keeps global state and is not
thread-safe, so one process-wide lock guards every call, and `synthesize`
runs the work in an executor thread. Results are cached in memory and, when a
folder is configured, as WAV files that survive restarts.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import espeakng_loader

from media.audio import PcmAudio
from media.wav import load_wav, save_wav

logger = logging.getLogger("media.tts")

# espeak_AUDIO_OUTPUT and espeak_PARAMETER values from speak_lib.h (espeak-ng 1.52).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE = 1
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_EE_OK = 0

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

MIN_RATE_WPM = 80
MAX_RATE_WPM = 450
MAX_TEXT_CHARS = 4000


class SynthesisError(RuntimeError):
    """espeak-ng rejected a voice or failed to synthesize text."""


class Synthesizer(Protocol):
    """A text-to-speech engine as the IVR uses it."""

    async def synthesize(self, text: str, *, voice: str = ..., rate_wpm: int = ...) -> PcmAudio: ...


class _EspeakVoice(ctypes.Structure):
    """espeak_VOICE from speak_lib.h."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


@functools.cache
def voice_exists(voice: str) -> bool:
    """True when espeak-ng accepts `voice` (a language such as en-us, optionally +variant)."""
    with _EspeakLibrary.lock:
        return _EspeakLibrary.get().has_voice(voice)


@functools.cache
def voice_languages() -> tuple[str, ...]:
    """Return the languages of the installed espeak-ng voices, for suggestions.

    Some listed languages, such as en-gb and fr-fr in espeak-ng 1.52, are aliases
    that `voice_exists` rejects, so check a name before suggesting it.
    """
    with _EspeakLibrary.lock:
        return tuple(_EspeakLibrary.get().languages())


class _EspeakLibrary:
    """The process-wide libespeak-ng handle. Every method must run under `lock`."""

    lock = threading.Lock()
    _instance: _EspeakLibrary | None = None

    def __init__(self) -> None:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_EspeakVoice))
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        data_path = str(Path(espeakng_loader.get_data_path()).parent).encode()
        sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0)
        if sample_rate <= 0:
            raise SynthesisError(f"espeak_Initialize failed with {sample_rate}")
        self.sample_rate = sample_rate
        self._lib = lib
        self._chunks: list[bytes] = []
        self._callback = _SYNTH_CALLBACK(self._on_samples)  # kept alive while the library lives
        lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> _EspeakLibrary:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _on_samples(self, wav: ctypes._Pointer[ctypes.c_short], count: int, _events: int) -> int:
        if count > 0 and wav:
            self._chunks.append(ctypes.string_at(wav, count * 2))
        return 0

    def has_voice(self, voice: str) -> bool:
        return bool(self._lib.espeak_SetVoiceByName(voice.encode()) == _EE_OK)

    def languages(self) -> list[str]:
        """Return the language names of every installed voice, such as en-us and pt-br."""
        names: set[str] = set()
        voices = self._lib.espeak_ListVoices(None)
        index = 0
        while voices[index]:
            # A list of (priority byte, NUL-terminated name), ended by a zero priority byte.
            address = voices[index].contents.languages
            while address and ctypes.string_at(address, 1) != b"\0":
                name = ctypes.string_at(address + 1)
                names.add(name.decode("utf-8", "replace"))
                address += len(name) + 2
            index += 1
        return sorted(names)

    def synthesize(self, text: str, voice: str, rate_wpm: int) -> bytes:
        if self._lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise SynthesisError(f"espeak-ng has no voice named {voice!r}")
        self._lib.espeak_SetParameter(_ESPEAK_RATE, rate_wpm, 0)
        encoded = text.encode("utf-8") + b"\0"
        self._chunks = []
        status = self._lib.espeak_Synth(
            encoded, len(encoded), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None
        )
        if status != _EE_OK:
            raise SynthesisError(f"espeak_Synth failed with status {status}")
        self._lib.espeak_Synchronize()
        pcm = b"".join(self._chunks)
        self._chunks = []
        return pcm


@dataclass(frozen=True, slots=True)
class TtsConfig:
    """Synthesizer settings. `cache_dir` None keeps the cache in memory only."""

    cache_dir: Path | None = None
    memory_cache_entries: int = 256


class EspeakSynthesizer:
    """Text to `PcmAudio` with espeak-ng (22,050 Hz mono), cached by (text, voice, rate)."""

    def __init__(self, config: TtsConfig | None = None) -> None:
        self.config = config or TtsConfig()
        self._memory: OrderedDict[tuple[str, str, int], PcmAudio] = OrderedDict()
        if self.config.cache_dir is not None:
            self.config.cache_dir.mkdir(parents=True, exist_ok=True)

    async def synthesize(self, text: str, *, voice: str = "en-us", rate_wpm: int = 160) -> PcmAudio:
        """Return speech for `text`.

        Raises ValueError on bad arguments and SynthesisError when espeak-ng fails.
        """
        if not text.strip():
            raise ValueError("cannot synthesize empty text")
        if len(text) > MAX_TEXT_CHARS:
            raise ValueError(f"prompt text of {len(text)} characters exceeds {MAX_TEXT_CHARS}")
        if not MIN_RATE_WPM <= rate_wpm <= MAX_RATE_WPM:
            raise ValueError(f"speech rate {rate_wpm} wpm outside {MIN_RATE_WPM}-{MAX_RATE_WPM}")
        key = (text, voice, rate_wpm)
        cached = self._memory.get(key)
        if cached is not None:
            self._memory.move_to_end(key)
            return cached
        loop = asyncio.get_running_loop()
        audio = await loop.run_in_executor(None, self.synthesize_blocking, text, voice, rate_wpm)
        self._remember(key, audio)
        return audio

    def synthesize_blocking(self, text: str, voice: str = "en-us", rate_wpm: int = 160) -> PcmAudio:
        """Synthesize in the calling thread with the disk cache, bypassing the memory cache."""
        path = self._cache_path(text, voice, rate_wpm)
        if path is not None and path.exists():
            try:
                return load_wav(path)
            except ValueError:
                logger.warning("unreadable TTS cache file %s, synthesizing again", path.name)
        with _EspeakLibrary.lock:
            library = _EspeakLibrary.get()
            pcm = library.synthesize(text, voice, rate_wpm)
            audio = PcmAudio(pcm, library.sample_rate)
        if path is not None:
            temporary = path.with_suffix(".tmp")
            save_wav(temporary, audio)
            temporary.replace(path)
        return audio

    def _cache_path(self, text: str, voice: str, rate_wpm: int) -> Path | None:
        if self.config.cache_dir is None:
            return None
        digest = hashlib.sha256(f"{voice}\0{rate_wpm}\0{text}".encode()).hexdigest()[:32]
        return self.config.cache_dir / f"tts-{digest}.wav"

    def _remember(self, key: tuple[str, str, int], audio: PcmAudio) -> None:
        self._memory[key] = audio
        while len(self._memory) > self.config.memory_cache_entries:
            self._memory.popitem(last=False)
