"""Voice playback figures: reply text to first RTP packet, and pacing jitter on a busy machine.

Run from the repository root::

    .venv/bin/python -m benchmarks.voice [--runs 10] [--seconds 10]

It connects a :class:`DaveVoiceConnection` to the loopback voice server of the tests (DAVE active
when ``../shared/fixtures/dave`` is present), then prints

* handshake time (websocket open to audio-ready, including IP discovery and DAVE key package);
* text -> first packet: espeak-ng synthesis (``EspeakSynthesizer``), Opus encoding and the first
  encrypted packet arriving at the server, over ``--runs`` replies (p50/p90/max);
* pacing jitter: inter-packet gaps minus 20 ms (p50/p99/max, and drift over the whole stream) for
  ``--seconds`` of audio, once on an idle machine and once with a CPU-burning process pinned to
  the other core (or sharing the only core when there is one).
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
from integrations.discord.voice.opus import opus_frames
from integrations.speech.tts import EspeakSynthesizer
from tests.integrations.discord.voice.helpers import connect, write_tone
from tests.integrations.discord.voice.voice_emulator import VoiceEmulator, load_dave_fixtures

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0] if __doc__ else None)
    parser.add_argument('--runs', type=int, default=10)
    parser.add_argument('--seconds', type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(run(args.runs, args.seconds))


if __name__ == '__main__':
    main()
