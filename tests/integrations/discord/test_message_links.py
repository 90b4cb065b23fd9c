"""``!correct`` with what a Discord user can copy: "Copy Message Link" (the message id needs Developer Mode)."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator

import pytest

from engine.app import App, build_app
from engine.config import BotConfig, Config

from .conftest import CHANNEL, GUILD, REPO, Running, start_bot
from .emulator import DiscordEmulator

ANN = 11
POST_CHANNEL = rf'/channels/{CHANNEL}/messages'


@pytest.fixture
async def bot(emulator: DiscordEmulator, tmp_path: pathlib.Path) -> AsyncIterator[Running]:
    config = Config(
        bot=BotConfig(
            flows=[REPO / 'flows' / 'hi.toml', REPO / 'flows' / 'correct.toml'],
            store=':memory:',
            data_root=tmp_path,
            plugins=[],
            reload=False,
        )
    )
    app: App = build_app(config, plugins=('integrations.builtin',))
    await app.start()
    run = await start_bot(emulator, app)
    yield run
    await run.bot.close()
    await app.stop()
    assert run.errors == []


async def _typed(emu: DiscordEmulator, content: str, count: int) -> str:
    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN, 'anna'), content=content)
    calls = await emu.wait_for_call('POST', POST_CHANNEL, count=count)
    await asyncio.sleep(0.1)
    return calls[-1].content or ''


@pytest.mark.parametrize('host', ['discord.com', 'canary.discord.com', 'discordapp.com'])
async def test_a_copied_message_link_names_the_reply_to_correct(bot: Running, host: str) -> None:
    emu = bot.emulator
    await _typed(emu, '!hi', 1)
    reply_id = next(iter(emu.messages))  # the greeting, the bot's only message
    link = f'https://{host}/channels/{GUILD}/{CHANNEL}/{reply_id}'
    assert await _typed(emu, f'!correct {link} Hello, Anna!', 2) == (
        f'Thanks: the correction of message {reply_id} is saved.'
    )


async def test_a_link_to_a_message_in_another_channel_says_where_to_correct_it(bot: Running) -> None:
    emu = bot.emulator
    link = f'https://discord.com/channels/{GUILD}/{CHANNEL + 7}/1234567890123'
    answer = await _typed(emu, f'!correct {link} better', 1)
    assert answer == 'That message is in another channel; use !correct in that channel.'


@pytest.mark.parametrize('typed', ['²', '١٢٣', '9' * 30, f'https://discord.com/channels/{GUILD}/{CHANNEL}/{"9" * 30}'])
async def test_an_id_that_is_no_discord_id_is_a_message_not_found(bot: Running, typed: str) -> None:
    """Digits Python reads as digits (², Arabic-Indic) or too big for a Discord id: never sent to Discord (a 400
    there, a ValueError here), the user is told no such message of the bot's is found."""
    answer = await _typed(bot.emulator, f'!correct {typed} better', 1)
    assert answer.startswith('I cannot find a message of mine with id '), answer
