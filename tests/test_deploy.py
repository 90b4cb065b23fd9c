"""The deployment files in deploy/ and the settings docs/deploy.md shows are ones flowbot accepts."""

from __future__ import annotations

import json
import pathlib
import re
import tomllib

import pytest

from engine.cli import main
from engine.config import load_config, section
from engine.store import Shards
from integrations.discord.config import load_discord_config
from integrations.models.config import WORKER_TASKS, ModelsConfig

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


_OUR_ENV = re.compile(r'\b(FLOWBOT_[A-Z_]+|DISCORD_TOKEN|OPENAI_API_KEY(?:_FILE)?)\b')
"""Environment variables of ours (the PostgreSQL image reads its own ``POSTGRES_*``)."""


def _flowbot_commands() -> list[list[str]]:
    """Every flowbot command line the deployment files run: the image's, compose's and systemd's."""
    yaml = pytest.importorskip('yaml')
    dockerfile = (REPO / 'deploy' / 'Dockerfile').read_text(encoding='utf-8')
    [entrypoint] = re.findall(r'^ENTRYPOINT (\[.*\])$', dockerfile, flags=re.M)
    [default] = re.findall(r'^CMD (\[.*\])$', dockerfile, flags=re.M)
    assert json.loads(entrypoint) == ['flowbot']
    commands = [json.loads(default)]
    compose = yaml.safe_load((REPO / 'deploy' / 'compose.yaml').read_text(encoding='utf-8'))
    commands += [service['command'] for service in compose['services'].values() if 'command' in service]
    unit = (REPO / 'deploy' / 'flowbot@.service').read_text(encoding='utf-8')
    for line in re.findall(r'^ExecStart=(.*)$', unit, flags=re.M):
        program, *args = line.split()
        assert program.endswith('/bin/flowbot'), line
        commands.append(args)
    return commands


def test_every_command_the_deployment_files_run_is_one_the_cli_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    commands = _flowbot_commands()
    assert ['run'] in commands and ['worker'] in commands
    for command in commands:
        with pytest.raises(SystemExit) as exit_:
            main([*command, '--help'])
        assert exit_.value.code == 0, command
    assert 'usage: flowbot' in capsys.readouterr().out


def test_the_compose_file_parses_and_its_services_share_what_workers_need() -> None:
    yaml = pytest.importorskip('yaml')
    compose = yaml.safe_load((REPO / 'deploy' / 'compose.yaml').read_text(encoding='utf-8'))
    services = compose['services']
    declared = set(compose['volumes'])
    for name, service in services.items():
        for volume in service.get('volumes', []):
            source = volume.split(':')[0]
            assert source.startswith('./') or source in declared, (name, volume)
            if source.startswith('./'):
                assert (REPO / 'deploy' / source).exists(), (name, volume)
    mounts = {name: {v.split(':')[1] for v in s.get('volumes', [])} for name, s in services.items()}
    for bot in ('bot-0', 'bot-1'):  # job and task files are written by one side and read by the other
        assert {'/app/data/jobs', '/app/data/tasks'} <= mounts[bot] & mounts['worker']
    for name in ('bot-0', 'bot-1', 'worker'):
        assert services[name]['build']['dockerfile'] == 'deploy/Dockerfile'


def test_the_dockerfile_copies_what_exists_and_installs_a_known_extra() -> None:
    dockerfile = (REPO / 'deploy' / 'Dockerfile').read_text(encoding='utf-8')
    for sources in re.findall(r'^COPY (.+) \S+$', dockerfile, flags=re.M):
        for source in sources.split():
            assert (REPO / source).exists(), source
    pyproject = tomllib.loads((REPO / 'pyproject.toml').read_text(encoding='utf-8'))
    for extra in re.findall(r"pip install .*'\.\[(\w+)\]'", dockerfile):
        assert extra in pyproject['project']['optional-dependencies'], extra
    assert pyproject['project']['scripts']['flowbot'] == 'engine.cli:main'


def test_every_environment_variable_the_deployment_files_set_is_read_by_flowbot() -> None:
    named: set[str] = set()
    for path in (REPO / 'deploy').iterdir():
        named |= set(_OUR_ENV.findall(path.read_text(encoding='utf-8')))
    named |= set(_OUR_ENV.findall((REPO / 'docs' / 'deploy.md').read_text(encoding='utf-8')))
    assert {'FLOWBOT_STORE', 'FLOWBOT_SHARD_IDS', 'FLOWBOT_SHARD_COUNT', 'FLOWBOT_DATA', 'DISCORD_TOKEN'} <= named
    code = '\n'.join(
        p.read_text(encoding='utf-8') for folder in ('engine', 'integrations') for p in (REPO / folder).rglob('*.py')
    )
    unread = sorted(name for name in named if f"'{name}'" not in code)
    assert not unread, f'named in deploy/ or docs/deploy.md but read nowhere: {unread}'


def test_the_compose_bot_toml_sends_only_known_task_kinds_to_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('FLOWBOT_STORE', 'postgresql://flowbot:pw@postgres/flowbot')
    models = section(load_config(REPO / 'deploy' / 'bot.toml'), 'models', ModelsConfig)
    assert set(models.worker_tasks) <= set(WORKER_TASKS) and models.worker_tasks
    with pytest.raises(ValueError, match='unknown task kind'):
        ModelsConfig(worker_tasks=['speech.listen'])
