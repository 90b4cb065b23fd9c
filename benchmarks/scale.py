"""Scale-out: persisted conversation steps/s and Discord commands/s with one and two bot processes.

Run: ``.venv/bin/python -m benchmarks.scale [--conversations 10000] [--commands 4000] [--dsn URL]``

Without ``--dsn`` a throwaway PostgreSQL server is started (``initdb``/``pg_ctl`` from Debian's
``postgresql``, as the tests do) with its default durability (``fsync`` on). Every figure is measured
with the bot side in separate processes, so one and two processes compare fairly:

- **steps/s**: ``benchmarks.engine``'s 5-step form over ``--conversations`` concurrent conversations,
  persisted every step, on SQLite (one process: it is the one-machine store) and on PostgreSQL with one
  process (shard 0 of 1) and two (shards 0 and 1 of 2, each claiming its shard and running the
  conversations of its guilds). Steps/s is all steps over the time from the common start to the last finish.
- **commands/s**: ``flowbot run`` processes on 1 or 2 shards against the sharded Discord emulator (in this
  process), ``!hi`` from users in guilds spread over the shards, ``--concurrency`` commands in flight.

Measured as ``benchmarks.discord`` and ``benchmarks.engine`` measure: the bot side with the collector as
``flowbot run`` sets it (:func:`engine.app.tune_collector`: ``flowbot run`` itself, and each steps/s worker once
its conversations are started), and the emulator, which stands in for Discord's servers, with its collector off
while it drives the load (:func:`benchmarks.discord.collector_off`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.discord import HiTimer, collector_off, cpu_seconds
from benchmarks.engine import STEPS, _engine, _events
from engine.app import tune_collector
from engine.store import Shards, Store, open_store
from tests.integrations.discord.sharded import ShardedEmulator, guild_on_shard
from tests.postgres import PostgresServer, find_bindir

__all__ = ['main']

REPO = pathlib.Path(__file__).resolve().parents[1]


# -- steps/s: one worker process per shard ---------------------------------------------------------------------


async def _steps_worker(spec: str, shard: int, count: int, n: int, start_at: float) -> dict[str, float]:
    """Run ``n`` form conversations of guilds on ``shard`` (of ``count``); answers begin at ``start_at``."""
    store: Store = open_store(spec)
    await store.open()
    await store.claim(Shards((shard,), count))
    engine = _engine(store)
    starts, answers = _events(n, lambda i: str(guild_on_shard(shard, count, i % 50)))
    await asyncio.gather(*(engine.dispatch(e) for e in starts))
    tune_collector()  # as ``flowbot run`` does once started (and ``benchmarks.engine``'s rows)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    began, cpu = time.time(), time.process_time()
    for batch in answers:
        await asyncio.gather(*(engine.dispatch(e) for e in batch))
    ended, cpu = time.time(), time.process_time() - cpu
    assert engine.live_count() == 0, engine.live_count()
    await store.close()
    return {'began': began, 'ended': ended, 'steps': n * STEPS, 'cpu': cpu}


def _steps(spec: str, processes: int, conversations: int) -> tuple[float, float]:
    """Steps/s over all processes, and the bot processes' CPU seconds per step."""
    start_at = time.time() + 3.0 + processes  # after every process has imported, connected and started its forms
    numbers = [str(conversations // processes), str(start_at)]
    procs = [
        subprocess.Popen(
            [sys.executable, '-m', 'benchmarks.scale', '_steps', spec, str(i), str(processes), *numbers],
            cwd=REPO,
            stdout=subprocess.PIPE,
        )
        for i in range(processes)
    ]
    results: list[dict[str, float]] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f'a benchmark process failed ({proc.returncode})')
        results.append(json.loads(out))
    began = min(r['began'] for r in results)
    ended = max(r['ended'] for r in results)
    steps = sum(r['steps'] for r in results)
    return steps / (ended - began), sum(r['cpu'] for r in results) / steps


async def _fresh_database(server: PostgresServer | None, dsn: str | None) -> str:
    if server is not None:
        return await server.new_database()
    assert dsn is not None
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:  # a reused database: start from empty tables
        for table in ('conversations', 'shard_leases'):
            if await conn.fetchval('SELECT to_regclass($1)', table):
                await conn.execute(f'DELETE FROM {table}')
    finally:
        await conn.close()
    return dsn


# -- commands/s: flowbot run processes on shards -------------------------------------------------------------------


async def _commands(dsn: str, processes: int, commands: int, concurrency: int, tmp: pathlib.Path) -> dict[str, float]:
    async with ShardedEmulator(shard_count=processes) as emu:
        bots = []
        for shard in range(processes):
            home = tmp / f'bot{processes}-{shard}'
            home.mkdir()
            (home / 'bot.toml').write_text(
                f'[bot]\nflows = ["{REPO / "flows" / "hi.toml"}"]\nplugins = []\nreload = false\n\n'
                f'[discord]\nrest_url = "{emu.rest_url}"\nshard_count = {processes}\nshard_ids = [{shard}]\n',
                encoding='utf-8',
            )
            env = {**os.environ, 'DISCORD_TOKEN': emu.token, 'FLOWBOT_STORE': dsn, 'FLOWBOT_DATA': str(home)}
            bots.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    '-m',
                    'engine.cli',
                    'run',
                    cwd=home,
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,  # the invite link line
                    stderr=(home / 'stderr.log').open('wb'),
                )
            )
        try:
            await emu.wait_shards(*range(processes), timeout=60)
            await asyncio.sleep(1.0)  # command sync
            bot_cpu, own_cpu = sum(cpu_seconds(b.pid) for b in bots), time.process_time()
            figures = await _drive(emu, processes, commands, concurrency)
            figures['bot_cpu_ms'] = (sum(cpu_seconds(b.pid) for b in bots) - bot_cpu) / commands * 1000
            figures['emulator_cpu_ms'] = (time.process_time() - own_cpu) / commands * 1000
            return figures
        finally:
            for bot in bots:
                bot.terminate()
            for bot in bots:
                await bot.wait()


async def _drive(emu: ShardedEmulator, shards: int, commands: int, concurrency: int) -> dict[str, float]:
    timer = HiTimer(emu)
    latencies = timer.latencies
    gate = asyncio.Semaphore(concurrency)

    async def send(i: int) -> None:
        async with gate:
            guild = guild_on_shard(i % shards, shards, i % 20)
            user = 10_000 + i % 200
            await timer.hi(channel_id=guild + 1, guild_id=guild, user=user, name=f'u{user}x{i}')

    collector_off()
    try:
        started = time.perf_counter()
        await asyncio.gather(*(send(i) for i in range(commands)))
        elapsed = time.perf_counter() - started
    finally:
        gc.enable()
    ordered = sorted(latencies)
    return {
        'throughput': len(ordered) / elapsed,
        'p50_ms': statistics.median(ordered) * 1000,
        'p99_ms': ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000,
    }


# -- the run -------------------------------------------------------------------------------------------------------


async def _run(args: argparse.Namespace) -> None:
    server = None
    if args.dsn is None:
        bindir = find_bindir()
        if bindir is None:
            raise SystemExit('PostgreSQL is not installed (Debian package postgresql), and no --dsn was given')
        server = PostgresServer(bindir, durable=True)
        server.start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            tmp = pathlib.Path(folder)
            n = args.conversations
            rows = [('SQLite, 1 process', *_steps(str(tmp / 'bench.sqlite3'), 1, n))]
            for processes in (1, 2):
                dsn = await _fresh_database(server, args.dsn)
                rows.append((f'PostgreSQL, {processes} process(es)', *_steps(dsn, processes, n)))
            print(f'persisted steps/s: {n} concurrent conversations x {STEPS} steps, every step persisted')
            for name, rate, cpu in rows:
                print(f'  {name:<28}{rate:>10,.0f} steps/s   bot CPU {cpu * 1e6:.0f} µs/step')
            print(f'Discord: {args.commands} !hi commands, {args.concurrency} in flight, PostgreSQL store')
            for processes in (1, 2):
                dsn = await _fresh_database(server, args.dsn)
                fig = await _commands(dsn, processes, args.commands, args.concurrency, tmp)
                print(
                    f'  {processes} shard process(es){"":<10}{fig["throughput"]:>10,.0f} commands/s'
                    f'   p50 {fig["p50_ms"]:.1f} ms, p99 {fig["p99_ms"]:.1f} ms'
                    f'   CPU/command: bots {fig["bot_cpu_ms"]:.2f} ms, emulator {fig["emulator_cpu_ms"]:.2f} ms'
                )
    finally:
        if server is not None:
            server.stop()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == '_steps':  # one worker process of the steps/s run
        spec, shard, count, n, start_at = sys.argv[2:7]
        logging.basicConfig(level=logging.WARNING)
        result = asyncio.run(_steps_worker(spec, int(shard), int(count), int(n), float(start_at)))
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--conversations', type=int, default=10_000)
    parser.add_argument('--commands', type=int, default=4000)
    parser.add_argument('--concurrency', type=int, default=200)
    parser.add_argument('--dsn', help='an existing PostgreSQL database to use (its tables are emptied)')
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_run(args))


if __name__ == '__main__':
    main()
