"""Listening: other members' Opus frames to utterances, one live recogniser per speaker.

The connection opens the transport encryption and DAVE per sender and hands each frame here
(:class:`~integrations.discord.voice.connection.Receiver`). Per speaker, a task batches about
100 ms of frames and, in a worker thread, decodes them with PyAV (libopus), resamples to the
recogniser's mono 16 kHz and feeds its streaming recogniser (vosk's own endpointing ends
utterances). A speaker who stops sending for ``end_gap`` seconds (Discord clients stop after five
silence frames) ends the utterance too. Audio lives only in memory, for one utterance, unless
``record_dir`` is set.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import time
import wave
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from typing import Protocol

import attrs
import av
import numpy as np

from integrations.discord.voice.opus import SAMPLE_RATE
from integrations.discord.voice.rtp import SILENCE_FRAME

__all__ = ['Listener', 'SpeakerPipeline', 'SpeechStreamLike', 'Utterance']

_log = logging.getLogger(__name__)

_BACKLOG = 500
"""Frames (10 s) a speaker may be behind before newer ones are dropped."""


class SpeechStreamLike(Protocol):
    """What :class:`integrations.speech.stt.SpeechStream` offers: PCM in, utterance texts out."""

    sample_rate: int

    def accept(self, pcm: bytes) -> str | None: ...

    def finish(self) -> str: ...


@attrs.frozen
class Utterance:
    """One thing a member said."""

    user_id: int
    text: str
    seconds: float
    """Length of the audio it was recognised from."""
    ended: float
    """``time.perf_counter()`` when the end was detected (for latency figures)."""
    recording: pathlib.Path | None = None


class SpeakerPipeline:
    """Decode, resample and recognise one speaker's frames; used from one thread at a time.

    :param stream: the speaker's live recogniser.
    :param loudness: RMS (of full scale 32768) above which a batch counts as speech, for barge-in.
    """

    def __init__(self, stream: SpeechStreamLike, *, loudness: float = 500.0) -> None:
        self.stream = stream
        self.loudness = loudness
        self._decoder = av.CodecContext.create('opus', 'r')
        assert isinstance(self._decoder, av.AudioCodecContext)
        self._decoder.sample_rate = SAMPLE_RATE
        self._decoder.layout = 'stereo'
        self._resampler = av.AudioResampler(format='s16', layout='mono', rate=stream.sample_rate)
        self.pcm = bytearray()
        """The current utterance's audio (mono s16 at the recogniser's rate)."""

    def feed(self, frames: Sequence[bytes]) -> tuple[bool, list[str]]:
        """Decode ``frames`` and recognise them: (whether they were loud, utterances they ended)."""
        chunk = bytearray()
        for opus in frames:
            try:
                decoded = self._decoder.decode(av.Packet(opus))
            except av.error.FFmpegError as exc:  # one damaged frame must not end the stream
                _log.debug('Opus frame of %s bytes not decoded: %s', len(opus), exc)
                continue
            for frame in decoded:
                for out in self._resampler.resample(frame):
                    chunk += out.to_ndarray().tobytes()
        if not chunk:
            return False, []
        samples = np.frombuffer(bytes(chunk), dtype='<i2').astype(np.float32)
        loud = bool(samples.size) and float(np.sqrt(np.mean(samples * samples))) > self.loudness
        self.pcm += chunk
        text = self.stream.accept(bytes(chunk))
        return loud, [text] if text is not None else []

    def finish(self) -> str:
        return self.stream.finish()


@attrs.define
class _Speaker:
    user_id: int
    queue: asyncio.Queue[bytes] = attrs.field(factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    pipeline: SpeakerPipeline | None = None
    heard: bool = False
    """Audio arrived since the last utterance ended (so a pause ends one)."""
    talking: bool = False
    """Barge-in was reported for the current utterance."""
    left: bool = False
    """The member left the call: finish the utterance, then forget them."""


class Listener:
    """Hears one voice channel: the connection's :class:`Receiver`, utterances out through ``on_utterance``.

    :param new_stream: makes a live recogniser for a new speaker (blocking; run in ``executor``).
    :param on_utterance: called with each non-empty utterance.
    :param on_speech: called once per utterance when a speaker starts being loud (barge-in).
    :param users: if given, only these user ids are heard (others' frames are dropped unread).
    :param end_gap: seconds without frames from a speaker that end their utterance.
    :param max_seconds: an utterance is cut (and recognised) after this long.
    :param record_dir: keep each utterance as a WAV file here; ``None`` (default) stores no audio.
    """

    def __init__(
        self,
        new_stream: Callable[[], SpeechStreamLike],
        on_utterance: Callable[[Utterance], Awaitable[None]],
        *,
        on_speech: Callable[[int], Awaitable[None]] | None = None,
        users: set[int] | None = None,
        executor: Executor | None = None,
        end_gap: float = 0.3,
        batch: float = 0.1,
        max_seconds: float = 30.0,
        record_dir: pathlib.Path | None = None,
    ) -> None:
        self._new_stream = new_stream
        self._on_utterance = on_utterance
        self._on_speech = on_speech
        self.users = users
        self._executor = executor
        self._end_gap = end_gap
        self._batch = batch
        self._max_seconds = max_seconds
        self._record_dir = record_dir
        self._speakers: dict[int, _Speaker] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.dropped = 0
        """Frames not heard: undecryptable (no keys yet, not meant for us) or beyond a speaker's backlog."""
        self.closed = False

    # Receiver (called from the event loop by the connection)

    def frame(self, user_id: int, sequence: int, opus: bytes) -> None:
        if self.closed or (self.users is not None and user_id not in self.users):
            return
        speaker = self._speakers.get(user_id)
        if speaker is None:
            speaker = self._speakers[user_id] = _Speaker(user_id)
            speaker.task = asyncio.get_running_loop().create_task(self._run(speaker), name=f'hear {user_id}')
        elif (speaker.task is not None and speaker.task.done()) or speaker.queue.qsize() > _BACKLOG:
            self.dropped += 1  # a failed speaker, or one the CPU cannot keep up with: drop, never pile up
            return
        speaker.queue.put_nowait(opus)

    def undecryptable(self, user_id: int) -> None:
        self.dropped += 1

    def gone(self, user_id: int) -> None:
        speaker = self._speakers.get(user_id)
        if speaker is not None:
            speaker.left = True
            speaker.queue.put_nowait(b'')  # ends the current utterance, then the speaker is forgotten

    async def close(self) -> None:
        """Stop hearing: pending audio is dropped, nothing more is recognised (utterances already
        handed on are still answered)."""
        self.closed = True
        tasks = [s.task for s in self._speakers.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._speakers.clear()

    # per speaker

    async def _run(self, speaker: _Speaker) -> None:
        loop = asyncio.get_running_loop()
        try:
            speaker.pipeline = await loop.run_in_executor(self._executor, self._pipeline)
            while True:
                try:
                    first = await asyncio.wait_for(speaker.queue.get(), self._end_gap if speaker.heard else None)
                except TimeoutError:
                    await self._finish(speaker)
                    continue
                if first == b'':
                    await self._finish(speaker)
                    if speaker.left:
                        break
                    continue
                await asyncio.sleep(self._batch)  # about five frames per trip to the worker thread
                frames = [first]
                while not speaker.queue.empty():
                    frames.append(speaker.queue.get_nowait())
                ended = b'' in frames
                frames = [f for f in frames if f and f != SILENCE_FRAME]
                if frames:
                    await self._feed(speaker, frames)
                if ended:
                    await self._finish(speaker)
                    if speaker.left:
                        break
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception('hearing user %s failed; their audio is ignored from now on', speaker.user_id)
            return
        if self._speakers.get(speaker.user_id) is speaker:
            del self._speakers[speaker.user_id]

    def _pipeline(self) -> SpeakerPipeline:
        return SpeakerPipeline(self._new_stream())

    async def _feed(self, speaker: _Speaker, frames: list[bytes]) -> None:
        pipeline = speaker.pipeline
        assert pipeline is not None
        loud, texts = await asyncio.get_running_loop().run_in_executor(self._executor, pipeline.feed, frames)
        speaker.heard = True
        if loud and not speaker.talking:
            speaker.talking = True
            if self._on_speech is not None:
                self._spawn(self._on_speech(speaker.user_id))
        for text in texts:
            self._deliver(speaker, text)
        if len(pipeline.pcm) / 2 / pipeline.stream.sample_rate > self._max_seconds:
            _log.info('utterance of user %s longer than %.0f s: cut', speaker.user_id, self._max_seconds)
            await self._finish(speaker)

    async def _finish(self, speaker: _Speaker) -> None:
        if not speaker.heard or speaker.pipeline is None:
            return
        text = await asyncio.get_running_loop().run_in_executor(self._executor, speaker.pipeline.finish)
        self._deliver(speaker, text)
        speaker.heard = False

    def _deliver(self, speaker: _Speaker, text: str) -> None:
        pipeline = speaker.pipeline
        assert pipeline is not None
        ended = time.perf_counter()
        pcm, pipeline.pcm = bytes(pipeline.pcm), bytearray()
        speaker.talking = False
        text = text.strip()
        if not text:
            return
        rate = pipeline.stream.sample_rate
        recording = self._record(speaker.user_id, pcm, rate) if self._record_dir is not None else None
        utterance = Utterance(speaker.user_id, text, round(len(pcm) / 2 / rate, 3), ended, recording)
        _log.info('heard user %s: %d characters (%.1f s)', speaker.user_id, len(text), utterance.seconds)
        self._spawn(self._on_utterance(utterance))

    def _record(self, user_id: int, pcm: bytes, rate: int) -> pathlib.Path | None:
        assert self._record_dir is not None
        path = self._record_dir / f'{user_id}-{time.strftime("%Y%m%d-%H%M%S")}-{time.perf_counter_ns() % 10**6}.wav'
        try:
            self._record_dir.mkdir(parents=True, exist_ok=True)
            with wave.open(str(path), 'wb') as out:
                out.setnchannels(1)
                out.setsampwidth(2)
                out.setframerate(rate)
                out.writeframes(pcm)
        except OSError as exc:
            _log.error('cannot keep the utterance of user %s in %s: %s', user_id, path, exc)
            return None
        return path

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except Exception:
                _log.exception('handling what was heard failed')

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
