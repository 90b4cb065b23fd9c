"""Translations: the gettext catalog is complete, plural forms are right, lint finds untranslated flow texts,
and each reply is in the language of the user, else of the bot."""

from __future__ import annotations

import datetime
import pathlib

import pytest
from babel.messages import extract, pofile

from engine import i18n
from engine.api import ConversationKey, Message, User
from engine.cli import main
from engine.flows.library import FlowLibrary
from engine.flows.loader import load_paths
from engine.interrupts import typed_interrupt
from engine.states.actions import ActionRegistry
from engine.templates import render
from tests.engine.helpers import build_harness, write_flows

REPO = pathlib.Path(__file__).resolve().parents[2]


def _code_messages() -> set[str]:
    """Every msgid marked in the code, extracted the way ``make messages`` does (``babel.cfg``)."""
    found: set[str] = set()
    method_map = [('engine/**.py', 'python'), ('integrations/**.py', 'python')]
    keywords = {**extract.DEFAULT_KEYWORDS, 'N_': None}
    for _file, _line, message, _comments, _context in extract.extract_from_dir(
        str(REPO), method_map=method_map, keywords=keywords
    ):
        found.add(message[0] if isinstance(message, tuple | list) else message)
    return found


def _catalog(lang: str) -> pofile.Catalog:
    with (i18n.LOCALE_DIR / lang / 'LC_MESSAGES' / f'{i18n.DOMAIN}.po').open('rb') as po:
        return pofile.read_po(po, locale=lang)


@pytest.mark.parametrize('lang', [lang for lang in i18n.available() if lang != 'en'])
def test_every_python_message_has_a_translation_that_is_not_fuzzy(lang: str) -> None:
    catalog = _catalog(lang)
    code = _code_messages()
    assert len(code) > 100, 'the extraction found too few messages; is babel.cfg still right?'
    problems = []
    for msgid in sorted(code):
        entry = catalog.get(msgid)
        if entry is None:
            problems.append(f'not in the catalog (run make messages): {msgid!r}')
        elif entry.fuzzy:
            problems.append(f'fuzzy: {msgid!r}')
        elif not all(entry.string) if isinstance(entry.string, tuple | list) else not entry.string:
            problems.append(f'untranslated: {msgid!r}')
    assert not problems, f'{lang}: {len(problems)} problem(s)\n' + '\n'.join(problems)


def test_every_translation_keeps_the_placeholders_of_its_message() -> None:
    """A translation that drops or renames ``{name}`` would raise KeyError (or lose a value) at ``.format``."""
    import string

    def fields(text: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}

    problems = []
    for entry in _catalog('ru'):
        if not entry.id:
            continue
        ids = entry.id if isinstance(entry.id, tuple) else (entry.id,)
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        wanted = set().union(*(fields(i) for i in ids))
        for text in strings:
            if fields(text) - wanted:
                problems.append(f'{ids[0]!r} -> {text!r}')
    assert not problems, '\n'.join(problems)


@pytest.mark.parametrize(
    ('n', 'expected'),
    [(1, '1 пример'), (2, '2 примера'), (5, '5 примеров'), (11, '11 примеров'), (21, '21 пример'), (22, '22 примера')],
)
def test_russian_plural_forms_of_examples(n: int, expected: str) -> None:
    with i18n.use('ru'):
        line = i18n.ngettext('Dataset {name}: {count} example ({labels}).', 'x', n).format(name='d', count=n, labels='')
        flow_text = render("{{ n | plural('пример', 'примеров', few='примера', many='примеров') }}", {'n': n})
    assert line == f'Датасет d: {expected} ().'
    assert flow_text == expected


def test_english_plural_forms_and_number_formats() -> None:
    with i18n.use('en-US'):
        assert i18n.ngettext('{n} attempt left', '{n} attempts left', 1).format(n=1) == '1 attempt left'
        assert i18n.ngettext('{n} attempt left', '{n} attempts left', 2).format(n=2) == '2 attempts left'
        assert i18n.format_number(1234.5) == '1,234.5'
        assert i18n.format_date(datetime.date(2026, 11, 29)) == 'Nov 29, 2026'
    with i18n.use('ru-RU'):
        assert i18n.format_number(1234.5) == '1\xa0234,5'
        assert i18n.format_date(datetime.date(2026, 11, 29)).replace('\u202f', ' ') == '29 нояб. 2026 г.'
        assert i18n.format_percent(0.935) == '93,5%'


def test_switching_to_the_language_in_use_writes_nothing_and_a_switch_is_undone_by_its_token() -> None:
    with i18n.use('en'):
        assert i18n.switch(None, 'en-US') is None  # already English: nothing to undo
        i18n.restore(None)
        assert i18n.current() == 'en'
        token = i18n.switch('ru-RU', 'en')
        assert token is not None and i18n.current() == 'ru'
        i18n.restore(token)
        assert i18n.current() == 'en'


def test_a_language_without_a_catalog_falls_back_to_english() -> None:
    with i18n.use('xx-YY'):
        assert i18n._('Cancelled.') == 'Cancelled.'
        assert i18n.format_number(2.5) == '2.5'


@pytest.mark.parametrize('locale', ['x' * 300, '../../locale/ru', 'ru\x00', 'ру-RU'])
def test_a_locale_that_is_no_language_code_gets_the_default_language_not_a_file_error(locale: str) -> None:
    """Locales come from outside (a server's settings, a terminal): a garbage one must not name a catalog path
    (ENAMETOOLONG on every message, a .po outside the catalogs) but read as no locale."""
    assert i18n.language_of(locale, 'en') == 'en'
    with i18n.use(locale):
        assert i18n._('Cancelled.') == 'Cancelled.'
        assert (
            typed_interrupt(Message(key=ConversationKey('c', '1', 'u'), user=User('u'), text='cancel'), '!') == 'cancel'
        )


FLOW = """
    [flow]
    name = "greet"
    description = { en = "Greet", ru = "Поздороваться" }
    [trigger]
    command = "greet"
    description = "Say hello"
    [states.say]
    kind = "say"
    text = { en = "Hello", ru = "Привет" }
    [states.echo]
    kind = "say"
    text = "{{ user.name }} 👋"
    [states.done]
    kind = "end"
    text = { en = "Bye" }
"""


def test_lint_reports_a_flow_text_without_a_translation_for_a_configured_language(tmp_path: pathlib.Path) -> None:
    flows, problems = load_paths([write_flows(tmp_path, {'greet.toml': FLOW})])
    assert not problems
    found = FlowLibrary(ActionRegistry(), [], languages=['en', 'ru']).check(flows)
    assert [(d.code, d.line) for d in found] == [('missing-translation', 6), ('missing-translation', 15)]
    assert 'trigger.description has no ru translation' in found[0].message
    assert 'states.done.text has no ru translation' in found[1].message
    assert FlowLibrary(ActionRegistry(), []).check(flows) == []  # no languages configured: not checked


def test_flowbot_lint_passes_the_shipped_flows_with_english_and_russian(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / 'bot.toml'
    config.write_text(f'[bot]\nlanguages = ["en", "ru"]\nflows = ["{REPO / "flows"}"]\n', encoding='utf-8')
    assert main(['-c', str(config), 'lint']) == 0
    broken = write_flows(tmp_path / 'flows', {'greet.toml': FLOW})
    assert main(['-c', str(config), 'lint', str(broken)]) == 1
    assert 'missing-translation' in capsys.readouterr().out


async def test_a_reply_is_in_the_users_language_else_the_bots(tmp_path: pathlib.Path) -> None:
    h = await build_harness(tmp_path, {'greet.toml': FLOW}, language='ru')
    try:
        await h.command('nope')  # no locale (the console): bot.language
        assert h.last.startswith('Неизвестная команда «nope»')
        await h.command('nope', locale='en-US')
        assert h.last.startswith('Unknown command "nope"')
        await h.command('greet', locale='en-GB')
        assert h.texts()[-3:] == ['Hello', 'Ann 👋', 'Bye']
    finally:
        await h.stop()


def test_file_gate_refusals_are_in_the_reply_language(tmp_path: pathlib.Path) -> None:
    from engine.files import FileGate, FileRefusedError, check_name

    (tmp_path / 'sub').mkdir()
    gate = FileGate(roots=(tmp_path,))
    for lang, folder, missing, nul in (
        ('en', 'is a folder', 'does not exist', 'the path contains a NUL character'),
        ('ru', '— это папка', 'не существует', 'путь содержит символ NUL'),
    ):
        with i18n.use(lang):
            with pytest.raises(FileRefusedError, match=folder):
                gate.check(tmp_path / 'sub', name='sub')
            with pytest.raises(FileRefusedError, match=missing):
                gate.check(tmp_path / 'nothing.txt', name='nothing.txt')
            with pytest.raises(FileRefusedError, match=nul):
                check_name('a\x00b')
