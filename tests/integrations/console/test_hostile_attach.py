"""A clumsy console user attaches paths that cannot even be looked at: a plain answer, and the console goes on."""

from __future__ import annotations

import io

import pytest

from engine.api import ConversationKey, User
from integrations.console import ConsoleAdapter

KEY = ConversationKey('console', 'local', 'me')
USER = User(id='me', name='me')


@pytest.mark.parametrize(
    'path',
    ['~no-such-user-4f1c/data.zip', 'x' * 300 + '/data.zip', 'x' * 300],
    ids=['unknown-home', 'name-too-long-folder', 'name-too-long-file'],
)
def test_attach_of_a_path_that_cannot_be_looked_at_explains_the_usage(path: str) -> None:
    result = ConsoleAdapter(io.StringIO()).parse(f':attach {path} hello', KEY, USER)
    assert isinstance(result, str) and result.startswith('No such file: ') and 'Usage: :attach PATH' in result
