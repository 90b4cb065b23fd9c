"""``flowbot lint`` (and the refusal to start on invalid flows) through ``engine.cli.main``."""

from __future__ import annotations

import asyncio
import pathlib

import pytest

from engine.cli import main

REPO = pathlib.Path(__file__).resolve().parents[2]

GOOD = '[flow]\nname = "good"\n[trigger]\ncommand = "good"\n[states.a]\nkind = "end"\ntext = "ok"\n'
BAD = '[flow]\nname = "bad"\n[trigger]\ncommand = "bad"\n[states.a]\nkind = "say"\ntext = "x"\nnext = "nowhere"\n'


@pytest.fixture
def lint_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """An empty working folder without bot.toml, so defaults apply."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('FLOWBOT_CONFIG', raising=False)
    return tmp_path


def test_lint_of_the_shipped_flows_passes(lint_dir: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(['lint', str(REPO / 'flows')]) == 0
    out, err = capsys.readouterr()
    assert out == ''
    assert err.strip().endswith('flows checked, 0 problems')


def test_lint_exits_non_zero_and_prints_file_line_and_code(
    lint_dir: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (lint_dir / 'good.toml').write_text(GOOD)
    (lint_dir / 'bad.toml').write_text(BAD)
    assert main(['lint', str(lint_dir / 'good.toml')]) == 0
    capsys.readouterr()
    assert main(['lint', str(lint_dir)]) == 1
    out, err = capsys.readouterr()
    assert out == f'{lint_dir / "bad.toml"}:8: state "a" goes to unknown state "nowhere" [unknown-state]\n'
    assert '2 flows checked, 1 problem' in err


def test_lint_reports_toml_syntax_errors_with_line(lint_dir: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (lint_dir / 'broken.toml').write_text('[flow]\nname = "x"\n[states.a]\nkind = = "end"\n')
    assert main(['lint', str(lint_dir / 'broken.toml')]) == 1
    out, _ = capsys.readouterr()
    assert out.startswith(f'{lint_dir / "broken.toml"}:4: TOML syntax error: ')
    assert out.rstrip().endswith('[toml]')


def test_lint_github_format_makes_annotations(lint_dir: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (lint_dir / 'bad.toml').write_text(BAD)
    assert main(['lint', '--format', 'github', str(lint_dir)]) == 1
    out, err = capsys.readouterr()
    assert out == (
        f'::error file={lint_dir / "bad.toml"},line=8,title=flowbot lint (unknown-state)::'
        'state "a" goes to unknown state "nowhere"\n'
    )
    assert err == ''


def test_lint_without_paths_checks_the_configured_flow_folders(
    lint_dir: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (lint_dir / 'mine').mkdir()
    (lint_dir / 'mine' / 'bad.toml').write_text(BAD)
    (lint_dir / 'bot.toml').write_text('[bot]\nflows = ["mine"]\nplugins = []\n')
    assert main(['lint']) == 1
    assert '[unknown-state]' in capsys.readouterr().out


def test_lint_knows_the_actions_of_configured_plugins(
    lint_dir: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = '[flow]\nname = "f"\n[trigger]\ncommand = "f"\n[states.a]\nkind = "call"\naction = "feedback.save"\nargs = { text = "x" }\n'
    (lint_dir / 'f.toml').write_text(flow)
    (lint_dir / 'bot.toml').write_text('[bot]\nplugins = []\n')
    assert main(['lint', str(lint_dir / 'f.toml')]) == 1
    assert 'unknown action "feedback.save"' in capsys.readouterr().out
    (lint_dir / 'bot.toml').write_text('[bot]\nplugins = ["integrations.builtin"]\n')
    assert main(['lint', str(lint_dir / 'f.toml')]) == 0


def test_chat_refuses_to_start_on_invalid_flows(lint_dir: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (lint_dir / 'flows').mkdir()
    (lint_dir / 'flows' / 'bad.toml').write_text(BAD)
    (lint_dir / 'bot.toml').write_text('[bot]\nstore = ":memory:"\n')
    assert main(['chat']) == 1
    out, err = capsys.readouterr()
    assert '[unknown-state]' in out
    assert 'nothing was started' in err


def test_bad_configuration_exits_with_2(lint_dir: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (lint_dir / 'bot.toml').write_text('[bot]\nnmae = "x"\n')
    assert main(['lint']) == 2
    assert 'configuration error' in capsys.readouterr().err


@pytest.mark.parametrize(
    ('plugin', 'reason'),
    [('no_such_plugin_module', 'cannot be imported'), ('json', 'is not a flowbot plugin')],
)
@pytest.mark.parametrize('command', ['lint', 'chat'])
def test_a_plugin_that_is_not_one_is_a_configuration_error_naming_it(
    lint_dir: pathlib.Path, capsys: pytest.CaptureFixture[str], command: str, plugin: str, reason: str
) -> None:
    (lint_dir / 'bot.toml').write_text(f'[bot]\nstore = ":memory:"\nplugins = ["integrations.builtin", "{plugin}"]\n')
    assert main([command]) == 2
    err = capsys.readouterr().err
    assert f'configuration error: {lint_dir / "bot.toml"}: [bot] plugins: {plugin} {reason}' in err
    assert 'Traceback' not in err


@pytest.mark.parametrize('store', ['taken/flowbot.sqlite3', 'taken/deeper/flowbot.sqlite3', 'bad\\u0000name/x.sqlite3'])
def test_a_store_whose_folder_cannot_be_made_is_a_store_error_without_a_traceback(
    lint_dir: pathlib.Path, capsys: pytest.CaptureFixture[str], store: str
) -> None:
    (lint_dir / 'taken').write_text('a file where the store folder goes')
    (lint_dir / 'bot.toml').write_text(f'[bot]\nstore = "{store}"\n')
    assert main(['chat']) == 1
    err = capsys.readouterr().err
    assert 'flowbot: store error: cannot open the store' in err and 'Traceback' not in err


async def test_export_into_a_missing_folder_says_so_without_a_traceback(
    lint_dir: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.store import open_store

    store = open_store(str(lint_dir / 'store.sqlite3'))
    await store.put_record('feedback', 'f1', {'text': 'fine'})
    await store.close()
    (lint_dir / 'bot.toml').write_text('[bot]\nstore = "store.sqlite3"\n')
    out = lint_dir / 'missing' / 'feedback.jsonl'
    assert await asyncio.to_thread(main, ['export', 'feedback', '-o', str(out)]) == 1
    err = capsys.readouterr().err
    assert f'flowbot export: cannot write {out}' in err and 'Traceback' not in err


def test_run_with_a_malformed_discord_token_says_so_without_a_traceback(
    lint_dir: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (lint_dir / 'flows').mkdir()
    (lint_dir / 'flows' / 'good.toml').write_text(GOOD)
    (lint_dir / 'bot.toml').write_text(
        '[bot]\nstore = ":memory:"\nreload = false\nplugins = ["integrations.builtin"]\n'
    )
    monkeypatch.setenv('DISCORD_TOKEN', 'not-a-token')
    assert main(['run']) == 1
    err = capsys.readouterr().err
    assert 'flowbot run: the Discord bot stopped: Unexpected token format' in err
    assert 'Traceback' not in err and 'not-a-token' not in err
