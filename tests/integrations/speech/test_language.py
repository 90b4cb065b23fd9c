"""Speech follows the reply language: recognition and synthesis use the language of the user (else the server's,
else ``bot.language``) when it is set up, and ``[speech] language`` otherwise."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import Any

from engine import i18n
from integrations.speech.config import SpeechConfig
from integrations.speech.service import SpeechService
from integrations.speech.stt import SpeechRecognizer
from integrations.speech.tts import SpeechSynthesizer, Synthesis


class _Heard(SpeechSynthesizer):
    """Records the language it was asked to speak."""

    def __init__(self, workdir: pathlib.Path) -> None:
        super().__init__(workdir)
        self.languages: list[str] = []

    async def synthesize(self, text: str, language: str, *, workdir: pathlib.Path | None = None) -> Synthesis:
        self.languages.append(language)
        return Synthesis(self.workdir / 'x.wav', 1.0, 'fake')


class _Unused(SpeechRecognizer):
    async def recognize(self, pcm: bytes, rate: int, language: str, *, grammar: Sequence[str] | None = None) -> Any:
        raise AssertionError('not called')

    def stream(self, language: str, *, grammar: Sequence[str] | None = None) -> Any:
        raise AssertionError('not called')


def _service(tmp_path: pathlib.Path, **config: Any) -> tuple[SpeechService, _Heard]:
    heard = _Heard(tmp_path)
    return SpeechService(SpeechConfig(**config), _Unused(), heard), heard


async def test_speech_is_in_the_reply_language_when_it_is_set_up(tmp_path: pathlib.Path) -> None:
    service, heard = _service(tmp_path, language='en')
    with i18n.use('ru-RU'):
        assert service.language() == 'ru'  # vosk-model-small-ru-0.22 by default
        await service.synthesize('Привет')
    with i18n.use('en-US'):
        assert service.language() == 'en'
        await service.synthesize('Hello')
    assert heard.languages == ['ru', 'en']


async def test_a_reply_language_without_a_model_falls_back_to_the_speech_language(tmp_path: pathlib.Path) -> None:
    service, heard = _service(tmp_path, language='ru', models={'ru': 'vosk-model-small-ru-0.22'})
    with i18n.use('de'):
        assert service.language() == 'ru'
        await service.synthesize('Hallo')
    with i18n.use('en'):
        assert service.language() == 'ru'  # no English model configured: the bot speaks what it hears
        assert service.language('ko') == 'ko'  # what a flow asks for wins
    assert heard.languages == ['ru']
