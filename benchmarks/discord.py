"""Discord adapter throughput and latency: prefix commands through the real hikari client and the real engine.

2,000 ``!hi`` commands from 200 users in one channel of a server the bot is in (its GUILD_CREATE sent at
connection, as Discord does) are dispatched by the loopback emulator (MESSAGE_CREATE on the gateway); latency is
measured from the moment the emulator sends the event to the moment the reply's REST call arrives at the emulator.
Target: p99 < 20 ms. Each phase also reports the bot process's CPU time per command (user + system, read from
``/proc`` by the emulator, so the bot measures nothing itself).

The bot runs as ``flowbot run`` runs it: the collector set up by :func:`engine.app.tune_collector` once started.
The emulator stands in for Discord's servers, whose pauses are not the bot's: its collector is off while it
drives the load (its full passes over the calls it records were the open loop's p99).

Run: ``.venv/bin/python -m benchmarks.discord [--messages 2000] [--users 200] [--concurrency 200]``; with
``--profile FILE`` the bot's loop runs under cProfile from its start to its close, timed by the thread's CPU
clock (the figures are then several times slower, calls with little work in them inflated most): the stats go
to FILE and the functions with the most own CPU time are printed, with the calls per command.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import logging
import multiprocessing
import os
import pathlib
import statistics
import tempfile
import time
from multiprocessing.connection import Connection
from typing import Any

import hikari

from benchmarks import profiling
from engine.app import build_app, tune_collector
from engine.config import BotConfig, Config
from integrations.discord.bot import DiscordBot
from integrations.discord.config import DiscordConfig
from tests.integrations.discord.emulator import DiscordEmulator, RestCall

__all__ = ['HiTimer', 'collector_off', 'cpu_seconds', 'cpu_times', 'main', 'run']

REPO = pathlib.Path(__file__).resolve().parents[1]
CHANNEL = 600_000_000_000_000_001
GUILD = 500_000_000_000_000_001


class HiTimer:
    """Times each ``!hi`` from the emulator sending it to the bot's reply reaching the emulator's REST side.

    The reply ``Hi, NAME!`` names the sender, so a unique user name per command pairs them.
    """

    def __init__(self, emu: DiscordEmulator) -> None:
        self.emu = emu
        self.latencies: list[float] = []
        self._sent_at: dict[str, float] = {}
        self._waiting: dict[str, asyncio.Future[None]] = {}
        original = emu._answer

        def answer(call: RestCall) -> tuple[int, Any]:
            if call.method == 'POST' and call.path.endswith('/messages'):
                name = (call.content or '').removeprefix('Hi, ').split('!')[0]
                if name in self._sent_at:
                    self.latencies.append(time.perf_counter() - self._sent_at.pop(name))
                    fut = self._waiting.pop(name, None)
                    if fut is not None and not fut.done():
                        fut.set_result(None)
            return original(call)

        emu._answer = answer  # type: ignore[method-assign]

    async def hi(self, *, channel_id: int, guild_id: int, user: int, name: str) -> None:
        """Send ``!hi`` as ``user`` named ``name`` (unique per command) and wait for its reply."""
        self._waiting[name] = asyncio.get_running_loop().create_future()
        self._sent_at[name] = time.perf_counter()
        await self.emu.message_create(
            channel_id=channel_id, guild_id=guild_id, author=self.emu.user(user, name), content='!hi'
        )
        await asyncio.wait_for(self._waiting[name], 60)


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process so far (Linux ``/proc``): the system part is the kernel's work for it,
    mostly the loopback sockets and ``epoll``, which no Python change in the bot makes cheaper."""
    fields = pathlib.Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    tick = os.sysconf('SC_CLK_TCK')
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    return sum(cpu_times(pid))


def collector_off() -> None:
    """Turn the emulator's garbage collector off (after a full pass) while it drives the load; ``gc.enable()`` after.

    The emulator stands in for Discord's servers, which do not stop for a Python collector: with it on, the
    emulator's full passes over what it had recorded (60-170 ms, every few hundred commands) were the open loop's
    p99.
    """
    gc.collect()
    gc.disable()


def _emulator_process(conn: Connection, messages: int, users: int, rate: float, concurrency: int) -> None:
    """The emulator's own process (Discord is remote): drives the load and measures on its side."""
    asyncio.run(_drive(conn, messages, users, rate, concurrency))


async def _drive(conn: Connection, messages: int, users: int, rate: float, concurrency: int) -> None:
    async with DiscordEmulator() as emu:
        emu.guilds = [emu.guild(GUILD, channels=[CHANNEL])]  # a server the bot is in, as in real use
        conn.send((emu.rest_url, emu.token))
        await asyncio.wait_for(emu.wait_connected(), 30)
        await asyncio.sleep(0.5)  # let the bot finish its command sync
        timer = HiTimer(emu)
        latencies = timer.latencies

        async def send(i: int) -> None:
            user = 10_000 + i % users
            await timer.hi(channel_id=CHANNEL, guild_id=GUILD, user=user, name=f'u{user}x{i}')

        collector_off()

        figures: dict[str, dict[str, float]] = {}
        bot = os.getppid()  # the bot runs in the process that started this one
        # open loop: commands arrive at a steady rate, as from many independent users
        started, cpu = time.perf_counter(), cpu_times(bot)
        tasks = []
        for i in range(messages):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(i)))
        await asyncio.gather(*tasks)
        figures['open'] = _figures(latencies, time.perf_counter() - started, cpu, cpu_times(bot))
        # closed loop: as fast as the bot answers, ``concurrency`` commands in flight
        latencies.clear()
        gate = asyncio.Semaphore(concurrency)

        async def gated(i: int) -> None:
            async with gate:
                await send(messages + i)

        started, cpu = time.perf_counter(), cpu_times(bot)
        await asyncio.gather(*(gated(i) for i in range(messages)))
        figures['closed'] = _figures(latencies, time.perf_counter() - started, cpu, cpu_times(bot))
        gc.enable()
        conn.send(figures)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # the bot has closed


def _figures(
    latencies: list[float], elapsed: float, cpu_before: tuple[float, float], cpu_after: tuple[float, float]
) -> dict[str, float]:
    ordered = sorted(latencies)
    per_command = 1000 / max(1, len(ordered))
    user, system = (after - before for after, before in zip(cpu_after, cpu_before, strict=True))
    return {
        'count': float(len(ordered)),
        'throughput': len(ordered) / elapsed,
        'bot_cpu_ms': (user + system) * per_command,
        'bot_system_ms': system * per_command,
        'p50_ms': statistics.median(ordered) * 1000,
        'p99_ms': ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000,
        'max_ms': ordered[-1] * 1000,
    }


async def run(
    messages: int, users: int, rate: float, concurrency: int, profiler: cProfile.Profile | None = None
) -> dict[str, dict[str, float]]:
    """Start the emulator process, serve it with the real bot and engine, return its figures.

    :param profiler: enabled while the started bot serves the load.
    """
    ctx = multiprocessing.get_context('spawn')
    here, there = ctx.Pipe()
    proc = ctx.Process(target=_emulator_process, args=(there, messages, users, rate, concurrency), daemon=True)
    proc.start()
    loop = asyncio.get_running_loop()
    rest_url, token = await loop.run_in_executor(None, here.recv)
    with tempfile.TemporaryDirectory() as tmp:
        config = Config(
            bot=BotConfig(
                flows=[REPO / 'flows' / 'hi.toml'],
                store=':memory:',
                data_root=pathlib.Path(tmp),
                plugins=[],
                reload=False,
            )
        )
        app = build_app(config)
        tune_collector()  # as ``flowbot run`` does
        await app.start()
        bot = DiscordBot(app.engine, DiscordConfig(rest_url=rest_url), token=token, logs=None, voice=_no_voice)
        await asyncio.wait_for(bot.start(), 30)
        if profiler is not None:
            profiler.enable()
        try:
            figures: dict[str, dict[str, float]] = await loop.run_in_executor(None, here.recv)
        finally:
            if profiler is not None:
                profiler.disable()
            await bot.close()
            await app.stop()
            here.send('bye')
    proc.join(10)
    return figures


def _no_voice(bot: hikari.GatewayBot) -> None:
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0] if __doc__ else None)
    parser.add_argument('--messages', type=int, default=2000)
    parser.add_argument('--users', type=int, default=200)
    parser.add_argument('--rate', type=float, default=500.0, help='open loop: commands per second')
    parser.add_argument('--concurrency', type=int, default=200, help='closed loop: commands in flight at once')
    parser.add_argument('--profile', type=pathlib.Path, help='run the bot under cProfile, its stats to this file')
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger('hikari').setLevel(logging.ERROR)
    # CPU time of the loop's thread, not wall time: under load the wall clock also counts waiting for a core
    profiler = cProfile.Profile(time.thread_time) if args.profile else None
    figures = asyncio.run(run(args.messages, args.users, args.rate, args.concurrency, profiler))
    opened, closed = figures['open'], figures['closed']
    print(f'{args.messages} prefix commands from {args.users} users, emulator in its own process')
    print(
        f'open loop at {args.rate:.0f}/s: latency p50 {opened["p50_ms"]:.2f} ms, p99 {opened["p99_ms"]:.2f} ms, '
        f'max {opened["max_ms"]:.2f} ms ({int(opened["count"])} replies), bot CPU {opened["bot_cpu_ms"]:.3f} ms/command '
        f'(kernel {opened["bot_system_ms"]:.3f})'
    )
    print(
        f'closed loop, {args.concurrency} in flight: throughput {closed["throughput"]:.0f} commands/s, '
        f'p50 {closed["p50_ms"]:.2f} ms, p99 {closed["p99_ms"]:.2f} ms, bot CPU {closed["bot_cpu_ms"]:.3f} ms/command '
        f'(kernel {closed["bot_system_ms"]:.3f})'
    )
    print('target p99 < 20 ms (open loop):', 'met' if opened['p99_ms'] < 20 else 'NOT met')
    if profiler is not None:
        profiling.report(profiler, args.profile, 'the bot', int(opened['count'] + closed['count']), 'command')


if __name__ == '__main__':
    main()
