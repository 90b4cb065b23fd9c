"""The speech plugin as flows use it: setup from ``[speech]``, then the ``speech.*`` actions."""

from __future__ import annotations

import base64
import os
import pathlib
import re
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import av
import pytest
import responses

from engine import i18n
from engine.api import Attachment, ConversationKey, User
from engine.config import Config, ConfigError
from engine.doubles import RecordingAdapter
from engine.plugins import SetupContext
from engine.states.actions import ActionContext, ActionError, ActionRegistry, NullNotifier
from engine.store import MemoryStore
from integrations.speech import SpeechService, setup
from integrations.speech.audio import encode_voice_message
from tests.integrations.speech.helpers import espeak, ko_model_dir, sine_pcm, speak_ko, write_audio

KEY = ConversationKey('test', 'channel', 'user')


_started: list[SetupContext] = []


@pytest.fixture(autouse=True)
async def _stop_plugins() -> AsyncIterator[None]:
    """Run the plugins' on_stop hooks (thread pools) after each test, as the engine does at shutdown."""
    yield
    while _started:
        for stop in _started.pop().on_stop:
            await stop()


def _plugin(tmp_path: pathlib.Path, **speech: Any) -> SetupContext:
    config = Config(sections={'speech': speech})
    config.bot.data_root = tmp_path / 'data'
    ctx = SetupContext(config=config, actions=ActionRegistry(), store=MemoryStore(), notifier=NullNotifier())
    setup(ctx)
    _started.append(ctx)
    return ctx


def _korean(tmp_path: pathlib.Path, **speech: Any) -> SetupContext:
    model = ko_model_dir()
    return _plugin(tmp_path, language='ko', models={'ko': str(model)}, **speech)


def _actx(tmp_path: pathlib.Path, *attachments: Attachment, locale: str = 'en') -> ActionContext:
    return ActionContext(
        key=KEY,
        user=User('u1'),
        adapter=RecordingAdapter(),
        data={},
        attachments=attachments,
        locale=locale,
        workdir=tmp_path / 'conv',
    )


async def _call(ctx: SetupContext, name: str, actx: ActionContext, **args: Any) -> Any:
    action = ctx.actions.get(name)
    assert action is not None
    with i18n.use(actx.locale):  # as the engine runs actions: in the reply language
        return await action.fn(actx, **args)


def _voice_attachment(path: pathlib.Path) -> Attachment:
    """A voice message as the Discord adapter hands it over: downloaded, typed audio/ogg."""
    return Attachment('voice-message.ogg', 'audio/ogg', path.stat().st_size, path)


async def test_setup_shares_the_service_and_registers_the_actions(tmp_path: pathlib.Path) -> None:
    ctx = _plugin(tmp_path)

    service = ctx.services['speech']
    assert isinstance(service, SpeechService)
    assert service.config.language == 'ru'
    assert service.config.models_dir == tmp_path / 'data' / 'speech' / 'models'
    assert service.config.voice_reply is True
    assert service.synthesizer.name == 'gtts+espeak'
    assert {'speech.recognize', 'speech.synthesize'} <= set(ctx.actions)
    assert ctx.actions.get('speech.synthesize').required == frozenset({'text'})  # type: ignore[union-attr]
    assert len(ctx.on_stop) == 1


async def test_whisper_engine_without_its_package_says_how_to_install_it(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, 'faster_whisper', None)
    ctx = _plugin(tmp_path, stt_engine='whisper', whisper={'model': 'tiny'})
    voice = encode_voice_message(sine_pcm(1, 16000), tmp_path / 'voice.ogg')

    with pytest.raises(ActionError, match=re.escape("pip install 'flowbot[whisper]'")):
        await _call(ctx, 'speech.recognize', _actx(tmp_path, _voice_attachment(voice.path)))


def test_bad_speech_config_names_the_key(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match='max_secs'):
        _plugin(tmp_path, max_secs=10)


def test_unknown_engine_is_a_config_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match='stt_engine'):
        _plugin(tmp_path, stt_engine='sphinx')


async def test_voice_message_is_recognised_by_the_action(tmp_path: pathlib.Path) -> None:
    ctx = _korean(tmp_path)
    voice = encode_voice_message(speak_ko('감사합니다', tmp_path / 'said.wav'), tmp_path / 'voice.ogg')

    result = await _call(
        ctx, 'speech.recognize', _actx(tmp_path, _voice_attachment(voice.path)), grammar=['감사합니다', '일곱']
    )

    assert result['text'] == '감사합니다'
    assert result['language'] == 'ko'
    assert result['duration'] == pytest.approx(voice.duration, abs=0.05)
    assert result['voice_reply'] is True


async def test_audio_is_found_among_other_attachments_by_its_name(tmp_path: pathlib.Path) -> None:
    ctx = _korean(tmp_path)
    wav = speak_ko('일곱', tmp_path / 'seven.wav')
    picture = Attachment('cat.png', 'image/png', 10, tmp_path / 'cat.png')
    untyped = Attachment('seven.wav', 'application/octet-stream', wav.stat().st_size, wav)

    result = await _call(ctx, 'speech.recognize', _actx(tmp_path, picture, untyped), grammar=['일곱', '여덟'])

    assert result['text'] == '일곱'


async def test_silence_is_not_understood(tmp_path: pathlib.Path) -> None:
    ctx = _korean(tmp_path)
    silence = encode_voice_message(b'\0\0' * 16000, tmp_path / 'silence.ogg')

    with pytest.raises(ActionError, match=r'^no words were recognised in it$'):
        await _call(ctx, 'speech.recognize', _actx(tmp_path, _voice_attachment(silence.path)), grammar=['일곱'])


async def test_message_without_audio_gets_a_clear_answer(tmp_path: pathlib.Path) -> None:
    ctx = _plugin(tmp_path)
    picture = Attachment('cat.png', 'image/png', 10, tmp_path / 'cat.png')

    with pytest.raises(ActionError, match='found no audio'):
        await _call(ctx, 'speech.recognize', _actx(tmp_path, picture))


async def test_audio_that_was_not_downloaded_is_reported(tmp_path: pathlib.Path) -> None:
    ctx = _plugin(tmp_path)
    remote = Attachment('voice-message.ogg', 'audio/ogg', 100, None, url='https://cdn.example/x.ogg')

    with pytest.raises(ActionError, match='could not fetch'):
        await _call(ctx, 'speech.recognize', _actx(tmp_path, remote))


async def test_undecodable_voice_message_is_refused(tmp_path: pathlib.Path) -> None:
    ctx = _plugin(tmp_path)
    bad = tmp_path / 'voice.ogg'
    bad.write_bytes(b'\x00garbage' * 500)

    with pytest.raises(ActionError, match='could not read this audio file'):
        await _call(ctx, 'speech.recognize', _actx(tmp_path, _voice_attachment(bad)))


async def test_too_long_voice_message_is_refused(tmp_path: pathlib.Path) -> None:
    ctx = _plugin(tmp_path, max_seconds=2)
    long = write_audio(tmp_path / 'long.ogg', sine_pcm(5, 48000), 48000, fmt='ogg', codec='libopus')

    with pytest.raises(ActionError, match='too long'):
        await _call(ctx, 'speech.recognize', _actx(tmp_path, _voice_attachment(long)))


async def test_too_long_voice_message_is_refused_by_its_declared_duration(tmp_path: pathlib.Path) -> None:
    ctx = _plugin(tmp_path, max_seconds=2)
    att = Attachment('voice-message.ogg', 'audio/ogg', 100, tmp_path / 'x.ogg', duration=30.0)

    with pytest.raises(ActionError, match=r'too long \(30 s\)'):
        await _call(ctx, 'speech.recognize', _actx(tmp_path, att))


async def test_too_big_audio_file_is_refused(tmp_path: pathlib.Path) -> None:
    ctx = _plugin(tmp_path, max_bytes=1000)
    big = write_audio(tmp_path / 'big.wav', sine_pcm(1, 16000), 16000, fmt='wav', codec='pcm_s16le')

    with pytest.raises(ActionError, match='too big'):
        await _call(ctx, 'speech.recognize', _actx(tmp_path, Attachment('big.wav', 'audio/wav', 0, big)))


async def test_missing_model_tells_how_to_install_it(tmp_path: pathlib.Path) -> None:
    ctx = _plugin(tmp_path)
    voice = encode_voice_message(sine_pcm(1, 16000), tmp_path / 'voice.ogg')

    with pytest.raises(ActionError, match=r'flowbot speech install vosk-model-small-ru-0\.22'):
        await _call(ctx, 'speech.recognize', _actx(tmp_path, _voice_attachment(voice.path), locale='ru'))
    with pytest.raises(ActionError, match=r'flowbot speech install vosk-model-small-en-us-0\.15'):
        await _call(ctx, 'speech.recognize', _actx(tmp_path, _voice_attachment(voice.path), locale='en-US'))


async def test_text_is_spoken_as_a_discord_voice_message(tmp_path: pathlib.Path) -> None:
    espeak()
    ctx = _plugin(tmp_path, tts_primary='espeak')

    result = await _call(
        ctx,
        'speech.synthesize',
        _actx(tmp_path, locale='ru'),
        text='Здравствуйте! Чем могу помочь?',
        voice_message=True,
    )

    path = pathlib.Path(result['path'])
    assert path.parent == tmp_path / 'conv'
    assert path.suffix == '.ogg'
    assert result['engine'] == 'espeak'
    assert 1.0 < result['duration'] < 6.0
    assert 1 <= len(base64.b64decode(result['waveform'])) <= 256
    with av.open(str(path)) as container:
        assert container.streams.audio[0].codec_context.name == 'opus'
        assert container.streams.audio[0].rate == 48000


@responses.activate
async def test_speech_falls_back_to_espeak_when_google_is_down(tmp_path: pathlib.Path) -> None:
    espeak()
    responses.add(responses.POST, 'https://translate.google.com/_/TranslateWebserverUi/data/batchexecute', status=503)
    ctx = _plugin(tmp_path)

    result = await _call(ctx, 'speech.synthesize', _actx(tmp_path), text='Hello there', language='en')

    assert result['engine'] == 'espeak'
    assert result['path'].endswith('.wav')
    assert 'waveform' not in result
    service: SpeechService = ctx.services['speech']
    spoken = await service.synthesize('Привет')
    assert spoken.engine == 'espeak'
    assert spoken.path.parent == tmp_path / 'data' / 'speech' / 'tmp'


@pytest.mark.parametrize(('text', 'message'), [('   ', 'no text'), ('a' * 6000, 'too long to speak')])
async def test_empty_or_oversize_text_is_refused(tmp_path: pathlib.Path, text: str, message: str) -> None:
    ctx = _plugin(tmp_path, tts_primary='espeak')

    with pytest.raises(ActionError, match=message):
        await _call(ctx, 'speech.synthesize', _actx(tmp_path), text=text)


async def test_old_files_in_the_shared_work_folder_are_cleaned_up(tmp_path: pathlib.Path) -> None:
    espeak()
    ctx = _plugin(tmp_path, tts_primary='espeak')
    service: SpeechService = ctx.services['speech']
    shared = service.config.work_path
    shared.mkdir(parents=True)
    old, fresh, other = shared / 'speech-old.wav', shared / 'speech-fresh.wav', shared / 'notes.txt'
    for path in (old, fresh, other):
        path.write_bytes(b'x')
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    os.utime(other, (time.time() - 7200, time.time() - 7200))

    spoken = await service.synthesize('hello', 'en')

    assert not old.exists()
    assert fresh.exists() and other.exists() and spoken.path.exists()
