"""``flowbot init``: a bot folder of its own, and where the bot finds its flows without one."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from engine.app import build_app
from engine.cli import main
from engine.config import ConfigError, load_config
from engine.scaffold import GITIGNORE, init_folder
from engine.shipped import flow_folders, shipped_flows
from engine.store import MemoryStore
from tests.integrations.console.chat_process import ChatProcess

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_environment_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ('FLOWBOT_CONFIG', 'FLOWBOT_DATA', 'FLOWBOT_STORE', 'DISCORD_TOKEN', 'DISCORD_TOKEN_FILE'):
        monkeypatch.delenv(name, raising=False)


def _tree(folder: pathlib.Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` (folders as ``None``), to compare a folder before and after."""
    return {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob('*'))}


def test_the_shipped_flows_in_a_checkout_are_the_top_level_flows_folder() -> None:
    assert shipped_flows() == REPO / 'flows'


def test_init_makes_a_bot_folder_with_the_shipped_flows_their_scripts_and_a_commented_config(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / 'new' / 'bot'
    assert main(['init', str(folder)]) == 0
    out = capsys.readouterr().out
    shipped = shipped_flows()
    for path in shipped.rglob('*'):
        if path.is_file():
            copy = folder / 'flows' / path.relative_to(shipped)
            assert copy.read_bytes() == path.read_bytes(), copy
    assert (folder / 'data').is_dir() and not any((folder / 'data').iterdir())
    assert (folder / '.gitignore').read_text() == GITIGNORE
    toml = (folder / 'bot.toml').read_text()
    assert toml.count('\n#') > 10 and 'flows = ["flows"]' in toml
    for step in ('flowbot chat', 'flowbot test', 'DISCORD_TOKEN', 'OPENAI_API_KEY', 'flowbot speech install'):
        assert step in out
    assert f'cd {folder}' in out and '15 flows to edit' in out


def test_the_written_config_loads_and_every_section_in_it_is_read(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    init_folder(tmp_path)
    config = load_config(tmp_path / 'bot.toml')
    assert flow_folders(config) == [tmp_path / 'flows']
    with caplog.at_level('WARNING'):
        build_app(config, store=MemoryStore())
    assert caplog.records == []


def test_init_into_a_folder_with_files_of_its_own_refuses_naming_them_and_writes_nothing(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / 'notes.txt').write_text('mine')
    (tmp_path / 'flows').mkdir()
    (tmp_path / 'flows' / 'hi.toml').write_text('my own greeting')
    (tmp_path / 'bot.toml').write_text('[bot]\n')
    before = _tree(tmp_path)
    assert main(['init', str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert 'nothing was written' in err and '--force' in err
    assert '\n  bot.toml\n' in err and '\n  flows/hi.toml' in err and 'notes.txt' not in err
    assert _tree(tmp_path) == before


def test_init_with_force_replaces_the_files_and_keeps_the_others(tmp_path: pathlib.Path) -> None:
    (tmp_path / 'notes.txt').write_text('mine')
    (tmp_path / 'flows').mkdir()
    (tmp_path / 'flows' / 'hi.toml').write_text('my own greeting')
    (tmp_path / 'flows' / 'extra.toml').write_text('my own flow')
    assert main(['init', str(tmp_path), '--force']) == 0
    assert (tmp_path / 'flows' / 'hi.toml').read_bytes() == (shipped_flows() / 'hi.toml').read_bytes()
    assert (tmp_path / 'notes.txt').read_text() == 'mine'
    assert (tmp_path / 'flows' / 'extra.toml').read_text() == 'my own flow'


def test_init_with_force_replaces_a_link_instead_of_writing_through_it(tmp_path: pathlib.Path) -> None:
    outside = tmp_path / 'outside.toml'
    outside.write_text('precious')
    folder = tmp_path / 'bot'
    folder.mkdir()
    (folder / 'bot.toml').symlink_to(outside)
    (folder / '.gitignore').symlink_to(tmp_path / 'dangling')
    assert main(['init', str(folder)]) == 1
    assert main(['init', str(folder), '--force']) == 0
    assert outside.read_text() == 'precious'
    assert not (folder / 'bot.toml').is_symlink() and 'flows = ["flows"]' in (folder / 'bot.toml').read_text()
    assert not (folder / '.gitignore').is_symlink() and not (tmp_path / 'dangling').exists()


def test_init_with_force_replaces_a_hard_link_instead_of_writing_into_the_file_it_shares(
    tmp_path: pathlib.Path,
) -> None:
    shared = tmp_path / 'shared.toml'
    shared.write_text('precious')
    folder = tmp_path / 'bot'
    folder.mkdir()
    os.link(shared, folder / 'bot.toml')
    assert main(['init', str(folder), '--force']) == 0
    assert shared.read_text() == 'precious'
    assert 'flows = ["flows"]' in (folder / 'bot.toml').read_text()


def test_a_folder_where_a_file_goes_is_never_removed_even_with_force(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / 'bot.toml').mkdir()
    (tmp_path / 'bot.toml' / 'keep.txt').write_text('mine')
    before = _tree(tmp_path)
    assert main(['init', str(tmp_path), '--force']) == 1
    assert 'bot.toml/ (a folder where the file bot.toml goes)' in capsys.readouterr().err
    assert _tree(tmp_path) == before


def test_a_file_where_the_folder_should_be_is_refused(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / 'bot'
    file.write_text('not a folder')
    assert main(['init', str(file)]) == 1
    assert f'{file} is a file, not a folder' in capsys.readouterr().err
    assert main(['init', str(file / 'deeper')]) == 1
    assert f'{file}, on the way to {file / "deeper"}, is a file' in capsys.readouterr().err
    (tmp_path / 'data').write_text('a file named data')
    assert main(['init', str(tmp_path)]) == 1
    assert 'data (a file where the folder data/ goes)' in capsys.readouterr().err
    assert file.read_text() == 'not a folder' and (tmp_path / 'data').read_text() == 'a file named data'


def test_init_never_writes_through_a_link_to_another_folder_even_with_force(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    folder = tmp_path / 'bot'
    folder.mkdir()
    (folder / 'flows').symlink_to(elsewhere)
    assert main(['init', str(folder), '--force']) == 1
    assert 'flows/ (a link to another folder' in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == [] and not (folder / 'bot.toml').exists()


def test_a_data_folder_linked_elsewhere_is_kept(tmp_path: pathlib.Path) -> None:
    disk = tmp_path / 'disk'
    disk.mkdir()
    folder = tmp_path / 'bot'
    folder.mkdir()
    (folder / 'data').symlink_to(disk)
    assert main(['init', str(folder)]) == 0
    assert (folder / 'data').is_symlink() and (folder / 'flows' / 'hi.toml').is_file()


@pytest.mark.parametrize('name', ['a' * 300, 'a/' * 2100])
def test_init_into_a_name_too_long_for_the_file_system_says_so_without_a_traceback(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    assert main(['init', str(tmp_path / name)]) == 1
    err = capsys.readouterr().err
    assert err.startswith('flowbot init: ') and 'File name too long' in err and 'Traceback' not in err
    assert list(tmp_path.iterdir()) == []


def _as_unprivileged() -> list[str]:
    """Root writes into read-only folders; without these capabilities it is refused like anyone."""
    return ['setpriv', '--bounding-set', '-dac_override,-dac_read_search,-fowner'] if os.geteuid() == 0 else []


def _init_process(folder: pathlib.Path, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, 'PYTHONPATH': str(REPO)}
    return subprocess.run(
        [*_as_unprivileged(), sys.executable, '-m', 'engine.cli', 'init', str(folder)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_init_into_a_read_only_folder_says_so_and_leaves_nothing(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / 'ro'
    folder.mkdir()
    folder.chmod(0o555)
    try:
        done = _init_process(folder, tmp_path)
    finally:
        folder.chmod(0o755)
    assert done.returncode == 1, done.stderr
    assert f'flowbot init: cannot write {folder}/' in done.stderr and 'Permission denied' in done.stderr
    assert 'Traceback' not in done.stderr and list(folder.iterdir()) == []


def test_a_write_failing_half_way_takes_back_what_the_run_created(tmp_path: pathlib.Path) -> None:
    files = tmp_path / 'flows' / 'tests' / 'files'
    files.mkdir(parents=True)
    files.chmod(0o555)
    try:
        done = _init_process(tmp_path, tmp_path)
    finally:
        files.chmod(0o755)
    assert done.returncode == 1
    assert f'cannot write {files}/' in done.stderr and 'what this run created was removed' in done.stderr
    assert _tree(tmp_path) == {'flows': None, 'flows/tests': None, 'flows/tests/files': None}


def test_a_bot_folder_with_spaces_works_from_another_working_folder(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / 'my bots' / 'first bot'
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(['init', str(folder)]) == 0
    assert f"cd '{folder}'" in capsys.readouterr().out
    (folder / 'flows' / 'hi.toml').write_text(
        (folder / 'flows' / 'hi.toml').read_text().replace('I am {{ bot.name }}', 'I am the edited bot')
    )
    assert main(['-c', str(folder / 'bot.toml'), 'lint']) == 0
    assert main(['-c', str(folder / 'bot.toml'), 'test', '--show']) == 1  # the script expects the old greeting
    out = capsys.readouterr().out
    assert 'FAILED' in out and 'I am the edited bot' in out and f'{folder}/flows/tests/hi.toml' in out
    assert list(elsewhere.iterdir()) == []


def test_chat_in_an_initialised_folder_answers_hi(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / 'a bot'
    init_folder(folder)
    chat = ChatProcess(folder, folder / 'data' / 'flowbot.sqlite3')
    try:
        chat.expect(r'^flowbot console: ')
        assert 'I am flowbot.' in chat.ask('!hi', r'^bot \[c\d+\]: Hi, ')
        chat.finish()
    finally:
        chat.close()


def test_without_flows_configured_the_flows_beside_bot_toml_else_the_shipped_ones_serve(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert flow_folders(load_config()) == [shipped_flows()]
    (tmp_path / 'bot.toml').write_text('[bot]\nstore = ":memory:"\n')
    assert flow_folders(load_config()) == [shipped_flows()]
    (tmp_path / 'flows').mkdir()
    assert flow_folders(load_config()) == [tmp_path / 'flows']


def test_lint_test_and_graph_find_the_shipped_flows_from_any_folder(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(['lint']) == 0
    assert '15 flows checked, 0 problems' in capsys.readouterr().err
    assert main(['test']) == 0
    assert ' 0 failed (15 script files)' in capsys.readouterr().out
    assert main(['graph', 'hi']) == 0
    assert capsys.readouterr().out.startswith('stateDiagram-v2')
    assert list(tmp_path.iterdir()) == []


def test_a_configured_flows_folder_that_is_missing_stops_chat_with_a_clear_message(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'bot.toml').write_text('[bot]\nflows = ["flows", "more"]\n')
    (tmp_path / 'flows').mkdir()
    for command in ('chat', 'run', 'test', 'lint', 'graph'):
        assert main([command]) == 2
        err = capsys.readouterr().err
        assert f'[bot] flows in {tmp_path / "bot.toml"}: no such folder or file: {tmp_path / "more"}' in err
        assert 'Traceback' not in err
    assert not (tmp_path / 'data').exists()
    with pytest.raises(ConfigError, match='remove "flows" to serve the shipped flows'):
        flow_folders(load_config())


def test_an_installation_without_its_shipped_flows_says_so_instead_of_a_traceback(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import engine.shipped

    monkeypatch.setattr(engine.shipped, '_HERE', tmp_path / 'site-packages' / 'engine')
    monkeypatch.chdir(tmp_path)
    assert main(['init', 'bot']) == 1
    assert 'the shipped flows are missing from this installation' in capsys.readouterr().err
    assert main(['chat']) == 2
    assert 'reinstall flowbot, or set [bot] flows' in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
