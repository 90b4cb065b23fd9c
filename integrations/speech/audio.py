"""Audio in and out with PyAV: any file to 16 kHz mono PCM for recognition, PCM to a Discord voice message.

PyAV links FFmpeg's libraries, so no ffmpeg binary is needed. Everything here blocks: callers run it
in a worker thread. Failures raise :class:`AudioError` subclasses whose messages can be shown to users;
the action layer turns them into ``ActionError``.
"""

from __future__ import annotations

import array
import base64
import logging
import math
import pathlib
import stat
import sys
from collections.abc import Iterator
from fractions import Fraction

import attrs
import av
import av.error
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler

from engine.errors import FlowbotError
from engine.i18n import _, format_number

__all__ = [
    'AUDIO_SUFFIXES',
    'AudioDecodeError',
    'AudioError',
    'AudioTooLargeError',
    'AudioTooLongError',
    'DecodedAudio',
    'VoiceMessage',
    'decode_audio',
    'encode_voice_message',
    'probe_duration',
    'resample_pcm',
    'voice_message_info',
    'waveform',
]

_log = logging.getLogger(__name__)

AUDIO_SUFFIXES = frozenset({'.ogg', '.oga', '.opus', '.mp3', '.wav', '.m4a', '.mp4', '.aac', '.webm', '.flac', '.mka'})
"""File name endings treated as audio when an attachment's content type says nothing useful."""

VOICE_RATE = 48000
"""Opus always runs at 48 kHz; Discord voice messages are mono."""

WAVEFORM_MAX = 256
"""Discord keeps at most 256 amplitude bytes per voice message."""


class AudioError(FlowbotError):
    """Audio that cannot be used; the message is fit for the user."""


class AudioTooLargeError(AudioError):
    """The file is bigger than the configured limit."""


class AudioTooLongError(AudioError):
    """The audio lasts longer than the configured limit."""


class AudioDecodeError(AudioError):
    """The file is not audio PyAV can decode (or has no audio stream)."""


@attrs.frozen
class DecodedAudio:
    """Signed 16-bit little-endian mono PCM."""

    pcm: bytes = attrs.field(repr=lambda b: f'<{len(b)} bytes>')
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


@attrs.frozen
class VoiceMessage:
    """An OGG/Opus file ready to be sent as a Discord voice message."""

    path: pathlib.Path
    duration: float
    """Seconds (Discord's ``duration_secs``)."""
    waveform: str
    """Base64 of up to 256 amplitude bytes (Discord's ``waveform``)."""


def decode_audio(
    source: pathlib.Path | str,
    *,
    sample_rate: int = 16000,
    max_bytes: int | None = None,
    max_seconds: float | None = None,
) -> DecodedAudio:
    """Decode the first audio stream of ``source`` to mono s16 PCM at ``sample_rate``.

    The limits are checked before decoding (file size, the duration the container reports) and again
    while decoding, since a container may not report, or lie about, its duration.

    :param max_bytes: refuse files larger than this.
    :param max_seconds: refuse audio longer than this.
    :raises AudioError: with a message for the user.
    """
    path = pathlib.Path(source)
    try:
        info = path.stat()
    except (OSError, ValueError) as exc:
        _log.error('audio file %s cannot be read: %s', path, exc)
        raise AudioDecodeError(_('The audio file could not be read.')) from exc
    if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would block or never end
        _log.error('audio file %s is not a regular file (mode %o)', path, info.st_mode)
        raise AudioDecodeError(_('The audio file could not be read.'))
    size = info.st_size
    if max_bytes is not None and size > max_bytes:
        raise AudioTooLargeError(
            _('The audio file is too big ({size}); the limit is {limit}. Please send a shorter one.').format(
                size=_mb(size), limit=_mb(max_bytes)
            )
        )
    if size == 0:
        raise AudioDecodeError(_('The audio file is empty.'))
    limit_samples = math.ceil(max_seconds * sample_rate) if max_seconds is not None else None
    try:
        with av.open(str(path), mode='r') as container:
            if not container.streams.audio:
                raise AudioDecodeError(_('This file has no sound in it: please send a voice message or an audio file.'))
            stream = container.streams.audio[0]
            reported = _reported_duration(container, stream)
            if max_seconds is not None and reported is not None and reported > max_seconds + 0.5:
                raise _too_long(reported, max_seconds)
            resampler = AudioResampler(format='s16', layout='mono', rate=sample_rate)
            chunks: list[bytes] = []
            total = 0
            for frame in _frames(container, stream):
                for out in resampler.resample(frame):
                    data = _plane_bytes(out)
                    chunks.append(data)
                    total += len(data) // 2
                if limit_samples is not None and total > limit_samples + sample_rate // 2:
                    raise _too_long(total / sample_rate, max_seconds or 0)
            for out in resampler.resample(None):
                data = _plane_bytes(out)
                chunks.append(data)
                total += len(data) // 2
    except AudioError:
        raise
    except (av.error.FFmpegError, ValueError, UnicodeDecodeError) as exc:
        _log.warning('cannot decode audio %s (%d bytes): %s', path, size, exc)
        raise AudioDecodeError(
            _(
                'I could not read this audio file: it is damaged or in a format I do not know '
                '(OGG/Opus, MP3, WAV, M4A and WebM work).'
            )
        ) from exc
    if limit_samples is not None and total > limit_samples + sample_rate // 2:
        raise _too_long(total / sample_rate, max_seconds or 0)
    if total == 0:
        raise AudioDecodeError(_('The audio file contains no sound.'))
    return DecodedAudio(b''.join(chunks), sample_rate)


def probe_duration(source: pathlib.Path | str, *, exact: bool = False) -> float:
    """Seconds of audio in ``source``: the container's figure, or decoded samples when it has none.

    :param exact: always count decoded samples (concatenated MP3s, as gTTS makes, misreport their length).
    """
    try:
        with av.open(str(source), mode='r') as container:
            if not container.streams.audio:
                raise AudioDecodeError(_('This file has no sound in it.'))
            stream = container.streams.audio[0]
            reported = None if exact else _reported_duration(container, stream)
            if reported is not None:
                return reported
            samples = sum(frame.samples for frame in _frames(container, stream))
            return samples / (stream.rate or 1)
    except av.error.FFmpegError as exc:
        _log.warning('cannot probe audio %s: %s', source, exc)
        raise AudioDecodeError(_('The audio file could not be read.')) from exc


def resample_pcm(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """Resample mono s16 PCM (e.g. 22.05 kHz from espeak-ng to 48 kHz for Opus)."""
    if from_rate == to_rate or not pcm:
        return pcm
    resampler = AudioResampler(format='s16', layout='mono', rate=to_rate)
    out: list[bytes] = []
    for frame in _pcm_frames(pcm, from_rate):
        out.extend(_plane_bytes(f) for f in resampler.resample(frame))
    out.extend(_plane_bytes(f) for f in resampler.resample(None))
    return b''.join(out)


def encode_voice_message(
    source: bytes | pathlib.Path | str,
    out_path: pathlib.Path | str,
    *,
    sample_rate: int = 16000,
    bitrate: int = 48000,
) -> VoiceMessage:
    """Write ``source`` as a Discord voice message: OGG/Opus, 48 kHz, mono.

    :param source: an audio file of any decodable format, or mono s16 PCM bytes.
    :param sample_rate: the rate of ``source`` when it is PCM bytes.
    :param bitrate: Opus bit rate in bits/s; speech needs little.
    """
    if isinstance(source, bytes):
        pcm = resample_pcm(source, sample_rate, VOICE_RATE)
    else:
        pcm = decode_audio(source, sample_rate=VOICE_RATE).pcm
    if not pcm:
        raise AudioDecodeError(_('There is no sound to send.'))
    out = pathlib.Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with av.open(str(out), mode='w', format='ogg') as container:
            stream = container.add_stream('libopus', rate=VOICE_RATE)
            stream.layout = 'mono'
            stream.bit_rate = bitrate
            for frame in _pcm_frames(pcm, VOICE_RATE):
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
    except av.error.FFmpegError as exc:
        _log.error('cannot encode voice message %s: %s', out, exc)
        raise AudioError(_('The voice message could not be made.')) from exc
    return VoiceMessage(out, round(len(pcm) / 2 / VOICE_RATE, 3), waveform(pcm, VOICE_RATE))


def voice_message_info(path: pathlib.Path | str) -> VoiceMessage:
    """Duration and waveform of an existing voice message file, for adapters that upload one.

    Discord wants both alongside the OGG/Opus file; this reads them back from the file itself.
    """
    pcm = decode_audio(path, sample_rate=8000).pcm  # the waveform needs no more than 8 kHz
    return VoiceMessage(pathlib.Path(path), round(len(pcm) / 2 / 8000, 3), waveform(pcm, 8000))


def waveform(pcm: bytes, sample_rate: int, *, points: int | None = None) -> str:
    """Discord's voice message waveform: one byte (0-255, peak amplitude) per ~100 ms, at most 256, base64."""
    samples = _samples(pcm)
    if points is None:
        points = min(WAVEFORM_MAX, max(1, math.ceil(len(samples) / sample_rate * 10)))
    points = max(1, min(points, WAVEFORM_MAX, len(samples) or 1))
    values = bytearray()
    step = len(samples) / points if samples else 0
    for i in range(points):
        chunk = samples[int(i * step) : int((i + 1) * step)] if samples else ()
        peak = max((abs(s) for s in chunk), default=0)
        values.append(min(255, round(peak / 32768 * 255)))
    return base64.b64encode(bytes(values)).decode('ascii')


def _samples(pcm: bytes) -> array.array[int]:
    samples = array.array('h')
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder == 'big':  # pragma: no cover - PCM here is little-endian
        samples.byteswap()
    return samples


def _frames(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> Iterator[AudioFrame]:
    """Decoded frames, skipping damaged packets (a glitch mid-file, or a tag inside concatenated MP3s)."""
    good = bad = 0
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError as exc:
            bad += 1
            if good == 0 and bad >= 8:  # nothing decodes: this is not audio we can read
                raise
            _log.debug('skipping a damaged packet in %s: %s', container.name, exc)
            continue
        for frame in frames:
            if isinstance(frame, AudioFrame):
                good += 1
                yield frame
    if bad:
        _log.info('%s: skipped %d damaged packets of %d', container.name, bad, good + bad)


def _pcm_frames(pcm: bytes, rate: int, samples_per_frame: int = 960 * 10) -> Iterator[AudioFrame]:
    step = samples_per_frame * 2
    pts = 0
    for start in range(0, len(pcm) - len(pcm) % 2, step):
        chunk = pcm[start : start + step]
        frame = AudioFrame(format='s16', layout='mono', samples=len(chunk) // 2)
        frame.planes[0].update(chunk)
        frame.sample_rate = rate
        frame.pts = pts
        frame.time_base = Fraction(1, rate)
        pts += len(chunk) // 2
        yield frame


def _plane_bytes(frame: AudioFrame) -> bytes:
    # A plane may be padded past the last sample: keep exactly samples * 2 bytes (s16 mono).
    return bytes(frame.planes[0])[: frame.samples * 2]


def _reported_duration(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def _too_long(seconds: float, limit: float) -> AudioTooLongError:
    return AudioTooLongError(
        _('The audio is too long ({seconds} s); the limit is {limit} s. Please send a shorter one.').format(
            seconds=round(seconds), limit=round(limit)
        )
    )


def _mb(size: int) -> str:
    return _('{size} MB').format(size=format_number(size / 1024 / 1024, 1))
