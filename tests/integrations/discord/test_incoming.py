"""MESSAGE_CREATE read from the raw payload: the fields the bot uses, and hikari entities only for attachments."""

from __future__ import annotations

from typing import Any

import hikari
import pytest

from integrations.discord.incoming import read_message

from .conftest import CHANNEL, GUILD, Running
from .emulator import DiscordEmulator

ANN = 11


def _payload(**kw: Any) -> dict[str, Any]:
    author = kw.pop('author', DiscordEmulator.user(ANN, 'ann'))
    return DiscordEmulator().message(channel_id=CHANNEL, author=author, **kw)


def test_the_name_is_the_nickname_else_the_global_name_else_the_username() -> None:
    payload = _payload(guild_id=GUILD, roles=[5, 6])
    assert read_message(payload).user.name == 'ann'
    payload['author']['global_name'] = 'Ann G'
    assert read_message(payload).user.name == 'Ann G'
    payload['member']['nick'] = 'annie'
    message = read_message(payload)
    assert message.user.name == 'annie'
    assert message.user.roles == frozenset({'5', '6'})
    assert message.user.guild == str(GUILD)
    assert (message.guild_id, message.channel_id, message.author_id) == (GUILD, CHANNEL, ANN)


def test_a_direct_message_has_no_guild_and_no_roles() -> None:
    message = read_message(_payload(content='hello'))
    assert message.guild_id is None
    assert message.user.guild is None and message.user.roles == frozenset()
    assert message.content == 'hello' and message.is_human


def test_bots_and_webhooks_are_not_human() -> None:
    assert not read_message(_payload(author=DiscordEmulator.user(99, 'robot', bot=True))).is_human
    webhook = _payload()
    webhook['webhook_id'] = '123'
    assert not read_message(webhook).is_human


def test_a_payload_without_an_author_is_refused() -> None:
    payload = _payload()
    del payload['author']
    with pytest.raises(KeyError):
        read_message(payload)


class _NoEntities:
    def deserialize_message(self, payload: Any) -> Any:
        raise AssertionError('a message without attachments must build no hikari entity')


async def test_attachments_are_built_by_hikari_only_when_there_are_some(running: Running) -> None:
    assert read_message(_payload(content='!hi')).remote_files(_NoEntities()) == ()  # type: ignore[arg-type]
    emu = running.emulator
    att = emu.add_file(b'x' * 10, 'notes.txt', 'text/plain')
    (remote,) = read_message(_payload(attachments=[att])).remote_files(running.bot.bot.entity_factory)
    assert isinstance(remote, hikari.Attachment)
    assert (remote.filename, remote.size) == ('notes.txt', 10)


async def test_incoming_messages_build_no_hikari_message_and_commands_still_work(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = running.emulator
    factory = type(running.bot.bot.entity_factory)
    built: list[str] = []
    original = factory.deserialize_message

    def counting(self: Any, payload: Any) -> hikari.Message:
        built.append(payload['id'])
        return original(self, payload)

    monkeypatch.setattr(factory, 'deserialize_message', counting)  # the class's: its instances have slots
    free = await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN, 'ann'), content='hey')
    command = await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(12, 'bob'), content='!hi')
    (reply,) = await emu.wait_for_call('POST', rf'/channels/{CHANNEL}/messages')
    assert reply.content is not None and reply.content.startswith('Hi, bob!')
    assert free['id'] not in built and command['id'] not in built


async def test_nickname_names_the_user_in_a_server(running: Running) -> None:
    emu = running.emulator
    payload = emu.message(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN, 'ann'), content='!hi')
    payload['member']['nick'] = 'Annie'
    await emu.dispatch('MESSAGE_CREATE', payload)
    (reply,) = await emu.wait_for_call('POST', rf'/channels/{CHANNEL}/messages')
    assert reply.content is not None and reply.content.startswith('Hi, Annie!')


async def test_webhook_and_malformed_messages_are_ignored_and_the_next_command_is_answered(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    emu = running.emulator
    webhook = emu.message(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN, 'hook'), content='!hi')
    webhook['webhook_id'] = '4242'
    await emu.dispatch('MESSAGE_CREATE', webhook)
    broken = emu.message(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN, 'x'), content='!hi')
    del broken['author']
    await emu.dispatch('MESSAGE_CREATE', broken)
    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(12, 'bob'), content='!hi')
    (reply,) = await emu.wait_for_call('POST', rf'/channels/{CHANNEL}/messages')
    assert reply.content is not None and reply.content.startswith('Hi, bob!')
    assert len(emu.calls_to('POST', rf'/channels/{CHANNEL}/messages')) == 1
    assert 'MESSAGE_CREATE without the fields of a message' in caplog.text
