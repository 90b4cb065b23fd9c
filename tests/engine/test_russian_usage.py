"""A Russian user's usage lines (argument errors, !instruction) name the kinds of arguments in Russian;
the option names stay as they are typed (``label=neg``)."""

from __future__ import annotations

import pathlib

import pytest

from engine import i18n
from engine.commands import UsageError, parse_arguments, usage
from engine.flows.loader import load_file

FLOWS = pathlib.Path(__file__).resolve().parents[2] / 'flows'


def test_a_russian_usage_line_names_the_argument_kinds_in_russian() -> None:
    trigger = load_file(FLOWS / 'train.toml').trigger
    with i18n.use('ru'):
        line = usage('train', trigger, prefix='!')
        with pytest.raises(UsageError) as refused:
            parse_arguments('train', trigger, 'validation_split=abc', prefix='!')
    assert line == '!train [path:строка] [label:строка] [validation_split:число] [file:файл]'
    assert str(refused.value).endswith(line)
    assert usage('train', trigger, prefix='!') == (
        '!train [path:string] [label:string] [validation_split:number] [file:attachment]'
    )
