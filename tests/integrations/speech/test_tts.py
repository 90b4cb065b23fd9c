"""Speech synthesis: real espeak-ng, gTTS against a mocked Google endpoint, and the fallback between them."""

from __future__ import annotations

import base64
import json
import logging
import pathlib
import urllib.parse

import pytest
import requests
import responses

from integrations.speech.audio import decode_audio
from integrations.speech.tts import EspeakSynthesizer, FallbackSynthesizer, GTTSSynthesizer, SynthesisError
from tests.integrations.speech.helpers import espeak, sine_pcm, write_audio

GOOGLE = 'https://translate.google.com/_/TranslateWebserverUi/data/batchexecute'


def _mp3(tmp_path: pathlib.Path, seconds: float = 0.5) -> bytes:
    """A 24 kHz mono MP3 like Google's (with the ID3 tag PyAV's muxer adds: gTTS output must cope with it)."""
    path = write_audio(tmp_path / 'google.mp3', sine_pcm(seconds, 24000), 24000, fmt='mp3', codec='libmp3lame')
    return path.read_bytes()


def _google_reply(mp3: bytes) -> str:
    """The batchexecute answer gTTS parses: an anti-XSSI prefix, then compact JSON carrying base64 MP3."""
    payload = json.dumps([base64.b64encode(mp3).decode()], separators=(',', ':'))
    rpc = [['wrb.fr', 'jQ1olc', payload, None, None, None, 'generic']]
    return ")]}'\n\n" + json.dumps(rpc, separators=(',', ':')) + '\n'


def _sent(call: responses.Call) -> list[str]:
    """The (text, language) gTTS put in a request."""
    body = call.request.body
    assert isinstance(body, str | bytes)
    form = urllib.parse.parse_qs(body if isinstance(body, str) else body.decode())
    rpc = json.loads(form['f.req'][0])
    return json.loads(rpc[0][0][1])[:2]  # type: ignore[no-any-return]


@responses.activate
async def test_gtts_speaks_through_google_in_the_configured_language(tmp_path: pathlib.Path) -> None:
    mp3 = _mp3(tmp_path)
    responses.add(responses.POST, GOOGLE, body=_google_reply(mp3))
    synth = GTTSSynthesizer(tmp_path / 'work')

    result = await synth.synthesize('Привет, мир', 'ru-RU')

    assert result.engine == 'gtts'
    assert result.path.parent == tmp_path / 'work'
    assert result.path.read_bytes() == mp3
    assert result.duration == pytest.approx(0.5, abs=0.1)
    assert _sent(responses.calls[0]) == ['Привет, мир', 'ru']


@responses.activate
async def test_gtts_splits_long_text_into_several_requests(tmp_path: pathlib.Path) -> None:
    mp3 = _mp3(tmp_path, 0.3)
    responses.add(responses.POST, GOOGLE, body=_google_reply(mp3))
    text = ' '.join(['Это довольно длинное предложение для проверки.'] * 6)

    result = await GTTSSynthesizer(tmp_path).synthesize(text, 'ru')

    assert len(responses.calls) >= 3
    assert all(len(_sent(call)[0]) <= 100 for call in responses.calls)
    # every piece is there (each MP3 adds its encoder delay, hence the tolerance)
    assert result.duration == pytest.approx(0.3 * len(responses.calls), abs=0.1 * len(responses.calls))


@responses.activate
async def test_gtts_uses_the_configured_google_domain(tmp_path: pathlib.Path) -> None:
    responses.add(
        responses.POST,
        'https://translate.google.co.uk/_/TranslateWebserverUi/data/batchexecute',
        body=_google_reply(_mp3(tmp_path)),
    )

    result = await GTTSSynthesizer(tmp_path, tld='co.uk').synthesize('hello', 'en')

    assert result.engine == 'gtts'


@responses.activate
async def test_gtts_failure_raises_a_clear_error_and_leaves_no_file(tmp_path: pathlib.Path) -> None:
    responses.add(responses.POST, GOOGLE, status=503)
    work = tmp_path / 'work'

    with pytest.raises(SynthesisError, match='Google speech is unavailable'):
        await GTTSSynthesizer(work).synthesize('hello', 'en')
    assert list(work.iterdir()) == []


async def test_gtts_refuses_a_language_it_does_not_speak(tmp_path: pathlib.Path) -> None:
    with pytest.raises(SynthesisError, match='does not speak'):
        await GTTSSynthesizer(tmp_path).synthesize('hello', 'xx-klingon')


@pytest.mark.parametrize(('language', 'text'), [('ru', 'Привет, как дела?'), ('en', 'Hello, how are you?')])
async def test_espeak_speaks_russian_and_english_to_wav(tmp_path: pathlib.Path, language: str, text: str) -> None:
    espeak()

    result = await EspeakSynthesizer(tmp_path).synthesize(text, language)

    assert result.engine == 'espeak'
    assert result.path.suffix == '.wav'
    assert result.path.read_bytes()[:4] == b'RIFF'
    assert 0.5 < result.duration < 5
    assert len(decode_audio(result.path).pcm) > 16000


async def test_espeak_with_an_unknown_voice_is_refused_instead_of_speaking_english(tmp_path: pathlib.Path) -> None:
    espeak()

    with pytest.raises(SynthesisError, match="Offline speech does not speak 'ru'"):
        await EspeakSynthesizer(tmp_path, voices={'ru': 'no-such-voice'}).synthesize('привет', 'ru')
    assert list(tmp_path.iterdir()) == []


async def test_missing_espeak_binary_is_reported(tmp_path: pathlib.Path) -> None:
    with pytest.raises(SynthesisError, match='not installed'):
        await EspeakSynthesizer(tmp_path, command='no-such-espeak-binary').synthesize('hi', 'en')


@responses.activate
async def test_fallback_speaks_with_espeak_when_google_fails(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    espeak()
    responses.add(responses.POST, GOOGLE, status=503)
    synth = FallbackSynthesizer(GTTSSynthesizer(tmp_path), EspeakSynthesizer(tmp_path))

    with caplog.at_level(logging.WARNING, logger='integrations.speech.tts'):
        result = await synth.synthesize('Добрый день', 'ru')

    assert result.engine == 'espeak'
    assert result.duration > 0.3
    assert 'falling back to espeak' in caplog.text


@responses.activate
async def test_fallback_speaks_with_espeak_when_google_is_unreachable(tmp_path: pathlib.Path) -> None:
    espeak()
    responses.add(responses.POST, GOOGLE, body=requests.ConnectionError('no route to host'))
    synth = FallbackSynthesizer(GTTSSynthesizer(tmp_path), EspeakSynthesizer(tmp_path))

    result = await synth.synthesize('Good afternoon', 'en')

    assert result.engine == 'espeak'


@responses.activate
async def test_fallback_keeps_the_primary_when_it_works(tmp_path: pathlib.Path) -> None:
    responses.add(responses.POST, GOOGLE, body=_google_reply(_mp3(tmp_path)))
    synth = FallbackSynthesizer(GTTSSynthesizer(tmp_path), EspeakSynthesizer(tmp_path, command='no-such-espeak'))

    assert (await synth.synthesize('hello', 'en')).engine == 'gtts'


@responses.activate
async def test_when_both_engines_fail_the_error_says_so(tmp_path: pathlib.Path) -> None:
    responses.add(responses.POST, GOOGLE, status=503)
    synth = FallbackSynthesizer(GTTSSynthesizer(tmp_path), EspeakSynthesizer(tmp_path, command='no-such-espeak'))

    with pytest.raises(SynthesisError, match='cannot speak right now'):
        await synth.synthesize('hello', 'en')
