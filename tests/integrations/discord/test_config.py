"""The [discord] section: defaults, validation, the token never shown."""

from __future__ import annotations

import pathlib

import pytest

from engine.config import Config, ConfigError
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
