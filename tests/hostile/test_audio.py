"""Hostile audio: damaged, lying, empty or special files get a plain message, never a hang."""

from __future__ import annotations

import os
import pathlib
import struct
from collections.abc import Callable

import pytest

from integrations.speech.audio import AudioError, decode_audio

from .conftest import World, assert_safe, bounded


def _wav(rate: int, channels: int, bits: int, frames: bytes, *, declared: int | None = None) -> bytes:
    size = declared if declared is not None else len(frames)
    header = struct.pack(
        '<4sI4s4sIHHIIHH4sI',
        b'RIFF',
        36 + size,
        b'WAVE',
        b'fmt ',
        16,
        1,
        channels,
        rate,
        rate * channels * bits // 8,
        channels * bits // 8,
        bits,
        b'data',
        size,
    )
    return header + frames


AUDIO: dict[str, Callable[[World, pathlib.Path], None]] = {
    'empty': lambda w, p: p.write_bytes(b''),
    'random-bytes': lambda w, p: p.write_bytes(os.urandom(50_000)),
    'text-named-ogg': lambda w, p: p.write_text('hello, I am not audio', encoding='utf-8'),
    'ogg-magic-then-garbage': lambda w, p: p.write_bytes(b'OggS' + os.urandom(10_000)),
    'wav-header-only': lambda w, p: p.write_bytes(_wav(16000, 1, 16, b'')),
    'wav-lying-data-size': lambda w, p: p.write_bytes(_wav(16000, 1, 16, b'\0' * 100, declared=2**31)),
    'wav-zero-rate': lambda w, p: p.write_bytes(_wav(0, 1, 16, b'\0' * 1000)),
    'wav-255-channels': lambda w, p: p.write_bytes(_wav(16000, 255, 16, b'\0' * 1020)),
    'wav-too-long': lambda w, p: p.write_bytes(_wav(8000, 1, 8, b'\x80' * 8000 * 40)),
    'zip-named-ogg': lambda w, p: p.write_bytes(b'PK\x03\x04' + b'\0' * 1000),
    'png-named-ogg': lambda w, p: p.write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 1000),
    'over-the-size-limit': lambda w, p: p.open('wb').truncate(30 * 1024 * 1024),
    'fifo': lambda w, p: os.mkfifo(p),
    'link-to-dev-zero': lambda w, p: os.symlink('/dev/zero', p),
    'link-to-dev-urandom': lambda w, p: os.symlink('/dev/urandom', p),
    'folder': lambda w, p: p.mkdir(),
    'dangling-link': lambda w, p: os.symlink(w.root / 'nothing', p),
    'id3-header-then-nothing': lambda w, p: p.write_bytes(b'ID3\x04\x00\x00\x00\x00\x00\x00'),
}


@pytest.mark.parametrize('case', sorted(AUDIO))
def test_hostile_audio_gets_a_plain_message(world: World, case: str) -> None:
    path = world.root / 'voice.ogg'
    AUDIO[case](world, path)
    with bounded(seconds=10):
        try:
            decoded = decode_audio(path, max_bytes=25 * 1024 * 1024, max_seconds=30)
        except AudioError as exc:
            assert_safe(exc)
            assert str(path) not in str(exc), 'no path in what the user reads'
            return
    assert case in DECODABLE, f'{case} decoded to {len(decoded.pcm)} bytes'
    assert len(decoded.pcm) <= 31 * 16000 * 2, 'never more than the time limit'


DECODABLE = {'wav-lying-data-size'}
"""Damaged but readable: what is there is decoded (a lying header cannot make it longer)."""
