"""OpenAI cookbook format checks, token and epoch estimates."""

from __future__ import annotations

from typing import Any

import pytest

from integrations.models.chatformat import (
    chat_example,
    check_chat_example,
    estimate_epochs,
    estimate_example_tokens,
    estimate_text_tokens,
)


@pytest.mark.parametrize(
    ('example', 'code'),
    [
        ([1, 2], 'data_type'),
        ({'prompt': 'x'}, 'missing_messages_list'),
        ({'messages': [{'role': 'user'}]}, 'message_missing_key'),
        ({'messages': [{'role': 'user', 'content': 'a', 'foo': 1}]}, 'message_unrecognized_key'),
        ({'messages': [{'role': 'robot', 'content': 'a'}]}, 'unrecognized_role'),
        ({'messages': [{'role': 'user', 'content': ' '}, {'role': 'assistant', 'content': 'b'}]}, 'missing_content'),
        ({'messages': [{'role': 'user', 'content': 'a'}]}, 'example_missing_assistant_message'),
    ],
)
def test_cookbook_format_errors_are_named(example: Any, code: str) -> None:
    errors = check_chat_example(example)
    assert any(e.startswith(code + ':') for e in errors), errors


def test_valid_example_has_no_errors_and_long_one_is_over_the_token_limit() -> None:
    assert check_chat_example(chat_example('sys', 'text', 'label')) == []
    errors = check_chat_example(chat_example('', 'word ' * 1000, 'label'), max_tokens=500)
    assert errors and errors[0].startswith('too_many_tokens')


def test_token_estimate_counts_non_latin_text_conservatively() -> None:
    assert estimate_text_tokens('abcd' * 10) == 10
    assert estimate_text_tokens('안녕하세요') == 5
    assert estimate_example_tokens([{'role': 'user', 'content': 'abcd'}]) == 3 + 3 + 1 + 1


@pytest.mark.parametrize(('n', 'epochs'), [(10, 10), (24, 4), (100, 3), (10_000, 2), (30_000, 1), (1, 25)])
def test_epochs_follow_openais_default(n: int, epochs: int) -> None:
    assert estimate_epochs(n) == epochs
