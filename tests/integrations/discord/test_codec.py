"""hikari reads and writes JSON through our orjson codec (``integrations.discord.codec``), and it round-trips what
hikari sends and receives."""

from __future__ import annotations

import json
from typing import Any

import hikari
import orjson
import pytest

from engine.app import App
from integrations.discord import codec

from .conftest import CHANNEL, GUILD, bot_running
from .emulator import DiscordEmulator


async def test_hikari_reads_gateway_and_rest_and_writes_requests_through_our_codec(
    emulator: DiscordEmulator, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[str | bytes] = []
    encoded: list[tuple[Any, bytes]] = []

    def loads(data: str | bytes) -> Any:
        decoded.append(data)
        return orjson.loads(data)

    def dumps(obj: Any) -> bytes:
        out = orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
        encoded.append((obj, out))
        return out

    monkeypatch.setattr(codec, 'loads', loads)
    monkeypatch.setattr(codec, 'dumps', dumps)
    async with bot_running(emulator, app):
        await emulator.message_create(
            channel_id=CHANNEL, guild_id=GUILD, author=emulator.user(11, 'ann'), content='!hi'
        )
        (reply,) = await emulator.wait_for_call('POST', rf'/channels/{CHANNEL}/messages')
    assert reply.content is not None and reply.content.startswith('Hi, ann!')
    # the gateway: READY and MESSAGE_CREATE decoded by us, IDENTIFY encoded by us
    assert any(b'"MESSAGE_CREATE"' in d for d in decoded if isinstance(d, bytes))
    assert any(isinstance(obj, dict) and obj.get('op') == 2 for obj, _ in encoded)
    # REST: the reply's body written by us, the created message read by us
    assert any(json.loads(out).get('content') == reply.content for _, out in encoded if out.startswith(b'{'))
    assert all(isinstance(out, bytes) for _, out in encoded)


async def test_with_speedups_hikari_asks_for_zstd_compression_and_the_bot_still_answers(
    emulator: DiscordEmulator, app: App
) -> None:
    async with bot_running(emulator, app):
        await emulator.message_create(
            channel_id=CHANNEL, guild_id=GUILD, author=emulator.user(11, 'ann'), content='!hi'
        )
        await emulator.wait_for_call('POST', rf'/channels/{CHANNEL}/messages')
    assert emulator._stream.compress == 'zstd-stream'


def test_dumps_gives_utf8_bytes_that_json_reads_back_the_same() -> None:
    payload = {
        'content': 'Привет, 世界! "quoted" \\ back\nline \u200b',
        'flags': hikari.MessageFlag.EPHEMERAL,
        'allowed_mentions': {'parse': [], 'users': ['123456789012345678']},
        'nonce': None,
        'tts': False,
        'embeds': [],
        'id': 18_446_744_073_709_551_615,  # the largest snowflake
        'ratio': 0.5,
    }
    out = codec.dumps(payload)
    assert isinstance(out, bytes)
    assert json.loads(out.decode('utf-8')) == json.loads(json.dumps(payload))
    assert 'Привет'.encode() in out  # written as UTF-8, not escaped
    assert json.loads(out)['flags'] == 64


def test_dumps_writes_integer_keys_as_strings_as_hikari_needs() -> None:
    assert codec.dumps({123: 'a', 'b': {4: [1]}}) == b'{"123":"a","b":{"4":[1]}}'


@pytest.mark.parametrize(
    'data',
    ['{"t":"READY","d":{"id":"1","n":[1,2.5,null,true]}}', b'{"t":"READY","d":{"id":"1","n":[1,2.5,null,true]}}'],
)
def test_loads_takes_bytes_and_str_alike(data: str | bytes) -> None:
    assert codec.loads(data) == {'t': 'READY', 'd': {'id': '1', 'n': [1, 2.5, None, True]}}


def test_loads_round_trips_what_dumps_wrote() -> None:
    payload = {'op': 2, 'd': {'token': 'x.y.z', 'intents': 37377, 'properties': {'os': 'linux'}, 'shard': [0, 1]}}
    assert codec.loads(codec.dumps(payload)) == payload


@pytest.mark.parametrize('bad', [b'', b'{"a":', 'not json', b'\xff\xfe'])
def test_loads_refuses_what_is_not_json_with_a_value_error_as_json_does(bad: str | bytes) -> None:
    with pytest.raises(ValueError):
        codec.loads(bad)
