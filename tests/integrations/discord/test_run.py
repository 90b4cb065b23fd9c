"""``flowbot run`` as a real process: Discord when a token is configured, the console otherwise."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import sys

from .emulator import DiscordEmulator

REPO = pathlib.Path(__file__).resolve().parents[3]
CHANNEL = 600_000_000_000_000_001
GUILD = 500_000_000_000_000_001


def _env(tmp_path: pathlib.Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ('DISCORD_TOKEN', 'DISCORD_TOKEN_FILE', 'OPENAI_API_KEY')}
    env.update(FLOWBOT_STORE=str(tmp_path / 'store.sqlite3'), FLOWBOT_DATA=str(tmp_path / 'data'), **extra)
    return env


async def test_run_with_a_token_serves_discord_until_sigterm(tmp_path: pathlib.Path) -> None:
    async with DiscordEmulator() as emu:
        proc = await _run_against(emu, tmp_path)
        try:
            await emu.wait_connected(timeout=30)
            await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(4242, 'ann'), content='!hi')
            [reply] = await emu.wait_for_call('POST', f'/channels/{CHANNEL}/messages', timeout=30)
            assert reply.content is not None and reply.content.startswith('Hi, ann!')
            proc.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, stderr.decode()
    assert emu.token not in stderr.decode()  # the token is never logged


async def test_run_without_a_token_says_so_and_starts_the_console(tmp_path: pathlib.Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        '-m',
        'engine.cli',
        'run',
        cwd=REPO,
        env=_env(tmp_path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(b'!hi\n'), 60)
    out = stdout.decode()
    assert proc.returncode == 0, stderr.decode()
    assert 'No DISCORD_TOKEN configured' in out
    assert 'starting the console chat' in out
    assert 'I am flowbot' in out


async def _run_against(emu: DiscordEmulator, tmp_path: pathlib.Path) -> asyncio.subprocess.Process:
    (tmp_path / 'bot.toml').write_text(
        f'[bot]\nflows = ["{REPO / "flows" / "hi.toml"}"]\nplugins = []\nreload = false\n\n'
        f'[discord]\nrest_url = "{emu.rest_url}"\n',
        encoding='utf-8',
    )
    return await asyncio.create_subprocess_exec(
        sys.executable,
        '-m',
        'engine.cli',
        'run',
        cwd=tmp_path,
        env=_env(tmp_path, DISCORD_TOKEN=emu.token),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_run_prints_the_invite_link_once_connected(tmp_path: pathlib.Path) -> None:
    async with DiscordEmulator() as emu:
        proc = await _run_against(emu, tmp_path)
        try:
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.communicate(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert line.strip() == (
        'Connected to Discord. Invite the bot to a server: https://discord.com/oauth2/authorize?'
        f'client_id={emu.application_id}&scope=bot+applications.commands&permissions=70643625331712'
    )
    assert proc.returncode == 0


async def test_run_without_the_message_content_intent_says_so_in_one_line_and_exits_cleanly(
    tmp_path: pathlib.Path,
) -> None:
    async with DiscordEmulator() as emu:
        emu.disallowed_intents = 1 << 15  # MESSAGE_CONTENT, not switched on in the portal
        proc = await _run_against(emu, tmp_path)
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    err = stderr.decode()
    assert proc.returncode == 1
    assert err.splitlines() == [
        'flowbot run: Discord refused the privileged intent MESSAGE_CONTENT: turn on "Message Content Intent" '
        'under Bot -> Privileged Gateway Intents in the Developer Portal '
        '(https://discord.com/developers/applications), then start again.'
    ], err
    assert stdout.decode() == ''


async def test_run_on_part_of_the_shards_with_sqlite_says_postgresql_is_needed(tmp_path: pathlib.Path) -> None:
    (tmp_path / 'bot.toml').write_text(
        '[bot]\nflows = []\nplugins = []\nreload = false\n\n[discord]\nshard_count = 2\nshard_ids = [1]\n',
        encoding='utf-8',
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        '-m',
        'engine.cli',
        'run',
        cwd=tmp_path,
        env=_env(tmp_path, DISCORD_TOKEN='not.used.here'),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    err = stderr.decode()
    assert proc.returncode == 1, err
    assert 'flowbot: store error: shard_ids [1] of 2: several bot processes need a PostgreSQL store' in err
    assert 'Traceback' not in err
