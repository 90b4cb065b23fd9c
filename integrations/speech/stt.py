"""Speech to text: the :class:`SpeechRecognizer` port, vosk (offline, default) and faster-whisper (optional).

Models are big and slow to load, so each is loaded once per process and shared; recognition is
CPU-bound and runs in a thread pool so the event loop keeps serving other conversations.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import pathlib
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

import attrs

from engine import i18n
from engine.errors import FlowbotError
from engine.i18n import _
from integrations.speech.decoder import DecoderSettingsError, DerivedModels

__all__ = [
    'SHARED_MODELS',
    'EngineNotInstalledError',
    'ModelNotInstalledError',
    'Recognition',
    'RecognitionError',
    'SpeechRecognizer',
    'SpeechStream',
    'VoskModelCache',
    'VoskRecognizer',
    'VoskStream',
    'WhisperRecognizer',
    'language_candidates',
]

_log = logging.getLogger(__name__)


class RecognitionError(FlowbotError):
    """Recognition cannot run; the message is fit for the user (or the operator, for set-up problems)."""


class ModelNotInstalledError(RecognitionError):
    """No model is configured or installed for the language."""


class EngineNotInstalledError(RecognitionError):
    """The configured engine's Python package is missing."""


@attrs.frozen
class Recognition:
    """What was said; ``confidence`` (0-1) when the engine gives one."""

    text: str
    confidence: float | None = None


class SpeechRecognizer(abc.ABC):
    """Turns PCM (mono, signed 16-bit little-endian) into text."""

    name: str = 'recognizer'

    @abc.abstractmethod
    async def recognize(
        self, pcm: bytes, sample_rate: int, language: str, *, grammar: Sequence[str] | None = None
    ) -> Recognition:
        """Recognise ``pcm``.

        :param language: ``ru``, ``en``, ``ko``, ... (locales like ``ru-RU`` are accepted).
        :param grammar: restrict recognition to these words/phrases where the engine can.
        :raises RecognitionError: no model, engine missing, engine failure.
        """

    def stream(self, language: str, *, grammar: Sequence[str] | None = None) -> SpeechStream:
        """A streaming recogniser for one speaker (blocking: loads the model; call from a thread).

        :raises RecognitionError: the engine cannot stream (only vosk can), or no model.
        """
        raise RecognitionError(
            _('Listening in voice channels needs the vosk recogniser; {name} cannot recognise a live stream.').format(
                name=self.name
            )
        )

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release what the recogniser holds."""


class SpeechStream(abc.ABC):
    """One speaker's live recognition: PCM in, utterances out as the engine's endpointing finds them."""

    sample_rate: int = 16_000

    @abc.abstractmethod
    def accept(self, pcm: bytes) -> str | None:
        """Feed mono s16 PCM at :attr:`sample_rate`; return an utterance's text when one just ended."""

    @abc.abstractmethod
    def finish(self) -> str:
        """The speaker stopped sending: end the current utterance now and return its text (may be empty)."""


def _words(result: str) -> str:
    """The text of a vosk result, without the ``[unk]`` a grammar gives for words outside it."""
    text = json.loads(result).get('text', '')
    return ' '.join(w for w in text.split() if w != '[unk]')


class VoskStream(SpeechStream):
    """Streaming vosk for one speaker, ending utterances with the model's endpointing rules
    (``--endpoint.rule*`` of its ``model.conf``: 0.5 s of trailing silence in most models).

    :param pad_seconds: silence fed before the first audio and before :meth:`finish`, so words right
        at the edges survive the feature pipeline's warm-up (as in :class:`VoskRecognizer`).
    """

    def __init__(self, model: Any, grammar: Sequence[str] | None = None, *, pad_seconds: float = 0.3) -> None:
        import vosk

        if grammar:
            self._rec = vosk.KaldiRecognizer(
                model, float(self.sample_rate), json.dumps(list(grammar), ensure_ascii=False)
            )
        else:
            self._rec = vosk.KaldiRecognizer(model, float(self.sample_rate))
        self._pad = b'\0\0' * int(self.sample_rate * pad_seconds)
        self._fresh = True

    def accept(self, pcm: bytes) -> str | None:
        if self._fresh:
            self._fresh = False
            pcm = self._pad + pcm
        if self._rec.AcceptWaveform(pcm):
            self._fresh = True
            return _words(self._rec.Result())
        return None

    def finish(self) -> str:
        self._rec.AcceptWaveform(self._pad)
        self._fresh = True
        return _words(self._rec.FinalResult())


def language_candidates(language: str) -> list[str]:
    """``pt-BR`` -> ``['pt-br', 'pt']``: the exact locale first, then its language."""
    lang = language.strip().lower().replace('_', '-')
    base = lang.split('-', 1)[0]
    return [lang] if base == lang else [lang, base]


class VoskModelCache:
    """Vosk models by folder, each loaded once (loading takes seconds and hundreds of MB)."""

    def __init__(self) -> None:
        self._models: dict[pathlib.Path, Any] = {}
        self._locks: dict[pathlib.Path, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, path: pathlib.Path) -> Any:
        """The loaded ``vosk.Model`` for ``path``, loading it on first use (blocking: call from a thread)."""
        path = path.resolve()
        with self._guard:
            if path in self._models:
                return self._models[path]
            lock = self._locks.setdefault(path, threading.Lock())
        with lock:  # one load per folder even when many requests arrive at once
            if path in self._models:
                return self._models[path]
            import vosk

            vosk.SetLogLevel(-1)
            _log.info('loading vosk model %s', path)
            try:
                model = vosk.Model(str(path))
            except Exception as exc:  # vosk raises a bare Exception when the folder is not a model
                _log.error('vosk cannot load the model in %s: %s', path, exc)
                raise ModelNotInstalledError(
                    _('The speech model in {path} is damaged; reinstall it.').format(path=path)
                ) from exc
            with self._guard:
                self._models[path] = model
            return model

    def loaded(self) -> list[pathlib.Path]:
        with self._guard:
            return list(self._models)


SHARED_MODELS = VoskModelCache()
"""The process-wide cache every :class:`VoskRecognizer` uses unless given its own."""


class VoskRecognizer(SpeechRecognizer):
    """Offline recognition with vosk (Kaldi); one model folder per language."""

    name = 'vosk'

    def __init__(
        self,
        models_dir: pathlib.Path,
        models: Mapping[str, str],
        *,
        executor: Executor | None = None,
        cache: VoskModelCache | None = None,
        chunk_seconds: float = 0.5,
        pad_seconds: float = 0.3,
        derived: DerivedModels | None = None,
        keep_warm: int = 1,
    ) -> None:
        """
        :param models_dir: where model folders live.
        :param models: language -> folder name in ``models_dir`` (or an absolute path).
        :param executor: the pool recognition runs in; the loop's default pool if ``None``.
        :param pad_seconds: silence added before and after the audio: recordings that start right on the
            first word (a late press of the record button) otherwise lose it to the feature pipeline's warm-up.
        :param derived: tuned decoder settings (``[speech.decoder]``): models are loaded from the folders it
            derives from the installed ones; the models' own settings if ``None``.
        :param keep_warm: idle recognisers kept per model for reuse; each holds the part of the search graph it
            has built (about 100 MB for the large Korean model, a few MB for the small ones).
        """
        self.models_dir = models_dir
        self.models = {k.lower(): v for k, v in models.items()}
        self.executor = executor
        self.cache = cache or SHARED_MODELS
        self.chunk_seconds = chunk_seconds
        self.pad_seconds = pad_seconds
        self.derived = derived
        self._warm: dict[tuple[Any, int], list[Any]] = {}
        """Idle free-speech recognisers per (model, sample rate). vosk composes a recogniser's search graph (the
        model's ``HCLr.fst`` with ``Gr.fst``) lazily as it decodes, so a fresh recogniser spends most of its first
        seconds of audio building it, and a reused one decodes several times faster (``benchmarks/speech.py``).
        A final result resets everything else (features, speaker adaptation), so nothing of one clip carries
        into the next."""
        self._warm_lock = threading.Lock()
        self.keep_warm = keep_warm

    def model_path(self, language: str) -> pathlib.Path:
        """The folder of the model for ``language``; raises a message saying how to install it."""
        for lang in language_candidates(language):
            if lang in self.models:
                name = self.models[lang]
                path = self.models_dir / name
                if not (path / 'conf').is_dir() and not (path / 'am').is_dir():
                    raise ModelNotInstalledError(
                        _(
                            'The speech model for {language} ({name}) is not installed in {folder}. '
                            'An admin can install it with: flowbot speech install {model}'
                        ).format(language=repr(lang), name=name, folder=self.models_dir, model=pathlib.Path(name).name)
                    )
                return path
        raise ModelNotInstalledError(
            _(
                'I cannot recognise speech in {language}: no model is configured for it. '
                'An admin can add one under [speech.models] in bot.toml and run: flowbot speech install MODEL'
            ).format(language=repr(language))
        )

    def stream(self, language: str, *, grammar: Sequence[str] | None = None) -> SpeechStream:
        try:
            model = self._model(self.model_path(language))
            return VoskStream(model, grammar, pad_seconds=self.pad_seconds)
        except RecognitionError:
            raise
        except Exception as exc:
            _log.exception('vosk cannot start a stream for %s', language)
            raise RecognitionError(_('Speech recognition cannot start; please try again.')) from exc

    def load(self, language: str) -> Any:
        """Load the language's model now (blocking), e.g. at start-up or before a benchmark."""
        return self._model(self.model_path(language))

    def _model(self, path: pathlib.Path) -> Any:
        """The loaded model of the installed folder ``path``, through its tuned copy if settings are given."""
        if self.derived is not None:
            try:
                path = self.derived.folder_for(path)
            except DecoderSettingsError as exc:
                _log.error('cannot tune the decoder of %s: %s', path, exc)
                raise RecognitionError(f'Speech recognition is misconfigured: {exc}.') from exc
        return self.cache.get(path)

    async def recognize(
        self, pcm: bytes, sample_rate: int, language: str, *, grammar: Sequence[str] | None = None
    ) -> Recognition:
        path = self.model_path(language)
        loop = asyncio.get_running_loop()
        recognize = i18n.carried(self._recognize, path, pcm, sample_rate, grammar)  # its errors in the reply language
        return await loop.run_in_executor(self.executor, recognize)

    def _recognize(
        self, path: pathlib.Path, pcm: bytes, sample_rate: int, grammar: Sequence[str] | None
    ) -> Recognition:
        import vosk

        model = self._model(path)
        key = (model, sample_rate)
        try:
            if grammar:  # a grammar's graph is small and made per recogniser: nothing to keep warm
                rec = vosk.KaldiRecognizer(model, float(sample_rate), json.dumps(list(grammar), ensure_ascii=False))
            else:
                with self._warm_lock:
                    idle = self._warm.get(key)
                    warm = idle.pop() if idle else None
                rec = warm if warm is not None else vosk.KaldiRecognizer(model, float(sample_rate))
            rec.SetWords(True)
            pad = b'\0\0' * int(sample_rate * self.pad_seconds)
            pcm = pad + pcm + pad
            step = max(2, int(sample_rate * self.chunk_seconds) * 2)
            results: list[dict[str, Any]] = []
            for start in range(0, len(pcm), step):
                if rec.AcceptWaveform(pcm[start : start + step]):
                    results.append(json.loads(rec.Result()))
            results.append(json.loads(rec.FinalResult()))
            if not grammar:  # only after a clean final result: one that failed is dropped
                with self._warm_lock:
                    idle = self._warm.setdefault(key, [])
                    if len(idle) < self.keep_warm:
                        idle.append(rec)
        except Exception as exc:
            _log.exception('vosk failed on %d bytes at %d Hz with %s', len(pcm), sample_rate, path)
            raise RecognitionError(_('Speech recognition failed; please try again.')) from exc
        text = ' '.join(r['text'] for r in results if r.get('text')).strip()
        confs = [w['conf'] for r in results for w in r.get('result', ()) if 'conf' in w]
        return Recognition(text, sum(confs) / len(confs) if confs else None)

    async def aclose(self) -> None:
        with self._warm_lock:
            self._warm.clear()


class WhisperRecognizer(SpeechRecognizer):
    """Recognition with faster-whisper, imported only when used (``pip install 'flowbot[whisper]'``)."""

    name = 'whisper'

    def __init__(
        self,
        model: str = 'small',
        *,
        device: str = 'cpu',
        compute_type: str = 'int8',
        beam_size: int = 5,
        executor: Executor | None = None,
    ) -> None:
        self.model_name = model
        self.device = device
        self.compute_type = compute_type
        self.beam_size = beam_size
        self.executor = executor
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                try:
                    from faster_whisper import WhisperModel
                except ImportError as exc:
                    raise EngineNotInstalledError(
                        _(
                            'Speech recognition is set to faster-whisper, which is not installed. '
                            "An admin can install it with: pip install 'flowbot[whisper]' "
                            '(or set [speech] stt_engine = "vosk").'
                        )
                    ) from exc
                _log.info('loading faster-whisper model %s on %s', self.model_name, self.device)
                self._model = WhisperModel(self.model_name, device=self.device, compute_type=self.compute_type)
            return self._model

    async def recognize(
        self, pcm: bytes, sample_rate: int, language: str, *, grammar: Sequence[str] | None = None
    ) -> Recognition:
        loop = asyncio.get_running_loop()
        recognize = i18n.carried(self._recognize, pcm, sample_rate, language, grammar)
        return await loop.run_in_executor(self.executor, recognize)

    def _recognize(self, pcm: bytes, sample_rate: int, language: str, grammar: Sequence[str] | None) -> Recognition:
        model = self._load()
        import numpy as np

        from integrations.speech.audio import resample_pcm

        if sample_rate != 16000:  # whisper expects 16 kHz float samples
            pcm = resample_pcm(pcm, sample_rate, 16000)
        audio = np.frombuffer(pcm, dtype='<i2').astype(np.float32) / 32768.0
        prompt = ', '.join(grammar) if grammar else None  # whisper has no grammar; a prompt biases it
        try:
            segments, _info = model.transcribe(
                audio,
                language=language_candidates(language)[-1],
                beam_size=self.beam_size,
                initial_prompt=prompt,
            )
            parts = list(segments)
        except Exception as exc:
            _log.exception('faster-whisper failed on %d bytes', len(pcm))
            raise RecognitionError(_('Speech recognition failed; please try again.')) from exc
        text = ' '.join(s.text.strip() for s in parts).strip()
        probs = [float(np.exp(s.avg_logprob)) for s in parts]
        return Recognition(text, sum(probs) / len(probs) if probs else None)
