"""The outgoing side through the real hikari REST client: voice messages, files, edits, voice channels."""

from __future__ import annotations

import asyncio
import base64
import pathlib
import time

import pytest

from engine.api import ConversationKey, Option
from engine.app import App
from engine.states.actions import ActionError
from integrations.discord.adapter import _Responder, literal_backslashes, parse_custom_id, split_text

from .conftest import CHANNEL, GUILD, Running, bot_running, make_ogg
from .emulator import DiscordEmulator

ANN = 11
VOICE_CHANNEL = 600_000_000_000_000_009
KEY = ConversationKey('discord', str(CHANNEL), str(ANN))


async def test_voice_message_is_uploaded_with_flag_duration_and_waveform(
    running: Running, tmp_path: pathlib.Path
) -> None:
    emu = running.emulator
    ogg = make_ogg(tmp_path / 'answer.ogg', 1.0)
    message_id = await running.bot.adapter.send_file(KEY, ogg, voice_message=True)
    (call,) = emu.calls_to('POST', rf'/channels/{CHANNEL}/messages')
    assert call.json['flags'] == 8192
    (meta,) = call.json['attachments']
    assert meta['duration_secs'] == pytest.approx(1.0, abs=0.05)
    wave = base64.b64decode(meta['waveform'])
    assert 0 < len(wave) <= 256 and max(wave) == 255
    ((_, ctype, data),) = call.files.values()
    assert data == ogg.read_bytes() and ctype.startswith('audio/')
    assert int(message_id) in emu.messages


async def test_unreadable_voice_message_is_a_clear_error(running: Running, tmp_path: pathlib.Path) -> None:
    bad = tmp_path / 'bad.ogg'
    bad.write_bytes(b'not audio at all')
    with pytest.raises(ActionError, match='not readable'):
        await running.bot.adapter.send_file(KEY, bad, voice_message=True)
    assert running.emulator.calls_to('POST', rf'/channels/{CHANNEL}/messages') == []


async def test_very_long_reply_is_sent_as_a_text_file(running: Running) -> None:
    text = ''.join(f'row {i}\n' for i in range(3000))
    await running.bot.adapter.send_text(KEY, text)
    (call,) = running.emulator.calls_to('POST', rf'/channels/{CHANNEL}/messages')
    ((name, _, data),) = call.files.values()
    assert name == 'reply.txt' and data.decode() == text
    assert call.content is not None and call.content.startswith('row 0') and len(call.content) <= 2000


async def test_progress_edits_are_coalesced_to_the_latest_text(emulator: DiscordEmulator, app: App) -> None:
    async with bot_running(emulator, app, edit_interval=0.3) as run:
        adapter = run.bot.adapter
        message_id = await adapter.send_text(KEY, 'working 0%')
        for pct in (10, 20, 30, 40):
            await adapter.edit_text(KEY, message_id, f'working {pct}%')
        edits = await emulator.wait_for_call('PATCH', rf'/channels/{CHANNEL}/messages/{message_id}', count=2)
        await asyncio.sleep(0.4)
        edits = emulator.calls_to('PATCH', rf'/channels/{CHANNEL}/messages/{message_id}')
        assert [e.json['content'] for e in edits] == ['working 10%', 'working 40%']
        assert await adapter.fetch_text(KEY, message_id) == 'working 40%'


async def test_ask_with_many_options_lists_the_rest_and_keeps_long_values(running: Running) -> None:
    options = [Option(f'value-{i}', f'Label {i}') for i in range(27)]
    options[0] = Option('v' * 150, 'Long one')
    await running.bot.adapter.ask(KEY, 'Choose', options)
    (call,) = running.emulator.calls_to('POST', rf'/channels/{CHANNEL}/messages')
    rows = call.json['components']
    buttons = [b for row in rows for b in row['components']]
    assert len(rows) == 5 and len(buttons) == 25
    assert call.content == 'Choose\nvalue-25, value-26'
    parsed = parse_custom_id(buttons[0]['custom_id'])
    assert parsed is not None and parsed[0] == str(ANN)
    assert running.bot.adapter.choice_value(parsed[1]) == 'v' * 150
    assert all(len(b['custom_id']) <= 100 for b in buttons)


class FakeVoice:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    async def join(self, guild_id: int, channel_id: int) -> None:
        self.calls.append(('join', (guild_id, channel_id)))

    async def leave(self, guild_id: int) -> None:
        self.calls.append(('leave', guild_id))

    async def speak(self, guild_id: int, path: pathlib.Path, *, user_id: int | None = None) -> None:
        self.calls.append(('speak', (guild_id, path, user_id)))

    async def close(self) -> None:
        self.calls.append(('close', None))


async def test_voice_join_uses_the_users_voice_channel_from_the_cache(
    emulator: DiscordEmulator, app: App, tmp_path: pathlib.Path
) -> None:
    emulator.guilds = [
        emulator.guild(GUILD, channels=[CHANNEL], voice_states=[emulator.voice_state(GUILD, ANN, VOICE_CHANNEL)])
    ]
    async with bot_running(emulator, app) as run:
        voice = FakeVoice()
        run.bot.adapter.voice = voice
        for _ in range(50):  # GUILD_CREATE arrives right after READY
            if run.bot.bot.cache.get_guild(GUILD) is not None:
                break
            await asyncio.sleep(0.02)
        assert await run.bot.adapter.in_voice(KEY) is True
        name = await run.bot.adapter.voice_join(KEY)
        assert voice.calls == [('join', (GUILD, VOICE_CHANNEL))]
        assert name == str(VOICE_CHANNEL)
        audio = tmp_path / 'a.ogg'
        assert await run.bot.adapter.voice_speak(KEY, audio) is True
        await run.bot.adapter.voice_leave(KEY)
        assert voice.calls[-2:] == [('speak', (GUILD, audio, ANN)), ('leave', GUILD)]  # ANN can barge in

        await emulator.voice_state_update(GUILD, ANN, None)  # the user leaves the voice channel
        for _ in range(50):
            if run.bot.bot.cache.get_voice_state(GUILD, ANN) is None:
                break
            await asyncio.sleep(0.02)
        with pytest.raises(ActionError, match='Join a voice channel first'):
            await run.bot.adapter.voice_join(KEY)
        assert await run.bot.adapter.voice_speak(KEY, audio) is False
        assert await run.bot.adapter.in_voice(KEY) is False
        with pytest.raises(ActionError, match='not in direct messages'):
            await run.bot.adapter.voice_join(ConversationKey('discord', '4242', str(ANN)))


def test_split_text_cuts_at_lines_then_spaces() -> None:
    text = 'a' * 1500 + '\n' + 'b' * 1500 + '\n' + ('word ' * 500)
    parts = split_text(text, 2000)
    assert all(len(p) <= 2000 for p in parts)
    assert parts[0] == 'a' * 1500 and parts[1] == 'b' * 1500
    assert ''.join(parts[2:]).replace(' ', '') == 'word' * 500
    assert split_text('', 2000) == ['\u200b']


def test_split_text_never_gives_a_blank_piece_discord_would_refuse() -> None:
    # Discord answers 400 "Cannot send an empty message" (50006) to content that is only whitespace.
    assert split_text('   ', 2000) == ['\u200b']
    parts = split_text('a' * 1999 + '\n' + ' ' * 2500 + '\nb', 2000)
    assert all(p.strip() for p in parts) and parts[0] == 'a' * 1999 and parts[-1].strip() == 'b'


def test_foreign_custom_ids_are_not_ours() -> None:
    assert parse_custom_id('fb:123:apple') == ('123', 'apple')
    assert parse_custom_id('fb:123:a:b') == ('123', 'a:b')
    assert parse_custom_id('menu:123:apple') is None
    assert parse_custom_id('fb:abc:apple') is None


def test_backslashes_are_escaped_for_markdown_outside_code() -> None:
    assert literal_backslashes(r'..\..\x') == r'..\\..\\x'
    assert literal_backslashes(r'a\b `c\d` ```' + '\n' + r'e\f```') == r'a\\b `c\d` ```' + '\n' + r'e\f```'
    assert literal_backslashes('no backslash') == 'no backslash'


async def test_a_result_is_not_overwritten_by_a_coalesced_progress_edit(emulator: DiscordEmulator, app: App) -> None:
    async with bot_running(emulator, app, edit_interval=0.3) as run:
        adapter = run.bot.adapter
        progress = await adapter.progress(KEY, 'step 1')
        await adapter.progress(KEY, 'step 2', progress)  # edited at once
        await adapter.progress(KEY, 'step 3', progress)  # waits for the interval
        adapter.progress_done(KEY, progress)
        assert await adapter.send_text(KEY, 'the result') == progress
        await asyncio.sleep(0.5)
        assert emulator.messages[int(progress)]['content'] == 'the result'
        assert len(emulator.calls_to('POST', rf'/channels/{CHANNEL}/messages')) == 1


async def test_a_result_after_other_peoples_messages_is_posted_below_and_the_progress_deleted(
    running: Running,
) -> None:
    emu, adapter = running.emulator, running.bot.adapter
    progress = await adapter.progress(KEY, 'Working…')
    await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(99, 'bob'), content='meanwhile')
    await asyncio.sleep(0.2)
    adapter.progress_done(KEY, progress)
    result = await adapter.send_text(KEY, 'Done.')
    assert result != progress and emu.messages[int(result)]['content'] == 'Done.'
    assert int(progress) not in emu.messages  # deleted
    assert emu.calls_to('DELETE', rf'/channels/{CHANNEL}/messages/{progress}')


async def test_a_busy_notice_during_a_step_leaves_the_progress_message_alone(running: Running) -> None:
    adapter = running.bot.adapter
    progress = await adapter.progress(KEY, 'Working…')
    other = await adapter.send_text(KEY, 'Still working; I will read your message when it is done.')
    assert other != progress and running.emulator.messages[int(progress)]['content'] == 'Working…'


async def test_a_progress_message_left_when_the_conversation_ends_is_deleted(running: Running) -> None:
    adapter = running.bot.adapter
    progress = await adapter.progress(KEY, 'Working…')
    adapter.progress_done(KEY, progress)
    await adapter.close_conversation(KEY)
    assert int(progress) not in running.emulator.messages


async def test_a_question_replaces_the_progress_message_with_its_buttons(running: Running) -> None:
    emu, adapter = running.emulator, running.bot.adapter
    progress = await adapter.progress(KEY, 'Checking…')
    adapter.progress_done(KEY, progress)
    asked = await adapter.ask(KEY, 'Go on?', [Option('yes', 'Yes'), Option('no', 'No')])
    assert asked == progress
    message = emu.messages[int(progress)]
    assert message['content'] == 'Go on?'
    assert [b['custom_id'] for b in message['components'][0]['components']] == [f'fb:{ANN}:yes', f'fb:{ANN}:no']


async def test_progress_of_an_expired_interaction_continues_in_a_new_channel_message(running: Running) -> None:
    emu, adapter = running.emulator, running.bot.adapter
    old = _Responder(None, time.monotonic() - 15 * 60)  # type: ignore[arg-type]  # its token is dead: never used
    adapter._via['@42'] = old  # a slash answer from a training started 15 minutes ago
    moved = await adapter.progress(KEY, 'Training job 7 is running… 90%', '@42')
    assert moved.isdigit() and emu.messages[int(moved)]['content'] == 'Training job 7 is running… 90%'
    adapter.progress_done(KEY, moved)
    assert await adapter.send_text(KEY, 'Training job 7 finished.') == moved
    assert emu.messages[int(moved)]['content'] == 'Training job 7 finished.'
