"""The reply language on Discord: the user's locale (interactions carry it), else the server's preferred locale;
and the slash menu in Russian for Russian clients."""

from __future__ import annotations

import hikari

from engine.app import App
from engine.flows.loader import load_paths
from integrations.discord.commands import command_specs, slash_builder

from .conftest import CHANNEL, GUILD, REPO, bot_running
from .emulator import DiscordEmulator

ANN, BOB, CARL = 11, 12, 13


async def _typed(emu: DiscordEmulator, content: str) -> None:
    """Carl types ``content`` in the server's channel (a typed message carries no user locale)."""
    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(CARL, 'carl'), content=content)


async def _interaction_reply(emu: DiscordEmulator, sent: dict[str, str]) -> str:
    (callback,) = await emu.wait_for_call('POST', rf'/interactions/{sent["id"]}/{sent["token"]}/callback')
    content: str = callback.json['data']['content']
    return content


async def test_a_ru_user_gets_russian_and_an_en_us_user_english_in_the_same_guild(
    emulator: DiscordEmulator, app: App
) -> None:
    emulator.guilds = [{**emulator.guild(GUILD, channels=[CHANNEL]), 'preferred_locale': 'ru'}]
    async with bot_running(emulator, app):
        ru = await emulator.slash_command(
            'hi', channel_id=CHANNEL, guild_id=GUILD, user=emulator.user(ANN, 'anna'), locale='ru'
        )
        assert (
            await _interaction_reply(emulator, ru)
            == 'Привет, anna! Я flowbot. Напишите !instruction, чтобы узнать, что я умею.'
        )
        en = await emulator.slash_command(
            'hi', channel_id=CHANNEL, guild_id=GUILD, user=emulator.user(BOB, 'bob'), locale='en-US'
        )
        assert (
            await _interaction_reply(emulator, en) == 'Hi, bob! I am flowbot. Type !instruction to see what I can do.'
        )
        # A typed message carries no user locale: the server's preferred one (ru) answers.
        await _typed(emulator, '!hi')
        await _typed(emulator, '!nope')
        first, second = await emulator.wait_for_call('POST', rf'/channels/{CHANNEL}/messages', count=2)
        assert first.content is not None and first.content.startswith('Привет, carl!')
        assert second.content is not None and second.content.startswith('Неизвестная команда «nope»')


async def test_a_guild_preferring_english_answers_typed_commands_in_english(
    emulator: DiscordEmulator, app: App
) -> None:
    emulator.guilds = [emulator.guild(GUILD, channels=[CHANNEL])]  # preferred_locale en-US
    async with bot_running(emulator, app):
        await _typed(emulator, '!hi')
        (reply,) = await emulator.wait_for_call('POST', rf'/channels/{CHANNEL}/messages')
        assert reply.content is not None and reply.content.startswith('Hi, carl!')


async def test_typed_commands_follow_the_servers_locale_as_guild_events_change_it(
    emulator: DiscordEmulator, app: App
) -> None:
    guild = emulator.guild(GUILD, channels=[CHANNEL])  # preferred_locale en-US
    emulator.guilds = [guild]

    async def reply() -> str:
        await _typed(emulator, '!hi')
        calls = await emulator.wait_for_call('POST', rf'/channels/{CHANNEL}/messages', count=len(replies) + 1)
        replies.append(calls[-1].content or '')
        return replies[-1]

    replies: list[str] = []
    async with bot_running(emulator, app):
        assert (await reply()).startswith('Hi, carl!')
        await emulator.dispatch('GUILD_UPDATE', {**guild, 'preferred_locale': 'ru'})
        assert (await reply()).startswith('Привет, carl!')
        # an outage (the guild unavailable) does not forget the server's locale
        await emulator.dispatch('GUILD_DELETE', {'id': str(GUILD), 'unavailable': True})
        assert (await reply()).startswith('Привет, carl!')
        await emulator.dispatch('GUILD_CREATE', {**guild, 'preferred_locale': 'ru'})
        # removed from the server: nothing is known of it, the bot's language (en) answers
        await emulator.dispatch('GUILD_DELETE', {'id': str(GUILD)})
        assert (await reply()).startswith('Hi, carl!')


async def test_an_outage_told_by_an_unavailable_guild_create_keeps_the_servers_locale(
    emulator: DiscordEmulator, app: App
) -> None:
    emulator.guilds = [{**emulator.guild(GUILD, channels=[CHANNEL]), 'preferred_locale': 'ru'}]
    async with bot_running(emulator, app):
        # during an outage Discord may send GUILD_CREATE with an unavailable guild: its id, no locale
        await emulator.dispatch('GUILD_CREATE', {'id': str(GUILD), 'unavailable': True})
        await _typed(emulator, '!hi')
        (reply,) = await emulator.wait_for_call('POST', rf'/channels/{CHANNEL}/messages')
        assert reply.content is not None and reply.content.startswith('Привет, carl!'), reply.content


async def test_a_preferred_locale_that_is_no_text_is_ignored_and_the_bots_language_answers(
    emulator: DiscordEmulator, app: App
) -> None:
    emulator.guilds = [{**emulator.guild(GUILD, channels=[CHANNEL]), 'preferred_locale': 7}]
    async with bot_running(emulator, app):
        await _typed(emulator, '!hi')
        (reply,) = await emulator.wait_for_call('POST', rf'/channels/{CHANNEL}/messages', timeout=5)
        assert reply.content is not None and reply.content.startswith('Hi, carl!'), reply.content


def test_every_shipped_slash_command_and_option_has_a_russian_description_within_discords_limit() -> None:
    flows, problems = load_paths([REPO / 'flows'])
    assert not problems
    specs = command_specs(flows)
    assert len(specs) >= 13
    for spec in specs:
        builder = slash_builder(spec)
        assert builder.name.isascii(), builder.name  # names stay ASCII
        ru = builder.description_localizations.get(hikari.Locale.RU)
        assert ru and len(ru) <= 100 and ru != builder.description, (spec.name, ru)
        for option in builder.options:
            assert option.name.isascii()
            option_ru = option.description_localizations.get(hikari.Locale.RU)
            assert option_ru and option_ru != option.description, (spec.name, option.name)
    for flow in flows:  # nothing was cut to fit: Discord's limit is 100 characters
        for option in flow.trigger.options:
            assert isinstance(option.description, dict) and len(option.description['ru']) <= 100, option.name
        assert isinstance(flow.trigger.description, dict) or flow.trigger.command is None, flow.name
