"""The console adapter: how typed lines become events, and how the bot's side is printed."""

from __future__ import annotations

import io
import pathlib

import pytest

from engine.api import ChoicePress, Command, ConversationKey, Message, Option, User
from integrations.console import ConsoleAdapter, run_console
from integrations.console.adapter import MAX_LINE
from tests.engine.helpers import build_harness

KEY = ConversationKey('console', 'local', 'me')
USER = User(id='me', name='me')


@pytest.fixture
def console() -> ConsoleAdapter:
    return ConsoleAdapter(io.StringIO())


def test_commands_with_either_prefix_become_commands(console: ConsoleAdapter) -> None:
    event = console.parse('!Feedback  it is great \n', KEY, USER)
    assert isinstance(event, Command)
    assert (event.name, event.key, event.user) == ('feedback', KEY, USER)
    event = console.parse('/hi', KEY, USER)
    assert isinstance(event, Command) and event.name == 'hi' and event.options == {}


def test_other_lines_are_messages_and_blank_lines_nothing(console: ConsoleAdapter) -> None:
    event = console.parse('hello there\r\n', KEY, USER)
    assert isinstance(event, Message) and event.text == 'hello there' and event.attachments == ()
    assert console.parse('   \n', KEY, USER) is None
    assert isinstance(console.parse('! not a command', KEY, USER), Message)


def test_attach_sends_a_file_with_its_content_type(console: ConsoleAdapter, tmp_path: pathlib.Path) -> None:
    voice = tmp_path / 'note.ogg'
    voice.write_bytes(b'OggS' + bytes(10))
    event = console.parse(f':attach {voice} listen to this', KEY, USER)
    assert isinstance(event, Message)
    assert event.text == 'listen to this'
    (attachment,) = event.attachments
    assert (attachment.name, attachment.content_type, attachment.size, attachment.path) == (
        'note.ogg',
        'audio/ogg',
        14,
        voice,
    )
    assert attachment.is_audio


def test_attach_with_a_command_sends_the_file_with_that_command(
    console: ConsoleAdapter, tmp_path: pathlib.Path
) -> None:
    data = tmp_path / 'check.json'
    data.write_text('[]')
    event = console.parse(f':attach {data} !test extra', KEY, USER)
    assert isinstance(event, Command)
    assert event.name == 'test'
    assert [a.path for a in event.attachments] == [data]


def test_attach_takes_a_quoted_path_with_spaces(console: ConsoleAdapter, tmp_path: pathlib.Path) -> None:
    voice = tmp_path / 'my note.ogg'
    voice.write_bytes(b'OggS' + bytes(10))
    event = console.parse(f':attach "{voice}" listen', KEY, USER)
    assert isinstance(event, Message) and event.text == 'listen'
    assert event.attachments[0].path == voice
    assert console.parse(f':attach "{voice}', KEY, USER) == "The path's quote is not closed. Usage: :attach PATH [text]"


def test_attach_of_a_folder_says_it_is_a_folder(console: ConsoleAdapter, tmp_path: pathlib.Path) -> None:
    assert console.parse(f':attach {tmp_path}', KEY, USER) == (
        f'{tmp_path} is a folder; attach a file. Usage: :attach PATH [text]'
    )


@pytest.mark.parametrize('line', [':attach', ':attach   ', ':attach /no/such/file.ogg text'])
def test_attach_of_a_missing_file_explains_the_usage(console: ConsoleAdapter, line: str) -> None:
    result = console.parse(line, KEY, USER)
    assert isinstance(result, str)
    assert result.startswith('No such file: ')
    assert result.endswith('Usage: :attach PATH [text]')


def test_too_long_lines_are_refused_not_truncated(console: ConsoleAdapter) -> None:
    assert isinstance(console.parse('x' * MAX_LINE, KEY, USER), Message)
    result = console.parse('x' * (MAX_LINE + 1), KEY, USER)
    assert result == f'That line is too long ({MAX_LINE + 1} characters, at most {MAX_LINE}).'


async def test_numbers_press_the_offered_choices_until_something_else_is_said(console: ConsoleAdapter) -> None:
    await console.ask(KEY, 'Colour?', [Option('red', 'Red'), Option('blue', 'Blue')])
    assert console.out.getvalue() == 'bot [c1]: Colour?\n    [1] Red  [2] Blue\n'  # type: ignore[attr-defined]
    press = console.parse('2', KEY, USER)
    assert isinstance(press, ChoicePress) and press.value == 'blue'
    out_of_range = console.parse('3', KEY, USER)
    assert isinstance(out_of_range, Message) and out_of_range.text == '3'
    other = ConversationKey('console', 'local', 'someone-else')
    assert isinstance(console.parse('1', other, USER), Message)
    await console.send_text(KEY, 'thanks')
    assert isinstance(console.parse('1', KEY, USER), Message)


async def test_output_lines_carry_ids_for_corrections_and_edits(
    console: ConsoleAdapter, tmp_path: pathlib.Path
) -> None:
    first = await console.send_text(KEY, 'hello')
    await console.edit_text(KEY, first, 'hello again')
    await console.send_file(KEY, tmp_path / 'v.ogg', text='listen', voice_message=True)
    assert console.out.getvalue().splitlines() == [  # type: ignore[attr-defined]
        'bot [c1]: hello',
        'bot [c1, edited]: hello again',
        f'bot [c2]: listen [voice message: {tmp_path / "v.ogg"}]',
    ]
    assert await console.fetch_text(KEY, 'c1') == 'hello again'
    assert await console.fetch_text(KEY, 'c9') is None


async def test_voice_operations_are_not_supported_in_the_console(console: ConsoleAdapter) -> None:
    from engine.api import NotSupportedError

    with pytest.raises(NotSupportedError):
        await console.voice_join(KEY)


async def test_run_console_reads_lines_in_order_until_quit(tmp_path: pathlib.Path) -> None:
    flow = (
        '[flow]\nname = "pick"\n[trigger]\ncommand = "pick"\n'
        '[states.q]\nkind = "ask"\nprompt = "Colour?"\nexpect = "choice"\nchoices = ["red", "blue"]\nsave_as = "c"\n'
        '[states.done]\nkind = "end"\ntext = "You picked {{ c }}"\n'
    )
    harness = await build_harness(tmp_path, {'pick': flow})
    out = io.StringIO()
    stdin = io.StringIO(f'!pick\n2\n{"y" * (MAX_LINE + 5)}\n:attach /nope\n:quit\n!pick\n')
    await run_console(harness.engine, stdin, out)
    await harness.stop()
    lines = out.getvalue().splitlines()
    assert lines[0] == 'flowbot console: !instruction lists the commands, :quit leaves.'
    assert lines[1:] == [
        'bot [c1]: Colour?',
        '    [1] red  [2] blue',
        'bot [c2]: You picked blue',
        f'! That line is too long ({MAX_LINE + 5} characters, at most {MAX_LINE}).',
        '! No such file: /nope. Usage: :attach PATH [text]',
    ]


async def test_a_dialog_left_open_is_asked_again_when_the_console_comes_back(tmp_path: pathlib.Path) -> None:
    flow = (
        '[flow]\nname = "pick"\n[trigger]\ncommand = "pick"\n'
        '[states.q]\nkind = "ask"\nprompt = "Colour?"\nexpect = "choice"\nchoices = ["red", "blue"]\nsave_as = "c"\n'
        '[states.done]\nkind = "end"\ntext = "You picked {{ c }}"\n'
    )
    harness = await build_harness(tmp_path, {'pick': flow})
    await run_console(harness.engine, io.StringIO('!pick\n'), io.StringIO())  # end of input mid-dialog
    out = io.StringIO()
    await run_console(harness.engine, io.StringIO('2\n:quit\n'), out)
    await harness.stop()
    assert out.getvalue().splitlines()[1:] == [
        '(the pick dialog is still open: answer it, or type cancel)',
        'bot [c1]: Colour?',
        '    [1] red  [2] blue',
        'bot [c2]: You picked blue',
    ]


async def test_files_from_a_conversation_folder_are_kept_after_it_ends(tmp_path: pathlib.Path) -> None:
    temporary, kept = tmp_path / 'tmp' / 'console_local_me', tmp_path / 'console'
    temporary.mkdir(parents=True)
    voice = temporary / 'reply.ogg'
    voice.write_bytes(b'OggS')
    lasting = tmp_path / 'plot.png'
    lasting.write_bytes(b'png')
    console = ConsoleAdapter(io.StringIO(), temporary_root=tmp_path / 'tmp', keep_dir=kept)
    await console.send_file(KEY, voice, voice_message=True)
    await console.send_file(KEY, lasting)
    voice.unlink()  # the engine deletes the conversation's folder when it ends
    assert console.out.getvalue().splitlines() == [  # type: ignore[attr-defined]
        f'bot [c1]: [voice message: {kept / "reply.ogg"}]',
        f'bot [c2]: [file: {lasting}]',
    ]
    assert (kept / 'reply.ogg').read_bytes() == b'OggS'


async def test_engine_messages_name_commands_with_each_adapters_own_prefix(tmp_path: pathlib.Path) -> None:
    flow = (
        '[flow]\nname = "pick"\n[trigger]\ncommand = "pick"\n'
        '[[trigger.options]]\nname = "times"\ntype = "integer"\n'
        '[states.done]\nkind = "end"\ntext = "Picked. {{ bot.prefix }}instruction lists the rest."\n'
    )
    harness = await build_harness(tmp_path, {'pick': flow})
    console = ConsoleAdapter(io.StringIO(), engine=harness.engine)
    console.prefix = '?'
    harness.engine.add_adapter(console)
    for line in ('?nope', '?pick x', '!cancel', '?cancel', '?pick 2'):
        event = console.parse(line, KEY, USER)
        if event is not None:
            await harness.engine.dispatch(event)
    await harness.engine.wait_idle(5)
    await harness.command('nope')  # the recording adapter keeps the default prefix
    await harness.stop()
    assert [line for line in console.out.getvalue().splitlines() if line.startswith('bot')] == [  # type: ignore[attr-defined]
        'bot [c1]: Unknown command "nope". Try ?instruction for the list.',
        'bot [c2]: times must be a whole number, not "x".',
        'bot [c3]: There is nothing to cancel.',  # `!cancel` is only a message here (`?` and `/` mark commands)
        'bot [c4]: Picked. ?instruction lists the rest.',
    ]
    assert harness.adapter.texts()[-1] == 'Unknown command "nope". Try !instruction for the list.'


async def test_russian_interrupt_words_work_typed_or_as_prefix_commands(tmp_path: pathlib.Path) -> None:
    """``!отмена`` is a command named ``отмена`` on the console, as on Discord: the engine takes it as cancel."""
    flow = (
        '[flow]\nname = "pick"\n[trigger]\ncommand = "pick"\n'
        '[states.a]\nkind = "ask"\nprompt = "Первый?"\nsave_as = "a"\n'
        '[states.b]\nkind = "ask"\nprompt = "Второй?"\nsave_as = "b"\n'
        '[states.done]\nkind = "end"\ntext = "{{ a }} {{ b }}"\n'
    )
    harness = await build_harness(tmp_path, {'pick': flow}, language='ru')
    out = io.StringIO()
    await run_console(
        harness.engine, io.StringIO('!pick\nотмена заказа\nНАЗАД\n/Назад\n!ОТМЕНА\n!отмена\n:quit\n'), out
    )
    await harness.stop()
    assert [line.split(': ', 1)[1] for line in out.getvalue().splitlines() if line.startswith('bot')] == [
        'Первый?',
        'Второй?',  # an answer that contains the word is an answer
        'Первый?',
        'Предыдущего вопроса нет.',
        'Первый?',
        'Отменено.',
        'Нечего отменять.',
    ]
