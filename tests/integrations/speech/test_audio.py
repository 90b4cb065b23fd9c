"""Decoding user audio to 16 kHz mono PCM and encoding Discord voice messages, with real PyAV codecs."""

from __future__ import annotations

import base64
import pathlib

import av
import numpy as np
import pytest

from integrations.speech.audio import (
    AudioDecodeError,
    AudioTooLargeError,
    AudioTooLongError,
    decode_audio,
    encode_voice_message,
    probe_duration,
    resample_pcm,
    voice_message_info,
    waveform,
)
from tests.integrations.speech.helpers import sine_pcm, write_audio


@pytest.mark.parametrize(
    ('name', 'fmt', 'codec', 'rate', 'stereo'),
    [
        ('voice.ogg', 'ogg', 'libopus', 48000, False),
        ('song.mp3', 'mp3', 'libmp3lame', 44100, True),
        ('clip.wav', 'wav', 'pcm_s16le', 22050, False),
        ('memo.m4a', 'ipod', 'aac', 44100, True),
        ('call.webm', 'webm', 'libopus', 48000, True),
    ],
)
def test_audio_in_any_common_format_decodes_to_16k_mono(
    tmp_path: pathlib.Path, name: str, fmt: str, codec: str, rate: int, stereo: bool
) -> None:
    path = write_audio(tmp_path / name, sine_pcm(1.5, rate, 440), rate, fmt=fmt, codec=codec, stereo=stereo)

    audio = decode_audio(path)

    assert audio.sample_rate == 16000
    assert audio.duration == pytest.approx(1.5, abs=0.1)
    samples = np.frombuffer(audio.pcm, dtype='<i2')
    # the tone survives: its dominant frequency is still 440 Hz after resampling to 16 kHz
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    peak_hz = np.argmax(spectrum) * 16000 / len(samples)
    assert peak_hz == pytest.approx(440, abs=10)
    assert np.abs(samples).max() > 8000


def test_undecodable_file_is_refused_with_a_clear_message(tmp_path: pathlib.Path) -> None:
    path = tmp_path / 'voice.ogg'
    path.write_bytes(b'OggS this is not really an ogg stream' * 50)

    with pytest.raises(AudioDecodeError, match='could not read this audio file'):
        decode_audio(path)


def test_empty_file_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / 'voice.ogg'
    path.write_bytes(b'')

    with pytest.raises(AudioDecodeError, match='empty'):
        decode_audio(path)


def test_missing_file_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(AudioDecodeError, match='could not be read'):
        decode_audio(tmp_path / 'gone.ogg')


def test_over_long_audio_is_refused_before_decoding_all_of_it(tmp_path: pathlib.Path) -> None:
    path = write_audio(tmp_path / 'long.ogg', sine_pcm(4.0, 48000), 48000, fmt='ogg', codec='libopus')

    with pytest.raises(AudioTooLongError, match=r'too long \(4 s\); the limit is 2 s'):
        decode_audio(path, max_seconds=2)


def test_over_long_audio_without_a_reported_duration_is_refused_while_decoding(tmp_path: pathlib.Path) -> None:
    # raw ADTS AAC has no duration in its header: the limit must be enforced on decoded samples
    path = write_audio(tmp_path / 'long.aac', sine_pcm(4.0, 44100), 44100, fmt='adts', codec='aac')

    with pytest.raises(AudioTooLongError, match='the limit is 2 s'):
        decode_audio(path, max_seconds=2)


def test_audio_within_the_duration_limit_is_accepted(tmp_path: pathlib.Path) -> None:
    path = write_audio(tmp_path / 'ok.wav', sine_pcm(2.0, 16000), 16000, fmt='wav', codec='pcm_s16le')

    assert decode_audio(path, max_seconds=2).duration == pytest.approx(2.0, abs=0.01)


def test_oversize_file_is_refused_by_size(tmp_path: pathlib.Path) -> None:
    path = write_audio(tmp_path / 'big.wav', sine_pcm(1.0, 16000), 16000, fmt='wav', codec='pcm_s16le')

    with pytest.raises(AudioTooLargeError, match='too big'):
        decode_audio(path, max_bytes=1000)


def test_voice_message_is_48k_mono_opus_in_ogg_with_discord_waveform(tmp_path: pathlib.Path) -> None:
    loud, silent = sine_pcm(1.0, 16000, amplitude=0.9), b'\0\0' * 16000

    voice = encode_voice_message(loud + silent, tmp_path / 'reply.ogg', sample_rate=16000)

    assert voice.duration == pytest.approx(2.0, abs=0.01)
    with av.open(str(voice.path)) as container:
        assert container.format.name == 'ogg'
        stream = container.streams.audio[0]
        assert stream.codec_context.name == 'opus'
        assert stream.rate == 48000
        assert stream.channels == 1
    amplitudes = base64.b64decode(voice.waveform)
    assert len(amplitudes) == 20  # one byte per 100 ms
    assert min(amplitudes[:10]) > 200  # the loud first second
    assert max(amplitudes[11:]) == 0  # the silent second (the resampler rings a little at the edge)
    assert decode_audio(voice.path).duration == pytest.approx(2.0, abs=0.05)


def test_voice_message_from_a_file_keeps_its_length(tmp_path: pathlib.Path) -> None:
    src = write_audio(tmp_path / 'in.mp3', sine_pcm(3.0, 44100), 44100, fmt='mp3', codec='libmp3lame')

    voice = encode_voice_message(src, tmp_path / 'out.ogg')

    assert voice.duration == pytest.approx(3.0, abs=0.1)
    assert probe_duration(voice.path) == pytest.approx(3.0, abs=0.1)


def test_waveform_never_exceeds_256_bytes() -> None:
    pcm = sine_pcm(60.0, 8000)

    assert len(base64.b64decode(waveform(pcm, 8000))) == 256


def test_resampling_keeps_the_duration() -> None:
    pcm = sine_pcm(1.0, 22050)

    out = resample_pcm(pcm, 22050, 48000)

    assert len(out) // 2 == pytest.approx(48000, abs=50)


def test_voice_message_info_reads_back_duration_and_waveform(tmp_path: pathlib.Path) -> None:
    made = encode_voice_message(sine_pcm(1.0, 16000, amplitude=0.9) + b'\0\0' * 16000, tmp_path / 'v.ogg')

    info = voice_message_info(made.path)

    assert info.duration == pytest.approx(made.duration, abs=0.02)
    amplitudes = base64.b64decode(info.waveform)
    assert len(amplitudes) == 20
    assert min(amplitudes[:9]) > 200
    assert max(amplitudes[11:]) == 0
