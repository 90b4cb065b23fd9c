"""The deployment files in deploy/ and the settings docs/deploy.md shows are ones flowbot accepts."""

from __future__ import annotations

import pathlib
import re

import pytest

from engine.config import load_config, section
from engine.store import Shards
from integrations.discord.config import load_discord_config
from integrations.models.config import ModelsConfig

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_the_compose_bot_toml_with_the_compose_environment_runs_one_shard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('FLOWBOT_SHARD_COUNT', '2')
    monkeypatch.setenv('FLOWBOT_SHARD_IDS', '1')
    monkeypatch.setenv('FLOWBOT_STORE', 'postgresql://flowbot:pw@postgres/flowbot')
    config = load_config(REPO / 'deploy' / 'bot.toml')
    assert load_discord_config(config).shards() == Shards((1,), 2)
    assert config.store_file is None  # nothing local when the store is PostgreSQL
    compose = (REPO / 'deploy' / 'compose.yaml').read_text(encoding='utf-8')
    assert re.findall(r'FLOWBOT_SHARD_IDS: "(\d+)"', compose) == ['0', '1']
    assert section(config, 'models', ModelsConfig).workers and 'command: ["worker"]' in compose


def test_the_systemd_template_names_its_shards_by_instance() -> None:
    unit = (REPO / 'deploy' / 'flowbot@.service').read_text(encoding='utf-8')
    assert 'Environment=FLOWBOT_SHARD_IDS=%i' in unit
    assert 'ExecStart=/srv/flowbot/.venv/bin/flowbot run' in unit
    assert 'Restart=always' in unit


def test_the_settings_shown_in_the_deploy_guide_parse(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    for name in ('FLOWBOT_SHARD_COUNT', 'FLOWBOT_SHARD_IDS', 'FLOWBOT_STORE'):
        monkeypatch.delenv(name, raising=False)
    guide = (REPO / 'docs' / 'deploy.md').read_text(encoding='utf-8')
    [shards, workers] = re.findall(r'```toml\n(.*?)```', guide, flags=re.S)
    path = tmp_path / 'bot.toml'
    path.write_text(shards + workers, encoding='utf-8')
    config = load_config(path)
    assert load_discord_config(config).shards() == Shards((0,), 2)
    assert config.store_spec.startswith('postgresql://')
    models = section(config, 'models', ModelsConfig)
    assert models.workers and models.worker_heartbeat == 10 and models.worker_stalled_after == 30
