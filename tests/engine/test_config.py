"""``bot.toml`` loading: what an operator gets told when the file is missing or wrong."""

from __future__ import annotations

import pathlib

import pytest

from engine.config import ConfigError, load_config


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ('FLOWBOT_CONFIG', 'FLOWBOT_DATA', 'FLOWBOT_STORE'):
        monkeypatch.delenv(name, raising=False)


def test_without_bot_toml_the_defaults_apply() -> None:
    config = load_config()
    assert config.bot.name == 'flowbot' and config.path is None


def test_a_config_file_named_but_missing_is_an_error_not_silent_defaults(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / 'prod.toml'
    with pytest.raises(ConfigError, match=f'no configuration file at {missing}'):
        load_config(missing)
    monkeypatch.setenv('FLOWBOT_CONFIG', str(missing))
    with pytest.raises(ConfigError, match='FLOWBOT_CONFIG'):
        load_config()


def test_an_unknown_bot_key_is_named_with_a_suggestion(tmp_path: pathlib.Path) -> None:
    path = tmp_path / 'bot.toml'
    path.write_text('[bot]\nnmae = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f'{path}:1: bot: unknown key nmae (did you mean "name"?)'


def test_a_section_no_plugin_reads_is_warned_about_with_a_suggestion(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    from engine.app import build_app

    (tmp_path / 'flows').mkdir()
    path = tmp_path / 'bot.toml'
    path.write_text(
        '[bot]\nstore = ":memory:"\nplugins = ["integrations.builtin"]\n[discrod]\nprefix = "?"\n[discord]\n'
    )
    with caplog.at_level('WARNING', logger='engine.app'):
        build_app(load_config(path))
    assert [r.getMessage() for r in caplog.records] == [
        f'{path}: section [discrod] is not read by any plugin (did you mean "discord"?); it has no effect'
    ]
