"""The ``[speech]`` section of ``bot.toml``: engines, models, limits.

Every field has a default so a bot runs without the section; relative paths are made absolute
against the config file's folder (or the data root) by :meth:`SpeechConfig.resolved`.

Example::

    [speech]
    language = "ru"
    models_dir = "data/speech/models"
    tts_primary = "gtts"        # or "espeak"
    tts_fallback = "espeak"     # or "" for none

    [speech.models]
    ru = "vosk-model-small-ru-0.22"

    [speech.downloads]
    vosk-model-small-ru-0.22 = { url = "https://example.org/m.zip", sha256 = "..." }
"""

from __future__ import annotations

import pathlib

import attrs

from engine.config import Config

__all__ = ['DEFAULT_DOWNLOAD_BASE', 'Download', 'SpeechConfig', 'WhisperConfig']

DEFAULT_DOWNLOAD_BASE = 'https://alphacephei.com/vosk/models/'
"""The official folder of vosk models; ``NAME.zip`` is appended."""


@attrs.define(kw_only=True)
class Download:
    """Where a named model comes from and the checksum it must have."""

    url: str
    sha256: str | None = None


@attrs.define(kw_only=True)
class WhisperConfig:
    """Settings of the optional faster-whisper engine (``stt_engine = "whisper"``)."""

    model: str = 'small'
    """A faster-whisper model size or a local folder."""
    device: str = 'cpu'
    compute_type: str = 'int8'
    beam_size: int = 5


def _default_models() -> dict[str, str]:
    return {'ru': 'vosk-model-small-ru-0.22', 'en': 'vosk-model-small-en-us-0.15'}


def _default_voices() -> dict[str, str]:
    return {'ru': 'ru', 'en': 'en-us'}


@attrs.define(kw_only=True)
class SpeechConfig:
    """Speech recognition (vosk, optionally faster-whisper) and synthesis (gTTS, espeak-ng)."""

    language: str = 'ru'
    """Language of voice messages and spoken answers when the flow does not say."""
    stt_engine: str = 'vosk'
    """``vosk`` (offline, default) or ``whisper`` (needs the faster-whisper package)."""
    models_dir: pathlib.Path | None = None
    """Folder of vosk models; default ``<data_root>/speech/models``."""
    models: dict[str, str] = attrs.field(factory=_default_models)
    """Language -> model folder name inside ``models_dir`` (or an absolute path)."""
    downloads: dict[str, Download] = attrs.field(factory=dict)
    """Model name -> download URL and checksum for ``flowbot speech install``."""
    download_base_url: str = DEFAULT_DOWNLOAD_BASE
    threads: int = 2
    """Worker threads for decoding and recognition, so the event loop never blocks."""
    whisper: WhisperConfig = attrs.field(factory=WhisperConfig)

    tts_primary: str = 'gtts'
    """``gtts`` or ``espeak``."""
    tts_fallback: str = 'espeak'
    """Used when the primary fails; empty for none."""
    gtts_tld: str = 'com'
    """Google host, ``translate.google.<tld>``: changes the accent."""
    gtts_timeout: float = 15.0
    espeak_command: str = 'espeak-ng'
    espeak_voices: dict[str, str] = attrs.field(factory=_default_voices)
    """Language -> espeak-ng voice; other languages are passed to espeak-ng as they are."""
    espeak_speed: int = 160
    """Words per minute."""
    work_dir: pathlib.Path | None = None
    """Where synthesised files go when the conversation has no work folder; default ``<data_root>/speech/tmp``."""

    max_bytes: int = 25 * 1024 * 1024
    """Largest audio file accepted for recognition."""
    max_seconds: float = 300.0
    """Longest audio accepted for recognition."""
    max_text_chars: int = 5000
    """Longest text spoken at once."""
    voice_reply: bool = True
    """Whether flows should also answer voice messages with a voice message."""

    def resolved(self, config: Config) -> SpeechConfig:
        """A copy with absolute folders: relative ones are taken against the config file's folder."""
        data_root = config.resolve(config.bot.data_root)
        models_dir = config.resolve(self.models_dir) if self.models_dir else data_root / 'speech' / 'models'
        work_dir = config.resolve(self.work_dir) if self.work_dir else data_root / 'speech' / 'tmp'
        return attrs.evolve(self, models_dir=models_dir, work_dir=work_dir)

    @property
    def models_path(self) -> pathlib.Path:
        """The models folder (``data/speech/models`` relative to the working directory if not resolved)."""
        return self.models_dir or pathlib.Path('data', 'speech', 'models')

    @property
    def work_path(self) -> pathlib.Path:
        return self.work_dir or pathlib.Path('data', 'speech', 'tmp')
