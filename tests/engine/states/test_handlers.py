"""Every state kind has one handler, and nothing else in the project tests a state's class."""

from __future__ import annotations

import pathlib
import re

from engine.flows import model
from engine.states.handlers import HANDLERS, handler_for, question

ROOT = pathlib.Path(__file__).resolve().parents[3]
_KIND_CLASSES = '|'.join(cls.__name__ for cls in model.STATE_KINDS.values())
_ISINSTANCE_ON_KIND = re.compile(rf'isinstance\([^)]*\bmodel\.({_KIND_CLASSES})\b')


def test_every_state_kind_of_the_model_has_exactly_one_handler() -> None:
    assert set(HANDLERS) == set(model.STATE_KINDS)
    for kind, cls in model.STATE_KINDS.items():
        assert HANDLERS[kind].kind == kind == cls.kind


def test_only_questions_take_answers() -> None:
    ask = model.Ask(prompt='Name?')
    assert question(ask) is ask
    assert question(model.Say(text='hi')) is None
    assert question(None) is None
    assert [k for k, h in HANDLERS.items() if h.takes_answers] == ['ask']


def test_only_a_wait_leaves_its_work_running_and_only_a_call_reruns_after_a_restart() -> None:
    assert handler_for(model.Wait(until='job:1')).work_outlives_state
    assert [k for k, h in HANDLERS.items() if h.work_outlives_state] == ['wait']
    assert [k for k, h in HANDLERS.items() if h.reruns_on_restore] == ['call']


def test_no_code_outside_the_registry_tests_a_state_kind_by_its_class() -> None:
    offenders = []
    for folder in ('engine', 'integrations'):
        for path in sorted((ROOT / folder).rglob('*.py')):
            if path.name == 'handlers.py' and path.parent.name == 'states':
                continue
            for number, line in enumerate(path.read_text(encoding='utf-8').splitlines(), start=1):
                if _ISINSTANCE_ON_KIND.search(line):
                    offenders.append(f'{path.relative_to(ROOT)}:{number}: {line.strip()}')
    assert offenders == []
