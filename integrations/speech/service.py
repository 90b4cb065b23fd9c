"""The speech service other plugins share (``ctx.services['speech']``): recognise files, speak text.

It owns the thread pool, applies the configured limits and turns engine errors into one
:class:`SpeechError` family whose messages can be shown to users.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import attrs

from engine import i18n
from engine.config import ConfigError
from engine.i18n import _
from integrations.speech.audio import VoiceMessage, decode_audio, encode_voice_message
from integrations.speech.config import SpeechConfig
from integrations.speech.decoder import DerivedModels
from integrations.speech.stt import SpeechRecognizer, VoskRecognizer, WhisperRecognizer
from integrations.speech.tts import (
    EspeakSynthesizer,
    FallbackSynthesizer,
    GTTSSynthesizer,
    SpeechSynthesizer,
    Synthesis,
    SynthesisError,
)

__all__ = ['SpeechService', 'Transcript', 'build_recognizer', 'build_synthesizer']

_log = logging.getLogger(__name__)


@attrs.frozen
class Transcript:
    """A recognised audio file."""

    text: str
    language: str
    duration: float
    """Seconds of audio."""
    confidence: float | None = None


@attrs.define
class SpeechService:
    """Recognition and synthesis with the bot's limits; what the actions and the voice plugin call."""

    config: SpeechConfig
    recognizer: SpeechRecognizer
    synthesizer: SpeechSynthesizer
    executor: ThreadPoolExecutor | None = None
    keep_seconds: float = 3600.0
    """Files in the shared work folder (used when a caller gives none) are deleted after this long."""
    _pruned_at: float = attrs.field(default=0.0, init=False)

    async def decode(self, path: pathlib.Path) -> tuple[bytes, int]:
        """16 kHz mono PCM of ``path`` within the limits (raises ``AudioError``)."""
        loop = asyncio.get_running_loop()
        audio = await loop.run_in_executor(
            self.executor,
            i18n.carried(
                lambda: decode_audio(path, max_bytes=self.config.max_bytes, max_seconds=self.config.max_seconds)
            ),
        )
        return audio.pcm, audio.sample_rate

    def language(self, language: str | None = None) -> str:
        """The speech language, for hearing and speaking alike: the flow's, else the reply language (the user's,
        the server's or ``bot.language``) when ``[speech.models]`` sets it up, else ``[speech] language``.
        """
        if language:
            return language
        reply = i18n.current()
        return reply if reply in self.config.models else self.config.language

    async def recognize_file(
        self, path: pathlib.Path, language: str | None = None, *, grammar: Sequence[str] | None = None
    ) -> Transcript:
        """Decode and recognise an audio file (raises ``AudioError`` or ``RecognitionError``)."""
        language = self.language(language)
        pcm, rate = await self.decode(path)
        result = await self.recognizer.recognize(pcm, rate, language, grammar=grammar)
        return Transcript(result.text, language, round(len(pcm) / 2 / rate, 3), result.confidence)

    async def synthesize(
        self, text: str, language: str | None = None, *, workdir: pathlib.Path | None = None
    ) -> Synthesis:
        """Speak ``text`` (raises ``SynthesisError``, also for empty or oversize text)."""
        text = text.strip()
        if not text:
            raise SynthesisError(_('There is no text to speak.'))
        if len(text) > self.config.max_text_chars:
            raise SynthesisError(
                _('The text is too long to speak ({count} characters; the limit is {limit}).').format(
                    count=len(text), limit=self.config.max_text_chars
                )
            )
        if workdir is None:
            await self._prune()
        return await self.synthesizer.synthesize(text, self.language(language), workdir=workdir)

    async def _prune(self) -> None:
        """Delete old files of the shared work folder (at most once a minute): nobody else cleans it."""
        now = time.time()
        if now - self._pruned_at < 60:
            return
        self._pruned_at = now
        await asyncio.to_thread(_prune, self.config.work_path, now - self.keep_seconds)

    async def voice_message(
        self, text: str, language: str | None = None, *, workdir: pathlib.Path | None = None
    ) -> tuple[Synthesis, VoiceMessage]:
        """Speak ``text`` and encode it as a Discord voice message (OGG/Opus) next to the synthesis."""
        synthesis = await self.synthesize(text, language, workdir=workdir)
        out = synthesis.path.with_name(synthesis.path.stem + '-voice.ogg')
        loop = asyncio.get_running_loop()
        voice = await loop.run_in_executor(self.executor, i18n.carried(encode_voice_message, synthesis.path, out))
        return synthesis, voice

    async def aclose(self) -> None:
        await self.recognizer.aclose()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)

    @classmethod
    def from_config(cls, config: SpeechConfig) -> SpeechService:
        """Build the engines the (resolved) config names."""
        executor = ThreadPoolExecutor(max_workers=max(1, config.threads), thread_name_prefix='speech')
        return cls(config, build_recognizer(config, executor), build_synthesizer(config), executor)


def _prune(folder: pathlib.Path, before: float) -> None:
    if not folder.is_dir():
        return
    for path in folder.glob('speech-*'):
        try:
            if path.is_file() and path.stat().st_mtime < before:
                path.unlink()
        except OSError as exc:
            _log.warning('cannot delete old speech file %s: %s', path, exc)


def build_recognizer(config: SpeechConfig, executor: ThreadPoolExecutor | None = None) -> SpeechRecognizer:
    engine = config.stt_engine.lower()
    if engine == 'vosk':
        overrides = config.decoder.overrides()
        derived = DerivedModels(config.derived_path, overrides) if overrides else None
        return VoskRecognizer(config.models_path, config.models, executor=executor, derived=derived)
    if engine in ('whisper', 'faster-whisper', 'faster_whisper'):
        w = config.whisper
        return WhisperRecognizer(
            w.model, device=w.device, compute_type=w.compute_type, beam_size=w.beam_size, executor=executor
        )
    raise ConfigError(
        _('[speech] stt_engine must be "vosk" or "whisper", not {value}').format(value=repr(config.stt_engine))
    )


def _synthesizer(name: str, config: SpeechConfig) -> SpeechSynthesizer:
    if name == 'gtts':
        return GTTSSynthesizer(config.work_path, tld=config.gtts_tld, timeout=config.gtts_timeout)
    if name in ('espeak', 'espeak-ng'):
        return EspeakSynthesizer(
            config.work_path, command=config.espeak_command, voices=config.espeak_voices, speed=config.espeak_speed
        )
    raise ConfigError(_('[speech] unknown speech synthesizer {name} (use "gtts" or "espeak")').format(name=repr(name)))


def build_synthesizer(config: SpeechConfig) -> SpeechSynthesizer:
    primary = _synthesizer(config.tts_primary.lower(), config)
    fallback_name = config.tts_fallback.lower().strip()
    if not fallback_name or fallback_name == config.tts_primary.lower():
        return primary
    return FallbackSynthesizer(primary, _synthesizer(fallback_name, config))
