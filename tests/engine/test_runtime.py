"""The runtime: ordering per conversation, concurrency across them, persistence and restore."""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
import sqlite3
import time
from collections.abc import Callable

import pytest

from engine import i18n
from engine.api import Command, ConversationKey, Message, User
from engine.doubles import RecordingAdapter
from engine.postgres import PostgresStore
from engine.states.actions import ActionContext
from engine.store import MemoryStore, SQLiteStore, Store, StoredConversation
from tests.engine.conftest import HarnessFactory
from tests.engine.helpers import KEY, Harness, write_flows

CMD = '[flow]\nname = "{name}"\n[trigger]\ncommand = "{name}"\n'

FORM = CMD.format(name='form') + (
    '[states.a]\nkind = "ask"\nprompt = "A?"\nsave_as = "a"\n'
    '[states.b]\nkind = "ask"\nprompt = "B?"\nsave_as = "b"\n'
    '[states.c]\nkind = "ask"\nprompt = "C?"\nsave_as = "c"\n'
    '[states.done]\nkind = "end"\ntext = "{{ a }}/{{ b }}/{{ c }}"\n'
)
TIMED = CMD.format(name='timed') + (
    '[states.q]\nkind = "ask"\nprompt = "Quick?"\nsave_as = "q"\ntimeout = {timeout}\non_timeout = "late"\n'
    '[states.done]\nkind = "end"\ntext = "answered {{ q }}"\n'
    '[states.late]\nkind = "end"\ntext = "timed out"\n'
)
HI = CMD.format(name='hi') + '[states.done]\nkind = "end"\ntext = "hello"\n'


def key(n: int) -> ConversationKey:
    return ConversationKey('test', 'chan', f'u{n}')


def message(k: ConversationKey, text: str, locale: str | None = None) -> Message:
    return Message(key=k, user=User(id=k.user), text=text, locale=locale)


def _command(k: ConversationKey, name: str) -> Command:
    return Command(key=k, user=User(id=k.user, name='Ann'), name=name)


async def until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    """Poll ``condition``; timers fire on their own, so there is nothing to await directly."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, 'condition not reached in time'
        await asyncio.sleep(0.01)


async def rows(store: SQLiteStore) -> dict[str, StoredConversation]:
    out = {}
    for row in await store.load_all():
        assert isinstance(row, StoredConversation), row
        out[row.key.split('\x1f')[2]] = row
    return out


# -- ordering and concurrency ------------------------------------------------------------------------


async def test_events_of_one_conversation_are_processed_strictly_in_order(engine_harness: HarnessFactory) -> None:
    adapter = RecordingAdapter(delay=0.01)
    h = await engine_harness({'form': FORM}, adapter=adapter)
    await h.command('form')
    # Fired together while each send is slow: they must still be taken one after another, in order.
    await asyncio.gather(*(h.engine.dispatch(message(KEY, text)) for text in ('1', '2', '3')))
    assert h.texts() == ['A?', 'B?', 'C?', '1/2/3']
    assert adapter.max_active_per_key[KEY] == 1


async def test_messages_arriving_during_a_slow_action_are_taken_in_order(engine_harness: HarnessFactory) -> None:
    seen: list[str] = []

    async def slow(ctx: ActionContext, *, text: str) -> str:
        seen.append(text)
        await asyncio.sleep(0.02)
        return text.upper()

    chat = (
        '[flow]\nname = "chat"\n[trigger]\nmessage = true\n'
        '[states.work]\nkind = "call"\naction = "t.slow"\nargs = { text = "{{ input }}" }\n'
        '[states.done]\nkind = "end"\ntext = "{{ result }}"\n'
    )
    h = await engine_harness({'chat': chat}, actions={'t.slow': slow})
    await asyncio.gather(*(h.engine.dispatch(message(KEY, text)) for text in ('one', 'two', 'three')))
    await until(lambda: len([t for t in h.texts() if t.isupper()]) == 3)
    await h.engine.wait_idle(5)
    assert seen == ['one', 'two', 'three']
    assert [t for t in h.texts() if t.isupper()] == ['ONE', 'TWO', 'THREE']
    assert all(t.startswith('Still working on chat') for t in h.texts() if not t.isupper())


async def test_different_conversations_run_concurrently(engine_harness: HarnessFactory) -> None:
    adapter = RecordingAdapter(delay=0.02)
    h = await engine_harness({'hi': HI}, adapter=adapter)
    keys = [key(n) for n in range(5)]
    await asyncio.gather(*(h.command('hi', key=k) for k in keys))
    assert all(adapter.texts(k) == ['hello'] for k in keys)
    assert adapter.max_total_active > 1  # sends for different users overlapped
    assert all(adapter.max_active_per_key[k] == 1 for k in keys)


# -- persistence ---------------------------------------------------------------------------------------


async def test_state_data_and_deadline_are_persisted_after_every_transition(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path
) -> None:
    store = SQLiteStore(str(tmp_path / 'store.sqlite3'))
    timed_form = FORM.replace('save_as = "b"\n', 'save_as = "b"\ntimeout = "5m"\n')
    h = await engine_harness({'form': timed_form}, store=store)
    await h.command('form')
    row = (await rows(store))['u1']
    assert (row.flow, row.state, row.deadline) == ('form', 'a', None)
    await h.say('one')
    row = (await rows(store))['u1']
    assert (row.state, row.data['a']) == ('b', 'one')
    assert row.deadline is not None and 290 < row.deadline - time.time() <= 300
    assert row.version == h.engine.library.get('form').version  # type: ignore[union-attr]
    await h.say('two')
    row = (await rows(store))['u1']
    assert (row.state, row.data['b'], row.deadline) == ('c', 'two', None)
    assert row.extra['history'] == ['a', 'b']
    await h.say('three')
    assert (await rows(store)) == {}


async def test_unfinished_conversations_are_restored_after_a_restart(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path
) -> None:
    path = str(tmp_path / 'store.sqlite3')
    first = await engine_harness({'form': FORM}, store=SQLiteStore(path))
    await first.command('form')
    await first.say('one')
    await first.command('form', key=key(2))
    await first.stop()

    second = await engine_harness({'form': FORM}, store=SQLiteStore(path))
    assert second.engine.live_count() == 2
    conv = second.engine.conversation(KEY)
    assert conv is not None and conv.state == 'b' and conv.data['a'] == 'one'
    assert conv.user.name == 'Ann'
    await second.say('two')
    await second.say('back')
    assert second.last == 'B?'
    await second.say('TWO')
    await second.say('three')
    assert second.texts() == ['C?', 'B?', 'C?', 'one/TWO/three']
    await second.say('x', key=key(2))
    assert second.adapter.texts(key(2)) == ['B?']


WAITING = (
    CMD.format(name='waiting')
    + '[states.w]\nkind = "wait"\nuntil = "job"\n[states.done]\nkind = "end"\ntext = "done"\n'
)


def _rows_of_the_previous_version(store_key: str, version: str, waiting_version: str) -> list[StoredConversation]:
    """Rows exactly as the version before typed fields wrote them: everything in ``extra`` under string keys."""
    deferred = {'text': 'later', 'attachments': [], 'locale': 'de', 'message_id': 'm9', 'is_dm': False}
    user = ['u1', 'Ann', ['admin'], None]
    return [
        StoredConversation(
            key=store_key + 'u1',
            flow='form',
            version=version,
            state='c',
            data={'options': {}, 'attachments': [], 'a': 'one', 'b': 'two'},
            extra={'locale': 'de-DE', 'history': ['a', 'b'], 'attempts': 1, 'started': True, 'user': user},
        ),
        StoredConversation(
            key=store_key + 'u2',
            flow='waiting',
            version=waiting_version,
            state='w',
            data={'options': {}, 'attachments': []},
            extra={'started': True, 'topic': 'job', 'deferred': [deferred], 'user': ['u2', 'Bo', [], None]},
        ),
    ]


async def test_conversations_stored_by_the_previous_version_load_and_go_on_sqlite(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path
) -> None:
    await _previous_version_rows_go_on(engine_harness, lambda: SQLiteStore(str(tmp_path / 'store.sqlite3')))


async def test_conversations_stored_by_the_previous_version_load_and_go_on_postgres(
    engine_harness: HarnessFactory, postgres_dsn: str
) -> None:
    await _previous_version_rows_go_on(engine_harness, lambda: PostgresStore(postgres_dsn))


async def _previous_version_rows_go_on(engine_harness: HarnessFactory, store: Callable[[], Store]) -> None:
    flows = {'form': FORM, 'waiting': WAITING}
    first = await engine_harness(flows, store=store())
    versions = (first.engine.library.get('form').version, first.engine.library.get('waiting').version)  # type: ignore[union-attr]
    for row in _rows_of_the_previous_version('test\x1fchan\x1f', *versions):
        await first.engine.store.save(row)
    await first.stop()

    second = await engine_harness(flows, store=store())
    conv = second.engine.conversation(KEY)
    assert conv is not None and conv.state == 'c'
    assert (conv.locale, conv.history, conv.attempts, conv.started) == ('de-DE', ['a', 'b'], 1, True)
    assert (conv.user.name, conv.user.roles) == ('Ann', frozenset({'admin'}))
    waiting = second.engine.conversation(key(2))
    assert waiting is not None and waiting.scope.topic == 'job'
    assert [(m.text, m.locale) for m in waiting.deferred] == [('later', 'de')]  # type: ignore[attr-defined]
    await second.say('back')
    await second.say('TWO')
    await second.say('three')
    assert second.texts() == ['B?', 'C?', 'one/TWO/three']
    assert await second.engine.notify('job') == 1
    await second.engine.wait_idle(5)
    assert second.adapter.texts(key(2)) == ['done']


async def test_a_timeout_that_fell_due_while_stopped_fires_once_on_start(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path
) -> None:
    path = str(tmp_path / 'store.sqlite3')
    flows = {'timed': TIMED.replace('{timeout}', '0.05')}
    first = await engine_harness(flows, store=SQLiteStore(path))
    await first.command('timed')
    await first.stop()
    await asyncio.sleep(0.1)

    second = await engine_harness(flows, store=SQLiteStore(path))
    await until(lambda: not second.live())
    await asyncio.sleep(0.1)
    assert second.texts() == ['timed out']
    assert (await rows(second.engine.store)) == {}  # type: ignore[arg-type]


async def test_a_timeout_still_to_come_is_rearmed_on_start(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path
) -> None:
    path = str(tmp_path / 'store.sqlite3')
    flows = {'timed': TIMED.replace('{timeout}', '0.5')}
    first = await engine_harness(flows, store=SQLiteStore(path))
    await first.command('timed')
    deadline = (await rows(first.engine.store))['u1'].deadline  # type: ignore[arg-type]
    await first.stop()

    second = await engine_harness(flows, store=SQLiteStore(path))
    conv = second.engine.conversation(KEY)
    assert conv is not None and conv.scope.deadline == deadline
    assert second.texts() == []
    await until(lambda: not second.live())
    assert second.texts() == ['timed out']


async def test_a_restored_call_runs_its_action_again(engine_harness: HarnessFactory, tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / 'store.sqlite3')
    calls: list[str] = []

    async def never(ctx: ActionContext) -> str:
        calls.append('first run')
        await asyncio.sleep(30)
        return 'never'

    async def quick(ctx: ActionContext) -> str:
        calls.append('second run')
        return 'done'

    flow = (
        CMD.format(name='go')
        + '[states.work]\nkind = "call"\naction = "t.work"\n[states.done]\nkind = "end"\ntext = "{{ result }}"\n'
    )
    first = await engine_harness({'go': flow}, store=SQLiteStore(path), actions={'t.work': never})
    await first.engine.dispatch(_command(KEY, 'go'))
    await first.stop()
    second = await engine_harness({'go': flow}, store=SQLiteStore(path), actions={'t.work': quick})
    await until(lambda: not second.live())
    assert calls == ['first run', 'second run']
    assert second.texts() == ['done']


async def test_an_action_folder_is_removed_when_its_conversation_ends_also_after_a_restart(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path
) -> None:
    path = str(tmp_path / 'store.sqlite3')
    folders: list[pathlib.Path] = []

    async def work(ctx: ActionContext) -> str:
        assert ctx.workdir is not None
        (ctx.workdir / 'part.bin').write_bytes(b'x')
        folders.append(ctx.workdir)
        return 'made'

    flow = CMD.format(name='go') + (
        '[states.work]\nkind = "call"\naction = "t.work"\n'
        '[states.q]\nkind = "ask"\nprompt = "{{ result }}, more?"\n[states.done]\nkind = "end"\ntext = "bye"\n'
    )
    first = await engine_harness({'go': flow, 'hi': HI}, store=SQLiteStore(path), actions={'t.work': work})
    await first.command('go')
    assert first.texts() == ['made, more?']
    await first.stop()
    second = await engine_harness({'go': flow, 'hi': HI}, store=SQLiteStore(path), actions={'t.work': work})
    await second.command('hi', key=key(9))  # a conversation without a folder leaves the others alone
    assert (folders[0] / 'part.bin').exists()
    await second.say('no')
    assert second.texts() == ['bye']
    assert not folders[0].exists()


async def test_a_restored_wait_resumes_on_notify(engine_harness: HarnessFactory, tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / 'store.sqlite3')
    flow = CMD.format(name='w') + (
        '[states.wait]\nkind = "wait"\nuntil = "job:{{ user.id }}"\nsave_as = "job"\n'
        '[states.done]\nkind = "end"\ntext = "score {{ job.score }}"\n'
    )
    first = await engine_harness({'w': flow}, store=SQLiteStore(path))
    await first.command('w')
    await first.stop()
    second = await engine_harness({'w': flow}, store=SQLiteStore(path))
    assert await second.engine.notify('job:u1', {'score': 3}) == 1
    await second.engine.wait_idle(5)
    assert second.texts() == ['score 3']


async def test_a_restored_sub_flow_returns_to_its_parent(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path
) -> None:
    path = str(tmp_path / 'store.sqlite3')
    child = '[flow]\nname = "child"\n[states.q]\nkind = "ask"\nprompt = "Child?"\nsave_as = "v"\n[states.done]\nkind = "end"\n'
    parent = CMD.format(name='parent') + (
        '[states.sub]\nkind = "flow"\nflow = "child"\nsave_as = "sub"\n'
        '[states.done]\nkind = "end"\ntext = "child said {{ sub.v }}"\n'
    )
    flows = {'child': child, 'parent': parent}
    first = await engine_harness(flows, store=SQLiteStore(path))
    await first.command('parent')
    await first.stop()
    second = await engine_harness(flows, store=SQLiteStore(path))
    await second.say('hi')
    assert second.texts() == ['child said hi']


async def test_a_restored_sub_flow_returns_to_the_parent_version_it_started_on(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path
) -> None:
    path = str(tmp_path / 'store.sqlite3')
    child = '[flow]\nname = "child"\n[states.q]\nkind = "ask"\nprompt = "Child?"\nsave_as = "v"\n[states.done]\nkind = "end"\n'
    parent = CMD.format(name='parent') + (
        '[states.sub]\nkind = "flow"\nflow = "child"\nsave_as = "sub"\n'
        '[states.done]\nkind = "end"\ntext = "child said {{ sub.v }}"\n'
    )
    first = await engine_harness({'child': child, 'parent': parent}, store=SQLiteStore(path))
    await first.command('parent')
    await first.stop()
    edited = {'child': child, 'parent': parent.replace('child said', 'the child said')}
    second = await engine_harness(None, folder=write_flows(tmp_path / 'edited', edited), store=SQLiteStore(path))
    await second.say('hi')
    assert second.texts() == ['child said hi']


async def test_an_edited_flow_keeps_running_conversations_on_their_version(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path
) -> None:
    path = str(tmp_path / 'store.sqlite3')
    first = await engine_harness({'form': FORM}, store=SQLiteStore(path))
    await first.command('form')
    await first.stop()
    edited = FORM.replace('B?', 'New B?')
    second = await engine_harness(
        None, folder=write_flows(tmp_path / 'edited', {'form': edited}), store=SQLiteStore(path)
    )
    await second.say('one')
    assert second.last == 'B?'
    await second.command('form', key=key(2))
    await second.say('x', key=key(2))
    assert second.adapter.texts(key(2)) == ['A?', 'New B?']


async def test_a_conversation_whose_flow_was_removed_ends_with_a_message(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / 'store.sqlite3')
    first = await engine_harness({'form': FORM, 'hi': HI}, store=SQLiteStore(path))
    await first.command('form')
    await first.stop()
    with caplog.at_level(logging.WARNING):
        second = await engine_harness(
            None, folder=write_flows(tmp_path / 'only_hi', {'hi': HI}), store=SQLiteStore(path)
        )
        await second.engine.wait_idle(5)
    assert second.texts() == ['The form dialog was removed by the maintainers, so it ends here.']
    assert not second.live()
    assert (await rows(second.engine.store)) == {}  # type: ignore[arg-type]
    assert 'which no longer exists' in caplog.text
    await second.say('one')  # the old answer no longer reaches anything
    assert second.texts() == ['The form dialog was removed by the maintainers, so it ends here.']


async def test_a_corrupt_stored_row_is_logged_and_skipped(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / 'store.sqlite3')
    first = await engine_harness({'form': FORM}, store=SQLiteStore(path))
    for n in (1, 2, 3):
        await first.command('form', key=key(n))
    await first.stop()
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE conversations SET data = '{broken' WHERE key LIKE '%u1'")
        db.execute("UPDATE conversations SET extra = '[]' WHERE key LIKE '%u2'")
        db.execute(
            'INSERT INTO conversations (key, flow, version, state, data, stack, deadline, extra, updated) VALUES (?,?,?,?,?,?,?,?,?)',
            ('no-separators', 'form', 'x', 'a', json.dumps({}), '[]', None, '{}', time.time()),
        )
    db.close()
    with caplog.at_level(logging.ERROR):
        second = await engine_harness({'form': FORM}, store=SQLiteStore(path))
    assert [k for k in (key(1), key(2), key(3)) if second.live(k)] == [key(3)]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("'test\\x1fchan\\x1fu1'" in m and 'unreadable row' in m for m in errors), errors
    assert any("'test\\x1fchan\\x1fu2'" in m and 'expected a JSON object' in m for m in errors), errors
    assert any('no-separators' in m for m in errors), errors
    await second.say('fine', key=key(3))
    assert second.adapter.texts(key(3)) == ['B?']


async def test_a_stored_row_with_a_damaged_deadline_or_stack_is_skipped_and_the_others_restored(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / 'store.sqlite3')
    first = await engine_harness({'form': FORM}, store=SQLiteStore(path))
    for n in (1, 2, 3, 4):
        await first.command('form', key=key(n))
    await first.stop()
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE conversations SET deadline = 'soon' WHERE key LIKE '%u1'")
        db.execute('UPDATE conversations SET stack = \'{"flow": "form"}\' WHERE key LIKE \'%u2\'')
        db.execute("UPDATE conversations SET stack = '[1, 2]' WHERE key LIKE '%u3'")
    db.close()
    with caplog.at_level(logging.ERROR):
        second = await engine_harness({'form': FORM}, store=SQLiteStore(path))
    assert [k for k in (key(1), key(2), key(3), key(4)) if second.live(k)] == [key(4)]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    for n in (1, 2, 3):
        assert any(f"'test\\x1fchan\\x1fu{n}'" in m and 'unreadable row' in m for m in errors), (n, errors)
    await second.say('fine', key=key(4))
    assert second.adapter.texts(key(4)) == ['B?']


async def test_events_queued_behind_the_end_of_a_conversation_do_not_reach_it(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path
) -> None:
    store = SQLiteStore(str(tmp_path / 'store.sqlite3'))
    h = await engine_harness({'form': FORM, 'hi': HI}, adapter=RecordingAdapter(delay=0.01), store=store)
    await h.command('form')
    # 'cancel' ends the conversation while the other events wait behind it: they must start afresh,
    # not answer a question of the cancelled dialog (nor bring it back into the store).
    await asyncio.gather(
        h.engine.dispatch(message(KEY, 'cancel')),
        h.engine.dispatch(message(KEY, 'late answer')),
        h.engine.dispatch(_command(KEY, 'hi')),
    )
    await h.engine.wait_idle(5)
    assert h.texts() == ['A?', 'Cancelled.', 'hello']
    assert not h.live()
    assert (await rows(store)) == {}


async def test_conversations_are_keyed_by_adapter_channel_and_user(engine_harness: HarnessFactory) -> None:
    h = await engine_harness({'form': FORM})
    other = RecordingAdapter('other')
    h.engine.add_adapter(other)
    keys = [
        KEY,
        ConversationKey('test', 'chan2', 'u1'),
        ConversationKey('test', 'chan', 'u2'),
        ConversationKey('other', 'chan', 'u1'),
    ]
    for k in keys:
        await h.command('form', key=k)
    for n, k in enumerate(keys):
        await h.say(f'answer{n}', key=k)
    assert h.engine.live_count() == 4
    assert [h.engine.conversation(k).data['a'] for k in keys] == ['answer0', 'answer1', 'answer2', 'answer3']  # type: ignore[union-attr]
    assert other.texts(keys[3]) == ['A?', 'B?']


async def test_a_message_queued_behind_a_new_command_answers_the_new_flow(engine_harness: HarnessFactory) -> None:
    greet = CMD.format(name='greet') + (
        '[states.q]\nkind = "ask"\nprompt = "Name?"\nsave_as = "n"\n[states.done]\nkind = "end"\ntext = "Hi {{ n }}"\n'
    )
    h = await engine_harness({'form': FORM, 'greet': greet}, adapter=RecordingAdapter(delay=0.01))
    await h.command('form')
    await asyncio.gather(h.engine.dispatch(_command(KEY, 'greet')), h.engine.dispatch(message(KEY, 'Bob')))
    await h.engine.wait_idle(5)
    assert h.texts() == ['A?', 'Stopped form.', 'Name?', 'Hi Bob']


async def test_restored_work_waits_for_its_channel_to_connect(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path
) -> None:
    path = str(tmp_path / 'store.sqlite3')
    flows = {'timed': TIMED.replace('{timeout}', '0.05'), 'hi': HI}
    first = await engine_harness({**flows, 'form': FORM}, store=SQLiteStore(path))
    await first.command('timed')
    await first.command('form', key=key(2))
    await first.stop()
    await asyncio.sleep(0.1)

    async def slow_plugin_start() -> None:
        await asyncio.sleep(0.05)  # any plugin doing I/O when the engine starts

    folder = write_flows(tmp_path / 'without_form', flows)
    second = await engine_harness(None, folder=folder, store=SQLiteStore(path), connect=False, start=False)
    second.app.plugins.on_start.append(slow_plugin_start)
    await second.app.start()
    await asyncio.sleep(0.1)
    assert second.live()  # nothing fired into a channel that is not there yet
    second.engine.add_adapter(second.adapter)
    await until(lambda: not second.live() and not second.live(key(2)))
    await second.engine.wait_idle(5)
    assert second.texts() == ['timed out']
    assert second.adapter.texts(key(2)) == ['The form dialog was removed by the maintainers, so it ends here.']


async def test_conversations_of_another_channel_are_left_alone(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path
) -> None:
    path = str(tmp_path / 'store.sqlite3')
    flows = {'timed': TIMED.replace('{timeout}', '0.05')}
    discord = ConversationKey('discord', 'c', 'u1')
    first = await engine_harness(flows, store=SQLiteStore(path))
    other = RecordingAdapter('discord')
    first.engine.add_adapter(other)
    await first.command('timed', key=discord)
    await first.stop()
    await asyncio.sleep(0.1)
    # The console runs on the same store while the Discord bot is down: its due timeout must wait.
    second = await engine_harness(flows, store=SQLiteStore(path))
    await asyncio.sleep(0.1)
    await second.engine.wait_idle(5)
    assert second.live(discord)
    assert (await rows(second.engine.store))['u1'].state == 'q'  # type: ignore[arg-type]


class CountingStore(MemoryStore):
    """Counts the writes, to see which conversations cost the store nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    async def save(self, conv: StoredConversation) -> None:
        self.writes.append(f'save {conv.state}')
        await super().save(conv)

    async def delete(self, key: str) -> None:
        self.writes.append('delete')
        await super().delete(key)


async def test_a_conversation_that_never_waits_ends_without_a_store_write(engine_harness: HarnessFactory) -> None:
    store = CountingStore()
    h = await engine_harness({'hi': HI, 'form': FORM}, store=store)
    await h.command('hi')
    assert h.last == 'hello' and store.writes == []
    await h.command('form')
    for answer in 'xyz':
        await h.say(answer)
    assert h.last == 'x/y/z'
    assert store.writes == ['save a', 'save b', 'save c', 'delete']


async def test_progress_held_back_by_the_rate_limit_ends_on_the_newest_text(engine_harness: HarnessFactory) -> None:
    release = asyncio.Event()

    async def work(ctx: ActionContext) -> str:
        for n in range(1, 6):
            await ctx.report(f'step {n}')
        await release.wait()
        return 'done'

    flow = CMD.format(name='go') + (
        '[states.work]\nkind = "call"\naction = "t.work"\n[states.done]\nkind = "end"\ntext = "{{ result }}"\n'
    )
    h = await engine_harness({'go': flow}, actions={'t.work': work})
    h.engine.progress_interval = 0.2
    running = asyncio.create_task(h.command('go'))  # it returns when the action has ended
    await asyncio.sleep(0.1)
    assert h.texts() == ['step 1']  # the rest wait for the interval
    await asyncio.sleep(0.3)
    assert h.texts() == ['step 1', 'step 5']  # one edit, with the newest text
    release.set()
    await running
    assert h.texts()[-1] == 'done'


async def test_a_held_progress_update_is_dropped_when_its_state_is_left(engine_harness: HarnessFactory) -> None:
    async def work(ctx: ActionContext) -> str:
        await ctx.report('first')
        await ctx.report('late')
        return 'done'

    flow = CMD.format(name='go') + (
        '[states.work]\nkind = "call"\naction = "t.work"\n[states.done]\nkind = "end"\ntext = "{{ result }}"\n'
    )
    h = await engine_harness({'go': flow}, actions={'t.work': work})
    h.engine.progress_interval = 0.2
    await h.command('go')
    await h.engine.wait_idle(5)
    await asyncio.sleep(0.3)
    assert h.texts() == ['first', 'done']


# -- the language of queued events and a cancelled step --------------------------------------------------

NUMBERS = CMD.format(name='numbers') + (
    '[states.a]\nkind = "ask"\nprompt = "A?"\nexpect = "number"\nsave_as = "a"\n'
    '[states.b]\nkind = "ask"\nprompt = "B?"\nexpect = "number"\nsave_as = "b"\n'
    '[states.done]\nkind = "end"\ntext = "ok"\n'
)


async def _numbers_with_slow_replies(engine_harness: HarnessFactory) -> Harness:
    """A number question asked, every reply taking 20 ms: an event sent meanwhile queues behind the one replied to."""
    h = await engine_harness({'numbers': NUMBERS}, adapter=RecordingAdapter(delay=0.02))
    await h.command('numbers')
    return h


def _answered_in_russian(h: Harness) -> bool:
    """Whether a wrong answer was told off in Russian."""
    return any(t.startswith('Извините, ответьте, пожалуйста, числом') for t in h.texts())


async def test_a_queued_event_is_answered_in_its_own_language(engine_harness: HarnessFactory) -> None:
    h = await _numbers_with_slow_replies(engine_harness)
    english, russian = message(KEY, '1', 'en'), message(KEY, 'x', 'ru')  # the Russian one queued behind the slow reply
    before = i18n.current()
    await asyncio.gather(h.engine.dispatch(english), h.engine.dispatch(russian))
    assert i18n.current() == before  # nothing leaks to the caller
    assert _answered_in_russian(h), h.texts()


async def test_the_callers_language_is_back_after_its_dispatch_answered_a_queued_event_in_another(
    engine_harness: HarnessFactory,
) -> None:
    h = await _numbers_with_slow_replies(engine_harness)
    english, russian = message(KEY, '1', 'en'), message(KEY, 'x', 'ru')

    async def queue_russian() -> None:
        await asyncio.sleep(0.005)  # while the English answer's reply is on its way
        await h.engine.dispatch(russian)

    with i18n.use('en'):
        queued = asyncio.create_task(queue_russian())
        await h.engine.dispatch(english)  # in this task: it answers the queued Russian event too
        await queued
        assert i18n.current() == 'en'  # the Russian event's language did not stay behind
    assert _answered_in_russian(h), h.texts()


async def test_a_cancelled_step_leaves_the_conversation_free_and_its_queue_answered(
    engine_harness: HarnessFactory,
) -> None:
    adapter = RecordingAdapter(delay=0.05)
    h = await engine_harness({'form': FORM}, adapter=adapter)
    await h.command('form')
    first = asyncio.ensure_future(h.engine.dispatch(message(KEY, '1')))
    await asyncio.sleep(0)
    queued = asyncio.ensure_future(h.engine.dispatch(message(KEY, '2')))
    await asyncio.sleep(0.01)
    first.cancel()  # e.g. the handler task of the first event is cancelled mid-step
    await asyncio.wait_for(queued, 2)  # the queued event is not stranded
    conv = h.conversation(KEY)
    assert not conv.busy and not conv.queue
    await h.engine.dispatch(message(KEY, '3'))
    assert h.texts()[-1] == '1/2/3', h.texts()
