"""Russian end to end: every shipped dialog script, run with the locale ``ru``, answers in Russian.

The scripts' own expectations are English, so here they are dropped: each case runs turn by turn
as written (buttons pressed by their English label are pressed by value), and every text the bot
sends, progress edits included, must be Russian. Not counted against a reply: what the script itself
supplied (canned action results and errors, the user's words), commands and option names, paths and
identifiers, numbers, and acronyms (ZIP, CSV).
"""

from __future__ import annotations

import pathlib
import re
import tempfile
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

from engine.config import BotConfig, Config
from engine.dialogs import Case, Script, _Run, load_script, script_files
from engine.flows.loader import load_paths
from engine.flows.model import INTERRUPTS

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPTS = REPO / 'flows' / 'tests'

_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_'.\-/\\=:]*")
_PROPER = frozenset(
    {
        'flowbot',
        'Tester',
        'Mermaid',
        'Graphviz',
        'Discord',
        'OpenAI',
        'id',
        'positive',
        'off',
        'console',
        'txt',
        'json',
        'jsonl',
        'csv',
    }
)
"""Names that stay as they are in a Russian text (the bot, tools, a label value, a typed word)."""


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _supplied(script: Script, case: Case) -> list[str]:
    """Texts the script itself put into the conversation, longest first (removed before the check)."""
    found: set[str] = set()
    for canned in [*script.actions.values(), *case.actions.values()]:
        found.update(_strings(canned.result))
        if canned.error:
            found.add(canned.error)
    for turn in case.turns:
        found.update(s for s in (turn.text, turn.args) if s)
        found.update(_strings(turn.options or {}))
        found.update(_strings(turn.payload))
    found.add(case.user.name)
    return sorted((s for s in found if len(s) > 1), key=len, reverse=True)


def _allowed(config: Config) -> set[str]:
    flows, problems = load_paths([REPO / 'flows'])
    assert not problems
    words = set(INTERRUPTS) | _PROPER | set(config.permissions)
    for flow in flows:
        trigger = flow.trigger
        words.update(n for n in (trigger.command, *trigger.aliases) if n)
        words.update(o.name for o in trigger.options)
    return words


def english_words(text: str, allowed: set[str]) -> list[str]:
    """Latin words in ``text`` that are neither commands, identifiers, paths nor acronyms."""
    bad = []
    for found in _LATIN_WORD.findall(text):
        word = found.rstrip('.:-')
        if not word or word in allowed or word.lstrip('!/') in allowed:
            continue
        if re.search(r'[0-9_./\\=:]', word) or word.isupper():  # identifiers, paths, file names, ZIP/CSV
            continue
        bad.append(word)
    return bad


def _press_by_value(case: Case, flows: list[Any]) -> Case:
    """Buttons the script presses by their English label are pressed by value (the labels are Russian now)."""
    values: dict[str, str] = {}
    for flow in flows:
        for state in flow.states.values():
            for choice in getattr(state, 'choices', None) or []:
                label = choice.label.get('en', '') if isinstance(choice.label, dict) else choice.label
                if label and '{' not in label:
                    values[label] = choice.value
    turns = [attrs.evolve(t, press=values.get(t.press, t.press)) if t.press else t for t in case.turns]
    return attrs.evolve(case, turns=turns)


def _russian_case(case: Case, flows: list[Any]) -> Case:
    turns = [attrs.evolve(t, locale=None, expect=None, state=None, data=None) for t in case.turns]
    case = attrs.evolve(case, locale='ru', turns=turns, state=None, data=None, records={}, calls={})
    return _press_by_value(case, flows)


def _cases() -> Iterator[Any]:
    for path in script_files([SCRIPTS]):
        script = load_script(path)
        for case in script.cases:
            yield pytest.param(script, case, id=f'{path.stem}: {case.name}')


@pytest.mark.parametrize(('script', 'case'), list(_cases()))
async def test_every_shipped_dialog_script_answers_in_russian(script: Script, case: Case) -> None:
    config = Config(bot=BotConfig(flows=[REPO / 'flows'], language='en'))
    flows, _ = load_paths([REPO / 'flows'])
    allowed = _allowed(config)
    supplied = _supplied(script, case)
    with tempfile.TemporaryDirectory(prefix='flowbot-ru-') as workdir:
        run = _Run(script, _russian_case(case, flows), config, flows, workdir)
        await run.run()
        sent = list(run.adapter.sent)
    problems = []
    for output in sent:
        text = output.text
        for piece in supplied:  # canned results are templates: their {{ … }} parts match anything
            pattern = '.*?'.join(re.escape(part) for part in re.split(r'\{\{.*?\}\}', piece))
            text = re.sub(pattern, ' ', text)
        labels = ' '.join(output.choices) if output.kind == 'ask' else ''
        bad = english_words(text + ' ' + labels, allowed)
        if bad:
            problems.append(f'{bad}: {output.text!r}' + (f' buttons {list(output.choices)}' if labels else ''))
    assert sent, 'the bot said nothing'
    assert not problems, 'replies not in Russian:\n' + '\n'.join(problems)


def test_the_russian_check_catches_english() -> None:
    allowed = {'train', 'cancel'}
    assert english_words('Training cancelled; nothing was started.', allowed) == [
        'Training',
        'cancelled',
        'nothing',
        'was',
        'started',
    ]
    assert english_words('Напишите !train или cancel; файл data/x.txt, 12 байт, ZIP', allowed) == []
