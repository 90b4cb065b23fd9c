"""The [discord] section: defaults, validation, the token never shown."""

from __future__ import annotations

import pathlib

import pytest

from engine.config import Config, ConfigError
from engine.store import Shards
from integrations.discord.config import load_discord_config


def test_defaults_and_token_file(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv('DISCORD_TOKEN', raising=False)
    monkeypatch.delenv('DISCORD_TOKEN_FILE', raising=False)
    secret = tmp_path / 'token'
    secret.write_text('abc.def.ghi\n')
    config = load_discord_config(Config(sections={'discord': {'token_file': str(secret), 'guild_ids': [5]}}))
    assert config.prefix == '!' and config.max_attachment_bytes == 25 * 1024 * 1024 and config.guild_ids == [5]
    assert config.resolved_token() == 'abc.def.ghi'
    assert 'abc.def' not in repr(load_discord_config(Config(sections={'discord': {'token': 'abc.def.ghi'}})))


def test_missing_token_and_bad_values_are_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv('DISCORD_TOKEN', raising=False)
    monkeypatch.delenv('DISCORD_TOKEN_FILE', raising=False)
    with pytest.raises(ConfigError, match='no Discord token'):
        load_discord_config(Config()).resolved_token()
    with pytest.raises(ConfigError, match=r'\[discord\]'):
        load_discord_config(Config(sections={'discord': {'prefx': '?'}}))
    with pytest.raises(ConfigError, match='defer_after'):
        load_discord_config(Config(sections={'discord': {'defer_after': 5}}))


def test_shards_come_from_the_section_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv('FLOWBOT_SHARD_IDS', raising=False)
    monkeypatch.delenv('FLOWBOT_SHARD_COUNT', raising=False)
    assert load_discord_config(Config()).shards() is None  # hikari's default: every shard Discord recommends
    assert load_discord_config(Config(sections={'discord': {'shard_count': 3}})).shards() == Shards((0, 1, 2), 3)
    both = {'discord': {'shard_count': 4, 'shard_ids': [1, 3]}}
    assert load_discord_config(Config(sections=both)).shards() == Shards((1, 3), 4)
    monkeypatch.setenv('FLOWBOT_SHARD_IDS', '2')
    assert load_discord_config(Config(sections=both)).shards() == Shards((2,), 4)
    monkeypatch.setenv('FLOWBOT_SHARD_COUNT', '2')
    monkeypatch.setenv('FLOWBOT_SHARD_IDS', '0, 1')
    assert load_discord_config(Config()).shards() == Shards((0, 1), 2)


def test_shards_that_do_not_fit_are_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv('FLOWBOT_SHARD_COUNT', raising=False)
    monkeypatch.delenv('FLOWBOT_SHARD_IDS', raising=False)
    with pytest.raises(ConfigError, match=r'shard ids \[2\] do not fit shard_count 2'):
        load_discord_config(Config(sections={'discord': {'shard_count': 2, 'shard_ids': [2]}}))
    with pytest.raises(ConfigError, match='do not fit'):
        load_discord_config(Config(sections={'discord': {'shard_count': 2, 'shard_ids': []}}))
    monkeypatch.setenv('FLOWBOT_SHARD_IDS', 'one')
    with pytest.raises(ConfigError, match="FLOWBOT_SHARD_IDS='one': expected numbers separated by commas"):
        load_discord_config(Config(sections={'discord': {'shard_count': 2}}))
