"""Speech recognition with the real Korean vosk model on voice messages made by espeak-ng."""

from __future__ import annotations

import pathlib
import re
import sys

import pytest

from integrations.speech.audio import decode_audio, encode_voice_message
from integrations.speech.stt import (
    SHARED_MODELS,
    EngineNotInstalledError,
    ModelNotInstalledError,
    RecognitionError,
    VoskModelCache,
    VoskRecognizer,
    WhisperRecognizer,
    language_candidates,
    pause_cuts,
)
from tests.integrations.speech.helpers import ko_model_dir, sine_pcm, speak_ko

GRAMMAR = ['일곱', '여덟', '하나', '둘', '셋', '안녕하세요', '감사합니다']


def _voice_message(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    """What Discord delivers: the spoken text as an OGG/Opus voice message."""
    wav = speak_ko(text, tmp_path / 'spoken.wav')
    return encode_voice_message(wav, tmp_path / 'voice-message.ogg').path


@pytest.mark.parametrize('word', ['일곱', '여덟', '감사합니다'])
async def test_voice_message_in_korean_is_recognised(tmp_path: pathlib.Path, word: str) -> None:
    model = ko_model_dir()
    recognizer = VoskRecognizer(model.parent, {'ko': model.name})
    audio = decode_audio(_voice_message(tmp_path, word))

    result = await recognizer.recognize(audio.pcm, audio.sample_rate, 'ko-KR', grammar=GRAMMAR)

    assert result.text == word
    assert result.confidence is not None
    assert 0.5 < result.confidence <= 1.0


async def test_model_is_loaded_once_and_shared(tmp_path: pathlib.Path) -> None:
    model = ko_model_dir()
    first = VoskRecognizer(model.parent, {'ko': model.name})
    second = VoskRecognizer(model.parent, {'ko': str(model)})  # absolute path to the same folder

    assert first.cache is second.cache is SHARED_MODELS
    assert first.load('ko') is second.load('ko')
    assert SHARED_MODELS.loaded().count(model.resolve()) == 1


async def test_missing_model_says_how_to_install_it(tmp_path: pathlib.Path) -> None:
    recognizer = VoskRecognizer(tmp_path, {'ru': 'vosk-model-small-ru-0.22'})

    with pytest.raises(ModelNotInstalledError, match=r'flowbot speech install vosk-model-small-ru-0\.22'):
        await recognizer.recognize(b'\0\0' * 1600, 16000, 'ru')


async def test_language_without_a_configured_model_is_refused(tmp_path: pathlib.Path) -> None:
    recognizer = VoskRecognizer(tmp_path, {'ru': 'vosk-model-small-ru-0.22'})

    with pytest.raises(ModelNotInstalledError, match=r'no model is configured.*\[speech.models\]'):
        await recognizer.recognize(b'\0\0' * 1600, 16000, 'fr')


def test_damaged_model_folder_is_reported(tmp_path: pathlib.Path) -> None:
    (tmp_path / 'broken' / 'conf').mkdir(parents=True)
    recognizer = VoskRecognizer(tmp_path, {'ru': 'broken'}, cache=VoskModelCache())

    with pytest.raises(ModelNotInstalledError, match='damaged; reinstall'):
        recognizer.load('ru')


def test_locales_fall_back_to_their_language() -> None:
    assert language_candidates('ru_RU') == ['ru-ru', 'ru']
    assert language_candidates('ko') == ['ko']


async def test_whisper_without_the_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, 'faster_whisper', None)  # import fails as if not installed
    recognizer = WhisperRecognizer('tiny')

    with pytest.raises(EngineNotInstalledError, match=re.escape("pip install 'flowbot[whisper]'")):
        await recognizer.recognize(b'\0\0' * 1600, 16000, 'ru')


def test_whisper_cannot_listen_live_and_says_so() -> None:
    with pytest.raises(RecognitionError, match='needs the vosk recogniser'):
        WhisperRecognizer().stream('ko')


def test_live_stream_of_a_korean_word_ends_in_one_utterance(tmp_path: pathlib.Path) -> None:
    model = ko_model_dir()
    stream = VoskRecognizer(model.parent, {'ko': model.name}).stream('ko', grammar=GRAMMAR)
    audio = decode_audio(_voice_message(tmp_path, '여덟'))
    step = audio.sample_rate // 10 * 2
    texts = [t for at in range(0, len(audio.pcm), step) if (t := stream.accept(audio.pcm[at : at + step]))]
    texts.append(stream.finish())
    assert [t for t in texts if t] == ['여덟']
    assert stream.finish() == ''  # nothing since: nothing heard


# -- a long clip cut at its pauses, the parts recognised at once ------------------------------------------------------

RATE = 16_000


def _silence(seconds: float) -> bytes:
    return b'\0\0' * int(RATE * seconds)


def test_a_long_clip_is_cut_in_the_middle_of_its_pause() -> None:
    pcm = sine_pcm(3) + _silence(0.6) + sine_pcm(3)
    (cut,) = pause_cuts(pcm, RATE, 2)
    assert abs(cut / RATE - 3.3) < 0.03


def test_cuts_take_the_pauses_nearest_to_equal_parts() -> None:
    pcm = sine_pcm(2.5) + _silence(0.4) + sine_pcm(2.5) + _silence(0.4) + sine_pcm(2.5) + _silence(0.4) + sine_pcm(2.5)
    cuts = [c / RATE for c in pause_cuts(pcm, RATE, 2)]
    assert cuts == pytest.approx([5.6], abs=0.03)  # the middle pause, not the first
    assert [c / RATE for c in pause_cuts(pcm, RATE, 4)] == pytest.approx([2.7, 5.6, 8.5], abs=0.03)


@pytest.mark.parametrize(
    'pcm',
    [
        sine_pcm(8),  # no pause at all
        sine_pcm(3) + _silence(0.2) + sine_pcm(3),  # a pause too short: it may be inside a word
        sine_pcm(1) + _silence(0.6) + sine_pcm(5),  # the only pause too near the start
        sine_pcm(1.5) + _silence(0.5) + sine_pcm(1.5),  # too short to be worth two parts
        _silence(8),  # nothing but silence
        b'',
    ],
)
def test_audio_without_a_usable_pause_is_not_cut(pcm: bytes) -> None:
    assert pause_cuts(pcm, RATE, 2) == []


def test_one_part_asked_means_no_cut() -> None:
    assert pause_cuts(sine_pcm(3) + _silence(0.6) + sine_pcm(3), RATE, 1) == []


def _spoken_pcm(tmp_path: pathlib.Path, text: str) -> bytes:
    audio = decode_audio(_voice_message(tmp_path, text))
    assert audio.sample_rate == RATE
    return audio.pcm


async def test_a_clip_recognised_in_parts_at_once_gives_the_words_in_order(tmp_path: pathlib.Path) -> None:
    model = ko_model_dir()
    words = ['일곱', '여덟', '감사합니다']
    pcm = b''.join(_silence(1.0) + _spoken_pcm(tmp_path, w) + _silence(1.5) for w in words)
    whole = VoskRecognizer(model.parent, {'ko': model.name})
    parts = VoskRecognizer(model.parent, {'ko': model.name}, parallel=3)
    assert len(pause_cuts(pcm, RATE, 3)) == 2
    try:
        in_parts = await parts.recognize(pcm, RATE, 'ko', grammar=GRAMMAR)
        at_once = await whole.recognize(pcm, RATE, 'ko', grammar=GRAMMAR)
    finally:
        await parts.aclose()
    assert in_parts.text == at_once.text == '일곱 여덟 감사합니다'
    assert in_parts.confidence is not None and in_parts.confidence > 0.5


async def test_a_part_that_fails_fails_the_recognition_with_a_plain_message(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ko_model_dir()
    recognizer = VoskRecognizer(model.parent, {'ko': model.name}, parallel=2)
    pcm = sine_pcm(3) + _silence(0.6) + sine_pcm(3)
    original = recognizer._decode
    calls = []

    def decode(*args: object) -> list[dict[str, object]]:
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError('vosk broke')
        return original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(recognizer, '_decode', decode)
    try:
        with pytest.raises(RecognitionError, match=r'Speech recognition failed; please try again\.'):
            await recognizer.recognize(pcm, RATE, 'ko')
    finally:
        await recognizer.aclose()
    assert len(calls) == 2


def test_the_bot_recognises_in_as_many_parts_as_it_has_speech_threads(tmp_path: pathlib.Path) -> None:
    from integrations.speech.config import SpeechConfig
    from integrations.speech.service import build_recognizer

    recognizer = build_recognizer(SpeechConfig(threads=3, models_dir=tmp_path))
    assert isinstance(recognizer, VoskRecognizer)
    assert recognizer.parallel == 3
