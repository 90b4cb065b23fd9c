"""Two ``flowbot run`` processes on two shards of one PostgreSQL store: a dialog survives its process's SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import signal
import sys
from collections.abc import AsyncIterator

import pytest

from .sharded import ShardedEmulator, guild_on_shard

REPO = pathlib.Path(__file__).resolve().parents[3]
FORM = """
[flow]
name = "form"
[trigger]
command = "form"
[states.name]
kind = "ask"
prompt = "Name?"
save_as = "name"
[states.age]
kind = "ask"
prompt = "Age?"
save_as = "age"
[states.done]
kind = "end"
text = "Thanks {{ name }}, {{ age }}."
"""
G0, G1 = guild_on_shard(0, 2), guild_on_shard(1, 2)
C0, C1 = G0 + 1, G1 + 1

pytestmark = pytest.mark.slow


@contextlib.asynccontextmanager
async def bot_process(
    tmp_path: pathlib.Path, name: str, emu: ShardedEmulator, dsn: str, shards: list[int] | None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``flowbot run`` on ``shards`` of 2 (unsharded with ``None``); killed on the way out if still running."""
    home = tmp_path / name
    home.mkdir(exist_ok=True)
    (home / 'form.toml').write_text(FORM, encoding='utf-8')
    sharding = f'shard_count = 2\nshard_ids = {shards}\n' if shards is not None else ''
    (home / 'bot.toml').write_text(
        f'[bot]\nflows = ["form.toml"]\nplugins = []\nreload = false\n\n'
        f'[discord]\nrest_url = "{emu.rest_url}"\n{sharding}',
        encoding='utf-8',
    )
    env = {k: v for k, v in os.environ.items() if k not in ('DISCORD_TOKEN_FILE', 'OPENAI_API_KEY')}
    env.update(DISCORD_TOKEN=emu.token, FLOWBOT_STORE=dsn, FLOWBOT_DATA=str(home / 'data'), PYTHONPATH=str(REPO))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        '-m',
        'engine.cli',
        'run',
        cwd=home,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=(home / 'stderr.log').open('wb'),
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def sent(emu: ShardedEmulator, channel: int, text: str) -> int:
    return sum(1 for c in emu.calls_to('POST', f'/channels/{channel}/messages') if c.content == text)


async def say(emu: ShardedEmulator, channel: int, guild: int, user: int, text: str) -> None:
    await emu.message_create(channel_id=channel, guild_id=guild, author=emu.user(user, f'user{user}'), content=text)


async def reply(emu: ShardedEmulator, channel: int, text: str, count: int = 1) -> None:
    await emu.wait_for_call(
        'POST', f'/channels/{channel}/messages', count=count, where=lambda c: c.content == text, timeout=30
    )


async def test_a_dialog_continues_once_when_its_process_is_killed_and_its_shard_moves(
    postgres_dsn: str, tmp_path: pathlib.Path
) -> None:
    async with ShardedEmulator(shard_count=2) as emu:
        async with bot_process(tmp_path, 'b', emu, postgres_dsn, [0]) as b:
            async with bot_process(tmp_path, 'a', emu, postgres_dsn, [1]) as a:
                await emu.wait_shards(0, 1)
                await say(emu, C1, G1, 11, '!form')  # shard 1: process a
                await reply(emu, C1, 'Name?')
                await say(emu, C1, G1, 11, 'Ann')
                await reply(emu, C1, 'Age?')
                await say(emu, C0, G0, 22, '!form')  # shard 0: process b
                await reply(emu, C0, 'Name?')
                a.send_signal(signal.SIGKILL)  # mid-dialog: nothing is flushed or released by a
                await a.wait()
                await emu.wait_shard_gone(1)
            b.send_signal(signal.SIGTERM)  # b is restarted with both shards
            assert await asyncio.wait_for(b.wait(), 30) == 0, (tmp_path / 'b' / 'stderr.log').read_text()
        async with bot_process(tmp_path, 'b', emu, postgres_dsn, [0, 1]) as b2:
            await emu.wait_shards(0, 1)
            await asyncio.sleep(0.5)  # let any wrong replay of restored work show itself
            await say(emu, C1, G1, 11, '42')
            await reply(emu, C1, 'Thanks Ann, 42.')
            await say(emu, C0, G0, 22, 'Bob')
            await reply(emu, C0, 'Age?')
            await asyncio.sleep(0.5)
            b2.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(b2.wait(), 30) == 0, (tmp_path / 'b' / 'stderr.log').read_text()
    assert sent(emu, C1, 'Thanks Ann, 42.') == 1
    assert sent(emu, C1, 'Name?') == 1 and sent(emu, C1, 'Age?') == 1
    assert sent(emu, C0, 'Name?') == 1 and sent(emu, C0, 'Age?') == 1


async def test_a_process_that_loses_its_shard_lock_stops_with_a_message(
    postgres_dsn: str, tmp_path: pathlib.Path
) -> None:
    import asyncpg

    async with ShardedEmulator(shard_count=2) as emu, bot_process(tmp_path, 'a', emu, postgres_dsn, [0, 1]) as a:
        await emu.wait_shards(0, 1)
        admin = await asyncpg.connect(postgres_dsn)
        try:  # as when the database restarts or the network drops the process's lock connection
            ended = await admin.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            )
        finally:
            await admin.close()
        assert ended
        assert await asyncio.wait_for(a.wait(), 30) == 1
    log = (tmp_path / 'a' / 'stderr.log').read_text()
    assert 'flowbot run: stopped: the lock connection closed' in log
    assert 'Traceback' not in log


async def test_a_second_unsharded_process_on_the_same_store_waits_for_the_first(
    postgres_dsn: str, tmp_path: pathlib.Path
) -> None:
    async with ShardedEmulator(shard_count=1) as emu, bot_process(tmp_path, 'a', emu, postgres_dsn, None) as a:
        await emu.wait_shards(0)
        async with bot_process(tmp_path, 'b', emu, postgres_dsn, None) as b:
            log = tmp_path / 'b' / 'stderr.log'
            for _ in range(300):
                if 'is held by' in log.read_text():
                    break
                await asyncio.sleep(0.1)
            assert 'shard 0 is held by' in log.read_text()
            assert emu.identifies == 1  # b has not connected
            a.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(a.wait(), 30) == 0
            await emu.wait_shards(0)
            for _ in range(300):
                if emu.identifies == 2:
                    break
                await asyncio.sleep(0.1)
            assert emu.identifies == 2  # b took over once a had stopped
            b.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(b.wait(), 30) == 0
