"""Hostile and clumsy users on Discord, through hikari over loopback: every path gets a clear message in the
user's language and loses nothing."""

from __future__ import annotations

import asyncio

from engine.app import App

from .conftest import CHANNEL, GUILD, Running, start_bot
from .emulator import DiscordEmulator

ANN = 11
POST_CHANNEL = rf'/channels/{CHANNEL}/messages'


async def _said(emu: DiscordEmulator, text: str) -> list[str]:
    """Ann types ``text`` in the channel; the texts the bot posted there in answer."""
    before = len(emu.calls_to('POST', POST_CHANNEL))
    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN, 'anna'), content=text)
    await emu.wait_for_call('POST', POST_CHANNEL, count=before + 1)
    await asyncio.sleep(0.2)  # and whatever follows it
    return [c.content or '' for c in emu.calls_to('POST', POST_CHANNEL)[before:]]


async def test_a_reply_too_long_for_messages_comes_as_a_file_with_a_russian_note_to_a_russian_user(
    emulator: DiscordEmulator, app: App
) -> None:
    run = await start_bot(emulator, app, file_threshold_chars=3000)
    try:
        sent = await emulator.slash_command(
            'long', channel_id=CHANNEL, guild_id=GUILD, user=emulator.user(ANN, 'anna'), locale='ru'
        )
        (callback,) = await emulator.wait_for_call('POST', rf'/interactions/{sent["id"]}/{sent["token"]}/callback')
        ((name, _type, data),) = callback.files.values()
        assert name == 'reply.txt' and data.decode().count('\n') == 120
        content = callback.json['data']['content']
        assert content.startswith('line 0 of a long reply')
        assert 'full reply' not in content and 'полный ответ' in content
    finally:
        await run.bot.close()
    assert run.errors == []


async def test_a_command_the_user_may_not_run_leaves_their_open_dialog_as_it_was(running: Running) -> None:
    emu = running.emulator
    assert await _said(emu, '!pick') == ['Which fruit?']
    (refusal,) = await _said(emu, '!secret')
    assert 'admins' in refusal and 'Stopped' not in refusal
    assert await _said(emu, 'apple') == ['How many apples?']
    assert await _said(emu, '2') == ['You get 2 apple(s).']


async def test_a_file_refused_beside_typed_text_is_named_to_the_user_not_dropped_silently(running: Running) -> None:
    emu = running.emulator
    exe = emu.add_file(b'MZ' + b'\0' * 100, 'tool.exe', 'application/x-msdownload')
    await emu.message_create(
        channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN), content='here is my dataset', attachments=[exe]
    )
    (notice,) = await emu.wait_for_call('POST', POST_CHANNEL)
    assert notice.content is not None and 'tool.exe' in notice.content
    assert await _said(emu, '!hi') == ['Hi, anna! I am flowbot. Type !instruction to see what I can do.']


async def test_a_job_report_posted_to_the_channel_pings_its_user_and_nobody_else(running: Running, app: App) -> None:
    place = {'adapter': 'discord', 'channel': str(CHANNEL), 'user': str(ANN)}
    await app.engine.post(place, 'Training job j1 failed: @everyone <@12> <@&777> look')
    (call,) = running.emulator.calls_to('POST', POST_CHANNEL)
    assert call.content is not None and call.content.startswith(f'<@{ANN}> ')
    assert call.json['allowed_mentions'] == {'parse': [], 'users': [str(ANN)]}
