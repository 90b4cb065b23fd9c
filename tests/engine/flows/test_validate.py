"""``flowbot lint`` rules: one test per rule code, each asserting the message a maintainer reads."""

from __future__ import annotations

import pathlib
import textwrap
from typing import Any

import pytest

from engine.flows.library import FlowLibrary
from engine.flows.loader import Diagnostic, load_paths
from engine.states.actions import ActionContext, ActionRegistry
from tests.engine.helpers import write_flows


async def _add(ctx: ActionContext, *, a: int, b: int = 0) -> int:
    return a + b


def _registry() -> ActionRegistry:
    registry = ActionRegistry()
    registry.add('math.add', _add)
    registry.add('feedback.save', _add)
    return registry


def lint(tmp_path: pathlib.Path, files: dict[str, str]) -> list[Diagnostic]:
    """What ``flowbot lint`` reports for these files (loader, then the library's checks)."""
    flows, problems = load_paths([write_flows(tmp_path, files)])
    return problems + FlowLibrary(_registry(), ['admins']).check(flows)


def only(problems: list[Diagnostic], code: str) -> Diagnostic:
    """The single diagnostic, which must have ``code``."""
    assert [p.code for p in problems] == [code], problems
    return problems[0]


HEAD = """
[flow]
name = "f"

[trigger]
command = "f"
"""


def flow(states: str, head: str = HEAD, **extra: Any) -> str:
    return textwrap.dedent(head).lstrip() + textwrap.dedent(states)


def test_valid_flow_has_no_problems(tmp_path: pathlib.Path) -> None:
    states = """
    [states.n]
    kind = "ask"
    prompt = "A number?"
    expect = "integer"
    save_as = "n"

    [states.sum]
    kind = "call"
    action = "math.add"
    args = { a = "{{ n }}", b = 2 }
    save_as = "total"

    [states.done]
    kind = "end"
    text = "{{ total }}"
    """
    assert lint(tmp_path, {'f': flow(states)}) == []


def test_rule_toml_syntax_error_names_file_and_line(tmp_path: pathlib.Path) -> None:
    problem = only(lint(tmp_path, {'f': '[flow]\nname = "f"\n[states.a\nkind = "end"\n'}), 'toml')
    assert problem.file.endswith('f.toml') and problem.line == 3
    assert problem.message.startswith('TOML syntax error: ')


def test_rule_schema_unknown_key_names_toml_path_and_line(tmp_path: pathlib.Path) -> None:
    problem = only(lint(tmp_path, {'f': flow('[states.a]\nkind = "end"\ntxet = "hi"\n')}), 'schema')
    assert problem.line == 8
    assert problem.message == 'states.a.txet: unknown key (did you mean "text"?)'


def test_rule_schema_wrong_type_names_toml_path_and_line(tmp_path: pathlib.Path) -> None:
    problem = only(lint(tmp_path, {'f': flow('[states.a]\nkind = "say"\ntext = 5\n')}), 'schema')
    assert problem.line == 8
    assert problem.message.startswith('states.a.text: ')
    assert 'expected text or a table of translations' in problem.message


def test_rule_unknown_state_suggests_the_closest_state(tmp_path: pathlib.Path) -> None:
    states = '[states.start]\nkind = "say"\ntext = "x"\nnext = "fnish"\n\n[states.finish]\nkind = "end"\n'
    problem = only(lint(tmp_path, {'f': flow(states)}), 'unknown-state')
    assert problem.line == 9
    assert problem.message == 'state "start" goes to unknown state "fnish" (did you mean "finish"?)'


def test_rule_unknown_action_suggests_the_closest_action(tmp_path: pathlib.Path) -> None:
    problem = only(lint(tmp_path, {'f': flow('[states.a]\nkind = "call"\naction = "math.ad"\n')}), 'unknown-action')
    assert problem.line == 8
    assert problem.message == 'unknown action "math.ad" (did you mean "math.add"?)'


def test_rule_unknown_action_refuses_python_paths_and_never_imports_them(tmp_path: pathlib.Path) -> None:
    canary = tmp_path / 'imported'
    modules = tmp_path / 'modules'
    modules.mkdir()
    (modules / 'flowbot_canary.py').write_text(
        f'import pathlib\npathlib.Path({str(canary)!r}).touch()\n\n\ndef boom(): ...\n'
    )
    states = """
    [states.a]
    kind = "call"
    action = "os.system"
    args = { command = "touch {canary}" }

    [states.b]
    kind = "call"
    action = "flowbot_canary.boom"
    """.replace('{canary}', str(canary))
    folder = tmp_path / 'flows'
    folder.mkdir()
    import sys

    sys.path.insert(0, str(modules))
    try:
        problems = lint(folder, {'f': flow(states)})
    finally:
        sys.path.remove(str(modules))
    assert [(p.code, p.message) for p in problems] == [
        ('unknown-action', 'unknown action "os.system"'),
        ('unknown-action', 'unknown action "flowbot_canary.boom"'),
    ]
    assert 'flowbot_canary' not in sys.modules
    assert not canary.exists()


def test_rule_unknown_argument_suggests_the_closest_parameter(tmp_path: pathlib.Path) -> None:
    states = '[states.a]\nkind = "call"\naction = "math.add"\nargs = { a = 1, bb = 2 }\n'
    problem = only(lint(tmp_path, {'f': flow(states)}), 'unknown-argument')
    assert problem.line == 9
    assert problem.message == 'action "math.add" has no argument "bb" (did you mean "b"?)'


def test_rule_missing_argument_names_the_required_parameter(tmp_path: pathlib.Path) -> None:
    states = '[states.a]\nkind = "call"\naction = "math.add"\nargs = { b = 2 }\n'
    problem = only(lint(tmp_path, {'f': flow(states)}), 'missing-argument')
    assert problem.message == 'action "math.add" needs argument "a"'


def test_rule_unknown_permission_group_suggests_the_closest_group(tmp_path: pathlib.Path) -> None:
    text = 'permission = "admin"\n' + flow('[states.a]\nkind = "end"\n')
    problem = only(lint(tmp_path, {'f': text}), 'unknown-permission')
    assert problem.line == 1
    assert problem.message == 'unknown permission group "admin" (did you mean "admins"?)'


def test_rule_unknown_flow_for_a_sub_flow(tmp_path: pathlib.Path) -> None:
    states = '[states.a]\nkind = "flow"\nflow = "gret"\n'
    other = '[flow]\nname = "greet"\n[states.a]\nkind = "end"\n'
    problems = lint(tmp_path, {'f': flow(states), 'greet': other})
    problem = only(problems, 'unknown-flow')
    assert problem.line == 8
    assert problem.message == 'unknown flow "gret" (did you mean "greet"?)'


def test_rule_unknown_variable_in_a_template_suggests_the_saved_name(tmp_path: pathlib.Path) -> None:
    states = (
        '[states.q]\nkind = "ask"\nprompt = "Name?"\nsave_as = "name"\n\n'
        '[states.done]\nkind = "end"\ntext = "Bye {{ nmae }}"\n'
    )
    problem = only(lint(tmp_path, {'f': flow(states)}), 'unknown-variable')
    assert problem.line == 13
    assert problem.message == 'state "done" uses unknown variable "nmae" (did you mean "name"?)'


def test_rule_unknown_variable_in_a_choice_condition(tmp_path: pathlib.Path) -> None:
    states = '[states.c]\nkind = "choice"\nwhen = [{ if = "colour == 1", goto = "e" }]\nelse = "e"\n\n[states.e]\nkind = "end"\n'
    problem = only(lint(tmp_path, {'f': flow(states)}), 'unknown-variable')
    assert problem.message == 'state "c" uses unknown variable "colour"'


def test_rule_unknown_variable_in_choices_from(tmp_path: pathlib.Path) -> None:
    states = '[states.q]\nkind = "ask"\nprompt = "Which?"\nchoices_from = "fuond.choices"\n\n[states.e]\nkind = "end"\n'
    problem = only(lint(tmp_path, {'f': flow(states)}), 'unknown-variable')
    assert problem.message == 'state "q" uses unknown variable "fuond"'


def test_rule_template_syntax_error(tmp_path: pathlib.Path) -> None:
    problem = only(lint(tmp_path, {'f': flow('[states.a]\nkind = "end"\ntext = "Hi {{ user.name "\n')}), 'template')
    assert problem.line == 8
    assert problem.message.startswith("template 'Hi {{ user.name ': ")


def test_rule_unreachable_state(tmp_path: pathlib.Path) -> None:
    states = '[states.a]\nkind = "end"\n\n[states.orphan]\nkind = "say"\ntext = "never"\n'
    problem = only(lint(tmp_path, {'f': flow(states)}), 'unreachable')
    assert problem.line == 9
    assert problem.message == 'state "orphan" is unreachable from "a"'


def test_rule_no_end_for_a_loop_without_exit(tmp_path: pathlib.Path) -> None:
    states = (
        '[states.a]\nkind = "say"\ntext = "x"\n\n'
        '[states.b]\nkind = "ask"\nprompt = "?"\nnext = "a"\ntimeout = 5\non_timeout = "c"\n\n'
        '[states.c]\nkind = "end"\n'
    )
    problems = lint(tmp_path, {'f': flow(states)})
    assert {p.code for p in problems} == {'no-end'}
    assert [p.message for p in problems] == [
        'the flow can never end once it reaches state "a"',
        'the flow can never end once it reaches state "b"',
    ]


def test_rule_duplicate_command_across_flows(tmp_path: pathlib.Path) -> None:
    one = '[flow]\nname = "one"\n[trigger]\ncommand = "go"\n[states.a]\nkind = "end"\n'
    two = '[flow]\nname = "two"\n[trigger]\ncommand = "run"\naliases = ["go"]\n[states.a]\nkind = "end"\n'
    problem = only(lint(tmp_path, {'one': one, 'two': two}), 'duplicate-command')
    assert problem.file.endswith('two.toml')
    assert problem.message.startswith('command "go" is also defined by flow "one" (')
    assert problem.message.endswith('one.toml)')


def test_rule_duplicate_flow_name(tmp_path: pathlib.Path) -> None:
    one = '[flow]\nname = "same"\n[states.a]\nkind = "end"\n'
    problem = only(lint(tmp_path, {'a': one, 'b': one}), 'duplicate-flow')
    assert problem.file.endswith('b.toml') and problem.line == 2
    assert problem.message.startswith('flow "same" is also defined in ')


@pytest.mark.parametrize(
    ('states', 'head', 'message'),
    [
        ('[states.a]\nkind = "end"\ntimeout = "soon"\n', HEAD, "'soon' is not a duration"),
        ('[states.a]\nkind = "end"\non_timeout = "a"\n', HEAD, 'state "a" has on_timeout but no timeout'),
        ('[states.a]\nkind = "ask"\nprompt = "?"\nexpect = "choice"\n', HEAD, 'expects a choice but lists no choices'),
        ('[states.a]\nkind = "ask"\nprompt = "?"\nattempts = 0\n', HEAD, 'attempts must be at least 1'),
        ('[states.a]\nkind = "ask"\nprompt = "?"\npattern = "(("\n', HEAD, "invalid regular expression '(('"),
        ('[states.a]\nkind = "ask"\nprompt = "?"\nsave_as = "user"\n', HEAD, 'must be a plain name'),
        ('[states.a]\nkind = "choice"\nelse = "a"\n', HEAD, 'choice state "a" has no conditions'),
        ('[states.a]\nkind = "flow"\nflow = "f"\n', HEAD, 'flow "f" cannot run itself as a sub-flow'),
        (
            '[states.a]\nkind = "end"\n',
            '[flow]\nname = "f"\n[trigger]\ncommand = "Bad Name"\n',
            'must be 1-32 lowercase',
        ),
        (
            '[states.a]\nkind = "end"\n',
            '[flow]\nname = "f"\n[trigger]\ncommand = "cancel"\n',
            'users type it for the interrupt cancel',
        ),
        (
            '[states.a]\nkind = "end"\n',
            '[flow]\nname = "f"\n[trigger]\ncommand = "x"\naliases = ["помощь"]\n',
            '"помощь" is reserved: users type it for the interrupt help',
        ),
        ('[states.a]\nkind = "end"\n', '[flow]\nname = "f"\n[trigger]\naliases = ["x"]\n', 'aliases need a command'),
        (
            '[states.a]\nkind = "end"\n',
            '[flow]\nname = "f"\n[trigger]\nfilter = { pattern = "x" }\n',
            'a filter needs message = true',
        ),
        (
            '[states.a]\nkind = "end"\n',
            '[flow]\nname = "f"\n[trigger]\ncommand = "f"\n'
            '[[trigger.options]]\nname = "a"\nrequired = false\n[[trigger.options]]\nname = "b"\n',
            'required option "b" follows an optional one',
        ),
        (
            '[states.a]\nkind = "end"\n',
            '[flow]\nname = "f"\n[trigger]\ncommand = "f"\n[[trigger.options]]\nname = "a"\n[[trigger.options]]\nname = "a"\n',
            'option "a" is declared twice',
        ),
        (
            '[states.a]\nkind = "end"\nnext = "b"\n\n[states.b]\nkind = "end"\n',
            HEAD,
            'end state "a" cannot have next',
        ),
    ],
)
def test_rule_bad_value(tmp_path: pathlib.Path, states: str, head: str, message: str) -> None:
    problems = lint(tmp_path, {'f': flow(states, head)})
    assert 'bad-value' in {p.code for p in problems}, problems
    assert any(message in p.message for p in problems if p.code == 'bad-value'), problems


def test_every_problem_in_a_file_is_reported_in_one_run(tmp_path: pathlib.Path) -> None:
    states = (
        '[states.a]\nkind = "call"\naction = "nope"\n\n'
        '[states.b]\nkind = "say"\ntext = "{{ missing }}"\nnext = "nowhere"\n'
    )
    codes = sorted(p.code for p in lint(tmp_path, {'f': flow(states)}))
    assert codes == ['unknown-action', 'unknown-state', 'unknown-variable']
