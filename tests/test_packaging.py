"""The wheel: it lists every package, carries the shipped flows, and runs a bot folder outside the checkout."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile

import pytest

import engine

REPO = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / 'pyproject.toml').read_text(encoding='utf-8'))

_NOT_SOURCES = {'.venv', '.git', '__pycache__', '.mypy_cache', '.ruff_cache', '.pytest_cache', 'build', 'dist'}


def test_every_package_of_the_checkout_is_listed_for_the_wheel() -> None:
    setuptools = PYPROJECT['tool']['setuptools']
    found = {
        '.'.join(init.parent.relative_to(REPO).parts)
        for top in ('engine', 'integrations')
        for init in (REPO / top).rglob('__init__.py')
    }
    data = {'engine.shipped_flows', 'engine.shipped_flows.tests', 'engine.shipped_flows.tests.files'}
    assert set(setuptools['packages']) == found | data
    assert setuptools['package-dir'] == {'engine.shipped_flows': 'flows'}


def test_the_version_is_written_in_one_place() -> None:
    assert 'version' not in PYPROJECT['project'] and PYPROJECT['project']['dynamic'] == ['version']
    assert PYPROJECT['tool']['setuptools']['dynamic']['version'] == {'attr': 'engine.__version__'}


def _ignore(folder: str, names: list[str]) -> set[str]:
    top = pathlib.Path(folder) == REPO
    return {n for n in names if n in _NOT_SOURCES or n.endswith('.egg-info') or (top and n == 'data')}


def _run(args: list[str | pathlib.Path], cwd: pathlib.Path, env: dict[str, str], stdin: str | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f'{args} exited with {done.returncode}\n{done.stdout}\n{done.stderr}'
    return done.stdout


@pytest.mark.slow
def test_the_built_wheel_installed_in_a_new_venv_runs_a_bot_folder_outside_the_checkout(
    tmp_path: pathlib.Path,
) -> None:
    """Build the wheel from a copy of the sources, install it into a new venv, and use only that venv.

    The venv borrows the dependencies from the test's own environment (a ``.pth`` line naming its
    site-packages, whose own ``.pth`` files, such as an editable install's, are not run), so nothing
    is downloaded; flowbot itself must come from the wheel, which the test checks by its import paths.
    """
    assert not tmp_path.is_relative_to(REPO)
    env = {k: v for k, v in os.environ.items() if not k.startswith(('FLOWBOT_', 'PYTHON', 'DISCORD_', 'OPENAI_'))}
    source = tmp_path / 'source'
    shutil.copytree(REPO, source, ignore=_ignore)
    _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--quiet', '-w', tmp_path / 'dist', source], tmp_path, env)
    [wheel] = (tmp_path / 'dist').glob('flowbot-*.whl')
    names = set(zipfile.ZipFile(wheel).namelist())
    flows = REPO / 'flows'
    assert {f'engine/shipped_flows/{p.relative_to(flows).as_posix()}' for p in flows.rglob('*') if p.is_file()} <= names
    assert not any(n.startswith(('tests/', 'flows/', 'benchmarks/')) for n in names)
    assert 'engine/locale/ru/LC_MESSAGES/flowbot.po' in names  # compiled at first use, no build step

    venv = tmp_path / 'venv'
    _run([sys.executable, '-m', 'venv', '--without-pip', venv], tmp_path, env)
    python, flowbot = venv / 'bin' / 'python', venv / 'bin' / 'flowbot'
    site = pathlib.Path(
        _run([python, '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'], tmp_path, env).strip()
    )
    (site / '_borrowed_dependencies.pth').write_text(sysconfig.get_path('purelib') + '\n', encoding='utf-8')
    pip = [sys.executable, '-m', 'pip', '--python', python, 'install', '--quiet', '--no-index', '--no-deps']
    _run([*pip, '--ignore-installed', wheel], tmp_path, env)
    _run([sys.executable, '-m', 'pip', '--python', python, 'check'], tmp_path, env)  # its dependencies are there

    where = _run(
        [
            python,
            '-c',
            'import engine, integrations, importlib.metadata as m; from engine.shipped import shipped_flows;'
            'print(engine.__file__, integrations.__file__, shipped_flows(), m.version("flowbot"), sep="\\n")',
        ],
        tmp_path,
        env,
    ).split()
    assert all(pathlib.Path(p).is_relative_to(site) for p in where[:3]), where
    assert where[2:] == [str(site / 'engine' / 'shipped_flows'), engine.__version__]
    assert _run([flowbot, '--version'], tmp_path, env) == f'flowbot {engine.__version__}\n'

    empty = tmp_path / 'empty'
    empty.mkdir()
    assert (
        '15 flows checked, 0 problems'
        in subprocess.run(
            [flowbot, 'lint'], cwd=empty, env=env, capture_output=True, text=True, timeout=120, check=True
        ).stderr
    )
    assert ' 0 failed (15 script files)' in _run([flowbot, 'test'], empty, env)

    assert 'flowbot chat' in _run([flowbot, 'init', 'my bot'], tmp_path, env)
    bot = tmp_path / 'my bot'
    chat = _run([flowbot, 'chat'], bot, env, stdin='!hi\n:quit\n')
    assert 'Hi, ' in chat and 'I am flowbot. Type !instruction to see what I can do.' in chat
    assert ' 0 failed (15 script files)' in _run([flowbot, 'test'], bot, env)
    assert (bot / 'data' / 'flowbot.sqlite3').is_file()
    settings = bot / 'bot.toml'  # in Russian: the flows' texts and the installed catalog
    settings.write_text(settings.read_text(encoding='utf-8').replace('language = "en"', 'language = "ru"', 1))
    russian = _run([flowbot, 'chat'], bot, env, stdin='!hi\n!nope\n:quit\n')
    assert 'Привет, ' in russian and 'Неизвестная команда «nope»' in russian
