"""The receiving half of the connection: members' packets to DAVE-decrypted Opus frames per user."""

from __future__ import annotations

import asyncio
import os

import pytest

from integrations.discord.voice.connection import DaveVoiceConnection
from integrations.discord.voice.listen import Listener, Utterance
from integrations.discord.voice.rtp import SILENCE_FRAME, RtpHeader
from tests.integrations.discord.voice.dave_members import DaveMember
from tests.integrations.discord.voice.helpers import connect
from tests.integrations.discord.voice.voice_emulator import VoiceEmulator

CHANNEL = 700_000_000_000_000_123
BOT = 111


class Frames:
    """A :class:`Receiver` that keeps what it is given."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []
        self.dropped: list[int] = []
        self.left: list[int] = []

    def frame(self, user_id: int, sequence: int, opus: bytes) -> None:
        self.frames.append((user_id, opus))

    def undecryptable(self, user_id: int) -> None:
        self.dropped.append(user_id)

    def gone(self, user_id: int) -> None:
        self.left.append(user_id)


async def active(conn: DaveVoiceConnection) -> None:
    async with asyncio.timeout(5):
        while not conn.dave_ready:
            await asyncio.sleep(0.005)


async def wait_until(condition: object, timeout: float = 5.0) -> None:
    assert callable(condition)
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.mark.parametrize('mode', ['aead_aes256_gcm_rtpsize', 'aead_xchacha20_poly1305_rtpsize'])
async def test_each_members_frames_arrive_decrypted_as_theirs(mode: str) -> None:
    ann, ben = DaveMember(222, CHANNEL, ssrc=2), DaveMember(333, CHANNEL, ssrc=3)
    said = {
        ann.user_id: [bytes([0xFC, n]) * 20 for n in range(10)],
        ben.user_id: [bytes([0x78, n]) * 9 for n in range(7)],
    }
    received = Frames()
    async with VoiceEmulator(members=[ann, ben], modes=[mode]) as emu:
        conn = await connect(emu, user_id=BOT)
        try:
            await active(conn)
            conn.listen(received)
            await asyncio.gather(emu.speak(ann, [*said[ann.user_id], SILENCE_FRAME]), emu.speak(ben, said[ben.user_id]))
            await wait_until(lambda: len(received.frames) == 18)
        finally:
            await conn.disconnect()
    for user, frames in said.items():
        assert [f for u, f in received.frames if u == user and f != SILENCE_FRAME] == frames
    assert conn.users == {2: ann.user_id, 3: ben.user_id}
    assert received.dropped == []


async def test_garbage_foreign_and_unknown_packets_are_dropped_and_hearing_goes_on() -> None:
    ann = DaveMember(222, CHANNEL, ssrc=2)
    received = Frames()
    async with VoiceEmulator(members=[ann]) as emu:
        conn = await connect(emu, user_id=BOT)
        try:
            await active(conn)
            conn.listen(received)
            assert emu._udp is not None and emu._udp.transport is not None and emu.client is not None
            send = emu._udp.transport.sendto
            send(os.urandom(5), emu.client)  # too short
            send(bytes([0x80, 0xC8]) + os.urandom(40), emu.client)  # RTCP sender report
            send(RtpHeader(1, 960, 2).pack() + os.urandom(40), emu.client)  # fails transport decryption
            await emu.speak(DaveMember(555, CHANNEL, ssrc=9), [SILENCE_FRAME])  # SPEAKING for 555, plain silence
            await emu.send_json(5, {'user_id': '444', 'ssrc': 4, 'speaking': 1})
            await emu.send_json(5, {'ssrc': 'x'})  # malformed: ignored
            assert emu._cipher is not None
            forged = os.urandom(30) + b'\xfa\xfa'  # looks like a DAVE frame, made with no group's keys
            send(emu._cipher.encrypt(RtpHeader(1, 960, 4).pack(), forged, 99), emu.client)
            await emu.speak(ann, [b'\xfc\x01' * 10])
            await wait_until(lambda: (ann.user_id, b'\xfc\x01' * 10) in received.frames)
            assert received.dropped == [444]
            await emu.send_json(13, {'user_id': str(ann.user_id)})
            await wait_until(lambda: received.left == [ann.user_id])
            assert ann.user_id not in conn.users.values()
            assert conn.is_alive
            conn.listen(None)
            await emu.speak(ann, [b'\xfc\x02' * 10])
            await asyncio.sleep(0.1)
        finally:
            await conn.disconnect()
    assert (555, SILENCE_FRAME) in received.frames
    assert not any(f == b'\xfc\x02' * 10 for _, f in received.frames), 'heard after listening stopped'


async def test_a_member_who_leaves_is_forgotten_after_their_last_utterance() -> None:
    heard: list[Utterance] = []

    class Stream:
        sample_rate = 16_000

        def accept(self, pcm: bytes) -> str | None:
            return None

        def finish(self) -> str:
            return 'bye'

    async def on_utterance(said: Utterance) -> None:
        heard.append(said)

    listener = Listener(Stream, on_utterance, end_gap=5.0)
    import pathlib
    import tempfile

    from integrations.discord.voice.opus import opus_frames
    from tests.integrations.discord.voice.helpers import write_tone

    with tempfile.TemporaryDirectory() as tmp:
        frames = list(opus_frames(write_tone(pathlib.Path(tmp) / 't.wav', 0.2)))
    for n, frame in enumerate(frames):
        listener.frame(7, n, frame)
    await asyncio.sleep(0.3)
    listener.gone(7)
    await wait_until(lambda: heard and not listener._speakers)
    await listener.close()
    assert [(u.user_id, u.text) for u in heard] == [(7, 'bye')]
