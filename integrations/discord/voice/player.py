"""Paced playback: one Opus frame every 20 ms against absolute deadlines, framed by SPEAKING on/off.

Deadlines are ``start + n * 20 ms`` rather than "sleep 20 ms after each send", so scheduling
delays never accumulate into drift. Frames are produced in a worker thread a batch ahead, so
decoding and encoding never hold up the pacing on the event loop.
"""

from __future__ import annotations

import abc
import asyncio
import itertools
import logging
from collections.abc import Iterator

from integrations.discord.voice.rtp import SILENCE_FRAME

__all__ = ['FRAME_INTERVAL', 'FrameSink', 'play']

_log = logging.getLogger(__name__)

FRAME_INTERVAL = 0.02
SILENCE_FRAMES = 5
LATE_REBASE = 0.2
"""Seconds behind schedule (e.g. after a reconnect) from which pacing restarts instead of bursting."""


class FrameSink(abc.ABC):
    """Where a player sends frames: the voice connection."""

    @abc.abstractmethod
    async def set_speaking(self, speaking: bool) -> None:
        """Send SPEAKING on or off."""

    @abc.abstractmethod
    async def send_frame(self, frame: bytes, *, urgent: bool = False) -> None:
        """Encrypt and send one Opus frame now (waiting only while the connection re-establishes).

        :param urgent: send now or never: never wait (the closing silence after a stop).
        """


async def play(
    sink: FrameSink, frames: Iterator[bytes], *, stop: asyncio.Event | None = None, first_batch: int = 5
) -> int:
    """Send ``frames`` paced at 50 per second, then five silence frames; return how many audio frames went out.

    :param stop: set it to end playback early: the five silence frames then go out at once, so the RTP
        stream ends within milliseconds of the stop (``leave``, barge-in) instead of 100 ms later.
    :param first_batch: frames produced before the first packet: small, so speech starts quickly.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    sent = 0
    batch = await asyncio.to_thread(_take, frames, first_batch)
    if not batch:
        return 0
    await sink.set_speaking(True)
    start = loop.time()
    n = 0
    try:
        while batch and not stop.is_set():
            following = asyncio.ensure_future(asyncio.to_thread(_take, frames, 10))
            try:
                for frame in batch:
                    if stop.is_set():
                        break
                    start = await _wait_turn(loop, start, n)
                    await sink.send_frame(frame)
                    n += 1
                    sent += 1
            finally:
                batch = await following  # never leave the worker thread iterating
        for _ in range(SILENCE_FRAMES):
            if stop.is_set():
                await sink.send_frame(SILENCE_FRAME, urgent=True)
                continue
            start = await _wait_turn(loop, start, n)
            await sink.send_frame(SILENCE_FRAME)
            n += 1
    finally:
        await sink.set_speaking(False)
    return sent


async def _wait_turn(loop: asyncio.AbstractEventLoop, start: float, n: int) -> float:
    """Sleep until frame ``n``'s deadline; return the (possibly rebased) start time."""
    delay = start + n * FRAME_INTERVAL - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)
    elif delay < -LATE_REBASE:
        _log.info('voice playback %.0f ms behind schedule: pacing restarted', -delay * 1000)
        start = loop.time() - n * FRAME_INTERVAL
    return start


def _take(frames: Iterator[bytes], count: int) -> list[bytes]:
    return list(itertools.islice(frames, count))
