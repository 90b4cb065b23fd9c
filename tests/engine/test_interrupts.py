"""Typed interrupts: which messages are ``cancel``, ``back`` or ``help`` rather than an answer, in every language
with a catalog (``отмена``, ``назад``, ``помощь``) besides English."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from engine import i18n, interrupts, messages
from engine.api import Attachment, ConversationKey, Message, User
from engine.interrupts import interrupt_named, typed_interrupt
from tests.engine.conftest import HarnessFactory
from tests.engine.helpers import Harness

KEY = ConversationKey('test', 'c', 'u')
Catalogs = Callable[[dict[str, dict[str, str]]], None]


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
@pytest.mark.parametrize('language', ['en', 'ru'])
def test_a_message_is_an_interrupt_only_when_it_is_the_word_with_at_most_one_mark(
    text: str, prefix: str, expected: str | None, language: str
) -> None:
    assert typed_interrupt(message(text), prefix, language) == expected


@pytest.mark.parametrize(
    'text', ['！отмена', 'ｃａｎｃｅｌ', '／cancel', 'отмена\u200b', '\ufeffcancel', '!\u200bотмена', 'от\u00adмена']
)
def test_a_word_typed_full_width_or_with_an_invisible_character_is_still_the_interrupt(text: str) -> None:
    """A Japanese or Chinese keyboard types ！ and full-width letters; a paste may carry a zero-width space or a
    soft hyphen: the user sees the word, so it must act as the word rather than be taken as the answer."""
    assert typed_interrupt(message(text), '!', 'ru') == 'cancel'


def test_a_full_width_prefix_of_the_adapter_still_works_as_typed() -> None:
    assert typed_interrupt(message('！cancel'), '！', 'en') == 'cancel'
    assert typed_interrupt(message('！！cancel'), '！', 'en') is None


@pytest.mark.parametrize(
    ('text', 'prefix', 'expected'),
    [
        ('отмена', '!', 'cancel'),
        ('ОТМЕНА', '!', 'cancel'),
        ('Отмена', '!', 'cancel'),
        ('оТмЕнА', '!', 'cancel'),
        ('  Назад\n', '!', 'back'),
        ('НАЗАД', '!', 'back'),
        ('Помощь', '!', 'help'),
        ('ПОМОЩЬ', '!', 'help'),
        ('!Отмена', '!', 'cancel'),
        ('/НАЗАД', '!', 'back'),
        ('бот помощь', 'бот ', 'help'),
        ('Бот Помощь', 'бот ', 'help'),  # the prefix is lowercased with the rest
        ('/помощь', 'бот ', 'help'),
        (' ' * 40 + '!ОТМЕНА' + '\n' * 40, '!', 'cancel'),
        ('!/отмена', '!', None),
        ('отмена заказа', '!', None),  # an answer that merely contains the word
        ('не надо назад', '!', None),
        ('отменаа', '!', None),
        ('помощь!', '!', None),
    ],
)
def test_in_a_russian_conversation_the_russian_words_are_interrupts_in_any_case(
    text: str, prefix: str, expected: str | None
) -> None:
    assert typed_interrupt(message(text), prefix, 'ru') == expected


@pytest.mark.parametrize(('text', 'expected'), [('отмена', 'cancel'), ('Назад', 'back'), ('!ПОМОЩЬ', 'help')])
@pytest.mark.parametrize('language', ['en', 'de'])  # English, and a language without a catalog
def test_the_russian_words_work_in_conversations_of_other_languages(text: str, expected: str, language: str) -> None:
    """A mixed team: Discord gives a typed message the server's locale, so a Russian speaker on an English server is
    in an English conversation and still types their own word."""
    assert typed_interrupt(message(text), '!', language) == expected


def test_a_message_with_an_attachment_is_never_an_interrupt() -> None:
    file = Attachment(name='a.txt', content_type='text/plain', size=1)
    assert typed_interrupt(message('cancel', file), '!', 'en') is None
    assert typed_interrupt(message('отмена', file), '!', 'ru') is None


def test_the_length_shortcut_still_finds_the_longest_word_of_any_language() -> None:
    """Longer texts are refused without a look-up; the bound must cover the longest word in its longest form."""
    longest = max(interrupts.all_words(), key=len)
    for prefix in ('!', 'bot ', ''):
        for text in (longest, longest.upper(), '/' + longest, prefix + longest):
            found = typed_interrupt(message(text), prefix, 'en')
            assert found == interrupts.all_words()[longest], (prefix, text)
        assert typed_interrupt(message('/' + longest + 'x'), prefix, 'en') is None


@pytest.fixture
def catalogs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Catalogs]:
    """``catalogs({'xx': {'cancel': …, 'back': …, 'help': …}})``: languages whose catalogs give these words."""
    longest = interrupts._longest[0]

    def use(languages: dict[str, dict[str, str]]) -> None:
        english = {name: name for name in messages.INTERRUPT_WORDS}
        monkeypatch.setattr(interrupts, 'interrupt_words', lambda lang: languages.get(lang, english))
        monkeypatch.setattr(i18n, 'available', lambda: sorted({'en', *languages}))
        monkeypatch.setattr(interrupts, '_tables', {})
        interrupts._words.cache_clear()

    yield use
    interrupts._words.cache_clear()
    interrupts._longest[0] = longest


def test_a_word_with_yo_is_taken_composed_decomposed_and_typed_with_ye(catalogs: Catalogs) -> None:
    """A translator may pick a word with ``ё``: users type it as ``е`` too, and some keyboards send ``е`` + U+0308."""
    catalogs({'xx': {'cancel': 'отмена', 'back': 'вернёмся', 'help': 'помощь'}})
    for text in ('вернёмся', 'ВЕРНЁМСЯ', 'вернемся', 'Вернемся', 'верне\u0308мся', '!ВЕРНЕ\u0308МСЯ'):
        assert typed_interrupt(message(text), '!', 'xx') == 'back', text
    assert interrupt_named('ВЕРНЕМСЯ', 'xx') == 'back'


def test_where_two_languages_words_collide_the_conversations_language_decides(catalogs: Catalogs) -> None:
    catalogs({'xx': {'cancel': 'stop', 'back': 'help', 'help': 'hilfe'}})  # xx's "back" is English's "help"
    assert typed_interrupt(message('Help'), '!', 'xx') == 'back'
    assert typed_interrupt(message('Help'), '!', 'en') == 'help'
    assert typed_interrupt(message('stop'), '!', 'en') == 'cancel'  # no collision: every catalog's word works
    assert interrupt_named('help', 'xx') == 'back'


def test_a_command_named_like_an_interrupt_word_is_the_interrupt() -> None:
    """``!отмена`` reaches the engine as the command ``отмена`` (console and Discord prefix commands)."""
    assert interrupt_named('отмена', 'ru') == 'cancel'
    assert interrupt_named('назад', 'en') == 'back'
    assert interrupt_named('help', 'ru') == 'help'
    assert interrupt_named('train', 'ru') is None


def test_every_catalog_names_one_word_per_interrupt_and_no_two_interrupts_share_a_word() -> None:
    """A language gets typed interrupts by translating the three words; a word that two interrupts (or two
    languages' different interrupts) share would make one of them unreachable."""
    seen: dict[str, str] = {}
    for lang in i18n.available():
        words = messages.interrupt_words(lang)
        assert sorted(words) == sorted(messages.INTERRUPT_WORDS)
        for name, word in words.items():
            assert word and not any(c.isspace() for c in word), (lang, word)
            assert seen.setdefault(word, name) == name, (lang, word)
    assert messages.interrupt_words('ru') == {'cancel': 'отмена', 'back': 'назад', 'help': 'помощь'}


# -- in a conversation -------------------------------------------------------------------------------

FORM = (
    '[flow]\nname = "form"\n[trigger]\ncommand = "form"\n'
    '[states.a]\nkind = "ask"\nprompt = { en = "A?", ru = "А?" }\nhelp = { en = "Type A", ru = "Введите А" }\n'
    'save_as = "a"\n'
    '[states.b]\nkind = "ask"\nprompt = { en = "B?", ru = "Б?" }\nsave_as = "b"\n'
    '[states.done]\nkind = "end"\ntext = "{{ a }}/{{ b }}"\n'
)


async def _form(engine_harness: HarnessFactory, **bot: object) -> Harness:
    h = await engine_harness({'form': FORM}, **bot)
    await h.command('form')
    return h


RU_HINT = 'Введите А\nВо время вопроса можно ответить или написать «отмена», «назад» или «помощь».'
EN_HINT = 'Type A\nDuring a question you can answer it, or type cancel, back or help.'


@pytest.mark.parametrize(
    ('language', 'lines', 'replies'),
    [
        # a Russian user goes back, gets help and cancels with Russian words, in any case, with the prefix
        ('ru', ['один', 'Назад', 'ПОМОЩЬ', '!отмена'], ['А?', 'Б?', 'А?', RU_HINT, 'Отменено.']),
        # English words work in a Russian conversation
        ('ru', ['один', 'BACK', 'help', '/Cancel'], ['А?', 'Б?', 'А?', RU_HINT, 'Отменено.']),
        # and Russian ones in an English conversation (a mixed team), the hint naming the English words
        ('en', ['one', 'назад', 'Помощь', 'Отмена'], ['A?', 'B?', 'A?', EN_HINT, 'Cancelled.']),
        # an answer that merely contains the word is an answer
        ('ru', ['отмена заказа', 'назад!'], ['А?', 'Б?', 'отмена заказа/назад!']),
    ],
)
async def test_typed_interrupt_words_in_a_dialog(
    engine_harness: HarnessFactory, language: str, lines: list[str], replies: list[str]
) -> None:
    h = await _form(engine_harness, language=language)
    for line in lines:
        await h.say(line)
    assert h.texts() == replies
    assert not h.live()


async def test_a_russian_prefix_command_is_the_interrupt_inside_and_outside_a_dialog(
    engine_harness: HarnessFactory,
) -> None:
    """``!отмена`` arrives as a command named ``отмена`` from the console and Discord's prefix commands."""
    h = await _form(engine_harness, language='ru')
    await h.command('назад')
    await h.command('отмена')
    assert not h.live()
    await h.command('отмена')
    await h.command('назад')
    assert h.texts() == [
        'А?',
        'Предыдущего вопроса нет.',
        'А?',
        'Отменено.',
        'Нечего отменять.',
        'Предыдущего вопроса нет.',
    ]


async def test_a_mistyped_russian_word_in_a_dialog_is_told_the_word_it_is_close_to(
    engine_harness: HarnessFactory,
) -> None:
    h = await _form(engine_harness, language='ru')
    await h.command('отмен')
    assert h.last.startswith('Неизвестная команда «отмен» (может быть, «отмена»?)'), h.last
    assert h.live()


async def test_the_help_word_outside_a_dialog_runs_the_help_command(engine_harness: HarnessFactory) -> None:
    helpflow = (
        '[flow]\nname = "instruction"\n[trigger]\ncommand = "instruction"\n[states.s]\nkind = "end"\ntext = "list"\n'
    )
    h = await engine_harness({'form': FORM, 'instruction': helpflow}, language='ru')
    await h.say('Помощь')
    await h.command('помощь')
    await h.say('help')
    assert h.texts() == ['list', 'list', 'list']


def test_a_user_whose_locale_is_russian_is_told_the_russian_word_while_the_flow_is_busy() -> None:
    assert messages.render('busy', 'ru-RU', 'en', prefix='!', flow='f') == (
        'Ещё выполняю f; прочитаю сообщение, когда закончу. Напишите «отмена», чтобы остановить.'
    )
    assert messages.render('busy', None, 'en', prefix='!', flow='f').endswith('Type cancel to stop it.')


def test_the_spelling_tables_stay_bounded_whatever_languages_users_claim() -> None:
    """Languages come from users' and servers' locales: a table each must not grow the process without bound."""
    for i in range(600):
        assert typed_interrupt(message('отмена'), '!', f'x{i}') == 'cancel'
    assert len(interrupts._tables) <= interrupts._MAX_TABLES


PICK = (
    '[flow]\nname = "pick"\n[trigger]\ncommand = "pick"\n'
    '[states.a]\nkind = "ask"\nprompt = { en = "Cancel the job?", ru = "Отменить задание?" }\nexpect = "choice"\n'
    'choices = [{ value = "keep", label = { en = "Keep it", ru = "Оставить" } },'
    ' { value = "cancel", label = { en = "Cancel it", ru = "Отмена" } }, { value = "back", label = "Back" }]\n'
    'save_as = "picked"\n'
    '[states.done]\nkind = "end"\ntext = "picked {{ picked }}"\n'
)


@pytest.mark.parametrize(
    ('language', 'typed', 'reply'),
    [
        ('en', 'cancel', 'picked cancel'),  # "Cancel the job?" answered "cancel": the job's choice, not the dialog's
        ('en', 'Back', 'picked back'),
        ('ru', 'Отмена', 'picked cancel'),  # a label in the conversation's language
        ('en', '!cancel', 'Cancelled.'),  # with a mark it is the interrupt
        ('en', '/back', 'There is no earlier question to go back to.'),
        ('en', 'help', None),  # not a choice: the interrupt
    ],
)
async def test_a_choice_the_open_question_offers_wins_over_the_interrupt_word_it_spells(
    engine_harness: HarnessFactory, language: str, typed: str, reply: str | None
) -> None:
    """A question offering "cancel" (a job, an order) answered "cancel" must take that choice: as an interrupt it
    ended the dialog with "Cancelled." and the job the user meant to cancel ran on."""
    h = await engine_harness({'pick': PICK}, language=language)
    await h.command('pick')
    await h.say(typed)
    if reply is None:
        assert 'During a question' in h.last and h.live()
    else:
        assert h.texts()[1] == reply
