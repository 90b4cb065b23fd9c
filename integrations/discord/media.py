"""Voice-message metadata Discord wants with an OGG/Opus upload: duration in seconds and a waveform.

The waveform is at most 256 one-byte amplitude samples (0-255), base64-encoded, as the official clients
send; PyAV decodes the audio once to compute both.
"""

from __future__ import annotations

import base64
import logging
import math
import pathlib

import av
import numpy as np

from engine.i18n import _
from engine.states.actions import ActionError

__all__ = ['voice_message_meta']

_log = logging.getLogger(__name__)

_POINTS = 256


def voice_message_meta(path: pathlib.Path) -> tuple[float, str]:
    """``(duration_secs, waveform_base64)`` of an audio file.

    :raises ActionError: the file cannot be decoded as audio.
    """
    peaks: list[float] = []
    samples = 0
    rate = 48_000
    try:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            rate = stream.rate or rate
            for frame in container.decode(stream):
                raw = frame.to_ndarray()
                if raw.size:
                    scale = float(np.iinfo(str(raw.dtype)).max) if raw.dtype.kind in 'iu' else 1.0
                    peaks.append(float(np.abs(raw.astype(np.float64)).max()) / scale)
                samples += frame.samples
    except (av.FFmpegError, IndexError, OSError) as exc:
        _log.warning('voice message %s cannot be decoded: %r', path, exc)
        raise ActionError(_('The voice message could not be prepared: the audio file is not readable.')) from exc
    duration = samples / rate if rate else 0.0
    if not peaks:
        return duration, base64.b64encode(bytes([0])).decode()
    step = max(1, math.ceil(len(peaks) / _POINTS))
    buckets = [max(peaks[i : i + step]) for i in range(0, len(peaks), step)]
    top = max(buckets) or 1.0
    wave = bytes(min(255, round(255 * b / top)) for b in buckets)
    return round(duration, 3), base64.b64encode(wave).decode()
