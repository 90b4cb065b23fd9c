"""End to end: the real hikari GatewayBot + lightbulb client against the loopback emulator, the real engine."""

from __future__ import annotations

import asyncio
import pathlib
import re

import hikari
import pytest

from engine.app import App

from .conftest import ADMIN_ROLE, CHANNEL, GUILD, Running, bot_running, make_ogg
from .emulator import DiscordEmulator, RestCall

ANN = 11
POST_CHANNEL = rf'/channels/{CHANNEL}/messages'


def _to(channel: int) -> str:
    return rf'/channels/{channel}/messages'


async def _reply(emu: DiscordEmulator, count: int = 1, channel: int = CHANNEL) -> list[RestCall]:
    return await emu.wait_for_call('POST', _to(channel), count=count)


async def test_prefix_command_and_alias_reply_in_the_channel(running: Running) -> None:
    emu = running.emulator
    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN, 'ann'), content='!hi')
    first = await _reply(emu)
    assert first[0].content == 'Hi, ann! I am flowbot. Type !instruction to see what I can do.'
    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(12, 'bob'), content='!hello')
    second = await _reply(emu, 2)
    assert second[1].content is not None and second[1].content.startswith('Hi, bob!')


async def test_messages_from_bots_and_from_itself_are_ignored(running: Running) -> None:
    emu = running.emulator
    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(99, 'robot', bot=True), content='!hi')
    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.bot_user(), content='!hi')
    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN, 'ann'), content='!hi')
    replies = await _reply(emu)
    await asyncio.sleep(0.2)
    assert len(emu.calls_to('POST', POST_CHANNEL)) == 1
    assert replies[0].content is not None and 'ann' in replies[0].content


async def test_prefix_command_with_wrong_arguments_gets_the_usage_line(running: Running) -> None:
    emu = running.emulator
    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN), content='!upload times=2')
    (reply,) = await _reply(emu)
    assert reply.content is not None
    assert 'Missing file' in reply.content
    assert 'Usage: !upload <file:attachment> [times:integer=1|2|3]' in reply.content


async def test_prefix_command_takes_the_message_attachment_as_option(running: Running) -> None:
    emu = running.emulator
    att = emu.add_file(b'x' * 1234, 'notes.txt', 'text/plain')
    await emu.message_create(
        channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN), content='!upload 3', attachments=[att]
    )
    (reply,) = await _reply(emu)
    assert reply.content == 'Got notes.txt (1234 bytes) x3.'


async def test_slash_command_is_answered_through_its_interaction(running: Running) -> None:
    emu = running.emulator
    sent = await emu.slash_command('hi', channel_id=CHANNEL, guild_id=GUILD, user=emu.user(ANN, 'ann'))
    (callback,) = await emu.wait_for_call('POST', rf'/interactions/{sent["id"]}/{sent["token"]}/callback')
    assert callback.json['type'] == 4
    assert callback.json['data']['content'].startswith('Hi, ann!')
    assert emu.calls_to('POST', POST_CHANNEL) == []


async def test_slash_command_with_attachment_option_is_deferred_then_its_answer_edited_into_the_result(
    emulator: DiscordEmulator, app: App, tmp_path: pathlib.Path
) -> None:
    async with bot_running(emulator, app, defer_after=0.0) as run:
        emu = emulator
        emu.download_delay = 0.3  # the download outlasts the deferral deadline
        song = make_ogg(tmp_path / 'song.ogg')
        att = emu.add_file(song.read_bytes(), 'song.ogg', 'audio/ogg')
        sent = await emu.slash_command(
            'upload',
            channel_id=CHANNEL,
            guild_id=GUILD,
            user=emu.user(ANN),
            options=[{'name': 'file', 'type': 11, 'value': att['id']}, {'name': 'times', 'type': 4, 'value': 2}],
            resolved={'attachments': {att['id']: att}},
        )
        (callback,) = await emu.wait_for_call('POST', rf'/interactions/{sent["id"]}/{sent["token"]}/callback')
        assert callback.json['type'] == 5
        original = rf'/webhooks/{emu.application_id}/{sent["token"]}/messages/@original'
        (answer,) = await emu.wait_for_call('PATCH', original)
        assert answer.content == f'Got song.ogg ({song.stat().st_size} bytes) x2.'
        assert emu.calls_to('POST', rf'/webhooks/{emu.application_id}/{sent["token"]}') == []  # no follow-up
        assert list(run.bot.adapter.downloads.root.rglob('*.ogg')) == []  # deleted when the conversation ended


async def test_dialog_is_answered_by_a_button_press_then_typed_text(running: Running) -> None:
    emu = running.emulator
    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN), content='!pick')
    (question,) = await _reply(emu)
    assert question.content == 'Which fruit?'
    buttons = [c for row in question.json['components'] for c in row['components']]
    assert [(b['label'], b['custom_id']) for b in buttons] == [('Apple', f'fb:{ANN}:apple'), ('Pear', f'fb:{ANN}:pear')]
    asked = next(m for m in emu.messages.values() if m['content'] == 'Which fruit?')

    await emu.button_press(f'fb:{ANN}:pear', message=asked, user=emu.user(ANN), guild_id=GUILD)
    (ack,) = await emu.wait_for_call('POST', r'/interactions/\d+/[^/]+/callback')
    assert ack.json['type'] == 7 and ack.json['data']['components'] == []
    replies = await _reply(emu, 2)
    assert replies[1].content == 'How many pears?'

    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN), content='3')
    replies = await _reply(emu, 3)
    assert replies[2].content == 'You get 3 pear(s).'


async def test_someone_elses_button_is_refused_and_changes_nothing(running: Running) -> None:
    emu = running.emulator
    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN), content='!pick')
    await _reply(emu)
    asked = next(m for m in emu.messages.values() if m['content'] == 'Which fruit?')
    await emu.button_press(f'fb:{ANN}:apple', message=asked, user=emu.user(12, 'bob'), guild_id=GUILD)
    (ack,) = await emu.wait_for_call('POST', r'/interactions/\d+/[^/]+/callback')
    assert ack.json['type'] == 4 and ack.json['data']['flags'] == 64
    await asyncio.sleep(0.2)
    assert len(emu.calls_to('POST', POST_CHANNEL)) == 1


async def test_slash_dialog_takes_typed_answers_and_drops_stale_buttons(running: Running) -> None:
    emu = running.emulator
    sent = await emu.slash_command('pick', channel_id=CHANNEL, guild_id=GUILD, user=emu.user(ANN))
    (callback,) = await emu.wait_for_call('POST', rf'/interactions/{sent["id"]}/{sent["token"]}/callback')
    assert callback.json['data']['content'] == 'Which fruit?'
    assert len(callback.json['data']['components'][0]['components']) == 2
    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN), content='apple')
    (next_question,) = await _reply(emu)
    assert next_question.content == 'How many apples?'
    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN), content='two')
    await emu.wait_for_call('POST', POST_CHANNEL, where=lambda c: 'whole number' in (c.content or ''))
    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN), content='2')
    await emu.wait_for_call('POST', POST_CHANNEL, where=lambda c: c.content == 'You get 2 apple(s).')


async def test_voice_message_reaches_the_message_flow(running: Running, tmp_path: pathlib.Path) -> None:
    emu = running.emulator
    voice = make_ogg(tmp_path / 'v.ogg', 0.5)
    att = emu.add_file(voice.read_bytes(), 'voice-message.ogg', 'audio/ogg', duration_secs=0.5, waveform='AAAA')
    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN), attachments=[att], flags=8192)
    (reply,) = await _reply(emu)
    assert reply.content == f'Heard voice-message.ogg (audio/ogg, {voice.stat().st_size} bytes).'


async def test_message_with_a_non_audio_attachment_breaks_nothing(running: Running) -> None:
    emu = running.emulator
    png = emu.add_file(b'\x89PNG\r\n\x1a\n' + b'0' * 100, 'cat.png', 'image/png')
    await emu.message_create(
        channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN), content='look', attachments=[png]
    )
    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN), content='!hi')
    (reply,) = await _reply(emu)
    assert reply.content is not None and reply.content.startswith('Hi,')
    assert running.errors == []


async def test_refused_attachment_alone_gets_a_clear_message(running: Running) -> None:
    emu = running.emulator
    exe = emu.add_file(b'MZ' * 10, 'tool.exe', 'application/x-msdownload')
    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN), attachments=[exe])
    (reply,) = await _reply(emu)
    assert reply.content == "I cannot take 'tool.exe': files of type application/x-msdownload are not accepted."


async def test_oversize_attachment_for_a_command_is_refused_before_download(running: Running) -> None:
    emu = running.emulator
    att = emu.add_file(b'tiny', 'big.ogg', 'audio/ogg', size=30 * 1024 * 1024)
    await emu.message_create(
        channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN), content='!upload', attachments=[att]
    )
    (reply,) = await _reply(emu)
    assert reply.content == "'big.ogg' is 30.0 MB; the limit is 25.0 MB."


async def test_command_without_the_groups_role_is_denied(running: Running) -> None:
    emu = running.emulator
    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN), content='!secret')
    (denied,) = await _reply(emu)
    assert denied.content is not None and 'admins' in denied.content and '42' not in denied.content
    await emu.message_create(
        channel_id=CHANNEL, guild_id=GUILD, author=emu.user(12), content='!secret', roles=[ADMIN_ROLE]
    )
    replies = await _reply(emu, 2)
    assert replies[1].content == 'The secret is 42.'


async def test_reply_over_2000_characters_is_split_on_lines(running: Running) -> None:
    emu = running.emulator
    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN), content='!long')
    first = await _reply(emu)
    await asyncio.sleep(0.3)
    parts = [c.content or '' for c in emu.calls_to('POST', POST_CHANNEL)]
    assert len(parts) >= 3 and first[0] is not None
    assert all(len(p) <= 2000 for p in parts)
    lines = '\n'.join(parts).splitlines()
    assert lines == [f'line {i} of a long reply that needs splitting' for i in range(120)]


async def test_direct_message_sets_is_dm_and_deny_policy_ignores_it(emulator: DiscordEmulator, app: App) -> None:
    emu = emulator
    async with bot_running(emu, app, dm_policy='deny'):
        await emu.message_create(channel_id=42, author=emu.user(ANN), content='!hi')
        await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN), content='!hi')
        await _reply(emu)
        await asyncio.sleep(0.2)
        assert emu.calls_to('POST', _to(42)) == []


async def test_command_sync_puts_the_flow_commands_once(running: Running) -> None:
    emu = running.emulator
    (put,) = emu.calls_to('PUT', rf'/applications/{emu.application_id}/commands')
    by_name = {c['name']: c for c in put.json}
    assert set(by_name) == {'hi', 'pick', 'upload', 'secret', 'long'}  # the alias hello stays prefix-only
    assert by_name['pick']['description'] == 'Pick a fruit'
    assert by_name['pick']['description_localizations'] == {'en-US': 'Pick a fruit', 'ru': 'Выбрать фрукт'}
    file_opt, times_opt = by_name['upload']['options']
    assert (file_opt['name'], file_opt['type'], file_opt['required']) == ('file', 11, True)
    assert (times_opt['name'], times_opt['type'], times_opt.get('required', False)) == ('times', 4, False)
    assert [c['value'] for c in times_opt['choices']] == [1, 2, 3]
    assert times_opt['name_localizations'] == {'ru': 'raz'}
    assert times_opt['description_localizations'] == {'en-US': 'How often', 'ru': 'Сколько раз'}
    assert sorted(by_name['hi']['contexts']) == [0, 1, 2]

    calls_before = len(emu.calls)
    await running.bot.flows_changed()  # the engine reloaded, nothing changed: no REST call at all
    assert len(emu.calls) == calls_before


async def test_commands_are_synced_to_configured_guilds(emulator: DiscordEmulator, app: App) -> None:
    async with bot_running(emulator, app, guild_ids=[GUILD]):
        (put,) = emulator.calls_to('PUT', rf'/applications/{emulator.application_id}/guilds/{GUILD}/commands')
        assert 'pick' in {c['name'] for c in put.json}
        sent = await emulator.slash_command(
            'hi', channel_id=CHANNEL, guild_id=GUILD, user=emulator.user(ANN), registered_guild=True
        )
        (callback,) = await emulator.wait_for_call('POST', rf'/interactions/{sent["id"]}/[^/]+/callback')
        assert callback.json['data']['content'].startswith('Hi,')


async def test_gateway_resume_loses_and_repeats_nothing(running: Running) -> None:
    emu = running.emulator
    for i in range(3):
        await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(100 + i, f'u{i}'), content='!hi')
    await _reply(emu, 3)
    await emu.request_reconnect()
    for i in range(3, 6):  # sent while the client is away: replayed on RESUME
        await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(100 + i, f'u{i}'), content='!hi')
    await emu.wait_connected(20)
    await _reply(emu, 6)
    await asyncio.sleep(0.3)
    names = sorted(re.match(r'Hi, (u\d)!', c.content or '').group(1) for c in emu.calls_to('POST', POST_CHANNEL))  # type: ignore[union-attr]
    assert names == [f'u{i}' for i in range(6)]
    assert (emu.identifies, emu.resumes) == (1, 1)


async def test_second_start_with_unchanged_flows_puts_no_commands(emulator: DiscordEmulator, app: App) -> None:
    put = rf'/applications/{emulator.application_id}/commands'
    async with bot_running(emulator, app):
        pass
    assert len(emulator.calls_to('PUT', put)) == 1
    async with bot_running(emulator, app):  # the same store: it remembers what Discord has
        sent = await emulator.slash_command('hi', channel_id=CHANNEL, guild_id=GUILD, user=emulator.user(ANN, 'ann'))
        (callback,) = await emulator.wait_for_call('POST', rf'/interactions/{sent["id"]}/[^/]+/callback')
        assert callback.json['data']['content'].startswith('Hi, ann!')  # its commands work without a sync
    assert len(emulator.calls_to('PUT', put)) == 1


async def test_stale_button_press_is_answered_to_the_presser_alone(running: Running) -> None:
    emu = running.emulator
    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN), content='!pick')
    await _reply(emu)
    asked = next(m for m in emu.messages.values() if m['content'] == 'Which fruit?')
    await emu.button_press(f'fb:{ANN}:pear', message=asked, user=emu.user(ANN), guild_id=GUILD)
    await _reply(emu, 2)
    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN), content='3')
    await _reply(emu, 3)  # the dialog is over
    sent = await emu.button_press(f'fb:{ANN}:apple', message=asked, user=emu.user(ANN), guild_id=GUILD)
    (notice,) = await emu.wait_for_call('POST', rf'/webhooks/{emu.application_id}/{sent["token"]}')
    assert notice.content == 'That question is no longer open.'
    assert notice.json['flags'] == 64
    await asyncio.sleep(0.2)
    assert len(emu.calls_to('POST', POST_CHANNEL)) == 3  # nothing in the channel


async def test_slash_command_refused_for_permission_is_ephemeral(running: Running) -> None:
    emu = running.emulator
    sent = await emu.slash_command('secret', channel_id=CHANNEL, guild_id=GUILD, user=emu.user(ANN))
    (callback,) = await emu.wait_for_call('POST', rf'/interactions/{sent["id"]}/{sent["token"]}/callback')
    assert callback.json['type'] == 4 and callback.json['data']['flags'] == 64
    assert 'admins' in callback.json['data']['content']


@pytest.mark.parametrize(
    'words',
    [
        ('cancel', 'back', 'help'),
        # A Russian member of a mixed team on this English server (a typed message carries the server's locale):
        # their own words work too, as prefix commands (``!отмена`` is the command ``отмена``) and typed alone.
        ('!Отмена', 'НАЗАД', '!помощь'),
    ],
)
async def test_cancel_back_and_help_outside_a_dialog_get_a_plain_answer(
    running: Running, words: tuple[str, ...]
) -> None:
    emu = running.emulator
    for word in words:
        await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN), content=word)
    replies = await _reply(emu, 3)
    assert [r.content for r in replies] == [
        'There is nothing to cancel.',
        'There is no earlier question to go back to.',
        'No question is open. Type !instruction to see the commands.',
    ]


async def test_bot_running_fails_the_test_when_a_listener_raised(emulator: DiscordEmulator, app: App) -> None:
    """What every test started with :func:`bot_running` (and the ``running`` fixture) relies on."""

    async def broken(event: hikari.MessageCreateEvent) -> None:
        raise RuntimeError('listener broke')

    with pytest.raises(AssertionError, match='listener broke'):
        async with bot_running(emulator, app) as run:
            run.bot.bot.subscribe(hikari.MessageCreateEvent, broken)
            await emulator.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emulator.user(ANN), content='hi')
            for _ in range(100):
                if run.errors:
                    break
                await asyncio.sleep(0.02)


async def test_refusal_after_a_deferral_is_ephemeral_and_the_thinking_answer_goes(
    emulator: DiscordEmulator, app: App
) -> None:
    async with bot_running(emulator, app, defer_after=0.0):
        emu = emulator
        emu.download_delay = 0.3  # "thinking…" is shown while the file downloads
        att = emu.add_file(b'{"not": "a zip"}', 'data.zip', None)
        sent = await emu.slash_command(
            'upload',
            channel_id=CHANNEL,
            guild_id=GUILD,
            user=emu.user(ANN),
            options=[{'name': 'file', 'type': 11, 'value': att['id']}],
            resolved={'attachments': {att['id']: att}},
        )
        (callback,) = await emu.wait_for_call('POST', rf'/interactions/{sent["id"]}/{sent["token"]}/callback')
        assert callback.json['type'] == 5
        (notice,) = await emu.wait_for_call('POST', rf'/webhooks/{emu.application_id}/{sent["token"]}')
        assert notice.json['flags'] == 64
        assert notice.content == "'data.zip' is not a ZIP file (it does not start like one); please send it again."
        (deleted,) = emu.calls_to('DELETE', rf'/webhooks/{emu.application_id}/{sent["token"]}/messages/@original')
        assert emu.calls.index(deleted) < emu.calls.index(notice)  # else Discord makes the notice the answer


async def test_a_bot_configured_with_another_prefix_names_commands_with_it(emulator: DiscordEmulator, app: App) -> None:
    async with bot_running(emulator, app, defer_after=1.0, prefix='?'):
        author = emulator.user(ANN, 'ann')
        for count, content in enumerate(['?hi', '?nope', '?upload times=2'], start=1):
            await emulator.message_create(channel_id=CHANNEL, guild_id=GUILD, author=author, content=content)
            await _reply(emulator, count)
        replies = [call.content for call in emulator.calls_to('POST', POST_CHANNEL)]
        assert replies[0] == 'Hi, ann! I am flowbot. Type ?instruction to see what I can do.'
        assert replies[1] is not None and 'Try ?instruction for the list.' in replies[1]
        assert replies[2] is not None and 'Usage: ?upload <file:attachment>' in replies[2]
        assert not any(re.search(r'!\w', reply or '') for reply in replies)
