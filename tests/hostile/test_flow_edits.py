"""Hostile flow edits (templates, patterns, files, odd flow files): lint answers quickly and plainly,
and what lint lets through is bounded when it runs."""

from __future__ import annotations

import os
import pathlib

import pytest

from engine.flows.loader import MAX_FLOW_BYTES, load_paths, load_text
from engine.flows.validate import validate
from engine.patterns import fullmatch
from engine.templates import MAX_RENDERED_CHARS, TemplateError, compile_condition, find_variables, render

from .conftest import SECRET, World, assert_safe, bounded

TEMPLATES = [
    '{{ 9**(9**9) }}',
    '{{ 10**5000 }}',
    '{{ 2**100000 }}',
    '{{ (2**64)**(2**64) }}',
    '{{ 0.5 ** -100000 }}',
    "{{ 'a' * 10**8 }}",
    "{{ 'ab' * 999999999 }}",
    '{{ [0] * 10**9 }}',
    "{{ ('x' * 90000) + ('y' * 90000) }}",
    '{% for i in range(10**9) %}{% endfor %}',
    '{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}',
    "{% for a in 'x' * 10000 %}{% for b in 'x' * 10000 %}{% endfor %}{% endfor %}",
    '{% for i in range(9999) %}{{ "x" * 99 }}{% endfor %}',
    "{% set ns = namespace(s='a') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "{{ '%099999999d' % 1 }}",
    "{{ '{:>99999999}'.format(1) }}",
    "{{ '{0:{1}}'.format(1, 99999999) }}",
    "{{ 'a' | center(10**8) }}",
    "{{ 'a' | indent(10**8) }}",
    "{{ 'a b' | wordwrap(10**8) }}",
    "{{ '%s' | format('x' * 10) }}",
    '{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}',
    '{{ 1 / 0 }}',
    '{{ "".__class__.__mro__[1].__subclasses__() }}',
    '{{ cycler.__init__.__globals__.os.environ }}',
    '{{ self._TemplateReference__context }}',
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    '{{ range.__self__ }}',
    '{{ config }}',
    '{{ x' + '+x' * 5000 + ' }}',
    '{{ ' + '(' * 5000 + '1' + ')' * 5000 + ' }}',
    '{% if ' + 'not ' * 10000 + 'x %}{% endif %}',
    '{{ "x" | list | join * 10**7 }}',
    '{% raw %}' * 1000,
]
IDS = [t[:40] for t in TEMPLATES]


@pytest.mark.parametrize('source', TEMPLATES, ids=IDS)
def test_a_hostile_template_renders_bounded_or_fails_plainly(source: str) -> None:
    with bounded():
        try:
            text = render(source, {'x': 1, 'user': {'name': 'eve'}})
        except TemplateError as exc:
            assert_safe(str(exc)[:3_000])
            assert len(str(exc)) < 5_000
            return
    assert len(text) <= MAX_RENDERED_CHARS


@pytest.mark.parametrize('source', TEMPLATES, ids=IDS)
def test_lint_reads_a_hostile_template_quickly(source: str) -> None:
    with bounded():
        try:
            find_variables(source)
        except TemplateError as exc:
            assert_safe(str(exc)[:3_000])


CONDITIONS = ['9**(9**9) > 1', "'a' * 10**9", 'range(10**9) | list', '(1, 2) * 10**9', 'x.__class__.__base__']


@pytest.mark.parametrize('expression', CONDITIONS)
def test_a_hostile_choice_condition_fails_plainly(expression: str) -> None:
    with bounded(), pytest.raises(TemplateError) as caught:
        compile_condition(expression)({'x': 1})
    assert_safe(caught.value)


PATTERNS = [
    '(a+)+$',
    '(a|a)*$',
    '(a|aa)+$',
    '(.*a){20}',
    '(\\w+\\s?)+$',
    '^(([a-z])+.)+[A-Z]([a-z])+$',
    '(a)\\1',
    '(?=a)a',
    '(?<=a)b',
    '(?!a)b',
    'a{1000}{1000}',
    'a{100000}',
    '[',
    '(' * 1000 + 'a' + ')' * 1000,
    'a' * 5000,
    '(?P<x>a)(?P=x)',
    '\\p{Nonsense}',
    '(?i)' + '(a?)' * 500 + 'a' * 500,
]
ANSWERS = ['a' * 30 + 'b', 'a' * 4000, 'a' * 100_000 + '!', '\x00' * 1000, '😀' * 3000]


def _ask_flow(pattern: str) -> str:
    escaped = pattern.replace('\\', '\\\\').replace('"', '\\"')
    return (
        f'[flow]\nname = "p"\n[trigger]\ncommand = "p"\n[states.q]\nkind = "ask"\nprompt = "?"\npattern = "{escaped}"\n'
        '[states.done]\nkind = "end"\n'
    )


@pytest.mark.parametrize('pattern', PATTERNS, ids=[p[:30] for p in PATTERNS])
def test_a_hostile_pattern_is_refused_at_lint_or_matches_in_linear_time(pattern: str) -> None:
    with bounded():
        flow = load_text(_ask_flow(pattern), 'p.toml')
        problems = validate([flow])
    if problems:
        assert [d.code for d in problems] == ['bad-value']
        assert_safe(problems[0].message)
        assert len(problems[0].message) < 500
        return
    with bounded(seconds=1):
        for answer in ANSWERS:
            fullmatch(pattern, answer)


FILES = [
    '/proc/self/environ',
    '/etc/passwd',
    '/etc/shadow',
    '../bot.toml',
    '../outside/loot.txt',
    '/proc/{{ user.id }}/environ',
    '../../{{ user.id }}',
    '/{{ user.id }}',
    'data/../../../etc/{{ user.id }}',
    '/dev/zero',
    'a' * 300,
    '/' + 'b/' * 3000,
    '\\u0000',
]


@pytest.mark.parametrize('file', FILES, ids=[f[:30] for f in FILES])
def test_lint_refuses_flow_files_outside_the_data_root_and_flow_folders(world: World, file: str) -> None:
    source = f'[flow]\nname = "f"\n[trigger]\ncommand = "f"\n[states.s]\nkind = "end"\nfiles = ["{file}"]\n'
    flow = load_text(source, str(world.base / 'flows' / 'f.toml'))
    with bounded():
        problems = validate([flow], file_roots=[world.root, world.base / 'flows'])
    assert [d.code for d in problems] == ['file-outside'], problems
    assert_safe(problems[0].message)


@pytest.mark.parametrize(
    'file', ['{{ result.path }}', 'sets/ok/a.txt', 'pictures/{{ user.id }}.png', '{{ user.id }}/a.txt']
)
def test_lint_lets_data_root_and_templated_files_through(world: World, file: str) -> None:
    source = f'[flow]\nname = "f"\n[trigger]\ncommand = "f"\n[states.s]\nkind = "end"\nfiles = ["{file}"]\n'
    flow = load_text(source, 'f.toml')
    assert validate([flow], file_roots=[world.root, world.base / 'flows']) == []


def _flow_file(world: World, case: str) -> pathlib.Path:
    path = world.base / 'flows' / 'edit.toml'
    good = '[flow]\nname = "e"\n[trigger]\ncommand = "e"\n[states.s]\nkind = "end"\ntext = "hi"\n'
    if case == 'fifo':
        os.mkfifo(path)
    elif case == 'link-to-dev-zero':
        os.symlink('/dev/zero', path)
    elif case == 'link-to-dev-urandom':
        os.symlink('/dev/urandom', path)
    elif case == 'link-to-secret':
        os.symlink(world.secret_file, path)
    elif case == 'folder':
        path.mkdir()
    elif case == 'over-the-size-limit':
        path.write_text(good + '#' * MAX_FLOW_BYTES, encoding='utf-8')
    elif case == 'sparse-4gb':
        with path.open('wb') as fh:
            fh.truncate(4 * 1024**3)
    elif case == 'binary':
        path.write_bytes(os.urandom(4096))
    elif case == 'latin-1':
        path.write_bytes(good.replace('hi', 'h\xe9').encode('latin-1'))
    elif case == 'deep-array':
        path.write_text('a = ' + '[' * 100_000 + ']' * 100_000, encoding='utf-8')
    elif case == 'deep-inline-table':
        path.write_text('a = ' + '{b=' * 10_000 + '1' + '}' * 10_000, encoding='utf-8')
    elif case == 'dangling-link':
        os.symlink(world.base / 'nothing.toml', path)
    elif case == 'long-name':
        path = world.base / 'flows' / ('n' * 250 + '.toml')
        path.write_text(good, encoding='utf-8')
        path.chmod(0)
        return path
    elif case == 'secret-in-toml-error':
        path.write_text(f'[flow]\nname = {SECRET}\n', encoding='utf-8')
    return path


FLOW_FILES = [
    'fifo',
    'link-to-dev-zero',
    'link-to-dev-urandom',
    'link-to-secret',
    'folder',
    'over-the-size-limit',
    'sparse-4gb',
    'binary',
    'latin-1',
    'deep-array',
    'deep-inline-table',
    'dangling-link',
    'secret-in-toml-error',
]


@pytest.mark.parametrize('case', FLOW_FILES)
def test_an_odd_flow_file_is_reported_never_read_blindly(world: World, case: str) -> None:
    _flow_file(world, case)
    with bounded():
        flows, problems = load_paths([world.base / 'flows'])
    assert not [f for f in flows if f.name == 'e'] or case == 'link-to-secret'
    assert problems or case in ('folder', 'link-to-secret')
    for problem in problems:
        assert_safe(str(problem))


def test_ten_thousand_states_lint_in_bounded_time() -> None:
    from benchmarks.lint import flow_source

    with bounded(seconds=10, megabytes=None):
        flow = load_text(flow_source(10_000), 'big.toml')
        assert validate([flow]) == []


def test_ten_thousand_states_all_pointing_nowhere_lint_in_bounded_time() -> None:
    states = ''.join(f'[states.s{i}]\nkind = "say"\ntext = "x"\nnext = "missing{i}"\n' for i in range(10_000))
    with bounded(seconds=10, megabytes=None):
        flow = load_text(f'[flow]\nname = "n"\n[trigger]\ncommand = "n"\n{states}', 'n.toml')
        problems = validate([flow])
    assert len(problems) == 10_000 and all(d.code == 'unknown-state' for d in problems)
