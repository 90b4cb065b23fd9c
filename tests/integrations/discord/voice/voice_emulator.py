"""A Discord voice server on loopback: voice gateway v8 websocket plus the UDP media socket.

It plays the server side of the handshake (HELLO, READY, IP discovery, SESSION_DESCRIPTION,
RESUMED), decrypts the transport layer of every RTP packet it receives and records it, and can
take a real DAVE session to the active state, either with the recorded messages of
``<repo>/../shared/fixtures/dave/`` or, with ``members``, as a voice server of its own: it signs the
proposals as the group's external sender (:mod:`.dave_members`), welcomes the other members (real
``davey`` sessions) with the bot's commit, holds op 22 when asked, and lets members speak to the bot.

Usage::

    async with VoiceEmulator(dave=load_dave_fixtures()) as emu:
        conn = await DaveVoiceConnection.initialize(..., endpoint=emu.endpoint, secure=False)
        await emu.wait_for(5)          # SPEAKING
        emu.packets                     # decrypted RTP packets
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any, Self, cast

import attrs
from aiohttp import WSMsgType, web

from integrations.discord.voice.crypto import MODES, TransportCipher, cipher_for
from integrations.discord.voice.rtp import (
    DISCOVERY_SIZE,
    FRAME_SAMPLES,
    SILENCE_FRAME,
    RtpHeader,
    discovery_response,
    parse_discovery_request,
)
from tests.integrations.discord.voice.dave_members import DaveMember, ExternalSender
from tests.loopback import GatewayServer

__all__ = [
    'FIXTURES',
    'DaveFixtures',
    'Received',
    'RtpPacket',
    'VoiceEmulator',
    'load_dave_fixtures',
    'split_commit_welcome',
]

FIXTURES = pathlib.Path(__file__).resolve().parents[4].parent / 'shared' / 'fixtures' / 'dave'
"""``<repo>/../shared/fixtures/dave``: recorded DAVE gateway messages (see its README)."""


@attrs.frozen
class DaveFixtures:
    """Recorded DAVE messages and the ids they belong to."""

    external_sender: bytes
    proposals: bytes
    channel_id: int
    bot_user_id: int
    other_user_id: int


def load_dave_fixtures() -> DaveFixtures | None:
    """The recorded DAVE messages, or ``None`` when the shared fixtures folder is absent."""
    if not (FIXTURES / 'ids.json').is_file():
        return None
    ids = json.loads((FIXTURES / 'ids.json').read_text())
    return DaveFixtures(
        external_sender=(FIXTURES / 'external_sender.bin').read_bytes(),
        proposals=(FIXTURES / 'appending_proposals.bin').read_bytes(),
        channel_id=int(ids['channel_id']),
        bot_user_id=int(ids['bot_user_id']),
        other_user_id=int(ids['other_user_id']),
    )


@attrs.frozen
class Received:
    """A message the client sent: JSON (``d`` set) or binary (``payload`` set)."""

    op: int
    d: dict[str, Any] | None = None
    payload: bytes | None = None
    session: int = 0
    """Which websocket connection (1, 2, ...) it arrived on."""


@attrs.frozen
class RtpPacket:
    """A media packet after transport decryption."""

    arrival: float
    header: RtpHeader
    payload: bytes
    session: int


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    """An MLS (RFC 9420) variable-length integer at ``at``: (value, position after it)."""
    size = 1 << (data[at] >> 6)
    if size > 4 or at + size > len(data):
        raise ValueError('bad varint')
    value = int.from_bytes(data[at : at + size], 'big') & ((1 << (8 * size - 2)) - 1)
    return value, at + size


def split_commit_welcome(payload: bytes) -> tuple[bytes, bytes | None]:
    """Split op 28's payload into the MLS commit and the optional welcome that follows it.

    The welcome (RFC 9420 ``Welcome``) is a cipher suite (2 for DAVE) and two length-prefixed vectors
    that end exactly at the end of the payload; the commit is what precedes it.
    """
    start = payload.find(b'\x00\x02', 1)
    while start > 0:
        try:
            at = start + 2
            for _ in range(2):  # secrets, encrypted group info
                length, at = _read_varint(payload, at)
                at += length
            if at == len(payload):
                return payload[:start], payload[start:]
        except (ValueError, IndexError):
            pass
        start = payload.find(b'\x00\x02', start + 1)
    return payload, None


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, emulator: VoiceEmulator) -> None:
        self.emulator = emulator
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        if len(data) == DISCOVERY_SIZE and data[:2] == b'\x00\x01':
            ssrc = parse_discovery_request(data)
            self.emulator.discoveries += 1
            self.emulator.client = addr
            self.transport.sendto(discovery_response(ssrc, addr[0], addr[1]), addr)
            return
        self.emulator._media(data)


class VoiceEmulator(GatewayServer):
    """One voice server: every websocket connection is a numbered session of the same call.

    :param modes: encryption modes offered in READY.
    :param dave: recorded DAVE messages; with them the emulator announces DAVE v1 and drives the
        group to active automatically. ``None``: transport encryption only (DAVE version 0).
    :param require_dave: close with 4017 when IDENTIFY does not offer DAVE, as Discord does.
    :param auto_dave: answer key packages with proposals and commits with execute-transition.
    """

    def __init__(
        self,
        *,
        modes: Sequence[str] = MODES,
        dave: DaveFixtures | None = None,
        require_dave: bool = True,
        auto_dave: bool = True,
        heartbeat_interval: float = 41_250,
        ssrc: int = 4242,
        members: Sequence[DaveMember] = (),
        auto_execute: bool = True,
        proposal_delay: float = 0.0,
    ) -> None:
        """
        :param members: other members of the call (DAVE v1 with our own external sender).
        :param auto_execute: answer op 23 with op 22 at once; ``False``: the test calls :meth:`execute`.
        :param proposal_delay: seconds between the bot's key package and the proposals (a slow server).
        """
        super().__init__()
        self.members = list(members)
        self.external = ExternalSender() if members else None
        self.auto_execute = auto_execute
        self.proposal_delay = proposal_delay
        self.epoch = 0
        """The epoch of the bot's group as far as the server knows (commits announced)."""
        self._joining: list[DaveMember] = []
        self.client: tuple[str, int] | None = None
        """The bot's UDP address (from IP discovery): where members' audio goes."""
        self.marks: dict[str, int] = {}
        """Named points in the packet stream: ``len(packets)`` when the server sent something."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._member_seq: dict[int, int] = {}
        self.modes = list(modes)
        self.dave = dave
        self.require_dave = require_dave
        self.auto_dave = auto_dave
        self.heartbeat_interval = heartbeat_interval
        self.ssrc = ssrc
        self._base_ssrc = ssrc
        self.answer_identify = True
        """``False``: a voice server that never answers IDENTIFY (handshake timeouts)."""
        self.received: list[Received] = []
        self.packets: list[RtpPacket] = []
        self.undecryptable = 0
        self.discoveries = 0
        self.sessions = 0
        self.identifies = 0
        self.resumes = 0
        self.mode: str | None = None
        self.session_id: str | None = None
        self.token: str | None = None
        self._cipher: TransportCipher | None = None
        self._seq = 0
        self._transition = 0
        self._request: web.Request | None = None
        self._udp: _Udp | None = None
        self._changed = asyncio.Condition()
        self.udp_port = 0

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get('/', self._gateway)
        return app

    async def start(self) -> Self:
        await super().start()
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=('127.0.0.1', 0))
        self._udp = protocol
        assert protocol.transport is not None
        self.udp_port = protocol.transport.get_extra_info('sockname')[1]
        return self

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await super().close()
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()

    @property
    def endpoint(self) -> str:
        """``host:port`` as VOICE_SERVER_UPDATE gives it."""
        return f'127.0.0.1:{self.port}'

    # -- observing ----------------------------------------------------------------------------------------------

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def ops(self, op: int) -> list[Received]:
        return [r for r in self.received if r.op == op]

    async def wait_for(
        self, op: int, *, count: int = 1, where: Callable[[Received], bool] | None = None, timeout: float = 10.0
    ) -> list[Received]:
        """Wait until the client sent ``count`` messages with ``op`` (matching ``where``); return them."""

        def matching() -> list[Received]:
            return [r for r in self.ops(op) if where is None or where(r)]

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(matching()) >= count), timeout)
        return matching()

    async def wait_packets(self, count: int, timeout: float = 10.0) -> list[RtpPacket]:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.packets) >= count), timeout)
        return self.packets

    async def wait_silence(self, timeout: float = 10.0, quiet: float = 0.2) -> list[RtpPacket]:
        """Wait until the stream has paused for ``quiet`` seconds after at least one packet."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.packets and time.perf_counter() - self.packets[-1].arrival > quiet:
                return self.packets
            await asyncio.sleep(0.05)
        raise TimeoutError('the RTP stream did not pause')

    # -- acting -------------------------------------------------------------------------------------------------

    async def send_json(self, op: int, d: Any) -> None:
        assert self._ws is not None
        self._seq += 1
        await self._ws.send_str(json.dumps({'op': op, 'd': d, 'seq': self._seq}))

    async def send_binary(self, op: int, payload: bytes) -> None:
        assert self._ws is not None
        self._seq += 1
        await self._ws.send_bytes(self._seq.to_bytes(2, 'big') + bytes([op]) + payload)

    async def execute(self, transition: int) -> None:
        """Send op 22 (execute transition), marking the packet count as ``execute <transition>``."""
        self.marks[f'execute {transition}'] = len(self.packets)
        await self.send_json(22, {'transition_id': transition})

    async def add_member(self, member: DaveMember) -> None:
        """A member joins the call: op 11, then proposals adding it at the current epoch."""
        assert self.external is not None
        self.members.append(member)
        await self.send_json(11, {'user_ids': [str(member.user_id)]})
        self._joining = [member]
        proposals = self.external.append(member.channel_id, self.epoch, [member.key_package(self.external.package())])
        self.marks[f'add {member.user_id}'] = len(self.packets)
        await self.send_binary(27, proposals)

    async def speak(self, member: DaveMember, frames: Sequence[bytes], *, paced: bool = True) -> float:
        """``member`` sends ``frames`` to the bot as Discord would (SPEAKING, then RTP with a header
        extension, DAVE-encrypted except silence); return when the last voiced frame left."""
        assert self._udp is not None and self._udp.transport is not None and self.client is not None
        assert self._cipher is not None
        await self.send_json(5, {'user_id': str(member.user_id), 'ssrc': member.ssrc, 'speaking': 1})
        loop = asyncio.get_running_loop()
        start = loop.time()
        last_voiced = time.perf_counter()
        for n, frame in enumerate(frames):
            if paced:
                delay = start + n * 0.02 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            seq = self._member_seq.get(member.ssrc, 0)
            self._member_seq[member.ssrc] = seq + 1
            header = RtpHeader(seq & 0xFFFF, (seq * FRAME_SAMPLES) & 0xFFFFFFFF, member.ssrc).pack()
            header = bytes([header[0] | 0x10]) + header[1:] + b'\xbe\xde\x00\x01'  # one 4-byte extension word
            payload = frame if frame == SILENCE_FRAME else member.encrypt(frame)
            self._udp.transport.sendto(self._cipher.encrypt(header, b'\x10\x01\x00\x00' + payload, seq), self.client)
            if frame != SILENCE_FRAME:
                last_voiced = time.perf_counter()
        return last_voiced

    async def close_with(self, code: int) -> None:
        """Close the websocket with a voice close code."""
        assert self._ws is not None
        await self._ws.close(code=code)

    def drop(self) -> None:
        """Cut the TCP connection under the websocket without a close frame (a network drop)."""
        assert self._request is not None and self._request.transport is not None
        self._request.transport.abort()

    # -- server -------------------------------------------------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _media(self, data: bytes) -> None:
        try:
            header = RtpHeader.unpack(data)
            assert self._cipher is not None
            payload = self._cipher.decrypt(data)
        except Exception:
            self.undecryptable += 1
            return
        self.packets.append(RtpPacket(time.perf_counter(), header, payload, self.sessions))
        asyncio.get_running_loop().create_task(self._notify())

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws, self._request = ws, request
        self.sessions += 1
        session = self.sessions
        await self.send_json(8, {'heartbeat_interval': self.heartbeat_interval, 'v': 8})
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                message = json.loads(msg.data)
                self.received.append(Received(message['op'], d=message.get('d'), session=session))
                await self._notify()
                await self._on_json(message['op'], message.get('d') or {})
            elif msg.type == WSMsgType.BINARY:
                self.received.append(Received(msg.data[0], payload=msg.data[1:], session=session))
                await self._notify()
                await self._on_binary(msg.data[0], msg.data[1:])
        return ws

    async def _on_json(self, op: int, d: dict[str, Any]) -> None:
        if op == 0:
            self.identifies += 1
            self.session_id, self.token = d['session_id'], d['token']
            if not self.answer_identify:
                return
            self.ssrc = self._base_ssrc + self.identifies - 1  # every session has its own SSRC
            if self.require_dave and not d.get('max_dave_protocol_version'):
                await self.close_with(4017)
                return
            ready = {'ssrc': self.ssrc, 'ip': '127.0.0.1', 'port': self.udp_port, 'modes': self.modes}
            await self.send_json(2, {**ready, 'heartbeat_interval': self.heartbeat_interval})
        elif op == 1:
            self.mode = d['data']['mode']
            if self.mode not in self.modes:
                await self.close_with(4016)
                return
            key = os.urandom(32)
            self._cipher = cipher_for(self.mode, key)
            version = 1 if self.dave is not None or self.external is not None else 0
            await self.send_json(4, {'mode': self.mode, 'secret_key': list(key), 'dave_protocol_version': version})
            if self.external is not None:
                await self.send_json(11, {'user_ids': [str(m.user_id) for m in self.members]})
                await self.send_binary(25, self.external.package())
            elif self.dave is not None:
                await self.send_json(11, {'user_ids': [str(self.dave.other_user_id)]})
                await self.send_binary(25, self.dave.external_sender)
        elif op == 3:
            await self.send_json(6, {'t': d.get('t')})
        elif op == 7:
            self.resumes += 1
            if d.get('session_id') != self.session_id or d.get('token') != self.token:
                await self.close_with(4006)
                return
            await self.send_json(9, None)
        elif op == 23 and self.auto_dave and self.auto_execute:
            await self.execute(d['transition_id'])

    async def _on_binary(self, op: int, payload: bytes) -> None:
        if self.external is not None:
            await self._serve_group(op, payload)
            return
        if not self.auto_dave or self.dave is None:
            return
        if op == 26:  # key package: add the other member, as the real server would
            await self.send_binary(27, b'\x00' + self.dave.proposals)
        elif op == 28:  # commit (+ welcome): announce it back as a transition
            commit, _ = split_commit_welcome(payload)
            self._transition += 1
            await self.send_binary(29, self._transition.to_bytes(2, 'big') + commit)

    async def _serve_group(self, op: int, payload: bytes) -> None:
        """The voice server's side of MLS with our own external sender and members."""
        assert self.external is not None
        if op == 26 and self.auto_dave:  # a (new) key package: a new group with the bot, the followers join it
            self.epoch = 0
            self.spawn(self._propose_group())
        elif op == 28:
            commit, welcome = split_commit_welcome(payload)
            for member in self.members:
                if member in self._joining:
                    if welcome is not None:
                        member.session.process_welcome(welcome)
                elif member.follow and member.session.ready:
                    member.session.process_commit(commit)
            self._joining = []
            self.epoch += 1
            self._transition += 1
            self.marks[f'commit {self._transition}'] = len(self.packets)
            await self.send_binary(29, self._transition.to_bytes(2, 'big') + commit)

    async def _propose_group(self) -> None:
        assert self.external is not None
        if self.proposal_delay:
            await asyncio.sleep(self.proposal_delay)
        joining = [m for m in self.members if m.follow or not m.session.ready]
        package = self.external.package()
        packages = [m.key_package(package, fresh=m.session.ready) for m in joining]
        self._joining = joining
        channel = joining[0].channel_id if joining else 0
        await self.send_binary(27, self.external.append(channel, 0, packages))
