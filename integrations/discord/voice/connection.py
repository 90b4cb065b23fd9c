"""Our ``hikari.api.VoiceConnection``: voice gateway v8, UDP, transport encryption and DAVE, for playback.

hikari finds the voice server (``bot.voice.connect_to``) and hands over here; this class holds
the session: it identifies, discovers its address, selects the encryption mode, keeps the DAVE
group in step, resumes after a dropped websocket and starts a new session when Discord moves it
to another voice server. Use it through ``bot.voice.connect_to(guild, channel, DaveVoiceConnection)``
or, more simply, :class:`integrations.discord.voice.manager.VoiceManager`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

import aiohttp
import davey
import hikari
from hikari.api import VoiceComponent, VoiceConnection
from hikari.events import voice_events
from typing_extensions import override

from engine.errors import FlowbotError
from engine.i18n import _
from integrations.discord.voice import player
from integrations.discord.voice.crypto import TransportCipher, choose_mode, cipher_for
from integrations.discord.voice.dave import BinaryOut, DaveOp, DaveState, JsonOut, Outgoing
from integrations.discord.voice.gateway import CloseAction, VoiceGateway, VoiceOp, describe_close, gateway_url
from integrations.discord.voice.rtp import FRAME_SAMPLES, RtpHeader, split_incoming
from integrations.discord.voice.udp import VoiceUdp

__all__ = ['DaveVoiceConnection', 'Receiver', 'VoiceConnectError']

_log = logging.getLogger(__name__)

_OPTIONS = ('secure', 'dave', 'timeout', 'handshake_timeout', 'dave_hold')
_UNMAPPED_SSRCS = 16
_UNMAPPED_FRAMES = 25
"""Frames (0.5 s) kept per SSRC whose SPEAKING is late, for at most this many SSRCs."""

RECONNECT_ATTEMPTS = 5


class VoiceConnectError(FlowbotError, hikari.errors.VoiceError):
    """The voice session could not be established or was refused; the message says why."""

    def __init__(self, message: str, close_code: int | None = None) -> None:
        super().__init__(message)
        self.close_code = close_code


class DaveVoiceConnection(VoiceConnection):
    """A playback-only voice connection with DAVE end-to-end encryption.

    Extra ``connect_to``/``initialize`` keyword arguments:

    :param secure: ``False`` connects with ``ws://`` (loopback emulators); Discord needs ``wss://``.
    :param dave: offer DAVE (``max_dave_protocol_version``); Discord refuses clients without it (4017).
    :param handshake_timeout: seconds allowed for each handshake. hikari's ``connect_to`` keeps its own
        ``timeout`` argument (for the main gateway's voice events) and never passes it on, so through
        ``connect_to`` this one must be given by this name (``VoiceManager`` passes both).
    :param timeout: the same, for callers of :meth:`initialize` itself.
    :param dave_hold: seconds a frame waits for DAVE keys (a group forming, a restarted group) before
        frames are dropped instead; never sent in the clear.
    """

    def __init__(
        self,
        *,
        channel_id: hikari.Snowflake,
        endpoint: str,
        guild_id: hikari.Snowflake,
        on_close: Callable[[DaveVoiceConnection], Awaitable[None]],
        owner: VoiceComponent,
        session_id: str,
        shard_id: int,
        token: str,
        user_id: hikari.Snowflake,
        secure: bool = True,
        dave: bool = True,
        handshake_timeout: float = 10.0,
        dave_hold: float = 2.0,
    ) -> None:
        self._channel_id = channel_id
        self._guild_id = guild_id
        self._endpoint: str | None = endpoint
        self._on_close = on_close
        self._owner = owner
        self._session_id = session_id
        self._shard_id = shard_id
        self._token = token
        self._user_id = user_id
        self._secure = secure
        self._max_dave = davey.DAVE_PROTOCOL_VERSION if dave else 0
        self._timeout = handshake_timeout
        self._dave_hold = dave_hold

        self._http = aiohttp.ClientSession()
        self._gateway: VoiceGateway | None = None
        self._reader: asyncio.Task[int | None] | None = None
        self._handshake: asyncio.Future[None] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._udp: VoiceUdp | None = None
        self._cipher: TransportCipher | None = None
        self._ssrc = 0
        self._dave = DaveState(int(user_id), int(channel_id), on_change=self._dave_changed)
        self._keys = asyncio.Event()
        """Set whenever the DAVE state changed, so a held frame looks again."""
        self._held_since: float | None = None
        self._speaking = False
        self._announced_ssrc: int | None = None
        """The SSRC SPEAKING was last sent for: a new session (4006, new server) has a new SSRC."""
        self._receiver: Receiver | None = None
        self._ssrc_users: dict[int, int] = {}
        self._unmapped: dict[int, list[tuple[int, bytes]]] = {}
        """Frames of SSRCs whose SPEAKING has not arrived yet (UDP can overtake the websocket)."""
        self._ready = asyncio.Event()
        self._closing = False
        self._server_changed = False
        self._new_server = asyncio.Event()
        self._play_lock = asyncio.Lock()
        self._sequence = random.randrange(1 << 16)
        self._timestamp = random.randrange(1 << 32)
        self._nonce = 0

    # hikari.api.VoiceConnection

    @classmethod
    @override
    async def initialize(
        cls,
        channel_id: hikari.Snowflake,
        endpoint: str,
        guild_id: hikari.Snowflake,
        on_close: Callable[[Any], Awaitable[None]],
        owner: VoiceComponent,
        session_id: str,
        shard_id: int,
        token: str,
        user_id: hikari.Snowflake,
        **kwargs: object,
    ) -> DaveVoiceConnection:
        """Connect and complete the handshake; raise :class:`VoiceConnectError` with the reason if refused."""
        options = {k: v for k, v in kwargs.items() if k in _OPTIONS}
        if unknown := set(kwargs) - set(options):
            raise TypeError(f'unknown voice connection options: {", ".join(sorted(unknown))}')
        if 'timeout' in options:
            options.setdefault('handshake_timeout', options.pop('timeout'))
        self = cls(
            channel_id=channel_id,
            endpoint=endpoint,
            guild_id=guild_id,
            on_close=on_close,
            owner=owner,
            session_id=session_id,
            shard_id=shard_id,
            token=token,
            user_id=user_id,
            **options,  # type: ignore[arg-type]
        )
        try:
            await self._establish(resume=False)
        except BaseException:
            await self._release()
            raise
        self._runner = asyncio.create_task(self._supervise(), name=f'voice {guild_id}')
        return self

    @property
    def channel_id(self) -> hikari.Snowflake:
        return self._channel_id

    @property
    def guild_id(self) -> hikari.Snowflake:
        return self._guild_id

    @property
    def is_alive(self) -> bool:
        return self._runner is not None and not self._runner.done()

    @property
    def shard_id(self) -> int:
        return self._shard_id

    @property
    def owner(self) -> VoiceComponent:
        return self._owner

    async def disconnect(self) -> None:
        """Close the session and wait until it is down (``on_close`` tells hikari to leave the channel)."""
        self._closing = True
        self._ready.set()  # wake a waiting player so it sees the connection is closing
        if self._gateway is not None:
            await self._gateway.close()
        await self.join()

    async def join(self) -> None:
        if self._runner is not None:
            await asyncio.shield(self._runner)

    async def notify(self, event: voice_events.VoiceEvent) -> None:
        """Follow hikari's voice events: new voice server, new session id, or removal from the channel."""
        if isinstance(event, voice_events.VoiceServerUpdateEvent):
            self._token = event.token
            self._endpoint = event.endpoint
            self._server_changed = True
            if event.endpoint is None:
                _log.info('voice server of guild %s deallocated: waiting for a new one', self._guild_id)
            else:
                _log.info('guild %s moved to voice server %s: new session', self._guild_id, event.raw_endpoint)
                self._new_server.set()
            if self._gateway is not None:
                await self._gateway.close(4000)
        elif isinstance(event, voice_events.VoiceStateUpdateEvent) and event.state.user_id == self._user_id:
            self._session_id = event.state.session_id
            if event.state.channel_id is None:
                _log.info('bot removed from voice in guild %s: closing', self._guild_id)
                self._closing = True
                if self._gateway is not None:
                    await self._gateway.close()
            elif event.state.channel_id != self._channel_id:
                _log.info('bot moved to voice channel %s in guild %s', event.state.channel_id, self._guild_id)
                self._channel_id = event.state.channel_id
                self._dave.channel_id = int(event.state.channel_id)

    # playback

    async def play(self, frames: Iterator[bytes], *, stop: asyncio.Event | None = None) -> int:
        """Play Opus frames (see :func:`integrations.discord.voice.opus.opus_frames`); one speech at a time.

        :param stop: set it to cut the speech short.
        :return: the number of audio frames sent.
        """
        async with self._play_lock:
            return await player.play(_Sink(self), frames, stop=stop)

    @property
    def mode(self) -> str | None:
        """The transport encryption mode in use."""
        return self._cipher.mode if self._cipher else None

    @property
    def dave_protocol_version(self) -> int:
        return self._dave.protocol_version

    @property
    def dave_ready(self) -> bool:
        """True when frames are end-to-end encrypted."""
        return self._dave.ready

    def listen(self, receiver: Receiver | None) -> None:
        """Hand every audio frame other members send to ``receiver`` (``None`` stops listening)."""
        self._receiver = receiver
        if self._udp is not None:
            self._udp.on_packet = self._on_packet if receiver is not None else None

    @property
    def users(self) -> dict[int, int]:
        """SSRC -> user id of the other members, from their SPEAKING messages."""
        return dict(self._ssrc_users)

    def _dave_changed(self) -> None:
        self._keys.set()

    async def _send_frame(self, frame: bytes, *, urgent: bool = False) -> None:
        """Encrypt and send one frame; under DAVE hold it until keys exist, never send it in the clear.

        :param urgent: a closing silence frame after a stop: sent now or not at all, never waited for.
        """
        if not self._ready.is_set():
            if urgent:
                return
            try:
                await asyncio.wait_for(self._ready.wait(), self._timeout * 2)
            except TimeoutError:
                raise ConnectionError('the voice connection did not come back') from None
        if self._closing or self._udp is None or self._cipher is None:
            raise ConnectionError('the voice connection is closed')
        while True:
            if self._speaking and self._announced_ssrc != self._ssrc:
                await self._set_speaking(True)  # a new session has a new SSRC: SPEAKING before its first frame
                if self._announced_ssrc != self._ssrc:
                    return  # the websocket is down: no audio on an SSRC SPEAKING did not announce
            payload = self._dave.protect(frame)
            if payload is None:
                payload = await self._hold(frame)  # returns right after protecting: no wait in between
                if payload is None:
                    return
            if self._closing or self._udp is None or self._cipher is None:
                raise ConnectionError('the voice connection is closed')
            if not self._speaking or self._announced_ssrc == self._ssrc:
                break  # else the session changed while the frame was held: announce and protect it anew
        self._held_since = None
        header = RtpHeader(self._sequence, self._timestamp, self._ssrc).pack()
        self._udp.send(self._cipher.encrypt(header, payload, self._nonce))
        self._sequence = (self._sequence + 1) & 0xFFFF
        self._timestamp = (self._timestamp + FRAME_SAMPLES) & 0xFFFFFFFF
        self._nonce = (self._nonce + 1) & 0xFFFFFFFF

    async def _hold(self, frame: bytes) -> bytes | None:
        """Wait (up to ``dave_hold`` seconds per gap) for DAVE keys; ``None``: drop the frame."""
        loop = asyncio.get_running_loop()
        if self._held_since is None:
            self._held_since = loop.time()
            _log.info('voice of guild %s held: DAVE group not ready (no frame leaves unencrypted)', self._guild_id)
        while (payload := self._dave.protect(frame)) is None and not self._closing:
            remaining = self._held_since + self._dave_hold - loop.time()
            if remaining <= 0:
                _log.debug('voice frame of guild %s dropped: still no DAVE keys', self._guild_id)
                return None
            self._keys.clear()
            try:
                await asyncio.wait_for(self._keys.wait(), remaining)
            except TimeoutError:
                _log.warning(
                    'voice of guild %s: no DAVE keys after %.1f s; frames are dropped until the group is ready',
                    self._guild_id,
                    self._dave_hold,
                )
        return payload

    async def _set_speaking(self, speaking: bool) -> None:
        self._speaking = speaking
        if self._gateway is None or not self._gateway.is_open:
            _log.debug('SPEAKING %s not sent: voice websocket down', speaking)
            return
        try:
            await self._gateway.send(VoiceOp.SPEAKING, {'speaking': int(speaking), 'delay': 0, 'ssrc': self._ssrc})
        except ConnectionError as exc:
            _log.info('SPEAKING %s not sent: %s', speaking, exc)
            return
        if speaking:
            self._announced_ssrc = self._ssrc

    # session

    async def _establish(self, *, resume: bool) -> None:
        """Open the websocket and identify (or resume); return once audio can flow."""
        if self._endpoint is None:
            raise VoiceConnectError(_('no voice server assigned'))
        loop = asyncio.get_running_loop()
        gateway = VoiceGateway(self._http, self._on_json, self._on_binary)
        url = gateway_url(self._endpoint, secure=self._secure)
        try:
            await gateway.open(url, timeout=self._timeout)
        except (aiohttp.ClientError, OSError) as exc:
            raise VoiceConnectError(_('cannot reach voice server {url}: {error}').format(url=url, error=exc)) from exc
        if resume and self._gateway is not None:
            gateway.seq_ack = self._gateway.seq_ack
        self._gateway, self._handshake = gateway, loop.create_future()
        self._reader = asyncio.create_task(self._read(gateway, self._handshake), name='voice websocket')
        if resume:
            await gateway.send(
                VoiceOp.RESUME,
                {
                    'server_id': str(self._guild_id),
                    'session_id': self._session_id,
                    'token': self._token,
                    'seq_ack': gateway.seq_ack,
                },
            )
        else:
            await gateway.send(
                VoiceOp.IDENTIFY,
                {
                    'server_id': str(self._guild_id),
                    'user_id': str(self._user_id),
                    'session_id': self._session_id,
                    'token': self._token,
                    'max_dave_protocol_version': self._max_dave,
                },
            )
        try:
            await asyncio.wait_for(asyncio.shield(self._handshake), self._timeout)
        except TimeoutError:
            self._handshake.cancel()
            await gateway.close()
            raise VoiceConnectError(
                _('voice handshake with {url} timed out after {seconds} s').format(
                    url=url, seconds=f'{self._timeout:g}'
                )
            ) from None
        except BaseException:
            await gateway.close()
            raise
        self._ready.set()
        _log.info(
            'voice %s in guild %s channel %s: ssrc %s, %s, DAVE v%s',
            'resumed' if resume else 'connected',
            self._guild_id,
            self._channel_id,
            self._ssrc,
            self.mode,
            self._dave.protocol_version,
        )

    async def _read(self, gateway: VoiceGateway, handshake: asyncio.Future[None]) -> int | None:
        code = await gateway.read()
        if not handshake.done():
            close = describe_close(code)
            message = f'voice server closed the connection: {close.reason} (close code {code})'
            if code == 4017 and self._max_dave == 0:
                message += '; this client did not offer DAVE (max_dave_protocol_version 0)'
            handshake.set_exception(VoiceConnectError(message, code))
        return code

    async def _supervise(self) -> None:
        """Keep the session up until it is closed: resume, re-identify or give up per close code."""
        try:
            while not self._closing:
                assert self._reader is not None
                code = await self._reader
                self._ready.clear()
                if self._closing:
                    break
                if self._server_changed:
                    action = CloseAction.NEW_SESSION
                else:
                    close = describe_close(code)
                    action = close.action
                    log = _log.error if action is CloseAction.STOP else _log.warning
                    log('voice websocket of guild %s closed: %s (code %s)', self._guild_id, close.reason, code)
                if action is CloseAction.STOP or not await self._reconnect(action):
                    break
        except Exception:
            _log.exception('voice connection of guild %s failed', self._guild_id)
        finally:
            await self._release()
            try:
                await self._on_close(self)
            except Exception:
                _log.exception('voice on_close hook of guild %s failed', self._guild_id)

    async def _reconnect(self, action: CloseAction) -> bool:
        resume = action is CloseAction.RESUME
        for attempt in range(1, RECONNECT_ATTEMPTS + 1):
            if self._server_changed:
                self._server_changed, resume = False, False
                if self._endpoint is None:
                    self._new_server.clear()
                    try:
                        await asyncio.wait_for(self._new_server.wait(), self._timeout * 3)
                    except TimeoutError:
                        _log.error('no new voice server for guild %s: giving up', self._guild_id)
                        return False
            try:
                await self._establish(resume=resume)
                return True
            except VoiceConnectError as exc:
                if self._closing:
                    return False
                close = describe_close(exc.close_code) if exc.close_code else None
                if close is not None and close.action is CloseAction.STOP:
                    _log.error('voice reconnect of guild %s refused: %s', self._guild_id, exc)
                    return False
                _log.warning(
                    'voice reconnect %s/%s of guild %s failed: %s', attempt, RECONNECT_ATTEMPTS, self._guild_id, exc
                )
                resume = False  # a refused resume means the session is gone: identify afresh
                await asyncio.sleep(min(2 ** (attempt - 1), 10))
        return False

    async def _release(self) -> None:
        self._closing = True
        self._ready.set()
        if self._gateway is not None:
            await self._gateway.close()
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
        if self._udp is not None:
            self._udp.close()
        await self._http.close()

    # incoming messages

    async def _on_json(self, op: int, d: dict[str, Any]) -> None:
        try:
            if op == VoiceOp.HELLO:
                assert self._gateway is not None
                self._gateway.start_heartbeat(float(d['heartbeat_interval']))
            elif op == VoiceOp.READY:
                await self._on_ready(d)
            elif op == VoiceOp.SESSION_DESCRIPTION:
                self._cipher = cipher_for(str(d['mode']), bytes(d['secret_key']))
                await self._send(self._dave.start(int(d.get('dave_protocol_version') or 0)))
                self._finish_handshake()
            elif op == VoiceOp.RESUMED:
                self._finish_handshake()
            elif op == VoiceOp.SPEAKING:
                self._on_speaking(d)
            elif op in DaveOp.JSON:
                if op == DaveOp.CLIENT_DISCONNECT and str(d.get('user_id', '')).isdigit():
                    self._forget(int(str(d['user_id'])))
                await self._send(self._dave.handle_json(op, d))
            else:
                _log.debug('voice op %s ignored', op)
        except (KeyError, TypeError, ValueError, OSError) as exc:
            _log.error('voice op %s of guild %s could not be handled (%s): %.300s', op, self._guild_id, exc, d)
            if self._handshake is not None and not self._handshake.done():
                self._handshake.set_exception(
                    VoiceConnectError(_('voice handshake failed at op {op}: {error}').format(op=op, error=exc))
                )

    def _on_speaking(self, d: dict[str, Any]) -> None:
        """Another member's SPEAKING: the only place an SSRC is tied to a user id."""
        try:
            ssrc, user = int(d['ssrc']), int(str(d['user_id']))
        except (KeyError, TypeError, ValueError):
            _log.warning('SPEAKING without a usable ssrc and user_id in guild %s ignored: %.200s', self._guild_id, d)
            return
        if self._ssrc_users.get(ssrc) != user:
            _log.debug('voice guild %s: ssrc %s is user %s', self._guild_id, ssrc, user)
            self._ssrc_users[ssrc] = user
        for sequence, plain in self._unmapped.pop(ssrc, ()):
            self._deliver(user, sequence, plain)

    def _forget(self, user_id: int) -> None:
        for ssrc in [s for s, u in self._ssrc_users.items() if u == user_id]:
            del self._ssrc_users[ssrc]
        if self._receiver is not None:
            self._receiver.gone(user_id)

    def _on_packet(self, data: bytes) -> None:
        """One datagram from the voice server: open the transport layer, then DAVE, then hand the Opus on."""
        receiver, cipher = self._receiver, self._cipher
        if receiver is None or cipher is None:
            return
        try:
            header, aad, extension = split_incoming(data)
            plain = cipher.decrypt(data, aad)[extension:]
        except Exception as exc:  # RTCP, foreign or damaged packets: nothing to hear in them
            _log.debug('voice packet of %s bytes in guild %s not read: %s', len(data), self._guild_id, exc)
            return
        user = self._ssrc_users.get(header.ssrc)
        if user is None:
            self._keep_unmapped(header.ssrc, header.sequence, plain)
            return
        self._deliver(user, header.sequence, plain)

    def _keep_unmapped(self, ssrc: int, sequence: int, plain: bytes) -> None:
        """Hold a few frames of an SSRC nobody announced yet; its SPEAKING usually follows at once."""
        pending = self._unmapped.get(ssrc)
        if pending is None:
            if len(self._unmapped) >= _UNMAPPED_SSRCS:
                _log.debug('voice packet of unknown ssrc %s in guild %s dropped', ssrc, self._guild_id)
                return
            pending = self._unmapped[ssrc] = []
        if len(pending) < _UNMAPPED_FRAMES:
            pending.append((sequence, plain))

    def _deliver(self, user: int, sequence: int, plain: bytes) -> None:
        receiver = self._receiver
        if receiver is None:
            return
        opus = self._dave.decrypt(user, plain)
        if opus is None:
            receiver.undecryptable(user)
            return
        receiver.frame(user, sequence, opus)

    async def _on_ready(self, d: dict[str, Any]) -> None:
        self._ssrc = int(d['ssrc'])
        mode = choose_mode([str(m) for m in d['modes']])
        if self._udp is not None:
            self._udp.close()
        self._udp = await VoiceUdp.open(str(d['ip']), int(d['port']))
        if self._receiver is not None:
            self._udp.on_packet = self._on_packet
        address, port = await self._udp.discover(self._ssrc)
        assert self._gateway is not None
        await self._gateway.send(
            VoiceOp.SELECT_PROTOCOL, {'protocol': 'udp', 'data': {'address': address, 'port': port, 'mode': mode}}
        )

    async def _on_binary(self, op: int, payload: bytes) -> None:
        try:
            await self._send(self._dave.handle_binary(op, payload))
        except ValueError as exc:  # davey reports MLS validation failures so
            _log.error('DAVE op %s of guild %s rejected: %s', op, self._guild_id, exc)
        except Exception:
            _log.exception('DAVE op %s (%s bytes) of guild %s could not be handled', op, len(payload), self._guild_id)

    def _finish_handshake(self) -> None:
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_result(None)

    async def _send(self, messages: list[Outgoing]) -> None:
        assert self._gateway is not None
        for message in messages:
            if isinstance(message, JsonOut):
                await self._gateway.send(message.op, message.d)
            elif isinstance(message, BinaryOut):
                await self._gateway.send_binary(message.frame())


class Receiver(Protocol):
    """Where a listening connection delivers other members' audio (see :mod:`.listen`)."""

    def frame(self, user_id: int, sequence: int, opus: bytes) -> None:
        """One Opus frame ``user_id`` sent, end-to-end decrypted."""

    def undecryptable(self, user_id: int) -> None:
        """A frame of ``user_id`` that could not be decrypted (no keys yet, or not for us)."""

    def gone(self, user_id: int) -> None:
        """``user_id`` left the call."""


class _Sink(player.FrameSink):
    def __init__(self, connection: DaveVoiceConnection) -> None:
        self._connection = connection

    async def set_speaking(self, speaking: bool) -> None:
        await self._connection._set_speaking(speaking)

    async def send_frame(self, frame: bytes, *, urgent: bool = False) -> None:
        await self._connection._send_frame(frame, urgent=urgent)
