"""The voice connection against the loopback voice server: handshake, media, DAVE, resume, close codes."""

from __future__ import annotations

import asyncio
import itertools
import pathlib
from typing import Any, cast

import av
import hikari
import pytest
from hikari.events import voice_events

from integrations.discord.voice.connection import DaveVoiceConnection, VoiceConnectError
from integrations.discord.voice.crypto import AES_GCM, XCHACHA
from integrations.discord.voice.opus import opus_frames
from integrations.discord.voice.rtp import FRAME_SAMPLES, PAYLOAD_TYPE, SILENCE_FRAME
from tests.integrations.discord.voice.helpers import Closed, connect, write_tone
from tests.integrations.discord.voice.voice_emulator import RtpPacket, VoiceEmulator, load_dave_fixtures

DAVE = load_dave_fixtures()
needs_dave = pytest.mark.skipif(DAVE is None, reason='recorded DAVE messages absent: <repo>/../shared/fixtures/dave/')


@pytest.fixture
def tone(tmp_path: pathlib.Path) -> pathlib.Path:
    return write_tone(tmp_path / 'tone.wav', 0.5)


def assert_contiguous(packets: list[RtpPacket], ssrc: int) -> None:
    for before, after in itertools.pairwise(packets):
        assert after.header.sequence == (before.header.sequence + 1) & 0xFFFF
        assert after.header.timestamp == (before.header.timestamp + FRAME_SAMPLES) & 0xFFFFFFFF
    assert {p.header.ssrc for p in packets} == {ssrc}
    assert {p.header.payload_type for p in packets} == {PAYLOAD_TYPE}


def decode_opus(payloads: list[bytes]) -> list[av.AudioFrame]:
    decoder = av.CodecContext.create('opus', 'r')
    assert isinstance(decoder, av.AudioCodecContext)
    decoder.sample_rate, decoder.layout = 48_000, 'stereo'
    frames: list[av.AudioFrame] = []
    for payload in payloads:
        frames.extend(decoder.decode(av.Packet(payload)))
    return frames


async def wait_dave_active(conn: DaveVoiceConnection, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not conn.dave_ready:
            await asyncio.sleep(0.01)


@pytest.mark.parametrize(('offered', 'chosen'), [([XCHACHA, AES_GCM], AES_GCM), ([XCHACHA], XCHACHA)])
async def test_handshake_selects_mode_and_streams_paced_decryptable_opus(
    tone: pathlib.Path, offered: list[str], chosen: str
) -> None:
    async with VoiceEmulator(modes=offered) as emu:
        conn = await connect(emu)
        try:
            identify = emu.ops(0)[0].d
            assert identify is not None
            assert identify['max_dave_protocol_version'] == 1
            assert (identify['server_id'], identify['user_id'], identify['token']) == ('333', '111', 'voice-token')
            select = emu.ops(1)[0].d
            assert select is not None and select['data']['mode'] == chosen and select['protocol'] == 'udp'
            assert (select['data']['address'], emu.discoveries) == ('127.0.0.1', 1)
            assert conn.mode == chosen

            sent = await conn.play(opus_frames(tone))
            await emu.wait_packets(sent + 5)
        finally:
            await conn.disconnect()

    packets = emu.packets
    assert sent == len(list(opus_frames(tone))) and len(packets) == sent + 5 and emu.undecryptable == 0
    assert_contiguous(packets, emu.ssrc)
    assert [p.payload for p in packets[-5:]] == [SILENCE_FRAME] * 5
    assert all(p.payload != SILENCE_FRAME for p in packets[:-5])
    span = packets[-1].arrival - packets[0].arrival
    assert span >= 0.9 * 0.02 * (len(packets) - 1), 'packets were burst instead of paced'
    assert 30 <= (len(packets) - 1) / span <= 55
    decoded = decode_opus([p.payload for p in packets[:-5]])
    assert decoded and all(f.sample_rate == 48_000 and f.samples == FRAME_SAMPLES for f in decoded)
    assert [r.d['speaking'] for r in emu.ops(5) if r.d] == [1, 0]


async def test_heartbeats_carry_the_last_sequence_number() -> None:
    async with VoiceEmulator(heartbeat_interval=50) as emu:
        conn = await connect(emu)
        try:
            beats = await emu.wait_for(3, count=2)
        finally:
            await conn.disconnect()
    acks = [b.d['seq_ack'] for b in beats if b.d]
    assert acks[0] >= 3 and acks[1] > acks[0]  # HELLO, READY, SESSION_DESCRIPTION, then each HEARTBEAT_ACK


async def test_channel_requiring_dave_refuses_client_without_it_with_clear_error() -> None:
    async with VoiceEmulator() as emu:
        with pytest.raises(VoiceConnectError, match='DAVE') as caught:
            await connect(emu, dave=False)
    assert caught.value.close_code == 4017
    assert (emu.ops(0)[0].d or {}).get('max_dave_protocol_version') == 0


async def test_unknown_option_is_rejected_before_connecting() -> None:
    async with VoiceEmulator() as emu:
        with pytest.raises(TypeError, match='colour'):
            await connect(emu, colour='blue')
        assert emu.sessions == 0


async def test_unreachable_voice_server_gives_clear_error() -> None:
    emu = await VoiceEmulator().start()
    await emu.close()
    with pytest.raises(VoiceConnectError, match='cannot reach voice server'):
        await connect(emu)


@needs_dave
async def test_dave_session_goes_active_and_every_voice_frame_is_end_to_end_encrypted(tone: pathlib.Path) -> None:
    async with VoiceEmulator(dave=DAVE) as emu:
        conn = await connect(emu)
        try:
            await wait_dave_active(conn)
            assert conn.dave_protocol_version == 1
            assert [r.d for r in emu.ops(23)] == [{'transition_id': 1}]
            sent = await conn.play(opus_frames(tone))
            await emu.wait_packets(sent + 5)
        finally:
            await conn.disconnect()
    packets = emu.packets
    assert len(packets) == len(list(opus_frames(tone))) + 5
    assert_contiguous(packets, emu.ssrc)
    assert all(p.payload.endswith(b'\xfa\xfa') for p in packets[:-5])
    assert [p.payload for p in packets[-5:]] == [SILENCE_FRAME] * 5


@needs_dave
async def test_new_epoch_is_answered_with_a_new_key_package_and_the_group_recovers(tone: pathlib.Path) -> None:
    async with VoiceEmulator(dave=DAVE) as emu:
        conn = await connect(emu)
        try:
            await wait_dave_active(conn)
            await emu.send_json(24, {'epoch': 1, 'protocol_version': 1})
            packages = await emu.wait_for(26, count=2)
            assert packages[0].payload != packages[1].payload
            await emu.wait_for(23, count=2)
            await wait_dave_active(conn)
            await conn.play(opus_frames(tone))
        finally:
            await conn.disconnect()
    assert all(p.payload.endswith(b'\xfa\xfa') for p in emu.packets[:-5])


@needs_dave
async def test_failed_commit_is_reported_and_answered_with_a_new_key_package() -> None:
    async with VoiceEmulator(dave=DAVE, auto_dave=True) as emu:
        conn = await connect(emu)
        try:
            await wait_dave_active(conn)
            emu.auto_dave = False
            await emu.send_binary(29, (7).to_bytes(2, 'big') + b'not an MLS commit')
            # a commit for the group in use is applied when its transition executes (old keys until then)
            await emu.wait_for(23, where=lambda r: r.d == {'transition_id': 7})
            assert conn.dave_ready
            await emu.send_json(22, {'transition_id': 7})
            invalid = await emu.wait_for(31)
            packages = await emu.wait_for(26, count=2)
        finally:
            await conn.disconnect()
    assert invalid[0].d == {'transition_id': 7}
    assert emu.received.index(invalid[0]) < emu.received.index(packages[1])
    assert not conn.dave_ready


@pytest.mark.parametrize('how', ['network drop', 'close 4015'])
async def test_lost_websocket_is_resumed_and_playback_continues(tmp_path: pathlib.Path, how: str) -> None:
    audio = write_tone(tmp_path / 'long.wav', 1.0)
    async with VoiceEmulator() as emu:
        conn = await connect(emu)
        try:
            playing = asyncio.create_task(conn.play(opus_frames(audio)))
            await emu.wait_packets(10)
            if how == 'network drop':
                emu.drop()
            else:
                await emu.close_with(4015)
            resume = (await emu.wait_for(7))[0].d
            sent = await playing
            await emu.wait_packets(sent + 5)
            assert conn.is_alive
        finally:
            await conn.disconnect()
    assert resume is not None
    assert (resume['server_id'], resume['session_id'], resume['token']) == ('333', 'voice-session', 'voice-token')
    assert resume['seq_ack'] == 3  # HELLO, READY, SESSION_DESCRIPTION of the lost socket
    assert (emu.identifies, emu.resumes, emu.sessions) == (1, 1, 2)
    assert sent == len(list(opus_frames(audio))) and len(emu.packets) == sent + 5
    assert_contiguous(emu.packets, emu.ssrc)


async def test_invalid_session_4006_starts_a_new_session(tone: pathlib.Path) -> None:
    async with VoiceEmulator() as emu:
        conn = await connect(emu)
        try:
            await emu.close_with(4006)
            await emu.wait_for(1, count=2)  # a second SELECT_PROTOCOL: identified afresh
            await emu.wait_packets(await conn.play(opus_frames(tone)) + 5)
        finally:
            await conn.disconnect()
    assert (emu.identifies, emu.resumes, emu.discoveries) == (2, 0, 2)
    assert len(emu.packets) == len(list(opus_frames(tone))) + 5 and {p.session for p in emu.packets} == {2}


async def test_disconnected_4014_closes_the_connection_and_tells_hikari() -> None:
    closed = Closed()
    async with VoiceEmulator() as emu:
        conn = await connect(emu, on_close=closed)
        await emu.close_with(4014)
        await asyncio.wait_for(conn.join(), 5)
    assert closed.calls == [conn] and not conn.is_alive


async def test_new_voice_server_gets_a_new_session(tone: pathlib.Path) -> None:
    async with VoiceEmulator() as first, VoiceEmulator(ssrc=777) as second:
        conn = await connect(first)
        try:
            event = voice_events.VoiceServerUpdateEvent(
                app=cast(Any, None),
                shard=cast(Any, None),
                guild_id=hikari.Snowflake(333),
                token='new-token',
                raw_endpoint=second.endpoint,
            )
            await conn.notify(event)
            await second.wait_for(1)
            await second.wait_packets(await conn.play(opus_frames(tone)) + 5)
        finally:
            await conn.disconnect()
    assert (second.ops(0)[0].d or {}).get('token') == 'new-token'
    assert len(second.packets) == len(list(opus_frames(tone))) + 5 and not first.packets
    assert_contiguous(second.packets, 777)


@needs_dave
async def test_downgrade_transition_stops_end_to_end_encryption(tone: pathlib.Path) -> None:
    async with VoiceEmulator(dave=DAVE) as emu:
        conn = await connect(emu)
        try:
            await wait_dave_active(conn)
            await emu.send_json(21, {'transition_id': 9, 'protocol_version': 0})
            await emu.wait_for(23, where=lambda r: r.d == {'transition_id': 9})
            await emu.send_json(22, {'transition_id': 9})
            async with asyncio.timeout(5):
                while conn.dave_protocol_version != 0:
                    await asyncio.sleep(0.01)
            sent = await conn.play(opus_frames(tone))
            await emu.wait_packets(sent + 5)
        finally:
            await conn.disconnect()
    assert not any(p.payload.endswith(b'\xfa\xfa') for p in emu.packets)
    assert decode_opus([p.payload for p in emu.packets[:sent]])
