"""Talking with the bot in a voice channel, end to end.

A member of the call (a real ``davey`` session, welcomed into the bot's DAVE group by our own external
sender) says 안녕하세요 with espeak-ng; the bot, joined and listening through hikari, the Discord
emulator and the voice emulator, opens the transport encryption and DAVE, recognises the utterance
with the Korean vosk model and a grammar, hands it to the ``chat`` flow as a message of that member,
and answers in the text channel and aloud; the test decrypts and recognises the spoken answer.
"""

from __future__ import annotations

import asyncio
import pathlib

import pytest

from integrations.discord.voice.manager import VoiceManager
from integrations.discord.voice.opus import opus_frames
from integrations.discord.voice.rtp import SILENCE_FRAME
from integrations.speech.stt import VoskRecognizer
from tests.integrations.discord.voice.chat_plugin import REPLY
from tests.integrations.discord.voice.dave_members import DaveMember
from tests.integrations.discord.voice.helpers import opus_to_pcm
from tests.integrations.discord.voice.world import ANN, BEN, BOT, GRAMMAR, GUILD, TEXT, call, speech_frames
from tests.integrations.speech.helpers import ko_model_dir, speak_ko


async def recognise(packets: list[bytes], member: DaveMember) -> str:
    """What the bot said, as the member hears it: DAVE-decrypted, decoded, recognised."""
    opus = [member.open(BOT, p) for p in packets if p != SILENCE_FRAME]
    model = ko_model_dir()
    result = await VoskRecognizer(model.parent, {'ko': model.name}).recognize(
        opus_to_pcm(opus), 16_000, 'ko', grammar=GRAMMAR
    )
    return result.text


@pytest.mark.parametrize('mode', ['aead_aes256_gcm_rtpsize', 'aead_xchacha20_poly1305_rtpsize'])
async def test_member_speaks_and_the_bot_answers_aloud_and_in_text(tmp_path: pathlib.Path, mode: str) -> None:
    async with call(tmp_path, mode) as c:
        assert (await c.say(ANN, '!join')).startswith('Joined')
        assert '🎧 I am listening' in await c.say(ANN, '!listen')
        assert c.bot.adapter.voice is not None
        before = len(c.replies())

        await c.voice.speak(c.ann, speech_frames(tmp_path, '안녕하세요'))
        calls = await c.discord.wait_for_call('POST', rf'/channels/{TEXT}/messages', count=before + 1, timeout=20)
        assert calls[before].content == REPLY
        assert c.heard == [(str(ANN), '안녕하세요')]
        await c.voice.wait_silence(timeout=20, quiet=0.3)
        packets = [p.payload for p in c.voice.packets]

        assert c.voice.undecryptable == 0
        assert all(p == SILENCE_FRAME or p.endswith(b'\xfa\xfa') for p in packets)
        assert await recognise(packets, c.ann) == REPLY
        assert await c.say(ANN, '!leave') == 'Left the voice channel.'
    assert not list(tmp_path.rglob(f'{ANN}-*.wav')), 'audio was stored without being configured'


async def test_the_bot_stops_speaking_when_the_member_it_answers_talks(tmp_path: pathlib.Path) -> None:
    async with call(tmp_path, 'aead_aes256_gcm_rtpsize') as c:
        await c.say(ANN, '!join')
        await c.say(ANN, '!listen')
        manager = c.bot.adapter.voice
        assert isinstance(manager, VoiceManager)
        long = speak_ko('하나 둘 셋 하나 둘 셋 하나 둘 셋 하나 둘 셋', tmp_path / 'long.wav')
        speaking = asyncio.create_task(manager.speak(GUILD, long, user_id=ANN))
        await c.voice.wait_packets(10)
        await c.voice.speak(c.ben, speech_frames(tmp_path, '여덟'))  # someone else: the answer to Ann goes on
        assert not speaking.done()
        await c.voice.speak(c.ann, speech_frames(tmp_path, '일곱'))
        played = await asyncio.wait_for(speaking, 5)
        assert 10 <= played < len(list(opus_frames(long))) // 2


async def test_two_members_talking_at_once_are_each_heard_as_themselves(tmp_path: pathlib.Path) -> None:
    async with call(tmp_path, 'aead_xchacha20_poly1305_rtpsize') as c:
        assert 'I am listening' in await c.say(ANN, '!join listen=yes')
        before = len(c.replies())
        frames = speech_frames(tmp_path, '안녕하세요'), speech_frames(tmp_path, '일곱')
        await asyncio.gather(c.voice.speak(c.ann, frames[0]), c.voice.speak(c.ben, frames[1]))
        await c.discord.wait_for_call('POST', rf'/channels/{TEXT}/messages', count=before + 2, timeout=20)
    assert sorted(c.heard) == [(str(ANN), '안녕하세요'), (str(BEN), '일곱')]


async def test_listen_before_joining_says_what_to_do(tmp_path: pathlib.Path) -> None:
    async with call(tmp_path, 'aead_aes256_gcm_rtpsize') as c:
        assert await c.say(ANN, '!listen') == 'I am not in a voice channel in this server; ask me to join one first.'


async def test_listen_off_and_leave_stop_hearing(tmp_path: pathlib.Path) -> None:
    async with call(tmp_path, 'aead_aes256_gcm_rtpsize') as c:
        await c.say(ANN, '!join')
        await c.say(ANN, '!listen')
        manager = c.bot.adapter.voice
        assert isinstance(manager, VoiceManager) and manager.is_listening(GUILD)
        assert await c.say(ANN, '!listen off') == 'I stopped listening.'
        assert not manager.is_listening(GUILD)
        await c.voice.speak(c.ann, speech_frames(tmp_path, '안녕하세요'))
        await asyncio.sleep(1.0)
        assert c.heard == []
        await c.say(ANN, '!listen')
        assert await c.say(ANN, '!leave') == 'Left the voice channel.'
        assert not manager.is_listening(GUILD)


async def test_utterances_are_kept_only_where_configured(tmp_path: pathlib.Path) -> None:
    record = tmp_path / 'heard'
    async with call(tmp_path, 'aead_aes256_gcm_rtpsize', listen_record_dir=str(record)) as c:
        await c.say(ANN, '!join')
        await c.say(ANN, '!listen')
        before = len(c.replies())
        await c.voice.speak(c.ann, speech_frames(tmp_path, '안녕하세요'))
        await c.discord.wait_for_call('POST', rf'/channels/{TEXT}/messages', count=before + 1, timeout=20)
    assert len(list(record.glob(f'{ANN}-*.wav'))) == 1
