"""Hostile or careless configuration: wrong types refused with file:line and the expected type;
a value shaped like a secret is never echoed."""

from __future__ import annotations

import asyncio
import pathlib

import pytest

from engine.api import ConversationKey, User
from engine.config import Config, ConfigError, load_config, section
from engine.doubles import RecordingAdapter
from engine.flows.loader import load_paths
from engine.plugins import SetupContext
from engine.states.actions import ActionContext, ActionRegistry
from engine.store import MemoryStore

from .conftest import SECRET, World, _Quiet, assert_safe, bounded, make_trap

# (the offending lines, the key named in the message, the expected type in words)
WRONG = [
    ('[bot]\nreload = "no"', 'bot.reload', 'true or false'),
    ('[bot]\nreload = "false"', 'bot.reload', 'true or false'),
    ('[bot]\nreload = 0', 'bot.reload', 'true or false'),
    ('[bot]\nflows = "flows"', 'bot.flows', 'a list'),
    ('[bot]\nflows = [1, 2]', 'bot.flows', 'a path'),
    ('[bot]\nplugins = "integrations.builtin"', 'bot.plugins', 'a list'),
    ('[bot]\nname = 42', 'bot.name', 'a string'),
    ('[bot]\nname = true', 'bot.name', 'a string'),
    ('[bot]\nname = ["a"]', 'bot.name', 'a string'),
    ('[bot]\nlanguage = { en = 1 }', 'bot.language', 'a string'),
    ('[bot]\ndata_root = 7', 'bot.data_root', 'a path'),
    ('[bot]\nstore = false', 'bot.store', 'a string'),
    ('[bot]\nprogress_interval = "fast"', 'bot.progress_interval', 'a number'),
    ('[bot]\nprogress_interval = true', 'bot.progress_interval', 'a number'),
    ('[bot]\nmaintainers_channel = 12', 'bot.maintainers_channel', 'a string'),
    ('[permissions.admins]\nusers = "123456"', 'permissions.admins.users', 'a list'),
    ('[permissions.admins]\nusers = [123456]', 'permissions.admins.users', 'a string'),
    ('[permissions.admins]\nroles = "987"', 'permissions.admins.roles', 'a list'),
    ('[permissions]\nadmins = "everyone"', 'permissions.admins', ''),
    ('[bot]\nprogress_interval = nan', 'bot.progress_interval', 'not nan'),
    ('[bot]\nprogress_interval = -1.5', 'bot', "'progress_interval' must be >= 0"),
    ('[bot]\nreload = "no"\nflows = "flows"', 'bot.flows', 'a list'),
]


@pytest.mark.parametrize(('lines', 'key', 'expected'), WRONG, ids=[w[0].replace('\n', ' ') for w in WRONG])
def test_a_wrong_type_is_refused_with_its_line_and_the_expected_type(
    tmp_path: pathlib.Path, lines: str, key: str, expected: str
) -> None:
    path = tmp_path / 'bot.toml'
    path.write_text('# flowbot\n' + lines + '\n', encoding='utf-8')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert_safe(message)
    assert key in message and expected in message
    line = next(
        i
        for i, text in enumerate(path.read_text().splitlines(), 1)
        if text.split('=')[0].strip() in key.split('.')[-1:] or f'[{key}]' == text
    )
    assert f'{path}:{line}:' in message, message


SECTIONS = [
    ('discord', {'guild_ids': '123'}, 'a list'),
    ('discord', {'guild_ids': ['123']}, 'a whole number'),
    ('discord', {'prefix': 1}, 'a string'),
    ('discord', {'reuse_connections': 'yes'}, 'true or false'),
    ('discord', {'max_attachment_bytes': '25MB'}, 'a whole number'),
    ('discord', {'max_attachment_bytes': 2.5}, 'a whole number'),
    ('discord', {'max_message_chars': 0}, 'between 1 and 2000'),
    ('discord', {'max_message_chars': 4000}, 'between 1 and 2000'),
    ('discord', {'edit_interval': float('nan')}, 'not nan'),
    ('models', {'poll_interval': float('nan')}, 'not nan'),
    ('models', {'history_turns': '10'}, 'a whole number'),
    ('models', {'switch_on_success': 'no'}, 'true or false'),
    ('models', {'limits': 'none'}, 'a table'),
    ('models', {'limits': {'max_upload_bytes': '1GB'}}, 'a whole number'),
    ('speech', {'language': ['ru']}, 'a string'),
]


@pytest.mark.parametrize(('name', 'table', 'expected'), SECTIONS, ids=[f'{s[0]}-{next(iter(s[1]))}' for s in SECTIONS])
def test_a_wrong_type_in_an_integration_section_is_refused(name: str, table: dict[str, object], expected: str) -> None:
    from integrations.discord.config import DiscordConfig
    from integrations.models.config import ModelsConfig
    from integrations.speech.config import SpeechConfig

    cls = {'discord': DiscordConfig, 'models': ModelsConfig, 'speech': SpeechConfig}[name]
    with pytest.raises(ConfigError) as caught:
        section(Config(sections={name: table}), name, cls)
    assert_safe(caught.value)
    assert f'[{name}]' in str(caught.value) and expected in str(caught.value)


def test_a_refusal_of_a_whole_section_names_it_without_an_empty_key() -> None:
    from integrations.discord.config import DiscordConfig

    with pytest.raises(ConfigError) as caught:
        section(Config(sections={'discord': {'shard_count': 2, 'shard_ids': [5]}}), 'discord', DiscordConfig)
    assert str(caught.value) == 'config: [discord]: shard ids [5] do not fit shard_count 2'


SECRET_SPOTS = [
    ('[bot]\nstore = ["{s}"]', 'bot.store'),
    ('[bot]\nname = {{ key = "{s}" }}', 'bot.name'),
    ('[bot]\n"{s}" = 1', 'bot'),
    ('[permissions.admins]\nusers = "{s}"', 'permissions.admins.users'),
    ('[bot]\nflows = "{s}"', 'bot.flows'),
    ('[bot]\nname = "x"\n{s} = 2', 'bot'),
    ('[bot]\nname = "{s}', ''),
]


@pytest.mark.parametrize(('lines', 'key'), SECRET_SPOTS, ids=[s[0].split('\n')[-1][:20] for s in SECRET_SPOTS])
def test_a_secret_pasted_in_the_wrong_place_is_never_echoed(tmp_path: pathlib.Path, lines: str, key: str) -> None:
    path = tmp_path / 'bot.toml'
    path.write_text(lines.format(s=SECRET) + '\n', encoding='utf-8')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert_safe(caught.value)
    assert key in str(caught.value)


def test_a_config_nested_too_deeply_to_read_is_refused_with_a_message(tmp_path: pathlib.Path) -> None:
    path = tmp_path / 'bot.toml'
    path.write_text('[bot]\nname = ' + '[' * 5000 + ']' * 5000 + '\n', encoding='utf-8')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert_safe(caught.value)
    assert str(path) in str(caught.value) and 'nested too deeply' in str(caught.value)


INSTRUCTION_TRAPS = ['fifo', 'dev-zero', 'secret', 'config', 'store-hardlink', 'secret-hardlink', 'store-wal', 'binary']


@pytest.mark.parametrize('trap', INSTRUCTION_TRAPS)
async def test_an_instruction_file_that_is_a_secret_a_special_file_or_binary_is_left_out_of_the_help(
    world: World, trap: str, caplog: pytest.LogCaptureFixture
) -> None:
    from integrations.builtin import setup

    if trap == 'binary':
        path = world.base / 'HELP.md'
        path.write_bytes(b'\xff\xfe\x00binary')
    else:
        path = make_trap(world, trap, world.root / 'help')
    world.config.bot.instruction_file = path
    flows, _problems = load_paths([pathlib.Path(__file__).resolve().parents[2] / 'flows'])
    ctx = SetupContext(
        config=world.config, actions=ActionRegistry(), store=MemoryStore(), notifier=_Quiet(), catalog=lambda: flows
    )
    setup(ctx)
    action = ctx.actions.get('help.instruction')
    assert action is not None
    context = ActionContext(
        key=ConversationKey('console', 'local', 'eve'), user=User('eve'), adapter=RecordingAdapter(), data={}
    )
    with bounded(megabytes=None):
        result = await asyncio.wait_for(action.fn(context), 5)
    assert_safe(result['text'])
    assert (
        '!feedback' in result['text'] and 'binary' not in result['text'] and f'instruction file {path}' in caplog.text
    )
