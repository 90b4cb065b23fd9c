"""Any audio file to 20 ms Opus frames, as Discord wants them: 48 kHz, stereo, 960 samples each.

PyAV (FFmpeg) decodes whatever the synthesiser or user produced (WAV, MP3, Ogg, ...), resamples
and encodes with libopus, so no Opus or FFmpeg binary is needed at run time.
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Iterator

import av
import av.error

from engine.errors import FlowbotError
from engine.i18n import _
from integrations.discord.voice.rtp import FRAME_SAMPLES

__all__ = ['SAMPLE_RATE', 'AudioError', 'opus_frames']

_log = logging.getLogger(__name__)

SAMPLE_RATE = 48_000


class AudioError(FlowbotError):
    """The file cannot be played: not audio, damaged, or unreadable; the message says which."""


def opus_frames(path: pathlib.Path, *, bitrate: int = 64_000, max_seconds: float = 600.0) -> Iterator[bytes]:
    """Yield the Opus packets of ``path``, one per 20 ms, decoding lazily.

    :param bitrate: Opus bit rate in bit/s (64 kbit/s is Discord's default for voice channels).
    :param max_seconds: longer audio is cut there with a warning, so one reply cannot hold the channel.
    :raises AudioError: when the file is missing, has no audio stream or cannot be decoded.
    """
    if not path.is_file():
        raise AudioError(_('audio file {path} does not exist').format(path=path))
    encoder = av.CodecContext.create('libopus', 'w')
    assert isinstance(encoder, av.AudioCodecContext)
    encoder.sample_rate = SAMPLE_RATE
    encoder.layout = 'stereo'
    encoder.format = 's16'
    encoder.bit_rate = bitrate
    encoder.options = {'application': 'voip', 'frame_duration': '20'}
    resampler = av.AudioResampler(format='s16', layout='stereo', rate=SAMPLE_RATE, frame_size=FRAME_SAMPLES)
    limit = int(max_seconds * SAMPLE_RATE / FRAME_SAMPLES)
    sent = 0
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise AudioError(_('{name} is not a readable audio file: {error}').format(name=path.name, error=exc)) from exc
    with container:
        if not container.streams.audio:
            raise AudioError(_('{name} has no audio stream').format(name=path.name))
        try:
            for frame in container.decode(container.streams.audio[0]):
                for chunk in resampler.resample(frame):
                    for packet in encoder.encode(chunk):
                        if sent >= limit:
                            _log.warning('%s is longer than %.0f s: cut', path.name, max_seconds)
                            return
                        sent += 1
                        yield bytes(packet)
            tail: list[av.AudioFrame | None] = [*resampler.resample(None), None]  # flush both
            for rest in tail:
                for packet in encoder.encode(rest):
                    if sent < limit:
                        sent += 1
                        yield bytes(packet)
        except av.error.FFmpegError as exc:
            raise AudioError(
                _('{name} cannot be decoded after {seconds} s: {error}').format(
                    name=path.name, seconds=f'{sent * 0.02:.1f}', error=exc
                )
            ) from exc
