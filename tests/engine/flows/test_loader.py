"""The flow file format: what a TOML file means, and file:line errors for files that mean nothing."""

from __future__ import annotations

import pathlib
import textwrap

import pytest

from engine.flows import model
from engine.flows.loader import FlowError, load_file, load_paths, load_text

FULL = textwrap.dedent(
    """
    permission = "admins"

    [flow]
    name = "survey"
    description = { en = "A survey", ru = "Опрос" }
    version = "3"

    [trigger]
    command = "survey"
    aliases = ["poll", "s"]
    description = "Answer a few questions"
    dm = false

    [[trigger.options]]
    name = "topic"
    type = "string"
    description = "What about"
    choices = ["food", "music"]

    [[trigger.options]]
    name = "count"
    type = "integer"
    description = { en = "How many", ru = "Сколько" }
    default = 3

    [[trigger.options]]
    name = "ratio"
    type = "number"
    required = false

    [[trigger.options]]
    name = "loud"
    type = "boolean"
    required = false

    [[trigger.options]]
    name = "file"
    type = "attachment"
    required = false

    [[trigger.options]]
    name = "who"
    type = "user"
    required = false

    [[trigger.options]]
    name = "where"
    type = "channel"
    required = false

    [states.hello]
    kind = "say"
    text = { en = "Hello", ru = "Привет" }
    files = ["{{ options.file.path }}"]

    [states.name]
    kind = "ask"
    prompt = "Name?"
    expect = "text"
    pattern = "[A-Za-z]+"
    min = 2
    max = 20
    attempts = 2
    invalid = "Letters only"
    help = "Your first name"
    save_as = "name"
    timeout = "5m"
    on_timeout = "bye"

    [states.colour]
    kind = "ask"
    prompt = "Colour?"
    expect = "choice"
    choices = ["red", { value = "blue", label = { en = "Blue", ru = "Синий" } }]
    save_as = "colour"
    on_fail = "bye"

    [states.work]
    kind = "call"
    action = "test.work"
    args = { n = "{{ options.count }}", tags = ["a", "{{ name }}"] }
    save_as = "result_of_work"
    on_error = "bye"
    progress = "Working..."

    [states.route]
    kind = "choice"
    when = [{ if = "colour == 'red'", goto = "wait_job" }, { if = "colour == 'blue'", goto = "sub" }]
    else = "bye"

    [states.wait_job]
    kind = "wait"
    until = "job:{{ user.id }}"
    progress = "Queued"
    save_as = "job"
    timeout = 90
    on_timeout = "bye"
    next = "bye"

    [states.sub]
    kind = "flow"
    flow = "other"
    with = { who = "{{ name }}" }
    save_as = "sub_result"

    [states.bye]
    kind = "end"
    text = "Bye {{ name }}"
    """
)


def test_full_flow_file_loads_every_kind_and_trigger_option_type() -> None:
    flow = load_text(FULL, 'survey.toml')
    assert flow.flow == model.FlowInfo(name='survey', description={'en': 'A survey', 'ru': 'Опрос'}, version='3')
    assert flow.trigger.command == 'survey'
    assert flow.trigger.aliases == ['poll', 's']
    assert flow.trigger.dm is False
    assert [o.type for o in flow.trigger.options] == list(model.OPTION_TYPES)
    topic, count = flow.trigger.options[:2]
    assert topic.choices == ['food', 'music'] and topic.is_required
    assert count.default == 3 and not count.is_required
    assert count.description == {'en': 'How many', 'ru': 'Сколько'}
    assert flow.permission == 'admins'
    kinds = {name: type(state).kind for name, state in flow.states.items()}
    assert kinds == {
        'hello': 'say',
        'name': 'ask',
        'colour': 'ask',
        'work': 'call',
        'route': 'choice',
        'wait_job': 'wait',
        'sub': 'flow',
        'bye': 'end',
    }
    name = flow.states['name']
    assert isinstance(name, model.Ask)
    assert (name.pattern, name.min, name.max, name.attempts, name.save_as) == ('[A-Za-z]+', 2, 20, 2, 'name')
    assert (name.timeout, name.on_timeout, name.help) == ('5m', 'bye', 'Your first name')
    colour = flow.states['colour']
    assert isinstance(colour, model.Ask)
    assert colour.choices == [
        model.ChoiceItem(value='red', label='red'),
        model.ChoiceItem(value='blue', label={'en': 'Blue', 'ru': 'Синий'}),
    ]
    work = flow.states['work']
    assert isinstance(work, model.Call)
    assert work.args == {'n': '{{ options.count }}', 'tags': ['a', '{{ name }}']}
    assert (work.on_error, work.save_as) == ('bye', 'result_of_work')
    route = flow.states['route']
    assert isinstance(route, model.Decide)
    assert route.when[0] == model.Branch(when="colour == 'red'", goto='wait_job')
    assert route.otherwise == 'bye'
    wait = flow.states['wait_job']
    assert isinstance(wait, model.Wait) and wait.until == 'job:{{ user.id }}' and wait.timeout == 90
    sub = flow.states['sub']
    assert isinstance(sub, model.SubFlow) and sub.flow == 'other' and sub.args == {'who': '{{ name }}'}
    assert flow.initial == 'hello'
    assert flow.following('hello') == 'name'
    assert flow.following('wait_job') == 'bye'
    assert flow.source == FULL and flow.path == 'survey.toml'


def test_message_trigger_with_content_type_filter_loads() -> None:
    flow = load_text(
        """
[flow]
name = "voice"
[trigger]
message = true
priority = 5
filter = { content_types = ["audio/"], has_attachment = true }
[states.done]
kind = "end"
text = "got it"
"""
    )
    assert flow.trigger.message and flow.trigger.priority == 5
    assert flow.trigger.filter == model.MessageFilter(content_types=['audio/'], has_attachment=True)
    assert flow.version == '1'


def test_localized_text_picks_the_user_language_then_the_default() -> None:
    text = {'en': 'Hello', 'ru': 'Привет'}
    assert model.localize(text, 'ru') == 'Привет'
    assert model.localize(text, 'ru-RU') == 'Привет'
    assert model.localize(text, 'de') == 'Hello'
    assert model.localize({'ru': 'Привет'}, 'de') == 'Привет'
    assert model.localize(None, 'en') == ''


@pytest.mark.parametrize(
    ('value', 'seconds'), [(30, 30.0), (0.05, 0.05), ('90s', 90.0), ('5m', 300.0), ('2h', 7200.0), ('1d', 86400.0)]
)
def test_durations_are_read_in_seconds(value: str | float, seconds: float) -> None:
    assert model.parse_duration(value) == seconds


@pytest.mark.parametrize('value', ['soon', '5x', '-1s', 0, True])
def test_bad_durations_are_refused(value: str | float) -> None:
    with pytest.raises(ValueError, match=r'duration|positive'):
        model.parse_duration(value)


def test_malformed_toml_is_reported_with_file_and_line() -> None:
    text = '[flow]\nname = "x"\n\n[states.a]\nkind = "say\n'
    with pytest.raises(FlowError) as caught:
        load_text(text, 'broken.toml')
    (problem,) = caught.value.diagnostics
    assert problem.code == 'toml'
    assert (problem.file, problem.line) == ('broken.toml', 5)
    assert problem.message.startswith('TOML syntax error: ')
    assert str(problem).startswith('broken.toml:5: TOML syntax error')


def test_unknown_key_is_reported_with_its_toml_path_line_and_suggestion() -> None:
    text = '[flow]\nname = "x"\n\n[states.a]\nkind = "ask"\nprompt = "?"\nsave_ass = "v"\n'
    with pytest.raises(FlowError) as caught:
        load_text(text, 'f.toml')
    (problem,) = caught.value.diagnostics
    assert (problem.code, problem.line) == ('schema', 7)
    assert problem.message == 'states.a.save_ass: unknown key (did you mean "save_as"?)'


def test_wrong_type_is_reported_with_its_toml_path_and_line() -> None:
    text = '[flow]\nname = "x"\n\n[states.a]\nkind = "ask"\nprompt = "?"\nattempts = "three"\n'
    with pytest.raises(FlowError) as caught:
        load_text(text, 'f.toml')
    (problem,) = caught.value.diagnostics
    assert problem.line == 7
    assert problem.message.startswith('states.a.attempts: ')
    assert 'int' in problem.message


def test_unknown_state_kind_suggests_the_closest_kind() -> None:
    with pytest.raises(FlowError) as caught:
        load_text('[flow]\nname = "x"\n[states.a]\nkind = "sya"\n', 'f.toml')
    (problem,) = caught.value.diagnostics
    assert problem.line == 4
    assert "kind must be one of say, ask, call, choice, wait, flow, end, not 'sya'" in problem.message
    assert '(did you mean "say"?)' in problem.message


def test_missing_required_parts_are_all_reported_at_once() -> None:
    with pytest.raises(FlowError) as caught:
        load_text('[trigger]\ncommand = "x"\nbogus = 1\n[states.a]\nkind = "ask"\n', 'f.toml')
    messages = [d.message for d in caught.value.diagnostics]
    assert 'flow: missing [flow] table' in messages
    assert 'trigger.bogus: unknown key' in messages
    assert any(m.startswith('states.a.prompt: missing required key') for m in messages)


def test_a_flow_without_states_is_refused() -> None:
    with pytest.raises(FlowError, match=r'a flow needs at least one \[states.NAME\] table'):
        load_text('[flow]\nname = "x"\n')


def test_unreadable_file_is_reported_not_raised(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / 'bad.toml'
    bad.write_bytes(b'\xff\xfe not utf-8')
    with pytest.raises(FlowError) as caught:
        load_file(bad)
    assert caught.value.diagnostics[0].code == 'io'


def test_load_paths_keeps_good_flows_and_reports_bad_ones(tmp_path: pathlib.Path) -> None:
    (tmp_path / 'good.toml').write_text('[flow]\nname = "good"\n[states.a]\nkind = "end"\n')
    (tmp_path / 'bad.toml').write_text('[flow\n')
    (tmp_path / 'tests').mkdir()
    (tmp_path / 'tests' / 'ignored.toml').write_text('[flow\n')
    flows, problems = load_paths([tmp_path])
    assert [f.name for f in flows] == ['good']
    assert [(pathlib.Path(p.file).name, p.code) for p in problems] == [('bad.toml', 'toml')]
