"""A clumsy user misspells an option name: the command is refused with the likely name, never run with the
misspelt ``name=value`` taken as the value of another option (a label ``lable=neg`` on every example)."""

from __future__ import annotations

import pathlib

import pytest

from engine.commands import UsageError, parse_arguments
from engine.flows.loader import load_file

FLOWS = pathlib.Path(__file__).resolve().parents[2] / 'flows'


@pytest.mark.parametrize(
    ('flow', 'text', 'meant'),
    [
        ('select_dataset', 'reviews lable=neg', 'label'),
        ('train', 'reviews lable=neg', 'label'),
        ('train', 'reviews validaton_split=0.2', 'validation_split'),
        ('select_dataset', 'pth=reviews', 'path'),
    ],
)
def test_a_misspelt_option_name_is_refused_with_the_likely_one(flow: str, text: str, meant: str) -> None:
    trigger = load_file(FLOWS / f'{flow}.toml').trigger
    with pytest.raises(UsageError, match=f'"{meant}"') as refused:
        parse_arguments(flow, trigger, text, prefix='!')
    assert f'!{flow} ' in str(refused.value)  # the usage line


@pytest.mark.parametrize('text', ['reviews positive=1', 'reviews a=b', 'data/x=1'])
def test_a_value_holding_an_equals_sign_that_names_no_option_is_still_a_value(text: str) -> None:
    trigger = load_file(FLOWS / 'select_dataset.toml').trigger
    assert parse_arguments('select_dataset', trigger, text, prefix='!')['path'] in ('reviews', 'data/x=1')


def test_free_text_keeps_a_misspelt_looking_word_as_typed() -> None:
    trigger = load_file(FLOWS / 'feedback.toml').trigger
    assert (
        parse_arguments('feedback', trigger, 'lable=neg is confusing', prefix='!')['text'] == 'lable=neg is confusing'
    )
