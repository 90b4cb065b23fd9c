"""Hostile and clumsy users on Discord, through hikari over loopback: every path gets a clear message in the
user's language and loses nothing."""

from __future__ import annotations

from engine.app import App

from .conftest import CHANNEL, GUILD, start_bot
from .emulator import DiscordEmulator

ANN = 11


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
