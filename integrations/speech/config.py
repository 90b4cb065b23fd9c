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

    [speech.decoder]            # optional: faster, slightly less accurate vosk decoding
    beam = 8.0
    max_active = 1500
"""

from __future__ import annotations

import math
import pathlib

import attrs

from engine.config import Config, ConfigError
from engine.i18n import _

__all__ = ['DEFAULT_DOWNLOAD_BASE', 'DecoderConfig', 'Download', 'SpeechConfig', 'WhisperConfig']

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


@attrs.define(kw_only=True)
class DecoderConfig:
    """Vosk (Kaldi) decoder settings that replace the model's own ``conf/model.conf`` values.

    Unset fields keep the model's value. Smaller ``beam`` and ``max_active`` decode faster and
    may miss words the wider search finds; see ``docs/speech.md`` for measured figures.
    """

    beam: float | None = None
    """Search beam (vosk models ship 10-13); lower is faster."""
    max_active: float | None = None
    """Most states kept per frame, a whole number (models ship 3000-7000); lower is faster."""
    min_active: float | None = None
    """Fewest states kept per frame, a whole number (models ship 200); at most ``max_active``."""
    lattice_beam: float | None = None
    """Beam of the word lattice behind confidences and alternatives (models ship 2-6)."""

    def overrides(self) -> dict[str, str]:
        """The set fields as Kaldi options (``{'--beam': '8.0'}``), after :meth:`check`."""
        self.check()
        out: dict[str, str] = {}
        for name, option, whole in _DECODER_OPTIONS:
            value = getattr(self, name)
            if value is not None:
                out[option] = str(int(value)) if whole else repr(float(value))
        return out

    def check(self) -> None:
        """Refuse values Kaldi cannot use, with a message naming the key.

        :raises ConfigError: a value is not a positive number, a count is not whole, ``min_active > max_active``.
        """
        for name, _option, whole in _DECODER_OPTIONS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ConfigError(
                    _('[speech.decoder] {name} must be a positive number, not {value}').format(
                        name=name, value=repr(value)
                    )
                )
            least = 2 if name == 'max_active' else 1  # Kaldi asserts max_active > 1
            if whole and (value != int(value) or value < least):
                raise ConfigError(
                    _('[speech.decoder] {name} must be a whole number of at least {least}, not {value}').format(
                        name=name, least=least, value=repr(value)
                    )
                )
        if self.min_active is not None and self.max_active is not None and self.min_active > self.max_active:
            raise ConfigError(
                _('[speech.decoder] min_active ({low}) must not be above max_active ({high})').format(
                    low=f'{self.min_active:g}', high=f'{self.max_active:g}'
                )
            )


_DECODER_OPTIONS = (
    ('beam', '--beam', False),
    ('max_active', '--max-active', True),
    ('min_active', '--min-active', True),
    ('lattice_beam', '--lattice-beam', False),
)
"""Field, Kaldi option, whether the value is a whole number."""


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
    decoder: DecoderConfig = attrs.field(factory=DecoderConfig)
    """Vosk decoder overrides; none by default (the model's own settings)."""
    derived_dir: pathlib.Path | None = None
    """Where model folders tuned by ``[speech.decoder]`` are built (links to the originals and a rewritten
    ``conf/model.conf``); default ``<data_root>/speech/derived``."""

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
        """A copy with absolute folders (relative ones are taken against the config file's folder), checked.

        :raises ConfigError: bad ``[speech.decoder]`` values.
        """
        try:
            self.decoder.check()
        except ConfigError as exc:
            if config.path is None:
                raise
            raise ConfigError(_('{error} (in {path})').format(error=exc, path=config.path)) from exc
        data_root = config.resolve(config.bot.data_root)
        models_dir = config.resolve(self.models_dir) if self.models_dir else data_root / 'speech' / 'models'
        work_dir = config.resolve(self.work_dir) if self.work_dir else data_root / 'speech' / 'tmp'
        derived_dir = config.resolve(self.derived_dir) if self.derived_dir else data_root / 'speech' / 'derived'
        return attrs.evolve(self, models_dir=models_dir, work_dir=work_dir, derived_dir=derived_dir)

    @property
    def models_path(self) -> pathlib.Path:
        """The models folder (``data/speech/models`` relative to the working directory if not resolved)."""
        return self.models_dir or pathlib.Path('data', 'speech', 'models')

    @property
    def work_path(self) -> pathlib.Path:
        return self.work_dir or pathlib.Path('data', 'speech', 'tmp')

    @property
    def derived_path(self) -> pathlib.Path:
        """The tuned models folder (``data/speech/derived`` relative to the working directory if not resolved)."""
        return self.derived_dir or pathlib.Path('data', 'speech', 'derived')
