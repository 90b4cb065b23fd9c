"""Typed interrupts: which messages are ``cancel``, ``back`` or ``help`` rather than an answer."""

from __future__ import annotations

import pytest

from engine.api import Attachment, ConversationKey, Message, User
from engine.interrupts import typed_interrupt

KEY = ConversationKey('test', 'c', 'u')


def message(text: str, *attachments: Attachment) -> Message:
    return Message(key=KEY, user=User('u'), text=text, attachments=attachments)


@pytest.mark.parametrize(
    ('text', 'prefix', 'expected'),
    [
        ('cancel', '!', 'cancel'),
        ('  CANCEL \n', '!', 'cancel'),
        ('!Back', '!', 'back'),
        ('/help', '!', 'help'),
        ('bot help', 'bot ', 'help'),
        ('/help', 'bot ', 'help'),
        ('help', '', 'help'),
        ('!help', '', None),  # no prefix: only the bare word and /help
        ('!/cancel', '!', None),  # one mark at most
        ('/!cancel', '!', None),
        ('cancel please', '!', None),
        ('!', '!', None),
        ('', '!', None),
        ('ccancel', 'c', 'cancel'),  # the prefix is taken off first, as a user typing it means
        ('cancel', 'c', None),
        (' ' * 40 + '!Cancel' + '\t' * 40, '!', 'cancel'),  # long only by the spaces around it
        ('\n' * 40 + '/back', '!', 'back'),
        ('bot cancel' + ' ' * 30, 'bot ', 'cancel'),
        ('please cancel this', '!', None),
    ],
)
def test_a_message_is_an_interrupt_only_when_it_is_the_word_with_at_most_one_mark(
    text: str, prefix: str, expected: str | None
) -> None:
    assert typed_interrupt(message(text), prefix) == expected


def test_a_message_with_an_attachment_is_never_an_interrupt() -> None:
    file = Attachment(name='a.txt', content_type='text/plain', size=1)
    assert typed_interrupt(message('cancel', file), '!') is None
