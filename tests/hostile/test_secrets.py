"""Secrets: a key or token never appears in a message, a log line, a file sent or a template."""

from __future__ import annotations

import logging
import pathlib

import pytest

from engine.config import Config, ConfigError, looks_like_secret, read_secret, redact
from engine.templates import render

from .conftest import SECRET, Models, World, assert_safe, bounded

SHAPES = [
    SECRET,
    'sk-proj-' + 'A1b2C3d4' * 6,
    'MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.' + 'x1Y2z3' * 6,  # a Discord bot token's shape
    'ghp_' + 'a1B2c3D4e5' * 4,
    'xoxb-1234567890-' + 'abcdef123456' * 2,
    '0123456789abcdef0123456789abcdef01234567',
]


@pytest.mark.parametrize('secret', SHAPES, ids=[s[:8] for s in SHAPES])
def test_a_secret_shaped_value_is_recognised_and_hidden(secret: str) -> None:
    assert looks_like_secret(secret)
    assert secret not in redact(f'cannot read {secret}: no such file')


@pytest.mark.parametrize(
    'text', ['data/keys/openai.txt', '/run/secrets/discord_token', 'flows', 'admins', 'reviews_pos']
)
def test_an_ordinary_path_or_name_is_not_mistaken_for_a_secret(text: str) -> None:
    assert not looks_like_secret(text)


@pytest.mark.parametrize('env', ['OPENAI_API_KEY', 'DISCORD_TOKEN'])
def test_a_secret_pasted_as_the_secret_file_is_not_echoed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, env: str
) -> None:
    monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv(f'{env}_FILE', SECRET)
    with caplog.at_level(logging.DEBUG), pytest.raises(ConfigError) as caught:
        read_secret(None, None, env)
    assert_safe(caught.value)
    assert 'looks like the secret itself' in str(caught.value)
    assert SECRET not in caplog.text


def test_a_secret_pasted_as_api_key_file_stops_the_models_plugin_plainly(world: World) -> None:
    config = Config(bot=world.config.bot, sections={'models': {'api_key_file': SECRET}}, path=world.config.path)
    from engine.plugins import SetupContext
    from engine.states.actions import ActionRegistry
    from engine.store import MemoryStore
    from integrations.models import setup

    from .conftest import _Quiet

    with pytest.raises(ConfigError) as caught:
        setup(SetupContext(config=config, actions=ActionRegistry(), store=MemoryStore(), notifier=_Quiet()))
    assert_safe(caught.value)


def test_a_secret_pasted_as_token_file_stops_discord_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    from integrations.discord.config import load_discord_config

    monkeypatch.delenv('DISCORD_TOKEN', raising=False)
    monkeypatch.delenv('DISCORD_TOKEN_FILE', raising=False)
    with pytest.raises(ConfigError) as caught:
        load_discord_config(Config(sections={'discord': {'token_file': SECRET}})).resolved_token()
    assert_safe(caught.value)


@pytest.mark.parametrize('provider', [SECRET, 'sk-' + 'z9' * 20])
def test_a_secret_in_a_validated_setting_is_hidden_in_the_refusal(provider: str) -> None:
    from engine.config import section
    from integrations.models.config import ModelsConfig

    with pytest.raises(ConfigError) as caught:
        section(Config(sections={'models': {'provider': provider}}), 'models', ModelsConfig)
    assert provider not in str(caught.value) and '[hidden]' in str(caught.value)


TEMPLATES = [
    '{{ bot }}',
    '{{ bot.token }}',
    '{{ config }}',
    '{{ environ }}',
    '{{ self }}',
    '{{ cycler.__init__.__globals__ }}',
]


@pytest.mark.parametrize('template', TEMPLATES)
def test_no_template_reaches_a_secret(template: str) -> None:
    try:
        text = render(template, {'bot': {'name': 'flowbot', 'prefix': '!'}})
    except Exception as exc:  # undefined or refused: either way nothing leaks
        text = str(exc)
    assert SECRET not in text


@pytest.mark.parametrize('name', ['keys/openai.txt', 'keys', 'flowbot.sqlite3-wal', '../bot.toml'])
async def test_getfile_and_archive_never_hand_out_the_key_file(models: Models, world: World, name: str) -> None:
    from engine.states.actions import ActionError

    for action, arg in (('dataset.getfile', 'name'), ('dataset.archive', 'path')):
        try:
            result = await models.call(action, **{arg: name})
        except ActionError as exc:
            assert_safe(exc)
            continue
        packed = pathlib.Path(result['path']).read_bytes()
        assert SECRET.encode() not in packed


@pytest.mark.parametrize(
    'url',
    [
        'postgresql://flowbot:{s}@127.0.0.1:1/flowbot',
        'postgresql://127.0.0.1:1/flowbot?user=flowbot&password={s}',
        'postgres://127.0.0.1:1/flowbot?password={s}&user=flowbot',
    ],
)
def test_a_store_password_is_never_echoed_when_the_store_cannot_be_reached(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    from engine.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('FLOWBOT_CONFIG', raising=False)
    monkeypatch.setenv('FLOWBOT_STORE', url.format(s='hunter2-store-password'))
    assert main(['export', 'jobs']) == 1
    err = capsys.readouterr().err
    assert 'cannot connect to the store' in err and 'hunter2' not in err


@pytest.mark.parametrize(
    ('content', 'reason'),
    [('binary', 'not UTF-8 text'), ('endless', 'too long for a key or token'), ('huge', 'too long for a key or token')],
)
def test_a_secret_file_that_cannot_hold_a_secret_says_why_in_bounded_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path, content: str, reason: str
) -> None:
    path = tmp_path / 'token'
    if content == 'binary':
        path.write_bytes(b'\xff\xfe' + SECRET.encode())
    elif content == 'huge':
        path.write_text(SECRET * 10_000)
    else:
        path = pathlib.Path('/dev/zero')
    monkeypatch.delenv('DISCORD_TOKEN', raising=False)
    monkeypatch.setenv('DISCORD_TOKEN_FILE', str(path))
    with bounded(), pytest.raises(ConfigError) as caught:
        read_secret(None, None, 'DISCORD_TOKEN')
    assert_safe(caught.value)
    assert f'cannot read DISCORD_TOKEN file {path}: ' in str(caught.value) and reason in str(caught.value)


def test_a_secret_read_from_a_pipe_works(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    import os
    import threading

    fifo = tmp_path / 'token'
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text(SECRET + '\n'))
    writer.start()
    monkeypatch.delenv('DISCORD_TOKEN', raising=False)
    monkeypatch.setenv('DISCORD_TOKEN_FILE', str(fifo))
    assert read_secret(None, None, 'DISCORD_TOKEN') == SECRET
    writer.join(5)
