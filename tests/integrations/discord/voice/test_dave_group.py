"""DAVE with other members in the call: our own external sender, real ``davey`` sessions for the members.

Every frame the bot sends is checked by the members: it must be the Opus silence frame (the documented
passthrough) or open with a member's keys. One member that does not follow the bot's commits keeps the
old epoch's keys and one that does has only the new ones, so each frame shows which keys it was sent with.
"""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import pytest

from integrations.discord.voice.connection import DaveVoiceConnection
from integrations.discord.voice.gateway import VoiceGateway
from integrations.discord.voice.opus import opus_frames
from integrations.discord.voice.rtp import SILENCE_FRAME
from integrations.discord.voice.udp import VoiceUdp
from tests.integrations.discord.voice.dave_members import DaveMember
from tests.integrations.discord.voice.helpers import connect, write_tone
from tests.integrations.discord.voice.voice_emulator import RtpPacket, VoiceEmulator

CHANNEL = 700_000_000_000_000_123
BOT = 111


def member(user_id: int, *, follow: bool = True) -> DaveMember:
    return DaveMember(user_id, CHANNEL, ssrc=user_id % 10_000, follow=follow)


async def wait_dave_active(conn: DaveVoiceConnection, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not conn.dave_ready:
            await asyncio.sleep(0.005)


def keys_used(packets: list[RtpPacket], old: DaveMember, new: DaveMember | None = None) -> list[str]:
    """Per voiced packet: 'old' or 'new' (whose keys open it) or 'CLEAR/UNREADABLE'; silence is skipped."""
    kinds = []
    for p in packets:
        if p.payload == SILENCE_FRAME:
            continue
        if old.can_open(BOT, p.payload):
            kinds.append('old')
        elif new is not None and new.can_open(BOT, p.payload):
            kinds.append('new')
        else:
            kinds.append('CLEAR/UNREADABLE')
    return kinds


def voiced_index(packets: list[RtpPacket], mark: int) -> int:
    """How many voiced packets arrived before packet number ``mark``."""
    return sum(1 for p in packets[:mark] if p.payload != SILENCE_FRAME)


@pytest.fixture
def long_tone(tmp_path: pathlib.Path) -> pathlib.Path:
    return write_tone(tmp_path / 'long.wav', 1.6)


async def test_audio_before_the_group_is_ready_is_held_never_sent_in_the_clear(tmp_path: pathlib.Path) -> None:
    tone = write_tone(tmp_path / 'tone.wav', 0.6)
    other = member(222)
    async with VoiceEmulator(members=[other], proposal_delay=0.3) as emu:
        conn = await connect(emu, user_id=BOT)
        try:
            assert not conn.dave_ready
            sent = await conn.play(opus_frames(tone))  # starts at once: the proposals come 300 ms later
            await emu.wait_packets(sent + 5)
        finally:
            await conn.disconnect()
    frames = list(opus_frames(tone))
    assert sent == len(frames), 'held frames were dropped instead of sent once the keys came'
    assert keys_used(emu.packets, other) == ['old'] * len(frames)
    assert [p.payload for p in emu.packets[-5:]] == [SILENCE_FRAME] * 5


async def test_keys_switch_exactly_when_the_transition_executes(long_tone: pathlib.Path) -> None:
    observer, joiner = member(222, follow=False), member(333)
    async with VoiceEmulator(members=[observer]) as emu:
        conn = await connect(emu, user_id=BOT)
        try:
            await wait_dave_active(conn)
            emu.auto_execute = False
            playing = asyncio.create_task(conn.play(opus_frames(long_tone)))
            await emu.wait_packets(10)
            await emu.add_member(joiner)
            await emu.wait_for(23, where=lambda r: r.d == {'transition_id': 2})
            await asyncio.sleep(0.3)  # the server waits for the other members: the old key stays in use
            await emu.execute(2)
            await emu.wait_packets(await playing + 5)
        finally:
            await conn.disconnect()
    kinds = keys_used(emu.packets, observer, joiner)
    switch = kinds.index('new')
    assert set(kinds) == {'old', 'new'} and kinds == ['old'] * switch + ['new'] * (len(kinds) - switch)
    assert switch >= voiced_index(emu.packets, emu.marks['execute 2']), 'new key used before op 22'
    assert switch - voiced_index(emu.packets, emu.marks['commit 2']) >= 10, 'old key not kept until op 22'


async def test_restarted_group_keeps_the_old_keys_until_it_executes(long_tone: pathlib.Path) -> None:
    observer, follower = member(222, follow=False), member(333)
    async with VoiceEmulator(members=[observer, follower]) as emu:
        conn = await connect(emu, user_id=BOT)
        try:
            await wait_dave_active(conn)
            emu.auto_execute = False
            playing = asyncio.create_task(conn.play(opus_frames(long_tone)))
            await emu.wait_packets(10)
            emu.marks['epoch'] = len(emu.packets)
            await emu.send_json(24, {'epoch': 1, 'protocol_version': 1})
            await emu.wait_for(23, where=lambda r: r.d == {'transition_id': 2})
            await asyncio.sleep(0.3)
            await emu.execute(2)
            await emu.wait_packets(await playing + 5)
        finally:
            await conn.disconnect()
    assert len(emu.ops(26)) == 2
    kinds = keys_used(emu.packets, observer, follower)
    switch = kinds.index('new')
    assert kinds == ['old'] * switch + ['new'] * (len(kinds) - switch)
    assert switch >= voiced_index(emu.packets, emu.marks['execute 2'])
    assert switch - voiced_index(emu.packets, emu.marks['epoch']) >= 10


async def test_failed_commit_is_reported_and_audio_is_held_until_the_bot_is_re_added(long_tone: pathlib.Path) -> None:
    observer, follower = member(222, follow=False), member(333)
    async with VoiceEmulator(members=[observer, follower]) as emu:
        conn = await connect(emu, user_id=BOT)
        try:
            await wait_dave_active(conn)
            playing = asyncio.create_task(conn.play(opus_frames(long_tone)))
            await emu.wait_packets(10)
            await emu.send_binary(29, (7).to_bytes(2, 'big') + b'not an MLS commit')
            invalid = await emu.wait_for(31)
            await emu.wait_for(26, count=2)
            sent = await playing
            await emu.wait_packets(sent + 5)
        finally:
            await conn.disconnect()
    assert invalid[0].d == {'transition_id': 7}
    kinds = keys_used(emu.packets, observer, follower)
    assert 'CLEAR/UNREADABLE' not in kinds and 'new' in kinds
    assert kinds == sorted(kinds, key=lambda k: k == 'new')


def record_sends(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """What the client sends, in its own order: ('speaking', ssrc) and ('rtp', ssrc)."""
    sent: list[tuple[str, int]] = []
    gateway_send, udp_send = VoiceGateway.send, VoiceUdp.send

    async def send(self: VoiceGateway, op: int, d: Any) -> None:
        if op == 5 and d['speaking']:
            sent.append(('speaking', d['ssrc']))
        await gateway_send(self, op, d)

    def send_packet(self: VoiceUdp, packet: bytes) -> None:
        sent.append(('rtp', int.from_bytes(packet[8:12], 'big')))
        udp_send(self, packet)

    monkeypatch.setattr(VoiceGateway, 'send', send)
    monkeypatch.setattr(VoiceUdp, 'send', send_packet)
    return sent


async def test_new_session_after_4006_announces_its_ssrc_and_regroups_before_audio(
    long_tone: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sends = record_sends(monkeypatch)
    observer, follower = member(222, follow=False), member(333)
    async with VoiceEmulator(members=[observer, follower]) as emu:
        conn = await connect(emu, user_id=BOT)
        try:
            await wait_dave_active(conn)
            first_ssrc = emu.ssrc
            playing = asyncio.create_task(conn.play(opus_frames(long_tone)))
            await emu.wait_packets(10)
            await emu.close_with(4006)
            sent = await playing
            await emu.wait_packets(sent + 5)
        finally:
            await conn.disconnect()
    second_ssrc = emu.ssrc
    assert (emu.identifies, emu.resumes) == (2, 0) and second_ssrc != first_ssrc
    ssrcs = [p.header.ssrc for p in emu.packets]
    first_new = ssrcs.index(second_ssrc)
    for ssrc in (first_ssrc, second_ssrc):
        assert sends.index(('speaking', ssrc)) < sends.index(('rtp', ssrc)), f'audio on {ssrc} before SPEAKING'
    assert set(ssrcs[first_new:]) == {second_ssrc}
    kinds = keys_used(emu.packets, observer, follower)
    assert 'CLEAR/UNREADABLE' not in kinds
    assert kinds == sorted(kinds, key=lambda k: k == 'new') and 'new' in kinds


@pytest.mark.parametrize('mode', ['aead_aes256_gcm_rtpsize', 'aead_xchacha20_poly1305_rtpsize'])
async def test_members_decrypt_and_decode_what_the_bot_says(tmp_path: pathlib.Path, mode: str) -> None:
    tone = write_tone(tmp_path / 'tone.wav', 0.4)
    other = member(222)
    async with VoiceEmulator(members=[other], modes=[mode]) as emu:
        conn = await connect(emu, user_id=BOT)
        try:
            await wait_dave_active(conn)
            sent = await conn.play(opus_frames(tone))
            await emu.wait_packets(sent + 5)
        finally:
            await conn.disconnect()
    from tests.integrations.discord.voice.test_connection import decode_opus

    opened = [other.open(BOT, p.payload) for p in emu.packets[:sent]]
    assert opened == list(opus_frames(tone))
    assert len(decode_opus(opened)) == sent


async def test_a_group_that_never_forms_gets_no_audio_at_all(tmp_path: pathlib.Path) -> None:
    tone = write_tone(tmp_path / 'tone.wav', 0.6)
    async with VoiceEmulator(members=[member(222)], auto_dave=False) as emu:  # no proposals ever
        conn = await connect(emu, user_id=BOT, dave_hold=0.2)
        try:
            started = asyncio.get_running_loop().time()
            await conn.play(opus_frames(tone))
            took = asyncio.get_running_loop().time() - started
            await asyncio.sleep(0.1)
        finally:
            await conn.disconnect()
    assert [p.payload for p in emu.packets] == [SILENCE_FRAME] * 5, 'audio left without DAVE keys'
    assert took < 0.6 + 0.2 + 0.3, 'held frames were not dropped after dave_hold'
