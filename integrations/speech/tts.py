"""Text to speech: the :class:`SpeechSynthesizer` port, gTTS (Google), espeak-ng (offline) and a fallback chain.

gTTS sounds natural but needs Google; espeak-ng always works. :class:`FallbackSynthesizer` tries
the first and, when it fails (network, HTTP errors), logs it and speaks with the second.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import pathlib
import shutil
import uuid
from collections.abc import Mapping

import attrs

from engine.errors import FlowbotError
from engine.i18n import _
from integrations.speech.audio import AudioError, probe_duration

__all__ = [
    'EspeakSynthesizer',
    'FallbackSynthesizer',
    'GTTSSynthesizer',
    'SpeechSynthesizer',
    'Synthesis',
    'SynthesisError',
]

_log = logging.getLogger(__name__)


class SynthesisError(FlowbotError):
    """Speech could not be made; the message is fit for the user."""


@attrs.frozen
class Synthesis:
    """A synthesised audio file (MP3 from gTTS, WAV from espeak-ng)."""

    path: pathlib.Path
    duration: float
    """Seconds."""
    engine: str
    """Name of the engine that made it (``gtts``, ``espeak``), useful to know when the fallback spoke."""


class SpeechSynthesizer(abc.ABC):
    """Turns text into an audio file in a work folder."""

    name: str = 'synthesizer'

    def __init__(self, workdir: pathlib.Path) -> None:
        """:param workdir: where files go when :meth:`synthesize` is given no folder."""
        self.workdir = workdir

    @abc.abstractmethod
    async def synthesize(self, text: str, language: str, *, workdir: pathlib.Path | None = None) -> Synthesis:
        """Speak ``text`` in ``language`` (``ru``, ``en``, ``ru-RU`` ...) into a new file in ``workdir``.

        :raises SynthesisError: the engine failed.
        """

    def _new_path(self, workdir: pathlib.Path | None, suffix: str) -> pathlib.Path:
        folder = workdir or self.workdir
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f'speech-{uuid.uuid4().hex[:12]}{suffix}'


def _duration(path: pathlib.Path) -> float:
    try:
        return round(probe_duration(path, exact=True), 3)
    except AudioError as exc:
        raise SynthesisError(_('The synthesised speech could not be read back.')) from exc


class GTTSSynthesizer(SpeechSynthesizer):
    """Google Translate's voice through gTTS; it splits long text into <=100-character requests itself."""

    name = 'gtts'

    def __init__(self, workdir: pathlib.Path, *, tld: str = 'com', timeout: float | None = 15.0, slow: bool = False):
        """
        :param tld: Google host ``translate.google.<tld>``; changes the accent (``com``, ``co.uk``, ``ru``).
        :param timeout: seconds per request, so an unreachable Google fails over quickly.
        """
        super().__init__(workdir)
        self.tld = tld
        self.timeout = timeout
        self.slow = slow

    @staticmethod
    def language(language: str) -> str:
        """gTTS's code for ``language``: ``zh-TW`` stays, ``ru-RU`` becomes ``ru``."""
        from gtts.lang import tts_langs

        langs: dict[str, str] = {str(k).lower(): str(k) for k in tts_langs()}
        lang = language.strip().replace('_', '-').lower()
        if lang in langs:
            return langs[lang]
        base = lang.split('-', 1)[0]
        if base in langs:
            return langs[base]
        raise SynthesisError(_('Google speech does not speak {language!r}.').format(language=language))

    async def synthesize(self, text: str, language: str, *, workdir: pathlib.Path | None = None) -> Synthesis:
        lang = self.language(language)
        path = self._new_path(workdir, '.mp3')
        await asyncio.to_thread(self._save, text, lang, path)
        return Synthesis(path, await asyncio.to_thread(_duration, path), self.name)

    def _save(self, text: str, lang: str, path: pathlib.Path) -> None:
        import requests
        from gtts import gTTS, gTTSError

        try:
            gTTS(text, lang=lang, tld=self.tld, slow=self.slow, timeout=self.timeout).save(str(path))
        except (gTTSError, requests.RequestException, OSError) as exc:
            path.unlink(missing_ok=True)
            _log.warning('gTTS failed for %d characters in %s (tld %s): %s', len(text), lang, self.tld, exc)
            raise SynthesisError(_('Google speech is unavailable right now.')) from exc
        except AssertionError as exc:  # gTTS asserts there is something to say after its cleaning
            path.unlink(missing_ok=True)
            raise SynthesisError(_('There is nothing to say in this text.')) from exc


class EspeakSynthesizer(SpeechSynthesizer):
    """espeak-ng as a subprocess: robotic but offline and fast. Writes WAV."""

    name = 'espeak'

    def __init__(
        self,
        workdir: pathlib.Path,
        *,
        command: str = 'espeak-ng',
        voices: Mapping[str, str] | None = None,
        speed: int = 160,
        timeout: float = 60.0,
    ):
        """
        :param voices: language -> espeak-ng voice (default ``ru`` and ``en-us``); others pass through.
        :param speed: words per minute.
        """
        super().__init__(workdir)
        self.command = command
        self.voices = {k.lower(): v for k, v in (voices if voices is not None else {'ru': 'ru', 'en': 'en-us'}).items()}
        self.speed = speed
        self.timeout = timeout
        self._known: frozenset[str] | None = None

    async def known_voices(self, exe: str) -> frozenset[str]:
        """Names espeak-ng accepts for ``-v`` (languages, voice names, files); empty if it cannot list them.

        espeak-ng silently speaks English for an unknown voice, so voices are checked against this first.
        """
        if self._known is None:
            proc = await asyncio.create_subprocess_exec(
                exe, '--voices', stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            out, err = await proc.communicate()
            known: set[str] = set()
            for line in out.decode('utf-8', 'replace').splitlines()[1:]:
                cols = line.split()
                if len(cols) >= 5:
                    known.update(
                        {cols[1].lower(), cols[3].lower(), cols[4].lower(), cols[4].rsplit('/', 1)[-1].lower()}
                    )
            if proc.returncode != 0 or not known:
                _log.warning(
                    'cannot list espeak-ng voices (exit %s): %s', proc.returncode, err.decode(errors='replace')
                )
            self._known = frozenset(known)
        return self._known

    def voice(self, language: str) -> str:
        lang = language.strip().replace('_', '-').lower()
        return self.voices.get(lang) or self.voices.get(lang.split('-', 1)[0]) or lang

    async def synthesize(self, text: str, language: str, *, workdir: pathlib.Path | None = None) -> Synthesis:
        exe = shutil.which(self.command)
        if exe is None:
            _log.error('%s is not installed; cannot speak', self.command)
            raise SynthesisError(_('Offline speech (espeak-ng) is not installed on the bot host.'))
        voice = self.voice(language)
        known = await self.known_voices(exe)
        if known and voice.split('+', 1)[0].lower() not in known:
            _log.error('espeak-ng has no voice %r (for language %r)', voice, language)
            raise SynthesisError(_('Offline speech does not speak {language!r}.').format(language=language))
        path = self._new_path(workdir, '.wav')
        proc = await asyncio.create_subprocess_exec(
            exe,
            '-v',
            voice,
            '-s',
            str(self.speed),
            '-w',
            str(path),
            '--stdin',
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stderr = (await asyncio.wait_for(proc.communicate(text.encode('utf-8')), self.timeout))[1]
        except TimeoutError as exc:
            proc.kill()
            await proc.wait()
            path.unlink(missing_ok=True)
            _log.error('espeak-ng timed out after %s s on %d characters', self.timeout, len(text))
            raise SynthesisError(_('Speaking took too long.')) from exc
        message = stderr.decode('utf-8', 'replace').strip()
        if proc.returncode != 0 or not path.exists() or path.stat().st_size <= 44:
            path.unlink(missing_ok=True)
            _log.error('espeak-ng -v %s failed (exit %s): %s', voice, proc.returncode, message)
            raise SynthesisError(_('Offline speech failed for language {language!r}.').format(language=language))
        if message:
            _log.warning('espeak-ng -v %s: %s', voice, message)
        return Synthesis(path, await asyncio.to_thread(_duration, path), self.name)


class FallbackSynthesizer(SpeechSynthesizer):
    """``primary``, and ``fallback`` when the primary fails."""

    def __init__(self, primary: SpeechSynthesizer, fallback: SpeechSynthesizer) -> None:
        super().__init__(primary.workdir)
        self.primary = primary
        self.fallback = fallback
        self.name = f'{primary.name}+{fallback.name}'

    async def synthesize(self, text: str, language: str, *, workdir: pathlib.Path | None = None) -> Synthesis:
        try:
            return await self.primary.synthesize(text, language, workdir=workdir)
        except Exception as exc:
            _log.warning(
                '%s could not speak (%s); falling back to %s', self.primary.name, exc, self.fallback.name, exc_info=True
            )
            first = exc
        try:
            return await self.fallback.synthesize(text, language, workdir=workdir)
        except SynthesisError as exc:
            _log.error('fallback %s failed too: %s', self.fallback.name, exc)
            raise SynthesisError(_('I cannot speak right now: {first} {error}').format(first=first, error=exc)) from exc
