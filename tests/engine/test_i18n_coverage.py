"""No English-only text reaches a person: the code has none outside the catalog, and ``flowbot``'s
commands speak Russian when the terminal or ``[bot] language`` says so."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

from engine import i18n
from engine.cli import main
from engine.flows.loader import Diagnostic
from engine.reload import ReloadResult
from tests.engine.helpers import write_flows

REPO = pathlib.Path(__file__).resolve().parents[2]

SINKS = frozenset(
    {
        'announce',
        '_deliver',
        '_progress',
        'print',
        'write',
        'reply',
        'send_text',
        'send_file',
        'ask',
        'edit_text',
        'report',
        'problem',
        'refuse',
        'notice',
    }
)
"""Calls whose text a person reads: terminal output, chat messages, progress, lint diagnostics."""

INTERNAL_ERRORS = frozenset(
    {
        'AssertionError',
        'ConnectionError',  # the voice code's; the manager answers with its own translated text
        'FlowRuntimeError',  # a flow's bug: logged with context, the user gets the internal-error text
        'KeyError',
        'NotImplementedError',
        'RuntimeError',
        'ShardLostError',  # stops the process; flowbot run prints its translated line
        'TypeError',
    }
)
"""Errors nobody but a developer or the log reads (``engine.errors.user_message`` hides them from users)."""

INTERNAL = {
    'integrations/discord/voice/rtp.py': 'voice packet parsing: malformed packets are logged and dropped',
    'integrations/discord/voice/crypto.py': 'voice encryption negotiation: logged; the user reads "could not join"',
    'integrations/discord/voice/dave.py': 'DAVE frames: logged and dropped',
    'integrations/discord/voice/udp.py': 'IP discovery: logged; the user reads "could not join"',
    'integrations/discord/voice/gateway.py': 'voice websocket state: logged',
    'integrations/discord/keepalive.py': 'HTTP answers of the reply connections: logged; the user reads the internal error',
    'integrations/discord/rest.py': 'a reply lost in transit (hikari.HTTPError): logged; the user reads the internal error',
}
"""Files whose error texts only reach the log, and why."""

ALLOWED = {
    ('engine/postgres.py', 'the PostgreSQL store is not open'): 'a programming error (open() not awaited)',
    ('engine/postgres.py', 'writing conversations failed'): 'logged by the writer; the store retries',
    ('engine/postgres.py', 'conversation(s) of shards this process does not run'): 'a programming error',
    ('engine/states/actions.py', 'this action is only known by its signature here'): 'the lint child never runs it',
    ('engine/states/actions.py', 'is registered twice'): 'a plugin programming error at start-up',
    ('engine/tasks.py', 'is registered twice'): 'a plugin programming error at start-up',
    ('engine/store.py', 'unreadable row'): 'logged with the conversation key; the conversation is skipped',
}
"""Single texts that stay English, with the reason."""

_WRAPPERS = frozenset({'_', 'N_', 'ngettext'})
_LOG_CALLS = frozenset({'debug', 'info', 'warning', 'error', 'exception', 'critical', 'log'})


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ''


def _english(node: ast.expr) -> str | None:
    """The fixed text of a literal or f-string argument that says something in words (two or more)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
    elif isinstance(node, ast.JoinedStr):
        text = ''.join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _english(node.left) or _english(node.right)
    else:
        return None
    words = [w for w in re.split(r'[\s_]+', text) if w.isalpha() and w.islower() and len(w) > 2]
    return text if len(words) >= 2 else None


def untranslated(source: str, file: str = '<code>') -> list[str]:
    """``file:line: text`` for every English text handed to a sink or a person-facing error unwrapped."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        if name in _LOG_CALLS or name in _WRAPPERS:
            continue
        if name not in SINKS and not (name.endswith('Error') and name not in INTERNAL_ERRORS):
            continue
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            text = _english(arg)
            if text and not any(file == f and part in text for f, part in ALLOWED):
                found.append(f'{file}:{node.lineno}: {name}({text[:80]!r})')
    return found


def test_the_scan_finds_an_english_only_message_and_passes_a_wrapped_one() -> None:
    bad = "print('the bot is ready')\nraise ModelInstallError(f'the download of {name} failed')\n"
    good = "print(_('the bot is ready'))\nraise ModelInstallError(_('the download of {name} failed').format(name=n))\n"
    logged = "_log.error('the download of %s failed', name)\nraise TypeError('not a callable action')\n"
    assert len(untranslated(bad)) == 2
    assert untranslated(good) == []
    assert untranslated(logged) == []


def test_no_english_only_message_is_built_for_a_person_outside_the_catalog() -> None:
    files = sorted(REPO.glob('engine/**/*.py')) + sorted(REPO.glob('integrations/**/*.py'))
    assert len(files) > 60
    found = []
    for path in files:
        rel = path.relative_to(REPO).as_posix()
        if rel not in INTERNAL:
            found += untranslated(path.read_text(encoding='utf-8'), rel)
    assert not found, 'wrap these in engine.i18n._ (and run make messages):\n' + '\n'.join(found)


_CYRILLIC = re.compile('[а-яё]', re.IGNORECASE)
_LATIN_WORDS = re.compile(r'\b[a-z]{4,}\b')
_NOT_WORDS = frozenset(
    {'flowbot', 'flows', 'toml', 'states', 'kind', 'next', 'text', 'greet', 'says', 'nowhere', 'tests', 'data'}
)


def _russian(line: str) -> bool:
    """A line of output is Russian: it has Cyrillic words and no English ones (names from the flow aside)."""
    words = {w for w in _LATIN_WORDS.findall(line.lower()) if w not in _NOT_WORDS}
    return bool(_CYRILLIC.search(line)) and not (words - _line_names(line))


def _line_names(line: str) -> set[str]:
    """Paths, quoted names and [codes] in a line: not words of a language."""
    names = re.findall(r'«([^»]*)»|"([^"]*)"|\[([^\]]*)\]|(/\S+)', line)
    return {w for group in names for part in group for w in _LATIN_WORDS.findall(part.lower())}


BROKEN = """
    [flow]
    name = "greet"
    description = { en = "Greet", ru = "Поздороваться" }
    [trigger]
    command = "greet"
    description = { en = "Say hello", ru = "Поздороваться" }
    [states.say]
    kind = "say"
    text = { en = "Hello", ru = "Привет" }
    next = "nowhere"
"""


def _bot(tmp_path: pathlib.Path, language: str) -> pathlib.Path:
    config = tmp_path / 'bot.toml'
    config.write_text(f'[bot]\nlanguage = "{language}"\nlanguages = ["en", "ru"]\n', encoding='utf-8')
    return config


def test_flowbot_lint_speaks_the_bot_language_when_the_terminal_names_none(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flows = write_flows(tmp_path / 'flows', {'greet.toml': BROKEN})
    assert main(['-c', str(_bot(tmp_path, 'ru')), 'lint', str(flows)]) == 1
    out, err = capsys.readouterr()
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert lines and all(_russian(line) for line in lines), lines
    assert 'проверен 1 сценарий, 1 проблема' in err  # plural forms of the summary
    assert 'ведёт в неизвестное состояние «nowhere»' in out


@pytest.mark.parametrize(
    ('terminal', 'bot', 'expected'),
    [
        ('ru_RU.UTF-8', 'en', 'проверен 1 сценарий'),
        ('en_US.UTF-8', 'ru', '1 flow checked'),
        ('C.UTF-8', 'en', '1 flow checked'),
    ],
)
def test_the_terminal_language_wins_over_the_bot_language_for_tool_commands(
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    terminal: str,
    bot: str,
    expected: str,
) -> None:
    monkeypatch.setenv('LANG', terminal)
    flows = write_flows(tmp_path / 'flows', {'greet.toml': BROKEN})
    main(['-c', str(_bot(tmp_path, bot)), 'lint', str(flows)])
    assert expected in capsys.readouterr().err


def test_the_terminal_language_is_read_the_gettext_way() -> None:
    assert i18n.environment_language({'LANG': 'ru_RU.UTF-8'}) == 'ru'
    assert i18n.environment_language({'LANGUAGE': 'ru:en', 'LANG': 'en_US.UTF-8'}) == 'ru'
    assert i18n.environment_language({'LC_ALL': 'C', 'LANG': 'ru_RU.UTF-8'}) == 'ru'  # C names no language
    assert i18n.environment_language({'LC_MESSAGES': 'de_DE@euro'}) == 'de'
    assert i18n.environment_language({'LANG': 'C.UTF-8'}) is None
    assert i18n.environment_language({'LANG': 'POSIX'}) is None
    assert i18n.environment_language({}) is None


def test_a_configuration_error_is_reported_in_the_configured_language(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / 'bot.toml'
    config.write_text('[bot]\nlanguage = "ru"\nlanguags = ["en"]\n', encoding='utf-8')
    assert main(['-c', str(config), 'lint']) == 2
    err = capsys.readouterr().err
    assert 'flowbot: ошибка конфигурации:' in err
    assert 'неизвестный ключ languags (может быть, «languages»?)' in err
    config.write_text('[bot]\nlanguage = "ru"\nprogress_interval = "soon"\n', encoding='utf-8')
    assert main(['-c', str(config), 'lint']) == 2
    assert 'bot.toml:3: bot.progress_interval: ожидалось: число, а не строка' in capsys.readouterr().err


def test_flowbot_init_in_a_russian_terminal_says_what_next_in_russian(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv('LANG', 'ru_RU.UTF-8')
    assert main(['init', str(tmp_path / 'bot')]) == 0
    out = capsys.readouterr().out
    assert 'Папка бота готова' in out
    assert 'сценариев для правки' in out or 'сценария для правки' in out
    assert 'language = "ru" ([bot])' in out
    assert 'flowbot speech install vosk-model-small-ru-0.22' in out
    assert main(['init', str(tmp_path / 'bot')]) == 1  # the files exist now
    assert 'ничего не записано' in capsys.readouterr().err


def test_flowbot_test_reports_in_russian_and_keeps_the_closing_line_for_ci_tools(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / 'scripts' / 'hi.toml'
    script.parent.mkdir()
    script.write_text(
        'flow = "hi"\n[[cases]]\nname = "greets"\n[[cases.turns]]\ncommand = "hi"\nexpect = ["nope"]\n',
        encoding='utf-8',
    )
    assert main(['-c', str(_bot(tmp_path, 'ru')), 'test', str(script.parent)]) == 1
    out = capsys.readouterr().out
    assert 'ход 1 (!hi), вывод 1 из 1:' in out
    assert 'ожидался текст' in out and 'получен текст' in out
    assert out.rstrip().endswith('0 passed, 1 failed (1 файл тестов)')


@pytest.mark.parametrize(
    ('problems', 'files', 'expected'), [(1, 1, '1 проблема в 1 файле'), (5, 2, '5 проблем в 2 файлах')]
)
def test_the_reload_report_for_maintainers_has_russian_plurals(problems: int, files: int, expected: str) -> None:
    rejected = tuple(Diagnostic(f'f{i % files}.toml', 1, 'x', 'schema') for i in range(problems))
    with i18n.use('ru'):
        summary = ReloadResult(added=('hi',), rejected=rejected).summary()
    assert summary == f'добавлены hi; отклонено: {expected}'


async def test_work_run_in_an_executor_thread_keeps_the_reply_language() -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    with i18n.use('ru'):
        inside = await loop.run_in_executor(None, i18n.carried(i18n._, 'Cancelled.'))
        lost = await loop.run_in_executor(None, i18n._, 'Cancelled.')
    assert inside != 'Cancelled.' and _CYRILLIC.search(inside)
    assert lost == 'Cancelled.'  # what carried() is for: a plain executor call loses the language
