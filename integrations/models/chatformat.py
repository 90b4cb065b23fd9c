"""OpenAI chat fine-tuning format: the format checks of OpenAI's cookbook, token and epoch estimates.

Tokens are estimated without ``tiktoken``, which downloads its BPE tables from the network at
first use. The approximation (about 4 ASCII characters per token, one token per other character,
plus OpenAI's per-message overhead) errs high for non-English text, so limits and costs are
never underestimated.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from engine.i18n import _

__all__ = [
    'ALLOWED_KEYS',
    'ALLOWED_ROLES',
    'chat_example',
    'check_chat_example',
    'estimate_epochs',
    'estimate_example_tokens',
    'estimate_text_tokens',
    'split_chat_example',
]

ALLOWED_KEYS = frozenset({'role', 'content', 'name', 'function_call', 'weight', 'tool_calls', 'tool_call_id'})
ALLOWED_ROLES = frozenset({'system', 'user', 'assistant', 'function', 'tool'})
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_NAME = 1
_TOKENS_PER_REPLY = 3

# OpenAI's documented default epoch choice (cookbook "Data preparation and analysis for chat model fine-tuning").
_TARGET_EPOCHS = 3
_MIN_TARGET_EXAMPLES = 100
_MAX_TARGET_EXAMPLES = 25_000
_MIN_DEFAULT_EPOCHS = 1
_MAX_DEFAULT_EPOCHS = 25


def estimate_text_tokens(text: str) -> int:
    """Approximate the token count of ``text``: ASCII at ~4 characters a token, anything else one each."""
    ascii_chars = sum(1 for ch in text if ord(ch) < 128)
    return math.ceil(ascii_chars / 4) + (len(text) - ascii_chars)


def estimate_example_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Approximate tokens of one chat example, counted the way OpenAI bills training."""
    total = _TOKENS_PER_REPLY
    for message in messages:
        total += _TOKENS_PER_MESSAGE
        for key, value in message.items():
            if isinstance(value, str):
                total += estimate_text_tokens(value)
            if key == 'name':
                total += _TOKENS_PER_NAME
    return total


def estimate_epochs(n_examples: int) -> int:
    """The number of epochs OpenAI picks by default for ``n_examples`` examples."""
    epochs = _TARGET_EPOCHS
    if n_examples * _TARGET_EPOCHS < _MIN_TARGET_EXAMPLES:
        epochs = min(_MAX_DEFAULT_EPOCHS, _MIN_TARGET_EXAMPLES // max(n_examples, 1))
    elif n_examples * _TARGET_EPOCHS > _MAX_TARGET_EXAMPLES:
        epochs = max(_MIN_DEFAULT_EPOCHS, _MAX_TARGET_EXAMPLES // n_examples)
    return epochs


def chat_example(system: str, text: str, label: str) -> dict[str, Any]:
    """One training line: the system instruction, the text as the user, the label as the assistant."""
    messages = [{'role': 'user', 'content': text}, {'role': 'assistant', 'content': label}]
    if system:
        messages.insert(0, {'role': 'system', 'content': system})
    return {'messages': messages}


def check_chat_example(example: Any, *, max_tokens: int | None = None) -> list[str]:
    """The cookbook's format errors for one example, as ``code: explanation`` strings (empty when valid).

    :param max_tokens: also report ``too_many_tokens`` above this estimate.
    """
    if not isinstance(example, dict):
        return ['data_type: ' + _('each line must be a JSON object')]
    messages = example.get('messages')
    if not isinstance(messages, list) or not messages:
        return ['missing_messages_list: ' + _('"messages" must be a non-empty list')]
    errors: list[str] = []
    for index, message in enumerate(messages, 1):
        if not isinstance(message, dict):
            errors.append('data_type: ' + _('message {number} is not an object').format(number=index))
            continue
        if 'role' not in message or 'content' not in message:
            errors.append(
                'message_missing_key: ' + _('message {number} needs "role" and "content"').format(number=index)
            )
        unknown = sorted(set(message) - ALLOWED_KEYS)
        if unknown:
            errors.append(
                'message_unrecognized_key: '
                + _('message {number} has {keys}').format(number=index, keys=', '.join(unknown))
            )
        if message.get('role') not in ALLOWED_ROLES:
            errors.append(
                'unrecognized_role: '
                + _('message {number} has role {role}').format(number=index, role=repr(message.get('role')))
            )
        content = message.get('content')
        if (not isinstance(content, str) or not content.strip()) and not message.get('function_call'):
            errors.append('missing_content: ' + _('message {number} has no text content').format(number=index))
    if not any(isinstance(m, dict) and m.get('role') == 'assistant' for m in messages):
        errors.append('example_missing_assistant_message: ' + _('add an assistant message (the label)'))
    if max_tokens is not None and not errors:
        tokens = estimate_example_tokens(messages)
        if tokens > max_tokens:
            errors.append(
                'too_many_tokens: '
                + _('about {count} tokens, the limit is {limit}').format(count=tokens, limit=max_tokens)
            )
    return errors


def split_chat_example(example: Mapping[str, Any]) -> tuple[str, str]:
    """(text, label) of a valid chat example: its last user message and last assistant message."""
    messages = example['messages']
    text = next(m['content'] for m in reversed(messages) if m.get('role') == 'user')
    label = next(m['content'] for m in reversed(messages) if m.get('role') == 'assistant')
    return str(text), str(label)
