"""Flow diagrams: Mermaid for every shipped flow, Graphviz pictures where ``dot`` is installed, the CLI."""

from __future__ import annotations

import pathlib
import re
import shutil
import textwrap

import pytest

from engine.cli import main
from engine.flows import model
from engine.flows.graph import GraphvizMissingError, diagram_edges, render_file, to_dot, to_mermaid
from engine.flows.loader import load_paths, load_text

REPO = pathlib.Path(__file__).resolve().parents[2]
SHIPPED, _problems = load_paths([REPO / 'flows'])
needs_dot = pytest.mark.skipif(
    shutil.which('dot') is None, reason='Graphviz "dot" is not installed (apt install graphviz)'
)

WIZARD = load_text(
    textwrap.dedent(
        """
        [flow]
        name = "wizard"
        [trigger]
        command = "wizard"
        [states.name]
        kind = "ask"
        prompt = "Your name?"
        save_as = "who"
        timeout = "5m"
        [states.age]
        kind = "ask"
        prompt = "Your age?"
        expect = "integer"
        save_as = "age"
        on_fail = "sorry"
        [states.adult]
        kind = "choice"
        when = [{ if = "age >= 18", goto = "vote" }]
        else = "sorry"
        [states.vote]
        kind = "flow"
        flow = "ballot"
        [states.wait]
        kind = "wait"
        until = "ballot:{{ who }}"
        timeout = "1h"
        on_timeout = "sorry"
        [states.end]
        kind = "end"
        text = "Thanks; 100% done"
        [states.sorry]
        kind = "end"
        text = "Sorry."
        """
    ),
    'wizard.toml',
)


def _edges(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if '-->' in line}


def test_every_shipped_flow_has_a_mermaid_diagram_with_all_its_states() -> None:
    assert SHIPPED and not _problems
    for flow in SHIPPED:
        text = to_mermaid(flow)
        assert text.startswith('stateDiagram-v2\n'), flow.name
        assert f'[*] --> {flow.initial} : ' in text, flow.name
        for name in flow.states:
            assert re.search(rf'^    {re.escape(name)} : {flow.states[name].kind}$', text, re.M), (flow.name, name)
        assert any(line.endswith('--> [*]') or '--> [*] :' in line for line in text.splitlines()), flow.name


def test_mermaid_shows_conditions_timeouts_interrupts_and_sub_flows() -> None:
    text = to_mermaid(WIZARD)
    edges = _edges(text)
    assert 'adult --> s5_end : age #gt;= 18' not in edges, 'choice conditions go to their own target'
    assert 'adult --> vote : age #gt;= 18' in edges
    assert 'adult --> sorry : else' in edges
    assert 'name --> [*] : timeout 5m' in edges, 'a timeout without on_timeout ends the conversation'
    assert 'wait --> sorry : timeout 1h' in edges
    assert 'age --> sorry : fail after 3 tries' in edges
    assert 'age --> name : back' in edges, 'back returns to the question before'
    assert {'name --> [*] : cancel', 'age --> [*] : cancel'} <= edges
    assert '    vote : sub-flow ballot' in text
    assert '    wait : until ballot#58;{{ who }}' in text
    assert 'state "end" as s5_end' in text, 'a state named like a Mermaid keyword gets a safe id'
    assert 's5_end : Thanks#59; 100% done' in text
    assert 'class name,age kind_ask' in text


def test_edges_follow_the_compiled_transitions() -> None:
    edges = {(e.source, e.target, e.style) for e in diagram_edges(WIZARD)}
    assert ('name', 'age', 'normal') in edges
    assert ('vote', 'wait', 'normal') in edges
    assert ('end', None, 'normal') in edges
    assert ('wait', 'sorry', 'timeout') in edges


def test_dot_text_quotes_labels() -> None:
    flow = load_text(
        '[flow]\nname = "q"\n[trigger]\ncommand = "q"\n[states.a]\nkind = "end"\ntext = "say \\"hi\\" \\\\ bye"\n',
        'q.toml',
    )
    dot = to_dot(flow)
    assert 'say \\"hi\\" \\\\ bye' in dot
    assert dot.count('{') == dot.count('}') == 1


@needs_dot
@pytest.mark.parametrize('flow', SHIPPED, ids=[f.name for f in SHIPPED])
def test_every_shipped_flow_draws_as_png(flow: model.Flow, tmp_path: pathlib.Path) -> None:
    out = render_file(flow, tmp_path / f'{flow.name}.png')
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


@needs_dot
def test_svg_contains_the_state_names(tmp_path: pathlib.Path) -> None:
    svg = render_file(WIZARD, tmp_path / 'wizard.svg').read_text()
    assert svg.lstrip().startswith('<?xml') or '<svg' in svg
    for name in ('name', 'age', 'adult', 'vote', 'sorry'):
        assert f'>{name}<' in svg


def test_without_graphviz_pictures_fail_clearly_and_mermaid_still_works(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, 'which', lambda _name: None)
    with pytest.raises(GraphvizMissingError, match='Graphviz "dot" is not installed'):
        render_file(WIZARD, tmp_path / 'wizard.png')
    assert not (tmp_path / 'wizard.png').exists()
    assert render_file(WIZARD, tmp_path / 'wizard.mmd').read_text().startswith('stateDiagram-v2')


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv('FLOWBOT_CONFIG', raising=False)


def test_cli_graph_prints_mermaid(in_repo: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(['graph', 'feedback']) == 0
    out = capsys.readouterr().out
    assert out.startswith('stateDiagram-v2')
    assert 'check --> store : options.text' in out


def test_cli_graph_of_an_unknown_flow_suggests_a_name(in_repo: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(['graph', 'feedbak']) == 2
    assert 'no flow named "feedbak" (did you mean "feedback"?)' in capsys.readouterr().err


@needs_dot
def test_cli_graph_writes_svg_by_suffix(in_repo: None, tmp_path: pathlib.Path) -> None:
    out = tmp_path / 'feedback.svg'
    assert main(['graph', 'feedback', '-o', str(out)]) == 0
    assert '<svg' in out.read_text()


def test_cli_graph_says_when_dot_is_missing(
    in_repo: None, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(shutil, 'which', lambda _name: None)
    assert main(['graph', 'feedback', '-o', str(tmp_path / 'f.png')]) == 3
    assert 'apt install graphviz' in capsys.readouterr().err


def test_cli_graph_refuses_an_unknown_picture_suffix(
    in_repo: None, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / 'feedback.jpg'
    assert main(['graph', 'feedback', '-o', str(out)]) == 1
    assert not out.exists()
    assert 'cannot write .jpg' in capsys.readouterr().err


@needs_dot
def test_cli_graph_into_a_missing_folder_says_so_without_a_traceback(
    in_repo: None, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(['graph', 'feedback', '-o', str(tmp_path / 'no' / 'f.png')]) == 1
    assert main(['graph', 'feedback', '-o', str(tmp_path / 'no' / 'f.mmd')]) == 1
    err = capsys.readouterr().err
    assert 'flowbot graph: ' in err and 'Traceback' not in err


@pytest.mark.parametrize('where', ['folder', 'too long'])
def test_cli_graph_docs_into_a_folder_or_a_name_too_long_says_so_without_a_traceback(
    in_repo: None, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    docs = tmp_path if where == 'folder' else tmp_path / ('a' * 300 + '.md')
    assert main(['graph', '--docs', str(docs)]) == 1
    assert main(['graph', '--docs', str(docs), '--check']) == 1
    err = capsys.readouterr().err
    assert err.startswith(f'flowbot graph: {docs}: ') and 'Traceback' not in err


def test_cli_graph_of_a_flow_file_name_too_long_is_an_unknown_flow(
    in_repo: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(['graph', 'a' * 300 + '.toml']) == 2
    assert 'flowbot graph: no flow named "aaa' in capsys.readouterr().err
