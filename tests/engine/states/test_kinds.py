"""What each state kind does for a user: say, ask, call, choice, wait, flow, end, and timeouts."""

from __future__ import annotations

import asyncio
import logging
import pathlib
from typing import Any

import pytest

from engine.api import Attachment, ConversationKey, User
from engine.doubles import RecordingAdapter
from engine.runtime import Internal
from engine.states.actions import ActionContext, ActionError
from tests.engine.conftest import HarnessFactory

CMD = '[flow]\nname = "{name}"\n[trigger]\ncommand = "{name}"\n'


def cmd_flow(name: str, states: str, trigger: str = '') -> str:
    return CMD.format(name=name) + trigger + states


# -- say / end -------------------------------------------------------------------------------


async def test_say_uses_the_users_language_and_templates(engine_harness: HarnessFactory) -> None:
    states = (
        '[states.hi]\nkind = "say"\ntext = { en = "Hi {{ user.name }}", ru = "Привет {{ user.name }}" }\n'
        '[states.done]\nkind = "end"\ntext = "{{ bot.prefix }}bye"\n'
    )
    h = await engine_harness({'hi': cmd_flow('hi', states)})
    await h.command('hi', locale='ru-RU')
    await h.command('hi', locale='de')
    assert h.texts() == ['Привет Ann', '!bye', 'Hi Ann', '!bye']
    assert not h.live()


async def test_templates_can_list_the_command_flows(engine_harness: HarnessFactory) -> None:
    states = (
        '[states.list]\nkind = "say"\n'
        'text = "{% for f in flows if f.command %}{{ bot.prefix }}{{ f.command }} {% endfor %}"\n'
    )
    h = await engine_harness({'menu': cmd_flow('menu', states), 'hi': cmd_flow('hi', '[states.x]\nkind = "end"\n')})
    await h.command('menu')
    assert h.texts() == ['!hi !menu ']


async def test_say_sends_files_and_voice_messages(engine_harness: HarnessFactory, tmp_path: pathlib.Path) -> None:
    (tmp_path / 'data').mkdir()
    audio = tmp_path / 'data' / 'note.ogg'
    audio.write_bytes(b'OggS')
    states = (
        f'[states.file]\nkind = "say"\ntext = "Here"\nfiles = ["{audio}"]\n'
        f'[states.voice]\nkind = "say"\nfiles = ["{audio}"]\nvoice = true\n'
        '[states.done]\nkind = "end"\n'
    )
    h = await engine_harness({'send': cmd_flow('send', states)})
    await h.command('send')
    files = [(s.kind, s.text, s.path, s.voice) for s in h.adapter.sent]
    assert files == [('file', 'Here', audio, False), ('file', '', audio, True)]


async def test_say_of_a_missing_file_ends_with_a_message_naming_it(
    engine_harness: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    states = '[states.file]\nkind = "say"\nfiles = ["x.ogg"]\n[states.done]\nkind = "end"\n'
    h = await engine_harness({'send': cmd_flow('send', states)})
    with caplog.at_level(logging.ERROR):
        await h.command('send')
    assert h.texts() == ["Something went wrong: 'x.ogg' does not exist"]
    assert 'failed in send/file' in caplog.text
    assert not h.live()


class _RefusingAdapter(RecordingAdapter):
    """Refuses every file as a real channel does one that is too large."""

    async def send_file(
        self, key: ConversationKey, path: pathlib.Path, *, text: str | None = None, voice_message: bool = False
    ) -> str:
        raise ActionError(f'The file {path.name} is too large to send.')


async def test_a_file_the_channel_refuses_in_an_end_state_reaches_the_user_with_its_reason(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path
) -> None:
    (tmp_path / 'data').mkdir(exist_ok=True)
    big = tmp_path / 'data' / 'big.bin'
    big.write_bytes(b'x')
    states = f'[states.done]\nkind = "end"\ntext = "Here"\nfiles = ["{big}"]\n'
    h = await engine_harness({'send': cmd_flow('send', states)}, adapter=_RefusingAdapter())
    await h.command('send')
    assert h.texts() == ['Something went wrong: The file big.bin is too large to send.']
    assert not h.live()


async def test_an_error_that_is_not_for_the_user_stays_internal(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path
) -> None:
    class Broken(RecordingAdapter):
        async def send_text(self, key: ConversationKey, text: str) -> str:
            if text == 'Hi':
                raise OSError('/secret/path: disk full')
            return await super().send_text(key, text)

    h = await engine_harness({'hi': cmd_flow('hi', '[states.done]\nkind = "end"\ntext = "Hi"\n')}, adapter=Broken())
    await h.command('hi')
    assert h.texts() == ['Something went wrong: an internal error (logged)']


# -- ask ---------------------------------------------------------------------------------------

ASK_NAME = (
    '[states.name]\nkind = "ask"\nprompt = "Name?"\npattern = "[A-Za-z]+"\nmin = 2\nmax = 10\n'
    'attempts = 3\nsave_as = "name"\nhelp = "Letters, 2 to 10."\n'
)


async def test_ask_text_validates_and_reprompts_then_saves(engine_harness: HarnessFactory) -> None:
    h = await engine_harness({'f': cmd_flow('f', ASK_NAME + '[states.done]\nkind = "end"\ntext = "Hi {{ name }}"\n')})
    await h.command('f')
    await h.say('A')
    await h.say('Ann!')
    await h.say('Ann')
    assert h.texts() == [
        'Name?',
        'Sorry, the answer needs at least 2 characters. (2 attempts left)',
        'Name?',
        'Sorry, the answer does not have the expected form. (1 attempt left)',
        'Name?',
        'Hi Ann',
    ]


async def test_ask_gives_up_after_max_attempts_and_ends_cleanly(engine_harness: HarnessFactory) -> None:
    from engine.store import SQLiteStore

    store = SQLiteStore(':memory:')
    h = await engine_harness({'f': cmd_flow('f', ASK_NAME + '[states.done]\nkind = "end"\n')}, store=store)
    await h.command('f')
    for answer in ('1', '2', '3'):
        await h.say(answer)
    assert h.texts()[-1] == 'Too many invalid answers; stopping here.'
    assert h.texts().count('Name?') == 3
    assert not h.live()
    assert await store.load_all() == []
    assert h.adapter.closed == [h.key]
    await h.say('anything')  # no flow takes free text: nothing happens, nothing breaks
    assert h.texts()[-1] == 'Too many invalid answers; stopping here.'


async def test_ask_on_fail_goes_to_its_state_with_a_custom_invalid_message(engine_harness: HarnessFactory) -> None:
    states = (
        '[states.n]\nkind = "ask"\nprompt = "Number?"\nexpect = "integer"\nmin = 1\nmax = 5\nattempts = 2\n'
        'invalid = "1 to 5, {{ user.name }}"\non_fail = "sorry"\nsave_as = "n"\n'
        '[states.done]\nkind = "end"\ntext = "got {{ n + 1 }}"\n'
        '[states.sorry]\nkind = "end"\ntext = "never mind"\n'
    )
    h = await engine_harness({'f': cmd_flow('f', states)})
    await h.command('f')
    await h.say('9')
    await h.say('x')
    assert h.texts() == ['Number?', '1 to 5, Ann (1 attempt left)', 'Number?', 'never mind']
    await h.command('f')
    await h.say('4')
    assert h.last == 'got 5'


@pytest.mark.parametrize(
    ('expect', 'extra', 'answers', 'result'),
    [
        ('number', 'min = 0.5\n', ['abc', '0.1', '2.5'], '2.5'),
        ('number', '', ['nan', 'inf', '-Infinity', '1e999', '1e3'], '1000.0'),
        ('integer', 'max = 10\n', ['2.5', '11', '7'], '7'),
        ('boolean', '', ['perhaps', 'да'], 'True'),
        ('choice', 'choices = ["red", { value = "blue", label = "Deep blue" }]\n', ['green', 'deep BLUE'], 'blue'),
        ('choice', 'choices = ["red", "blue"]\n', ['1'], 'red'),
    ],
)
async def test_ask_types_are_parsed(
    engine_harness: HarnessFactory, expect: str, extra: str, answers: list[str], result: str
) -> None:
    states = (
        f'[states.q]\nkind = "ask"\nprompt = "?"\nexpect = "{expect}"\n{extra}attempts = 5\nsave_as = "v"\n'
        '[states.done]\nkind = "end"\ntext = "{{ v }}"\n'
    )
    h = await engine_harness({'f': cmd_flow('f', states)})
    await h.command('f')
    for answer in answers:
        await h.say(answer)
    assert h.last == result
    assert len([t for t in h.texts() if t.startswith('Sorry, ')]) == len(answers) - 1


async def test_ask_with_choices_offers_buttons_and_takes_a_press(engine_harness: HarnessFactory) -> None:
    states = (
        '[states.q]\nkind = "ask"\nprompt = "Colour?"\nexpect = "choice"\n'
        'choices = ["red", { value = "blue", label = { en = "Blue", ru = "Синий" } }]\nsave_as = "c"\n'
        '[states.yn]\nkind = "ask"\nprompt = "Sure?"\nexpect = "boolean"\nsave_as = "sure"\n'
        '[states.done]\nkind = "end"\ntext = "{{ c }} {{ sure }}"\n'
    )
    h = await engine_harness({'f': cmd_flow('f', states)})
    await h.command('f', locale='ru')
    ask = h.adapter.sent[0]
    assert ask.kind == 'ask' and [(o.value, o.label) for o in ask.options] == [('red', 'red'), ('blue', 'Синий')]
    await h.press('blue')
    assert [(o.value, o.label) for o in h.adapter.sent[-1].options] == [
        ('yes', 'Да'),
        ('no', 'Нет'),
    ]  # yes/no buttons in the user's language
    await h.press('no')
    assert h.last == 'blue False'


async def test_a_choice_not_offered_is_answered_with_the_labels_shown(engine_harness: HarnessFactory) -> None:
    states = (
        '[states.q]\nkind = "ask"\nprompt = "Go?"\nexpect = "choice"\n'
        'choices = [{ value = "start", label = "Start training" }, { value = "cancel", label = "Stop" }]\nsave_as = "c"\n'
        '[states.done]\nkind = "end"\ntext = "{{ c }}"\n'
    )
    h = await engine_harness({'f': cmd_flow('f', states)})
    await h.command('f')
    await h.say('3')
    assert h.texts()[-2] == 'Sorry, please pick one of: 1 Start training, 2 Stop. (2 attempts left)'
    await h.say('start training')
    assert h.last == 'start'


async def test_ask_attachment_checks_the_content_type(engine_harness: HarnessFactory, tmp_path: pathlib.Path) -> None:
    states = (
        '[states.q]\nkind = "ask"\nprompt = "Send audio"\nexpect = "attachment"\ncontent_types = ["audio/"]\nsave_as = "f"\n'
        '[states.done]\nkind = "end"\ntext = "{{ f.name }} {{ f.content_type }}"\n'
    )
    h = await engine_harness({'f': cmd_flow('f', states)})
    await h.command('f')
    await h.say('here', attachments=[Attachment(name='a.png', content_type='image/png')])
    await h.say('no file')
    await h.say('', attachments=[Attachment(name='v.ogg', content_type='audio/ogg', path=tmp_path / 'v.ogg')])
    assert h.texts() == [
        'Send audio',
        'Sorry, please attach a file (audio/). (2 attempts left)',
        'Send audio',
        'Sorry, please attach a file (audio/). (1 attempt left)',
        'Send audio',
        'v.ogg audio/ogg',
    ]


FORM = (
    '[states.a]\nkind = "ask"\nprompt = "A?"\nsave_as = "a"\nhelp = "Anything for A"\n'
    '[states.b]\nkind = "ask"\nprompt = "B?"\nsave_as = "b"\n'
    '[states.done]\nkind = "end"\ntext = "{{ a }}/{{ b }}"\n'
)


async def test_every_ask_understands_cancel(engine_harness: HarnessFactory) -> None:
    h = await engine_harness({'form': cmd_flow('form', FORM)})
    await h.command('form')
    await h.say('x')
    await h.say('CANCEL')
    assert h.texts()[-1] == 'Cancelled.'
    assert not h.live()
    await h.command('form')
    await h.command('cancel')
    assert h.texts()[-1] == 'Cancelled.'
    await h.command('cancel')
    assert h.texts()[-1] == 'There is nothing to cancel.'


async def test_every_ask_understands_back(engine_harness: HarnessFactory) -> None:
    h = await engine_harness({'form': cmd_flow('form', FORM)})
    await h.command('form')
    await h.say('back')
    assert h.texts()[-2:] == ['There is no earlier question to go back to.', 'A?']
    await h.say('first')
    await h.say('!back')
    assert h.last == 'A?'
    await h.say('second')
    await h.say('b')
    assert h.last == 'second/b'


async def test_every_ask_understands_help(engine_harness: HarnessFactory) -> None:
    h = await engine_harness({'form': cmd_flow('form', FORM)})
    await h.command('form')
    await h.say('help')
    hint = 'During a question you can answer it, or type cancel, back or help.'
    assert h.last == f'Anything for A\n{hint}'
    await h.say('x')
    await h.command('help')
    assert h.last == f'B?\n{hint}'
    assert h.live() and h.engine.conversation(h.key).state == 'b'  # type: ignore[union-attr]


async def test_help_at_a_question_with_choices_offers_the_choices_again(engine_harness: HarnessFactory) -> None:
    states = (
        '[states.q]\nkind = "ask"\nprompt = "Colour?"\nexpect = "choice"\nchoices = ["red", "blue"]\n'
        'help = "Pick the colour of the team"\nsave_as = "c"\n'
        '[states.done]\nkind = "end"\ntext = "{{ c }}"\n'
    )
    h = await engine_harness({'f': cmd_flow('f', states)})
    await h.command('f')
    await h.say('help')
    help_message = h.adapter.sent[-1]
    assert help_message.kind == 'ask'
    assert (
        help_message.text
        == 'Pick the colour of the team\nDuring a question you can answer it, or type cancel, back or help.'
    )
    assert [o.value for o in help_message.options] == ['red', 'blue']


async def test_an_unknown_interrupt_during_an_ask_lists_the_interrupts(engine_harness: HarnessFactory) -> None:
    h = await engine_harness({'form': cmd_flow('form', FORM)})
    await h.command('form')
    await h.command('cancle')
    assert h.last == (
        'Unknown command "cancle" (did you mean "cancel"?). Try !instruction for the list.\n'
        'During a question you can answer it, or type cancel, back or help.'
    )
    assert h.engine.conversation(h.key).state == 'a'  # type: ignore[union-attr]
    await h.command('foo')
    assert 'cancel, back or help' in h.last


async def test_another_command_during_a_flow_stops_it_and_starts_the_new_one(engine_harness: HarnessFactory) -> None:
    hi = cmd_flow('hi', '[states.done]\nkind = "end"\ntext = "hello"\n')
    h = await engine_harness({'form': cmd_flow('form', FORM), 'hi': hi})
    await h.command('form')
    await h.command('hi')
    assert h.texts() == ['A?', 'Stopped form.', 'hello']
    assert not h.live()


# -- commands: options and bad input -------------------------------------------------------------

OPTS = '[[trigger.options]]\nname = "n"\ntype = "integer"\n[[trigger.options]]\nname = "word"\nrequired = false\n'


async def test_command_options_reach_templates_typed(engine_harness: HarnessFactory) -> None:
    states = '[states.done]\nkind = "end"\ntext = "{{ options.n * 2 }} {{ options.word or \'-\' }}"\n'
    h = await engine_harness({'twice': cmd_flow('twice', states, OPTS)})
    await h.command('twice', '21 hey')
    await h.command('twice', '4')
    assert h.texts() == ['42 hey', '8 -']


@pytest.mark.parametrize(
    ('args', 'message'),
    [
        ('x', 'n must be a whole number, not "x".\nUsage: !twice <n:integer> [word:string]'),
        ('', 'Missing n.\nUsage: !twice <n:integer> [word:string]'),
    ],
)
async def test_bad_command_arguments_get_the_usage_and_start_nothing(
    engine_harness: HarnessFactory, args: str, message: str
) -> None:
    h = await engine_harness({'twice': cmd_flow('twice', '[states.done]\nkind = "end"\ntext = "ok"\n', OPTS)})
    await h.command('twice', args)
    assert h.texts() == [message]
    assert not h.live()


async def test_unknown_command_suggests_the_closest(engine_harness: HarnessFactory) -> None:
    h = await engine_harness({'hi': cmd_flow('hi', '[states.done]\nkind = "end"\ntext = "hello"\n')})
    await h.command('hii')
    assert h.texts() == ['Unknown command "hii" (did you mean "hi"?). Try !instruction for the list.']
    await h.command('zzz', locale='ru')
    assert h.last == 'Неизвестная команда «zzz». Список команд: !instruction.'


async def test_permission_groups_by_user_and_role(engine_harness: HarnessFactory) -> None:
    flow = 'permission = "admins"\n' + cmd_flow('admin', '[states.done]\nkind = "end"\ntext = "welcome"\n')
    h = await engine_harness({'admin': flow})
    await h.command('admin')
    assert h.last == 'Sorry, !admin is only for the "admins" group.'
    await h.command('admin', user=User(id='boss'))
    await h.command('admin', user=User(id='x', roles=frozenset({'r-admin'})))
    assert h.texts()[-2:] == ['welcome', 'welcome']


async def test_trusted_adapter_grants_every_permission(engine_harness: HarnessFactory) -> None:
    flow = 'permission = "admins"\n' + cmd_flow('admin', '[states.done]\nkind = "end"\ntext = "welcome"\n')
    h = await engine_harness({'admin': flow}, adapter=RecordingAdapter(grants_all=True))
    await h.command('admin')
    assert h.texts() == ['welcome']


async def test_dm_false_flows_refuse_direct_messages(engine_harness: HarnessFactory) -> None:
    flow = cmd_flow('join', '[states.done]\nkind = "end"\ntext = "joined"\n', 'dm = false\n')
    h = await engine_harness({'join': flow})
    await h.command('join', is_dm=True)
    await h.command('join')
    assert h.texts() == ['!join does not work in direct messages.', 'joined']


async def test_message_trigger_filters_by_attachment_content_type(engine_harness: HarnessFactory) -> None:
    voice = (
        '[flow]\nname = "voice"\n[trigger]\nmessage = true\npriority = 10\n'
        'filter = { content_types = ["audio/"] }\n[states.done]\nkind = "end"\ntext = "voice {{ attachments[0].name }}"\n'
    )
    chat = '[flow]\nname = "chat"\n[trigger]\nmessage = true\n[states.done]\nkind = "end"\ntext = "chat {{ input }}"\n'
    h = await engine_harness({'voice': voice, 'chat': chat})
    await h.say('hello')
    await h.say('', attachments=[Attachment(name='v.ogg', content_type='audio/ogg')])
    await h.say('pic', attachments=[Attachment(name='p.png', content_type='image/png')])
    assert h.texts() == ['chat hello', 'voice v.ogg', 'chat pic']


# -- call ------------------------------------------------------------------------------------------


async def test_call_passes_typed_templated_args_and_saves_the_result(engine_harness: HarnessFactory) -> None:
    seen: dict[str, Any] = {}

    async def add(ctx: ActionContext, *, a: int, b: int, tags: list[str]) -> dict[str, Any]:
        seen.update(a=a, b=b, tags=tags, flow=ctx.flow, state=ctx.state, user=ctx.user.id, data=dict(ctx.data))
        return {'sum': a + b}

    states = (
        '[states.sum]\nkind = "call"\naction = "t.add"\n'
        'args = { a = "{{ options.n }}", b = 2, tags = ["x", "{{ user.name }}"] }\nsave_as = "out"\n'
        '[states.done]\nkind = "end"\ntext = "{{ out.sum }} {{ result.sum }}"\n'
    )
    h = await engine_harness({'sum': cmd_flow('sum', states, OPTS)}, actions={'t.add': add})
    await h.command('sum', '40')
    assert h.texts() == ['42 42']
    assert seen['a'] == 40 and isinstance(seen['a'], int)
    assert (seen['b'], seen['tags'], seen['flow'], seen['state'], seen['user']) == (2, ['x', 'Ann'], 'sum', 'sum', 'u1')
    assert seen['data']['options'] == {'n': 40, 'word': None}


async def test_call_action_error_goes_to_on_error_with_the_message(engine_harness: HarnessFactory) -> None:
    async def fail(ctx: ActionContext) -> None:
        raise ActionError('the service is down')

    states = (
        '[states.go]\nkind = "call"\naction = "t.fail"\non_error = "oops"\n'
        '[states.done]\nkind = "end"\ntext = "fine"\n'
        '[states.oops]\nkind = "end"\ntext = "Sorry: {{ error }}"\n'
    )
    plain = '[states.go]\nkind = "call"\naction = "t.fail"\n[states.done]\nkind = "end"\ntext = "fine"\n'
    h = await engine_harness(
        {'go': cmd_flow('go', states), 'plain': cmd_flow('plain', plain)}, actions={'t.fail': fail}
    )
    await h.command('go')
    await h.command('plain')
    assert h.texts() == ['Sorry: the service is down', 'Something went wrong: the service is down']
    assert not h.live()


async def test_call_unexpected_exception_is_logged_and_reported_generically(
    engine_harness: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async def crash(ctx: ActionContext) -> None:
        raise KeyError('secret internals')

    states = '[states.go]\nkind = "call"\naction = "t.crash"\n[states.done]\nkind = "end"\n'
    h = await engine_harness({'go': cmd_flow('go', states)}, actions={'t.crash': crash})
    with caplog.at_level(logging.ERROR):
        await h.command('go')
    assert h.texts() == ['Something went wrong: the action t.crash failed unexpectedly (logged)']
    record = next(r for r in caplog.records if 'action t.crash failed' in r.getMessage())
    assert 'go/go' in record.getMessage() and record.exc_info is not None
    assert 'secret internals' not in h.texts()[0]


async def test_call_progress_is_sent_once_then_edited_in_place(engine_harness: HarnessFactory) -> None:
    async def work(ctx: ActionContext) -> str:
        await ctx.report('50%')
        await ctx.report('100%')
        return 'done'

    states = (
        '[states.go]\nkind = "call"\naction = "t.work"\nprogress = "Working..."\n'
        '[states.done]\nkind = "end"\ntext = "{{ result }}"\n'
    )
    h = await engine_harness({'go': cmd_flow('go', states)}, actions={'t.work': work})
    await h.command('go')
    sent = [(s.kind, s.text, s.message_id) for s in h.adapter.sent]
    assert sent == [('text', 'Working...', 'm1'), ('edit', '50%', 'm1'), ('edit', '100%', 'm1'), ('text', 'done', 'm2')]


async def test_messages_during_a_call_are_answered_busy_then_read(engine_harness: HarnessFactory) -> None:
    gate = asyncio.Event()

    async def slow(ctx: ActionContext) -> str:
        await gate.wait()
        return 'ok'

    states = '[states.go]\nkind = "call"\naction = "t.slow"\n[states.done]\nkind = "end"\ntext = "{{ result }}"\n'
    chat = '[flow]\nname = "chat"\n[trigger]\nmessage = true\n[states.done]\nkind = "end"\ntext = "chat {{ input }}"\n'
    h = await engine_harness({'go': cmd_flow('go', states), 'chat': chat}, actions={'t.slow': slow})
    await h.engine.dispatch(_command(h.key, 'go'))
    await h.engine.dispatch(_message(h.key, 'are you there?'))
    assert h.texts() == ['Still working on go; I will read your message when it is done. Type cancel to stop it.']
    gate.set()
    await h.engine.wait_idle(5)
    assert h.texts()[1:] == ['ok', 'chat are you there?']


async def test_a_work_folder_is_removed_when_its_conversation_ends_and_no_other_one(
    engine_harness: HarnessFactory,
) -> None:
    folders: list[pathlib.Path] = []

    async def write(ctx: ActionContext) -> None:
        assert ctx.workdir is not None
        (ctx.workdir / 'part.txt').write_text('x')
        folders.append(ctx.workdir)

    states = '[states.go]\nkind = "call"\naction = "t.write"\n[states.q]\nkind = "ask"\nprompt = "More?"\n'
    h = await engine_harness(
        {
            'go': cmd_flow('go', states + '[states.done]\nkind = "end"\n'),
            'hi': cmd_flow('hi', '[states.done]\nkind = "end"\n'),
        },
        actions={'t.write': write},
    )
    other = ConversationKey(h.key.adapter, h.key.channel, 'u2')
    await h.command('go')
    await h.command('go', key=other, user=User(id='u2'))
    await h.command('hi', key=ConversationKey(h.key.adapter, h.key.channel, 'u3'), user=User(id='u3'))
    assert len(folders) == 2 and all(f.is_dir() for f in folders)  # a conversation without a folder ended
    await h.say('no')
    assert not folders[0].exists() and folders[1].is_dir()
    await h.say('no', key=other, user=User(id='u2'))
    assert not folders[1].exists()


# -- choice ----------------------------------------------------------------------------------------


async def test_choice_takes_the_first_true_condition_else_the_else(engine_harness: HarnessFactory) -> None:
    states = (
        '[states.route]\nkind = "choice"\n'
        'when = [{ if = "options.n > 10", goto = "big" }, { if = "options.n > 5", goto = "medium" }]\nelse = "small"\n'
        '[states.big]\nkind = "end"\ntext = "big"\n'
        '[states.medium]\nkind = "end"\ntext = "medium"\n'
        '[states.small]\nkind = "end"\ntext = "small"\n'
    )
    h = await engine_harness({'size': cmd_flow('size', states, OPTS)})
    for n in ('20', '7', '1'):
        await h.command('size', n)
    assert h.texts() == ['big', 'medium', 'small']


async def test_a_secret_typed_by_a_user_is_hidden_in_the_log_of_a_failure(
    engine_harness: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    secret = 'sk-' + 'pasted0by0a0user0' * 3
    states = (
        '[states.ask]\nkind = "ask"\nprompt = "Key?"\nsave_as = "key"\n'
        '[states.route]\nkind = "choice"\nwhen = [{ if = "key == \'x\'", goto = "done" }]\n'
        '[states.done]\nkind = "end"\n'
    )
    h = await engine_harness({'key': cmd_flow('key', states)})
    await h.command('key')
    with caplog.at_level(logging.ERROR):
        await h.say(f'my key is {secret}')
    assert h.texts()[-1] == 'Something went wrong: an internal error (logged)'
    assert 'failed in key/route' in caplog.text and '[hidden]' in caplog.text
    assert secret not in caplog.text


async def test_choice_without_a_matching_condition_ends_with_a_message(
    engine_harness: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    states = '[states.route]\nkind = "choice"\nwhen = [{ if = "options.n > 10", goto = "big" }]\n[states.big]\nkind = "end"\n'
    h = await engine_harness({'size': cmd_flow('size', states, OPTS)})
    with caplog.at_level(logging.ERROR):
        await h.command('size', '1')
    assert h.texts() == ['Something went wrong: an internal error (logged)']
    assert 'no condition of choice state "route" matched' in caplog.text
    assert not h.live()


async def test_a_template_failing_at_run_time_is_reported(engine_harness: HarnessFactory) -> None:
    states = '[states.done]\nkind = "end"\ntext = "{{ options.n.missing.deeper }}"\n'
    h = await engine_harness({'t': cmd_flow('t', states, OPTS)})
    await h.command('t', '1')
    assert h.last.startswith("Something went wrong: template '{{ options.n.missing.deeper }}'")
    assert not h.live()


# -- wait ------------------------------------------------------------------------------------------

WAIT = (
    '[states.wait]\nkind = "wait"\nuntil = "job:{{ user.id }}"\nprogress = "Queued"\nsave_as = "job"\n'
    '[states.done]\nkind = "end"\ntext = "Finished with {{ job.score }}"\n'
)


async def test_wait_resumes_on_notify_with_progress_updates(engine_harness: HarnessFactory) -> None:
    h = await engine_harness({'w': cmd_flow('w', WAIT)})
    await h.command('w')
    assert h.texts() == ['Queued']
    await h.engine.progress('job:u1', 'Epoch 1/2')
    await h.engine.progress('job:other', 'not mine')
    assert await h.engine.notify('job:nobody', {'score': 0}) == 0
    assert h.live()
    assert await h.engine.notify('job:u1', {'score': 0.9}) == 1
    await h.engine.wait_idle(5)
    assert [(s.kind, s.text) for s in h.adapter.sent] == [
        ('text', 'Queued'),
        ('edit', 'Epoch 1/2'),
        ('text', 'Finished with 0.9'),
    ]
    assert not h.live()
    assert await h.engine.notify('job:u1', {'score': 1}) == 0


async def test_leaving_a_wait_says_the_awaited_work_goes_on(engine_harness: HarnessFactory) -> None:
    h = await engine_harness(
        {'w': cmd_flow('w', WAIT), 'hi': cmd_flow('hi', '[states.a]\nkind = "end"\ntext = "Hi"\n')}
    )
    await h.command('w')
    await h.say('cancel')
    assert h.last == 'Stopped waiting in w; the work it started goes on and posts its result here when it ends.'
    await h.command('w')
    await h.command('hi')
    assert h.texts()[-2:] == [
        'Stopped waiting in w; the work it started goes on and posts its result here when it ends.',
        'Hi',
    ]


# -- flow (sub-flow) --------------------------------------------------------------------------------


async def test_sub_flow_runs_and_comes_back_with_its_data(engine_harness: HarnessFactory) -> None:
    child = (
        '[flow]\nname = "ask_age"\n[states.age]\nkind = "ask"\nprompt = "Age of {{ options.who }}?"\n'
        'expect = "integer"\nsave_as = "age"\n[states.done]\nkind = "end"\n'
    )
    parent = (
        '[states.name]\nkind = "ask"\nprompt = "Name?"\nsave_as = "name"\n'
        '[states.sub]\nkind = "flow"\nflow = "ask_age"\nwith = { who = "{{ name }}" }\nsave_as = "sub"\n'
        '[states.done]\nkind = "end"\ntext = "{{ name }} is {{ sub.age }}"\n'
    )
    h = await engine_harness({'child': child, 'parent': cmd_flow('parent', parent)})
    await h.command('parent')
    await h.say('Ann')
    assert h.last == 'Age of Ann?'
    assert h.engine.conversation(h.key).compiled.name == 'ask_age'  # type: ignore[union-attr]
    await h.say('41')
    assert h.last == 'Ann is 41'
    assert not h.live()


# -- timeouts ----------------------------------------------------------------------------------------


async def test_ask_timeout_goes_to_on_timeout(engine_harness: HarnessFactory) -> None:
    states = (
        '[states.q]\nkind = "ask"\nprompt = "Quick?"\ntimeout = 0.05\non_timeout = "late"\n'
        '[states.done]\nkind = "end"\ntext = "in time"\n'
        '[states.late]\nkind = "end"\ntext = "too late ({{ error }})"\n'
    )
    h = await engine_harness({'q': cmd_flow('q', states)})
    await h.command('q')
    await _until(lambda: not h.live())
    assert h.texts() == ['Quick?', 'too late (timeout)']


async def test_timeout_without_on_timeout_ends_with_a_message(engine_harness: HarnessFactory) -> None:
    states = '[states.q]\nkind = "ask"\nprompt = "Quick?"\ntimeout = "0.05s"\n[states.done]\nkind = "end"\n'
    h = await engine_harness({'q': cmd_flow('q', states)})
    await h.command('q')
    await _until(lambda: not h.live())
    assert h.texts() == ['Quick?', 'No answer in time; stopping here.']


async def test_an_answer_in_time_disarms_the_timeout(engine_harness: HarnessFactory) -> None:
    states = (
        '[states.q]\nkind = "ask"\nprompt = "Quick?"\ntimeout = 0.05\non_timeout = "late"\n'
        '[states.r]\nkind = "ask"\nprompt = "Next?"\n'
        '[states.done]\nkind = "end"\ntext = "in time"\n'
        '[states.late]\nkind = "end"\ntext = "too late"\n'
    )
    h = await engine_harness({'q': cmd_flow('q', states)})
    await h.command('q')
    await h.say('yes')
    await asyncio.sleep(0.15)
    assert h.texts() == ['Quick?', 'Next?']
    assert h.live()


SECOND_QUESTION_TIMED = (
    '[states.q]\nkind = "ask"\nprompt = "First?"\n'
    '[states.r]\nkind = "ask"\nprompt = "Quick?"\ntimeout = 0.05\non_timeout = "late"\n'
    '[states.done]\nkind = "end"\ntext = "in time"\n'
    '[states.late]\nkind = "end"\ntext = "too late"\n'
)
"""A question without a timeout, then one that times out after 50 ms."""


async def test_a_timeout_that_fell_due_for_a_question_already_answered_is_dropped(
    engine_harness: HarnessFactory,
) -> None:
    """The timer of a state can fire after the state was left (its event queued behind the answer):
    the event names the state entry it belongs to, and the engine drops it for the next state."""
    states = (
        '[states.q]\nkind = "ask"\nprompt = "Quick?"\ntimeout = 30\non_timeout = "late"\n'
        '[states.r]\nkind = "ask"\nprompt = "Next?"\ntimeout = 30\non_timeout = "late"\n'
        '[states.done]\nkind = "end"\ntext = "in time"\n'
        '[states.late]\nkind = "end"\ntext = "too late"\n'
    )
    h = await engine_harness({'q': cmd_flow('q', states)})
    await h.command('q')
    conv = h.conversation()
    left = conv.epoch
    await h.say('yes')
    assert conv.state == 'r'
    for kind in ('timeout', 'done', 'error', 'notify'):
        await h.engine.dispatch(Internal(kind=kind, epoch=left, payload=None), h.key)
    assert h.texts() == ['Quick?', 'Next?']
    assert conv.state == 'r'
    await h.engine.dispatch(Internal(kind='timeout', epoch=conv.epoch), h.key)  # the current entry's does count
    assert h.texts() == ['Quick?', 'Next?', 'too late']


async def test_an_event_of_a_question_answered_without_a_timeout_is_dropped(engine_harness: HarnessFactory) -> None:
    """A question that armed nothing keeps its scope for the next one, with a new number: an event of the
    question answered (a late result, a timeout posted by hand) still does not reach the next question."""
    states = (
        '[states.q]\nkind = "ask"\nprompt = "First?"\n'
        '[states.r]\nkind = "ask"\nprompt = "Second?"\n'
        '[states.done]\nkind = "end"\ntext = "done"\n'
    )
    h = await engine_harness({'q': cmd_flow('q', states)})
    await h.command('q')
    conv = h.conversation()
    scope, left = conv.scope, conv.epoch
    await h.say('one')
    assert conv.state == 'r' and conv.scope is scope and conv.epoch != left
    for kind in ('timeout', 'done', 'error', 'notify'):
        await h.engine.dispatch(Internal(kind=kind, epoch=left, payload=None), h.key)
    assert conv.state == 'r'
    assert h.texts() == ['First?', 'Second?']
    await h.say('two')
    assert h.texts() == ['First?', 'Second?', 'done']


async def test_going_back_disarms_the_timeout_of_the_question_left(engine_harness: HarnessFactory) -> None:
    h = await engine_harness({'q': cmd_flow('q', SECOND_QUESTION_TIMED)})
    await h.command('q')
    await h.say('yes')
    await h.say('back')
    await asyncio.sleep(0.15)
    assert h.texts() == ['First?', 'Quick?', 'First?']
    assert h.live()


async def test_slow_call_and_wait_time_out(engine_harness: HarnessFactory) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow(ctx: ActionContext) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    call = (
        '[states.go]\nkind = "call"\naction = "t.slow"\ntimeout = 0.05\non_timeout = "late"\n'
        '[states.done]\nkind = "end"\n[states.late]\nkind = "end"\ntext = "call timed out"\n'
    )
    wait = WAIT.replace('save_as = "job"\n', 'save_as = "job"\ntimeout = 0.05\non_timeout = "late"\n') + (
        '[states.late]\nkind = "end"\ntext = "wait timed out"\n'
    )
    h = await engine_harness({'c': cmd_flow('c', call), 'w': cmd_flow('w', wait)}, actions={'t.slow': slow})
    await h.engine.dispatch(_command(h.key, 'c'))
    await _until(lambda: not h.live())
    assert started.is_set()
    await asyncio.wait_for(cancelled.wait(), 1)
    await h.command('w')
    await _until(lambda: not h.live())
    assert h.texts() == ['call timed out', 'Queued', 'wait timed out']
    assert await h.engine.notify('job:u1', {}) == 0


# -- helpers -----------------------------------------------------------------------------------------


def _command(key: ConversationKey, name: str) -> Any:
    from engine.api import Command

    return Command(key=key, user=User(id=key.user, name='Ann'), name=name)


def _message(key: ConversationKey, text: str) -> Any:
    from engine.api import Message

    return Message(key=key, user=User(id=key.user, name='Ann'), text=text)


async def _until(condition: Any, timeout: float = 3.0) -> None:
    """Poll ``condition`` (timeouts fire from timers, not from anything a test can await)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, 'condition not reached in time'
        await asyncio.sleep(0.01)


# -- ask: choices found at run time, attachments as answers -----------------------------------

_PICK = (
    '[states.find]\nkind = "call"\naction = "t.find"\nsave_as = "found"\n'
    '[states.pick]\nkind = "ask"\nprompt = "Which?"\nchoices = [{ value = "none", label = "None" }]\n'
    'choices_from = "found"\nattachments = true\nsave_as = "picked"\n'
    '[states.route]\nkind = "choice"\nwhen = [{ if = "picked is mapping", goto = "file" }]\nelse = "done"\n'
    '[states.file]\nkind = "end"\ntext = "file {{ picked.name }}"\n'
    '[states.done]\nkind = "end"\ntext = "picked {{ picked }}"\n'
)


async def _found(items: Any) -> Any:
    async def find(ctx: ActionContext) -> Any:
        return items

    return find


async def test_ask_offers_the_choices_an_action_found_after_its_own(engine_harness: HarnessFactory) -> None:
    find = await _found([{'value': 'a/b', 'label': 'folder a/b'}, 'plain'])
    h = await engine_harness({'pick': cmd_flow('pick', _PICK)}, actions={'t.find': find})
    await h.command('pick')
    await h.engine.wait_idle()
    (asked,) = [s for s in h.adapter.sent if s.kind == 'ask']
    assert [(o.value, o.label) for o in asked.options] == [('none', 'None'), ('a/b', 'folder a/b'), ('plain', 'plain')]
    await h.press('a/b')
    assert h.last == 'picked a/b'


async def test_ask_with_attachments_takes_a_file_instead_of_an_answer(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path
) -> None:
    h = await engine_harness({'pick': cmd_flow('pick', _PICK)}, actions={'t.find': await _found([])})
    await h.command('pick')
    await h.engine.wait_idle()
    data = tmp_path / 'x.jsonl'
    data.write_text('{}\n')
    await h.say('', attachments=[Attachment(name='x.jsonl', path=data, size=3)])
    assert h.last == 'file x.jsonl'


async def test_choices_from_that_is_not_a_list_is_reported_not_crashed(engine_harness: HarnessFactory) -> None:
    h = await engine_harness({'pick': cmd_flow('pick', _PICK)}, actions={'t.find': await _found({'no': 'list'})})
    await h.command('pick')
    await h.engine.wait_idle()
    assert h.last == 'Something went wrong: an internal error (logged)'
    assert not h.live()


CHAT = '[flow]\nname = "chat"\n[trigger]\nmessage = true\n[states.done]\nkind = "end"\ntext = "chat {{ input }}"\n'


async def test_a_message_typed_during_a_wait_is_answered_after_the_next_command_not_dropped(
    engine_harness: HarnessFactory,
) -> None:
    h = await engine_harness(
        {'w': cmd_flow('w', WAIT), 'hi': cmd_flow('hi', '[states.a]\nkind = "end"\ntext = "Hi"\n'), 'chat': CHAT}
    )
    await h.command('w')
    await h.say('are you there?')
    assert h.last.startswith('Still working on w; I will read your message when it is done.')
    await h.command('hi')
    assert h.texts()[-3:] == [
        'Stopped waiting in w; the work it started goes on and posts its result here when it ends.',
        'Hi',
        'chat are you there?',
    ]


async def test_deferred_messages_wait_for_a_command_that_asks_and_come_in_order(
    engine_harness: HarnessFactory,
) -> None:
    ask = '[states.q]\nkind = "ask"\nprompt = "Name?"\nsave_as = "name"\n[states.a]\nkind = "end"\ntext = "Hello {{ name }}"\n'
    h = await engine_harness({'w': cmd_flow('w', WAIT), 'greet': cmd_flow('greet', ask), 'chat': CHAT})
    await h.command('w')
    await h.say('first')
    await h.say('second')
    await h.command('greet')
    assert h.last == 'Name?'  # the deferred messages do not answer the new question
    await h.say('Ann')
    assert h.texts()[-3:] == ['Hello Ann', 'chat first', 'chat second']


async def test_the_result_of_a_wait_that_was_left_can_be_posted_to_its_channel(
    engine_harness: HarnessFactory,
) -> None:
    h = await engine_harness({'w': cmd_flow('w', WAIT)})
    await h.command('w')
    await h.say('cancel')
    assert await h.engine.notify('job:u1', {'score': 1}) == 0  # nobody waits any more
    place = {'adapter': h.key.adapter, 'channel': h.key.channel, 'user': h.key.user}
    message_id = await h.engine.post(place, 'Job done')
    assert message_id is not None and h.last == 'Job done'
    await h.engine.post(place, 'Job done (edited)', edit=message_id)
    assert h.adapter.sent[-1].kind == 'edit' and h.adapter.sent[-1].message_id == message_id
    assert await h.engine.post({**place, 'adapter': 'discord'}, 'lost?') is None  # not connected: try later


async def test_a_message_deferred_during_a_wait_survives_a_restart_and_is_answered_after_it(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path
) -> None:
    from engine.store import SQLiteStore

    path = str(tmp_path / 'store.sqlite3')
    flows = {'w': cmd_flow('w', WAIT), 'chat': CHAT}
    first = await engine_harness(flows, store=SQLiteStore(path))
    await first.command('w')
    await first.say('still there?', locale='ru')
    await first.stop()

    second = await engine_harness(flows, store=SQLiteStore(path))
    assert await second.engine.notify('job:u1', {'score': 7}) == 1
    await second.engine.wait_idle(5)
    assert second.texts() == ['Finished with 7', 'chat still there?']


async def test_long_work_is_owned_by_the_process_running_the_shard_of_its_guild(
    engine_harness: HarnessFactory,
) -> None:
    from engine.store import Shards

    h = await engine_harness({'w': cmd_flow('w', WAIT)})
    assert h.engine.owns({'guild': str(1 << 22)})  # no shards: every place is ours
    h.engine.shards = Shards((1,), 2)
    assert h.engine.owns({'guild': str(1 << 22)})
    assert not h.engine.owns({'guild': None})  # direct messages and the console are shard 0's


async def test_leaving_a_state_disarms_everything_its_entry_armed(engine_harness: HarnessFactory) -> None:
    """Timer, action task, topic and progress message belong to the state entry and go with it."""
    gate = asyncio.Event()

    async def slow(ctx: ActionContext) -> None:
        await ctx.progress('working')
        await gate.wait()

    states = (
        '[states.work]\nkind = "call"\naction = "t.slow"\ntimeout = 30\nprogress = "started"\n'
        '[states.w]\nkind = "wait"\nuntil = "job"\n'
    )
    h = await engine_harness({'job': cmd_flow('job', states)}, actions={'t.slow': slow})
    await h.command('job')
    await asyncio.sleep(0.05)
    conv = h.conversation()
    scope = conv.scope
    assert scope.timer is not None and scope.task is not None and scope.progress_id is not None
    task = scope.task
    await h.say('cancel')
    await asyncio.sleep(0)
    assert scope.timer is None and scope.task is None
    assert task.cancelled() or task.done()
    assert not h.live()


async def test_automatic_states_in_a_loop_end_with_a_message_not_a_hang(
    engine_harness: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    states = (
        '[states.count]\nkind = "say"\ntext = "tick"\n'
        '[states.again]\nkind = "choice"\nwhen = [{ if = "true", goto = "count" }]\nelse = "done"\n'
        '[states.done]\nkind = "end"\n'
    )
    h = await engine_harness({'loop': cmd_flow('loop', states)})
    with caplog.at_level(logging.ERROR):
        await h.command('loop')
    texts = h.texts()
    assert texts.count('tick') == 100  # say and choice alternate: 200 automatic states, then the limit
    assert texts[-1] == 'Something went wrong: an internal error (logged)' and not h.live()
    assert 'flow loop: more than 200 automatic states in a row' in caplog.text


async def test_a_timeout_armed_after_a_question_without_one_fires(engine_harness: HarnessFactory) -> None:
    """The first question armed nothing, so its scope is renewed for the second: the second's timer still fires."""
    h = await engine_harness({'q': cmd_flow('q', SECOND_QUESTION_TIMED)})
    await h.command('q')
    conv = h.conversation()
    scope = conv.scope
    await h.say('one')
    assert conv.scope is scope and conv.scope.deadline is not None
    await _until(lambda: not h.live())
    assert h.texts() == ['First?', 'Quick?', 'too late']
