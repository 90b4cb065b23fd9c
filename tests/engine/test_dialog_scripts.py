"""Dialog scripts: every shipped script passes, every shipped flow has one, and failures read like pytest's."""

from __future__ import annotations

import asyncio
import os
import pathlib
import textwrap

import pytest

from engine.cli import main
from engine.config import BotConfig, Config
from engine.dialogs import (
    ScriptError,
    format_results,
    load_script,
    run_paths,
    uncovered_flows,
)

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPTS = REPO / 'flows' / 'tests'


def _config() -> Config:
    """The shipped flows with the default plugins, as ``flowbot test`` runs them in a fresh checkout."""
    return Config(bot=BotConfig(flows=[REPO / 'flows']))


def _script(tmp_path: pathlib.Path, text: str, name: str = 'case.toml') -> pathlib.Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding='utf-8')
    return path


async def test_every_shipped_dialog_script_passes() -> None:
    results = await run_paths([SCRIPTS], _config())
    assert results, 'no shipped dialog scripts found'
    failed = [r for r in results if not r.passed]
    assert not failed, format_results(failed)


async def test_every_shipped_flow_has_a_dialog_script() -> None:
    results = await run_paths([SCRIPTS], _config())
    assert uncovered_flows(results, _config()) == []


async def test_a_wrong_expectation_fails_with_the_turn_expected_actual_and_a_diff(tmp_path: pathlib.Path) -> None:
    path = _script(
        tmp_path,
        """
        flow = "feedback"
        [[cases]]
        name = "wrong thanks"
        [[cases.turns]]
        command = "feedback"
        expect = "What would you like to tell the maintainers?"
        [[cases.turns]]
        text = "more dark mode"
        expect = "Thanks, noted!"
        """,
    )
    [result] = await run_paths([path], _config())
    assert not result.passed
    report = format_results([result])
    assert f'FAILED {path} :: wrong thanks' in report
    assert "turn 2 ('more dark mode'), output 1 of 1:" in report
    assert "expected text 'Thanks, noted!'" in report
    assert "actual text   'Thank you, your feedback is saved.'" in report
    assert '- Thanks, noted!' in report and '+ Thank you, your feedback is saved.' in report
    assert "user> 'more dark mode'" in report, 'the conversation so far is shown'
    assert report.rstrip().endswith('0 passed, 1 failed (1 script file)')


async def test_missing_outputs_state_data_records_and_calls_are_each_reported(tmp_path: pathlib.Path) -> None:
    base = """
        flow = "feedback"
        [[cases]]
        name = "c"
        {extra}
        [[cases.turns]]
        command = "feedback"
        args = "nice"
        {turn}
    """
    checks = {
        ('', 'expect = ["Thank you, your feedback is saved.", "and more"]'): 'expected 2 outputs, the bot sent 1',
        ('', 'state = "ask_text"'): "expected state 'ask_text', actual 'end'",
        ('data = { options = { text = "rude" } }', ''): "data.options.text: expected 'rude', actual 'nice'",
        ('records.feedback = [{ text = "nice" }, { text = "again" }]', ''): 'records.feedback: expected 2 items',
        ('calls."feedback.save" = [{ text = "nicer" }]', ''): 'calls."feedback.save"[0].text: expected \'nicer\'',
    }
    for (extra, turn), message in checks.items():
        path = _script(tmp_path, base.format(extra=extra, turn=turn))
        [result] = await run_paths([path], _config())
        assert not result.passed and message in result.message, (extra, turn, result.message)


async def test_canned_actions_and_timeouts_drive_the_dialog_without_services(tmp_path: pathlib.Path) -> None:
    path = _script(
        tmp_path,
        """
        flow = "feedback"
        actions."feedback.save".error = "the feedback store is full"
        [[cases]]
        name = "failing store"
        records.feedback = []
        calls."feedback.save" = [{ text = "hi" }]
        [[cases.turns]]
        command = "feedback"
        args = "hi"
        expect = "Your feedback was not saved: the feedback store is full"
        [[cases]]
        name = "no answer in time"
        [[cases.turns]]
        command = "feedback"
        [[cases.turns]]
        timeout = true
        expect = "No answer in time; stopping here."
        state = "end"
        [[cases.turns]]
        timeout = true
        """,
    )
    first, second = await run_paths([path], _config())
    assert first.passed, first.message
    assert not second.passed
    assert 'turn 3 ([timeout]): no conversation is running, so nothing can time out' in second.message


async def test_bad_scripts_are_reported_with_file_line_and_key(tmp_path: pathlib.Path) -> None:
    path = _script(
        tmp_path,
        """
        flow = "feedback"
        [[cases]]
        name = "typo"
        [[cases.turns]]
        comand = "feedback"
        """,
    )
    with pytest.raises(ScriptError) as caught:
        load_script(path)
    assert f'{path}:5: cases[0].turns[0]: unknown key "comand" (did you mean "command"?)' in str(caught.value)
    assert 'comand' in str(caught.value)
    empty = _script(tmp_path, 'flow = "x"\n[[cases]]\nname = "n"\nturns = [{}]\n', 'empty.toml')
    with pytest.raises(ScriptError, match='a turn needs exactly one of command, text, attach, press'):
        load_script(empty)
    missing = _script(
        tmp_path, 'flow = "chat"\n[[cases]]\nname = "n"\n[[cases.turns]]\nattach = "nope.ogg"\n', 'missing.toml'
    )
    [result] = await run_paths([missing], _config())
    assert 'the file to attach does not exist' in result.message


@pytest.mark.parametrize('kind', ['fifo', 'device', 'too long', 'huge', 'deep'])
async def test_a_script_that_is_not_a_readable_file_fails_at_once_with_its_reason(
    tmp_path: pathlib.Path, kind: str
) -> None:
    path = tmp_path / 'script.toml'
    if kind == 'fifo':
        os.mkfifo(path)  # nobody writes: reading it would wait for ever
    elif kind == 'device':
        path = pathlib.Path('/dev/zero')  # endless
    elif kind == 'too long':
        path = tmp_path / ('a' * 300 + '.toml')
    elif kind == 'huge':
        path.write_text('flow = "hi"\n' + '# padding\n' * 200_000)
    else:
        path.write_text('flow = ' + '[' * 5000 + ']' * 5000 + '\n')
    [result] = await asyncio.wait_for(run_paths([path], _config()), 10)
    assert not result.passed and 'cannot read the script' in result.message and 'Traceback' not in result.message


def test_flowbot_test_exits_non_zero_on_failure_and_zero_on_success(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv('FLOWBOT_CONFIG', raising=False)
    good = _script(tmp_path, '[[cases]]\nname = "hi"\n[[cases.turns]]\ncommand = "hi"\n', 'good.toml')
    good.write_text('flow = "hi"\n' + good.read_text())
    assert main(['test', str(good)]) == 0
    assert '1 passed, 0 failed' in capsys.readouterr().out
    bad = _script(tmp_path, 'flow = "hi"\n[[cases]]\nname = "x"\n[[cases.turns]]\ncommand = "hi"\nexpect = "Bye"\n')
    assert main(['test', str(bad)]) == 1
    assert "expected text 'Bye'" in capsys.readouterr().out
    assert main(['test', str(tmp_path / 'nothing-here')]) == 1


async def test_a_script_for_a_flow_that_does_not_exist_fails(tmp_path: pathlib.Path) -> None:
    path = _script(
        tmp_path,
        """
        flow = "feedbak"
        [[cases]]
        name = "renamed flow"
        [[cases.turns]]
        command = "hi"
        """,
    )
    [result] = await run_paths([path], _config())
    assert not result.passed
    assert result.message == 'the script is for flow "feedbak", which does not exist (did you mean "feedback"?)'
