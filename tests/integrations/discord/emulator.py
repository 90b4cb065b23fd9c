"""A Discord emulator on loopback: REST and gateway, enough for the real hikari client and lightbulb.

The machines that run the tests cannot reach Discord, so the tests drive the real ``hikari.GatewayBot``
against this server on 127.0.0.1: REST calls are answered and recorded in :attr:`DiscordEmulator.calls`,
the gateway speaks HELLO/IDENTIFY/READY/RESUME with the transport compression the client asks for (``zstd-stream``,
which hikari picks when ``backports.zstd`` is installed, as ``hikari[speedups]`` does; ``zlib-stream``; or none), and
tests push events with
:meth:`DiscordEmulator.dispatch` (or the helpers for messages, interactions and voice events).

Usage::

    async with DiscordEmulator() as emu:
        bot = hikari.GatewayBot(emu.token, rest_url=emu.rest_url, banner=None, logs=None)
        ...
        await emu.message_create(channel_id=..., author=emu.user(5, 'ann'), content='!hi')
        call = await emu.wait_for_call('POST', '/channels/.../messages')
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import itertools
import json
import logging
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from aiohttp import BodyPartReader, WSMsgType, web

from tests.loopback import GatewayServer

__all__ = ['CannedAnswer', 'DiscordEmulator', 'GatewayFrame', 'GatewayStream', 'RestCall', 'make_token']

_log = logging.getLogger(__name__)

_EPOCH_MS = 1_420_070_400_000


def make_token(bot_id: int) -> str:
    """A token shaped like Discord's (``base64(bot id).x.y``), which hikari checks."""
    return base64.b64encode(str(bot_id).encode()).decode().rstrip('=') + '.emulated.token'


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


class GatewayStream:
    """One gateway connection's outgoing frames, compressed as the client's ``compress`` query asks: one stream per
    connection, flushed after each payload, as Discord does."""

    def __init__(self, compress: str | None) -> None:
        self.compress = compress
        self._zlib: Any = None
        self._zstd: Any = None
        if compress == 'zlib-stream':
            self._zlib = zlib.compressobj()
        elif compress == 'zstd-stream':
            try:
                from compression import zstd  # Python 3.14+
            except ImportError:
                from backports import zstd
            self._zstd = zstd.ZstdCompressor()
        elif compress is not None:
            raise ValueError(f'unknown gateway compression {compress!r}')

    async def send(self, ws: web.WebSocketResponse, payload: Mapping[str, Any]) -> None:
        data = json.dumps(payload).encode()
        if self._zlib is not None:
            await ws.send_bytes(self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH))
        elif self._zstd is not None:
            await ws.send_bytes(self._zstd.compress(data) + self._zstd.flush(self._zstd.FLUSH_BLOCK))
        else:
            await ws.send_str(data.decode())


@attrs.define
class CannedAnswer:
    """A REST answer given instead of the emulated one (rate limits, permissions, outages)."""

    status: int
    body: Any
    headers: dict[str, str] = attrs.field(factory=dict)


@attrs.define
class RestCall:
    """One recorded REST request."""

    method: str
    path: str
    """Path below the API root, e.g. ``/channels/1/messages``."""
    query: dict[str, str]
    json: Any = None
    """The JSON body, or ``payload_json`` of a multipart body."""
    files: dict[str, tuple[str, str, bytes]] = attrs.field(factory=dict)
    """Multipart file parts: field name -> (file name, content type, data)."""
    headers: dict[str, str] = attrs.field(factory=dict)

    @property
    def content(self) -> str | None:
        return self.json.get('content') if isinstance(self.json, dict) else None


@attrs.define
class GatewayFrame:
    """A payload the client sent on the gateway (IDENTIFY, RESUME, HEARTBEAT, VOICE_STATE_UPDATE, ...)."""

    op: int
    d: Any


class DiscordEmulator(GatewayServer):
    """REST + gateway on 127.0.0.1, one session, one shard.

    :param bot_id: the bot user's id (and the token is derived from it).
    :param application_id: the application id commands are registered under.
    :param heartbeat_interval: milliseconds announced in HELLO.
    """

    def __init__(
        self,
        *,
        bot_id: int = 900_000_000_000_000_001,
        application_id: int | None = None,
        heartbeat_interval: int = 41_250,
    ) -> None:
        super().__init__()
        self.bot_id = bot_id
        self.application_id = application_id or bot_id
        self.token = make_token(bot_id)
        self.heartbeat_interval = heartbeat_interval
        self.calls: list[RestCall] = []
        self.frames: list[GatewayFrame] = []
        self.commands: dict[str, list[dict[str, Any]]] = {}
        """Registered commands per scope: ``'global'`` or a guild id."""
        self.messages: dict[int, dict[str, Any]] = {}
        self.files: dict[str, tuple[str, bytes]] = {}
        """Attachment downloads: path -> (content type, data)."""
        self.downloaded: list[str] = []
        """Paths of the attachments the bot downloaded, in order."""
        self.guilds: list[dict[str, Any]] = []
        """Guild objects sent as GUILD_CREATE after READY (fill before the bot connects)."""
        self.session_id = 'emulated-session'
        self.identifies = 0
        self.resumes = 0
        self.disallowed_intents = 0
        """Intents IDENTIFY may not ask for (privileged ones not enabled in the portal): close code 4014."""
        self.download_delay = 0.0
        """Seconds before an attachment download is answered."""
        self.rest_delay: dict[str, float] = {}
        """Seconds to delay responses whose ``METHOD path`` matches a regular expression key."""
        self.canned: list[tuple[str, CannedAnswer]] = []
        """Answers for the next calls whose ``METHOD path`` matches the regular expression, each used once."""
        self._interaction_channels: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._seq = 0
        self._log: list[dict[str, Any]] = []
        self._stream = GatewayStream(None)
        self._send_lock = asyncio.Lock()
        self._call_event = asyncio.Condition()
        self._connected = asyncio.Event()
        self._ready = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get('/gateway', self._gateway)
        app.router.add_get('/attachments/{rest:.*}', self._download)
        app.router.add_route('*', '/api/v10/{path:.*}', self._rest)
        return app

    @property
    def base_url(self) -> str:
        return f'http://127.0.0.1:{self.port}'

    @property
    def rest_url(self) -> str:
        """What to give ``GatewayBot(rest_url=...)``."""
        return f'{self.base_url}/api/v10'

    def snowflake(self) -> int:
        """A fresh id that looks like a Discord snowflake."""
        ms = int(datetime.datetime.now(datetime.UTC).timestamp() * 1000) - _EPOCH_MS
        return (ms << 22) | (next(self._ids) & 0x3FFFFF)

    # -- recorded calls --------------------------------------------------------------------------------------------

    def calls_to(self, method: str, pattern: str) -> list[RestCall]:
        """Recorded calls with this method whose path matches ``pattern`` (a regular expression, full match)."""
        rx = re.compile(pattern)
        return [c for c in self.calls if c.method == method and rx.fullmatch(c.path)]

    async def wait_for_call(
        self,
        method: str,
        pattern: str,
        *,
        count: int = 1,
        where: Callable[[RestCall], bool] | None = None,
        timeout: float = 10.0,
    ) -> list[RestCall]:
        """Wait until ``count`` matching calls were recorded; return them."""

        def matching() -> list[RestCall]:
            return [c for c in self.calls_to(method, pattern) if where is None or where(c)]

        async with self._call_event:
            await asyncio.wait_for(self._call_event.wait_for(lambda: len(matching()) >= count), timeout)
        return matching()

    # -- gateway ---------------------------------------------------------------------------------------------------

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def _send(self, payload: Mapping[str, Any]) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            return
        async with self._send_lock:
            await self._stream.send(ws, payload)

    async def dispatch(self, event: str, data: Mapping[str, Any]) -> int:
        """Send a DISPATCH (op 0); kept for RESUME replays, queued if the client is disconnected."""
        self._seq += 1
        payload = {'op': 0, 't': event, 's': self._seq, 'd': data}
        self._log.append(payload)
        if self._ready.is_set():
            await self._send(payload)
        return self._seq

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: the client drops the connection and RESUMEs the session."""
        self._ready.clear()
        await self._send({'op': 7, 'd': None})

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        self._ws = ws
        self._stream = GatewayStream(request.query.get('compress'))
        await self._send({'op': 10, 'd': {'heartbeat_interval': self.heartbeat_interval}})
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                payload = json.loads(msg.data)
                await self._on_frame(payload)
        finally:
            if self._ws is ws:
                self._ready.clear()
        return ws

    async def _on_frame(self, payload: dict[str, Any]) -> None:
        op, d = payload['op'], payload.get('d')
        self.frames.append(GatewayFrame(op, d))
        if op == 1:
            await self._send({'op': 11})
        elif op == 2 and int((d or {}).get('intents') or 0) & self.disallowed_intents:
            if self._ws is not None:
                await self._ws.close(code=4014, message=b'Disallowed intent(s).')
        elif op == 2:
            self.identifies += 1
            self._seq = 0
            self._log.clear()
            self._seq += 1
            ready = {'op': 0, 't': 'READY', 's': self._seq, 'd': self._ready_payload()}
            self._log.append(ready)
            await self._send(ready)
            self._ready.set()
            for guild in self.guilds:
                await self.dispatch('GUILD_CREATE', guild)
        elif op == 6:
            self.resumes += 1
            seq = int((d or {}).get('seq') or 0)
            for past in [p for p in self._log if p['s'] > seq]:
                await self._send(past)
            self._seq += 1
            await self._send({'op': 0, 't': 'RESUMED', 's': self._seq, 'd': {}})
            self._ready.set()

    def _ready_payload(self) -> dict[str, Any]:
        return {
            'v': 10,
            'session_id': self.session_id,
            'resume_gateway_url': f'ws://127.0.0.1:{self.port}/gateway',
            'guilds': [{'id': g['id'], 'unavailable': True} for g in self.guilds],
            'application': {'id': str(self.application_id), 'flags': 0},
            'user': self.bot_user(),
        }

    # -- payload builders ------------------------------------------------------------------------------------------

    def bot_user(self) -> dict[str, Any]:
        return {
            'id': str(self.bot_id),
            'username': 'flowbot',
            'discriminator': '0',
            'avatar': None,
            'bot': True,
            'mfa_enabled': False,
            'flags': 0,
        }

    @staticmethod
    def user(user_id: int, name: str = 'user', *, bot: bool = False) -> dict[str, Any]:
        """A user object for authors and interaction users."""
        return {'id': str(user_id), 'username': name, 'discriminator': '0', 'avatar': None, 'bot': bot}

    @staticmethod
    def member(roles: Sequence[int] = ()) -> dict[str, Any]:
        return {'roles': [str(r) for r in roles], 'joined_at': _now(), 'deaf': False, 'mute': False}

    def guild(
        self,
        guild_id: int,
        *,
        channels: Sequence[int] = (),
        voice_states: Sequence[dict[str, Any]] = (),
        members: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """A GUILD_CREATE payload (text channels ``channels``, voice states as :meth:`voice_state` builds).

        Members of the voice states are added to ``members`` when missing (hikari looks them up there).
        """
        members = list(members)
        known = {m['user']['id'] for m in members}
        for state in voice_states:
            if state['user_id'] not in known:
                members.append({**self.member(), 'user': self.user(int(state['user_id']))})
                known.add(state['user_id'])
        return {
            'id': str(guild_id),
            'name': f'guild {guild_id}',
            'icon': None,
            'splash': None,
            'discovery_splash': None,
            'owner_id': '1',
            'afk_channel_id': None,
            'afk_timeout': 300,
            'verification_level': 0,
            'default_message_notifications': 0,
            'explicit_content_filter': 0,
            'roles': [],
            'emojis': [],
            'stickers': [],
            'features': [],
            'mfa_level': 0,
            'application_id': None,
            'system_channel_id': None,
            'system_channel_flags': 0,
            'rules_channel_id': None,
            'vanity_url_code': None,
            'description': None,
            'banner': None,
            'premium_tier': 0,
            'preferred_locale': 'en-US',
            'public_updates_channel_id': None,
            'nsfw_level': 0,
            'premium_progress_bar_enabled': False,
            'joined_at': _now(),
            'large': False,
            'unavailable': False,
            'member_count': len(members),
            'members': list(members),
            'presences': [],
            'threads': [],
            'stage_instances': [],
            'guild_scheduled_events': [],
            'voice_states': list(voice_states),
            'channels': [
                {
                    'id': str(c),
                    'type': 0,
                    'guild_id': str(guild_id),
                    'name': f'channel-{c}',
                    'position': i,
                    'permission_overwrites': [],
                    'nsfw': False,
                    'parent_id': None,
                    'topic': None,
                    'rate_limit_per_user': 0,
                    'last_message_id': None,
                }
                for i, c in enumerate(channels)
            ],
        }

    def voice_state(
        self,
        guild_id: int,
        user_id: int,
        channel_id: int | None,
        *,
        session_id: str = 'voice-session',
        member: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A voice state (for GUILD_CREATE or VOICE_STATE_UPDATE)."""
        state: dict[str, Any] = {
            'guild_id': str(guild_id),
            'channel_id': str(channel_id) if channel_id else None,
            'user_id': str(user_id),
            'session_id': session_id,
            'deaf': False,
            'mute': False,
            'self_deaf': False,
            'self_mute': False,
            'self_video': False,
            'suppress': False,
            'request_to_speak_timestamp': None,
        }
        if member is not None:
            state['member'] = member
        return state

    async def voice_state_update(self, guild_id: int, user_id: int, channel_id: int | None, **kw: Any) -> int:
        """Dispatch VOICE_STATE_UPDATE (a user joined, moved or left a voice channel)."""
        member = kw.pop('member', None) or {**self.member(), 'user': self.user(user_id)}
        return await self.dispatch(
            'VOICE_STATE_UPDATE', self.voice_state(guild_id, user_id, channel_id, member=member, **kw)
        )

    async def voice_server_update(self, guild_id: int, endpoint: str, token: str = 'voice-token') -> int:
        """Dispatch VOICE_SERVER_UPDATE (where the voice websocket is)."""
        return await self.dispatch(
            'VOICE_SERVER_UPDATE', {'guild_id': str(guild_id), 'endpoint': endpoint, 'token': token}
        )

    def add_file(
        self, data: bytes, filename: str, content_type: str | None, *, size: int | None = None, **extra: Any
    ) -> dict[str, Any]:
        """Serve ``data`` for download and return the attachment object that points at it.

        :param content_type: ``None`` leaves it out, as Discord does for extensions it does not know (``.jsonl``).
        :param size: the declared size, when a test wants it to differ from ``len(data)``.
        """
        attachment_id = self.snowflake()
        path = f'/attachments/{attachment_id}/file'
        self.files[path] = (content_type or 'application/octet-stream', data)
        attachment = {
            'id': str(attachment_id),
            'filename': filename,
            'size': len(data) if size is None else size,
            'url': self.base_url + path,
            'proxy_url': self.base_url + path,
            **extra,
        }
        if content_type is not None:
            attachment['content_type'] = content_type
        return attachment

    def message(
        self,
        *,
        channel_id: int,
        author: dict[str, Any],
        content: str = '',
        guild_id: int | None = None,
        roles: Sequence[int] = (),
        attachments: Sequence[dict[str, Any]] = (),
        flags: int = 0,
        message_id: int | None = None,
        components: list[Any] | None = None,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            'id': str(message_id or self.snowflake()),
            'channel_id': str(channel_id),
            'author': author,
            'content': content,
            'timestamp': _now(),
            'edited_timestamp': None,
            'tts': False,
            'pinned': False,
            'mention_everyone': False,
            'mentions': [],
            'mention_roles': [],
            'type': 0,
            'flags': flags,
            'attachments': list(attachments),
            'embeds': [],
            'components': components or [],
        }
        if guild_id is not None:
            payload['guild_id'] = str(guild_id)
            payload['member'] = self.member(roles)
        return payload

    async def message_create(self, **kw: Any) -> dict[str, Any]:
        """Dispatch MESSAGE_CREATE; arguments as :meth:`message`. Returns the message."""
        payload = self.message(**kw)
        await self.dispatch('MESSAGE_CREATE', payload)
        return payload

    def _interaction(
        self,
        *,
        itype: int,
        channel_id: int,
        user: dict[str, Any],
        data: dict[str, Any],
        guild_id: int | None,
        roles: Sequence[int],
        locale: str,
        message: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        interaction_id = self.snowflake()
        payload: dict[str, Any] = {
            'id': str(interaction_id),
            'application_id': str(self.application_id),
            'type': itype,
            'token': f'itoken-{interaction_id}',
            'version': 1,
            'locale': locale,
            'app_permissions': '0',
            'context': 0 if guild_id else 1,
            'attachment_size_limit': 26_214_400,
            'entitlements': [],
            'authorizing_integration_owners': {'0': str(guild_id)} if guild_id else {'1': user['id']},
            'channel_id': str(channel_id),
            'channel': {'id': str(channel_id), 'type': 0 if guild_id else 1},
            'data': data,
        }
        self._interaction_channels[payload['token']] = str(channel_id)
        if guild_id is not None:
            payload['guild_id'] = str(guild_id)
            payload['guild_locale'] = 'en-US'
            payload['member'] = {**self.member(roles), 'user': user, 'permissions': '0'}
        else:
            payload['user'] = user
        if message is not None:
            payload['message'] = message
        return payload

    async def slash_command(
        self,
        name: str,
        *,
        channel_id: int,
        user: dict[str, Any],
        options: Sequence[dict[str, Any]] = (),
        guild_id: int | None = None,
        roles: Sequence[int] = (),
        resolved: dict[str, Any] | None = None,
        locale: str = 'en-US',
        registered_guild: bool = False,
    ) -> dict[str, Any]:
        """Dispatch INTERACTION_CREATE for a slash command; ``options`` as Discord sends them."""
        scope = str(guild_id) if registered_guild and guild_id else 'global'
        command_id = next((c['id'] for c in self.commands.get(scope, []) if c['name'] == name), str(self.snowflake()))
        data: dict[str, Any] = {'id': command_id, 'name': name, 'type': 1, 'options': list(options)}
        if registered_guild and guild_id:
            data['guild_id'] = str(guild_id)
        if resolved:
            data['resolved'] = resolved
        payload = self._interaction(
            itype=2, channel_id=channel_id, user=user, data=data, guild_id=guild_id, roles=roles, locale=locale
        )
        await self.dispatch('INTERACTION_CREATE', payload)
        return payload

    async def button_press(
        self,
        custom_id: str,
        *,
        message: dict[str, Any],
        user: dict[str, Any],
        guild_id: int | None = None,
        roles: Sequence[int] = (),
        locale: str = 'en-US',
    ) -> dict[str, Any]:
        """Dispatch INTERACTION_CREATE for a button (component type 2) on ``message``."""
        data = {'custom_id': custom_id, 'component_type': 2}
        payload = self._interaction(
            itype=3,
            channel_id=int(message['channel_id']),
            user=user,
            data=data,
            guild_id=guild_id,
            roles=roles,
            locale=locale,
            message=message,
        )
        await self.dispatch('INTERACTION_CREATE', payload)
        return payload

    # -- REST ------------------------------------------------------------------------------------------------------

    async def _download(self, request: web.Request) -> web.StreamResponse:
        self.downloaded.append(request.path)
        if self.download_delay:
            await asyncio.sleep(self.download_delay)
        found = self.files.get(request.path)
        if found is None:
            return web.Response(status=404)
        content_type, data = found
        return web.Response(body=data, headers={'Content-Type': content_type})

    async def _record(self, request: web.Request, path: str) -> RestCall:
        body: Any = None
        files: dict[str, tuple[str, str, bytes]] = {}
        if request.content_type.startswith('multipart/'):
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                assert isinstance(part, BodyPartReader)
                if part.name == 'payload_json':
                    body = json.loads(await part.text())
                else:
                    data = bytes(await part.read())
                    files[part.name or ''] = (part.filename or '', part.headers.get('Content-Type', ''), data)
        elif request.can_read_body:
            raw = await request.read()
            body = json.loads(raw) if raw else None
        call = RestCall(request.method, path, dict(request.query), body, files, dict(request.headers))
        self.calls.append(call)
        return call

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = '/' + request.match_info['path']
        call = await self._record(request, path)
        for rx, delay in self.rest_delay.items():
            if re.fullmatch(rx, f'{call.method} {path}'):
                await asyncio.sleep(delay)
        canned = self._take_canned(f'{call.method} {path}')
        try:
            status, body = (canned.status, canned.body) if canned is not None else self._answer(call)
        except Exception:  # a bug in the emulator must show up in the test, not hang it
            _log.exception('emulator cannot answer %s %s', call.method, path)
            status, body = 500, {'message': 'emulator error', 'code': 0}
        async with self._call_event:
            self._call_event.notify_all()
        headers = canned.headers if canned is not None else None
        if status == 204:
            return web.Response(status=204, headers=headers)
        return web.json_response(body, status=status, headers=headers)

    def answer_next(
        self, pattern: str, status: int, body: Any = None, *, headers: Mapping[str, str] | None = None
    ) -> None:
        """Answer the next REST call matching ``pattern`` (a regular expression on ``METHOD path``) with ``status``
        and ``body`` (default: Discord's error shape) instead of emulating it."""
        if body is None:
            body = {'message': f'emulated {status}', 'code': 50013 if status == 403 else 0}
        self.canned.append((pattern, CannedAnswer(status, body, dict(headers or {}))))

    def rate_limit_next(self, pattern: str, retry_after: float) -> None:
        """Answer the next call matching ``pattern`` with a 429 on its route's bucket, as Discord does."""
        wait = f'{retry_after:.3f}'
        headers = {
            'X-RateLimit-Bucket': 'emulated-bucket',
            'X-RateLimit-Limit': '5',
            'X-RateLimit-Remaining': '0',
            'X-RateLimit-Reset-After': wait,
            'X-RateLimit-Reset': f'{datetime.datetime.now(datetime.UTC).timestamp() + retry_after:.3f}',
            'X-RateLimit-Scope': 'shared',
            'Retry-After': wait,
        }
        body = {'message': 'You are being rate limited.', 'retry_after': retry_after, 'global': False}
        self.answer_next(pattern, 429, body, headers=headers)

    def _take_canned(self, request: str) -> CannedAnswer | None:
        for i, (pattern, answer) in enumerate(self.canned):
            if re.fullmatch(pattern, request):
                del self.canned[i]
                return answer
        return None

    def _stored_message(self, channel_id: str, body: Any, call: RestCall, *, webhook: bool = False) -> dict[str, Any]:
        body = body if isinstance(body, dict) else {}
        attachments = self._attachments(call)
        for att, meta in zip(attachments, body.get('attachments') or [], strict=False):
            for key in ('duration_secs', 'waveform'):
                if key in meta:
                    att[key] = meta[key]
        components = self._numbered(body.get('components') or [])
        message = self.message(
            channel_id=int(channel_id),
            author=self.bot_user(),
            content=body.get('content') or '',
            attachments=attachments,
            flags=int(body.get('flags') or 0),
            components=components,
        )
        if webhook:
            message['webhook_id'] = str(self.application_id)
        self.messages[int(message['id'])] = message
        return message

    def _attachments(self, call: RestCall) -> list[dict[str, Any]]:
        """Attachment objects for the files a call uploaded."""
        return [
            {
                'id': str(self.snowflake()),
                'filename': name,
                'size': len(data),
                'url': f'{self.base_url}/x/{name}',
                'proxy_url': f'{self.base_url}/x/{name}',
                'content_type': ctype,
            }
            for name, ctype, data in call.files.values()
        ]

    def _numbered(self, components: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Components as Discord returns them: every one with a numeric ``id``."""
        counter = itertools.count(1)

        def walk(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [
                {
                    **c,
                    'id': c.get('id') or next(counter),
                    **({'components': walk(c['components'])} if 'components' in c else {}),
                }
                for c in items
            ]

        return walk(components)

    def _channel_of(self, token: str) -> str:
        return self._interaction_channels.get(token, '0')

    def _answer(self, call: RestCall) -> tuple[int, Any]:
        path, method, body = call.path, call.method, call.json
        if path == '/gateway/bot':
            return 200, {
                'url': f'ws://127.0.0.1:{self.port}/gateway',
                'shards': 1,
                'session_start_limit': {'total': 1000, 'remaining': 999, 'reset_after': 0, 'max_concurrency': 16},
            }
        if path == '/users/@me':
            return 200, self.bot_user()
        if path in ('/oauth2/applications/@me', '/applications/@me'):
            return 200, {
                'id': str(self.application_id),
                'name': 'flowbot',
                'icon': None,
                'description': '',
                'bot_public': True,
                'bot_require_code_grant': False,
                'verify_key': '00' * 32,
                'flags': 0,
                'team': None,
                'owner': self.user(1, 'owner'),
                'integration_types_config': {'0': {}, '1': {}},
                'approximate_guild_count': 1,
                'approximate_user_install_count': 0,
            }
        if m := re.fullmatch(r'/applications/(\d+)(?:/guilds/(\d+))?/commands', path):
            scope = m.group(2) or 'global'
            if method == 'GET':
                return 200, self.commands.get(scope, [])
            if method == 'PUT':
                stored = []
                for given in body or []:
                    cmd = dict(given)
                    cmd.setdefault('id', str(self.snowflake()))
                    cmd['application_id'] = str(self.application_id)
                    cmd.setdefault('type', 1)
                    cmd.setdefault('version', '1')
                    cmd.setdefault('default_member_permissions', None)
                    if m.group(2):
                        cmd['guild_id'] = m.group(2)
                    stored.append(cmd)
                self.commands[scope] = stored
                return 200, stored
        if (m := re.fullmatch(r'/channels/(\d+)/messages', path)) and method == 'POST':
            return 200, self._stored_message(m.group(1), body, call)
        if m := re.fullmatch(r'/channels/(\d+)/messages/(\d+)', path):
            if int(m.group(2)) >= 1 << 63:  # as Discord answers an id too big to be a snowflake
                return 400, {'message': 'Invalid Form Body', 'code': 50035}
            known = self.messages.get(int(m.group(2)))
            if known is None:
                return 404, {'message': 'Unknown Message', 'code': 10008}
            if method == 'PATCH':
                changes = body if isinstance(body, dict) else {}
                if 'content' in changes:
                    known['content'] = changes['content']
                if 'components' in changes:
                    known['components'] = self._numbered(changes['components'] or [])
                if call.files:
                    known['attachments'] = self._attachments(call)
                known['edited_timestamp'] = _now()
                return 200, known
            if method == 'GET':
                return 200, known
            if method == 'DELETE':
                del self.messages[int(m.group(2))]
                return 204, None
        if m := re.fullmatch(r'/interactions/(\d+)/([^/]+)/callback', path):
            kind = int((body or {}).get('type', 0))
            answer: dict[str, Any] = {'interaction': {'id': m.group(1), 'type': 2}}
            if kind in (4, 7):
                data = (body or {}).get('data') or {}
                msg = self._stored_message(self._channel_of(m.group(2)), data, call)
                answer['interaction']['response_message_id'] = msg['id']
                answer['resource'] = {'type': kind, 'message': msg}
            return 200, answer
        if (m := re.fullmatch(r'/webhooks/(\d+)/([^/]+)', path)) and method == 'POST':
            return 200, self._stored_message(self._channel_of(m.group(2)), body, call, webhook=True)
        if m := re.fullmatch(r'/webhooks/(\d+)/([^/]+)/messages/([^/]+)', path):
            channel = self._channel_of(m.group(2))
            if method == 'PATCH':
                return 200, self._stored_message(channel, body, call, webhook=True)
            if method == 'GET':
                return 200, self._stored_message(channel, {}, call, webhook=True)
            if method == 'DELETE':
                return 204, None
        if re.fullmatch(r'/channels/(\d+)/typing', path):
            return 204, None
        if m := re.fullmatch(r'/users/@me/channels', path):
            return 200, {'id': str(self.snowflake()), 'type': 1, 'recipients': [], 'last_message_id': None}
        return 404, {'message': f'emulator: no route for {method} {path}', 'code': 0}
