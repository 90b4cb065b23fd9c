"""One mechanism for work that may leave the bot process (engine/tasks.py), on the in-memory store.

The queue here is a list: a test plays the worker by calling :meth:`Tasks.execute`, as ``flowbot worker``
does (tests/test_worker_tasks.py runs the real queue and workers on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from engine.api import Attachment
from engine.errors import UserError
from engine.states.actions import ActionError
from engine.store import MemoryStore
from engine.tasks import RECORD, RUN_TASK, Tasks

__all__: list[str] = []


class ListQueue:
    def __init__(self) -> None:
        self.deferred: list[tuple[str, str]] = []

    async def defer(self, job_id: str, *, task: str = '') -> None:
        self.deferred.append((task, job_id))


class Counter:
    """A task kind that counts its runs and reads its one input file."""

    def __init__(self) -> None:
        self.runs = 0
        self.seen: list[pathlib.Path] = []

    async def __call__(
        self, args: Mapping[str, Any], inputs: Sequence[Attachment], out: pathlib.Path | None
    ) -> dict[str, Any]:
        self.runs += 1
        text = ''
        for given in inputs:
            assert given.path is not None
            self.seen.append(given.path)
            text += given.path.read_text(encoding='utf-8')
        if args.get('fail'):
            raise UserError(f'cannot count {text!r}')
        return {'words': len(text.split()), 'name': inputs[0].name if inputs else ''}


def _tasks(store: MemoryStore, root: pathlib.Path, queue: ListQueue | None) -> tuple[Tasks, Counter]:
    tasks, kind = Tasks(store, root, recheck=0.05), Counter()
    tasks.register('count', kind)
    if queue is not None:
        tasks.queue, tasks.offloaded = queue, {'count'}
    return tasks, kind


def _upload(tmp_path: pathlib.Path, text: str = 'one two three') -> Attachment:
    path = tmp_path / 'upload.txt'
    path.write_text(text, encoding='utf-8')
    return Attachment('notes.txt', 'text/plain', path.stat().st_size, path)


async def _play_worker(tasks: Tasks, queue: ListQueue) -> None:
    """Run every deferred task as a worker would, announcing it when finished."""
    while not queue.deferred:
        await asyncio.sleep(0.01)
    task, task_id = queue.deferred.pop(0)
    assert task == RUN_TASK
    if await tasks.execute(task_id):
        tasks.on_message({'task': task_id})


async def test_without_a_queue_the_kind_runs_in_the_bot_process_with_the_original_file(tmp_path: pathlib.Path) -> None:
    tasks, kind = _tasks(MemoryStore(), tmp_path, None)
    upload = _upload(tmp_path)
    assert await tasks.run('count', {}, call='c1', inputs=[upload]) == {'words': 3, 'name': 'notes.txt'}
    assert kind.seen == [upload.path] and not (tmp_path / 'tasks').exists()


async def test_a_queued_task_runs_in_the_worker_on_a_copy_and_wakes_the_waiting_call(tmp_path: pathlib.Path) -> None:
    store, queue = MemoryStore(), ListQueue()
    bot, _ = _tasks(store, tmp_path, queue)
    worker, kind = _tasks(store, tmp_path, None)  # a worker: same store and data folder, its own process
    upload = _upload(tmp_path)
    result, _none = await asyncio.gather(bot.run('count', {}, call='c1', inputs=[upload]), _play_worker(worker, queue))
    assert result == {'words': 3, 'name': 'notes.txt'}
    [copy] = kind.seen
    assert copy != upload.path and copy.is_relative_to(tmp_path / 'tasks')
    [record] = await store.list_records(RECORD)
    assert record['status'] == 'finished' and record['attempts'] == 1


async def test_a_call_run_again_after_a_restart_gets_the_recorded_result_and_applies_it_once(
    tmp_path: pathlib.Path,
) -> None:
    store, queue = MemoryStore(), ListQueue()
    worker, kind = _tasks(store, tmp_path, None)
    applied: list[dict[str, Any]] = []

    async def apply(result: dict[str, Any]) -> dict[str, Any]:
        applied.append(result)
        return {**result, 'saved': len(applied)}

    first, _ = _tasks(store, tmp_path, queue)
    upload = _upload(tmp_path)
    done, _none = await asyncio.gather(
        first.run('count', {}, call='c1', inputs=[upload], apply=apply), _play_worker(worker, queue)
    )
    again, _ = _tasks(store, tmp_path, queue)  # the process that restored the conversation
    upload.path.unlink()  # its input may be gone with the old process's work folder
    assert await again.run('count', {}, call='c1', inputs=[upload], apply=apply) == done == {**done, 'saved': 1}
    assert kind.runs == 1 and len(applied) == 1


async def test_a_worker_that_finds_its_task_finished_runs_nothing(tmp_path: pathlib.Path) -> None:
    store, queue = MemoryStore(), ListQueue()
    bot, _ = _tasks(store, tmp_path, queue)
    worker, kind = _tasks(store, tmp_path, None)
    call = asyncio.ensure_future(bot.run('count', {}, call='c1', inputs=[_upload(tmp_path)]))
    await _play_worker(worker, queue)
    [(_task, task_id)] = [(RUN_TASK, r['id']) for r in await store.list_records(RECORD)]
    assert await worker.execute(task_id)  # the same task, retried after its worker was thought dead
    assert kind.runs == 1 and (await call)['words'] == 3


async def test_a_killed_run_leaves_the_task_to_the_next_worker(tmp_path: pathlib.Path) -> None:
    store, queue = MemoryStore(), ListQueue()
    bot, _ = _tasks(store, tmp_path, queue)
    call = asyncio.ensure_future(bot.run('count', {}, call='c1', inputs=[_upload(tmp_path)]))
    while not queue.deferred:
        await asyncio.sleep(0.01)
    [(_task, task_id)] = queue.deferred

    async def dies(*_: Any) -> dict[str, Any]:
        await asyncio.sleep(3600)
        raise AssertionError('unreachable')

    dying = Tasks(store, tmp_path)
    dying.register('count', dies)
    killed = asyncio.ensure_future(dying.execute(task_id))
    await asyncio.sleep(0.05)
    killed.cancel()  # the worker process dies mid-task: the record stays unfinished
    record = await store.get_record(RECORD, task_id)
    assert record is not None and record['status'] == 'running'
    second, kind = _tasks(store, tmp_path, None)
    assert await second.execute(task_id)  # no announcement: the waiting call finds it on its next look
    assert (await asyncio.wait_for(call, 5))['words'] == 3
    record = await store.get_record(RECORD, task_id)
    assert record is not None and record['attempts'] == 2 and kind.runs == 1


async def test_a_failure_the_user_may_read_reaches_the_call_as_an_action_error(tmp_path: pathlib.Path) -> None:
    store, queue = MemoryStore(), ListQueue()
    bot, _ = _tasks(store, tmp_path, queue)
    worker, _ = _tasks(store, tmp_path, None)
    with pytest.raises(ActionError, match="cannot count 'one two three'"):
        await asyncio.gather(
            bot.run('count', {'fail': True}, call='c1', inputs=[_upload(tmp_path)]), _play_worker(worker, queue)
        )


async def test_a_worker_without_the_kinds_plugin_tells_the_user_instead_of_leaving_them_waiting(
    tmp_path: pathlib.Path,
) -> None:
    store, queue = MemoryStore(), ListQueue()
    bot, _ = _tasks(store, tmp_path, queue)
    bare = Tasks(store, tmp_path)  # a worker whose bot.toml lacks the plugin
    with pytest.raises(ActionError, match=r'no worker knows how \(count\)'):
        await asyncio.gather(bot.run('count', {}, call='c1'), _play_worker(bare, queue))


async def test_an_input_that_was_not_downloaded_is_refused_before_anything_is_queued(tmp_path: pathlib.Path) -> None:
    store, queue = MemoryStore(), ListQueue()
    bot, _ = _tasks(store, tmp_path, queue)
    with pytest.raises(ActionError, match='was not downloaded'):
        await bot.run('count', {}, call='c1', inputs=[Attachment('voice.ogg', url='https://x/voice.ogg')])
    assert queue.deferred == [] and await store.list_records(RECORD) == []


async def test_old_task_folders_are_pruned(tmp_path: pathlib.Path) -> None:
    import os

    tasks = Tasks(MemoryStore(), tmp_path, keep=60)
    old, new = tmp_path / 'tasks' / 'old', tmp_path / 'tasks' / 'new'
    (old / 'in').mkdir(parents=True)
    new.mkdir()
    os.utime(old, (1, 1))
    assert await tasks.prune() == 1
    assert not old.exists() and new.exists()


async def test_a_call_run_again_while_a_worker_runs_its_task_waits_for_it_without_queueing_it_again(
    tmp_path: pathlib.Path,
) -> None:
    store, queue = MemoryStore(), ListQueue()
    first, _ = _tasks(store, tmp_path, queue)
    call = asyncio.ensure_future(first.run('count', {}, call='c1', inputs=[_upload(tmp_path)]))
    while not queue.deferred:
        await asyncio.sleep(0.01)
    [(_task, task_id)] = queue.deferred
    record = await store.get_record(RECORD, task_id)
    assert record is not None
    await store.put_record(RECORD, task_id, {**record, 'status': 'running'})  # a worker took it
    call.cancel()  # the bot process dies; another restores the conversation and runs the call again
    again, _ = _tasks(store, tmp_path, queue)
    rerun = asyncio.ensure_future(again.run('count', {}, call='c1'))
    await asyncio.sleep(0.1)
    assert len(queue.deferred) == 1 and not rerun.done()
    worker, kind = _tasks(store, tmp_path, None)
    await store.put_record(RECORD, task_id, record)  # as the worker read it
    assert await worker.execute(task_id)
    again.on_message({'task': task_id})
    assert (await asyncio.wait_for(rerun, 5))['words'] == 3 and kind.runs == 1


async def test_a_download_gone_before_it_was_copied_is_asked_for_again(tmp_path: pathlib.Path) -> None:
    store, queue = MemoryStore(), ListQueue()
    bot, _ = _tasks(store, tmp_path, queue)
    upload = _upload(tmp_path)
    assert upload.path is not None
    upload.path.unlink()
    with pytest.raises(ActionError, match='was not downloaded; send it again'):
        await bot.run('count', {}, call='c1', inputs=[upload])
    assert queue.deferred == [] and await store.list_records(RECORD) == []


def _slow_tasks(store: MemoryStore, root: pathlib.Path, queue: ListQueue, **delays: float) -> tuple[Tasks, Counter]:
    """A bot process whose delays are short (``unclaimed``, ``timeout``): no worker takes its tasks in time."""
    tasks, kind = Tasks(store, root, recheck=0.02, **delays), Counter()
    tasks.register('count', kind)
    tasks.queue, tasks.offloaded = queue, {'count'}
    return tasks, kind


async def test_a_task_no_worker_takes_is_shown_in_the_waiting_conversation_and_then_that_one_took_it(
    tmp_path: pathlib.Path,
) -> None:
    store, queue = MemoryStore(), ListQueue()
    bot, _ = _slow_tasks(store, tmp_path, queue, unclaimed=0.1, timeout=60)
    shown: list[str] = []

    async def report(text: str) -> None:
        shown.append(text)

    call = asyncio.ensure_future(bot.run('count', {}, call='c1', inputs=[_upload(tmp_path)], report=report))
    await asyncio.sleep(0.05)
    assert shown == []  # not before the delay
    while not shown:
        await asyncio.sleep(0.02)
    assert shown[0].startswith('Waiting for a worker to take this task (none has for 0 s).')
    assert 'dropped if none does within 60 s; type cancel to stop waiting now' in shown[0]
    [(_task, task_id)] = queue.deferred
    record = await store.get_record(RECORD, task_id)
    assert record is not None
    await store.put_record(RECORD, task_id, {**record, 'status': 'running'})  # a worker starts at last
    while len(shown) < 2:
        await asyncio.sleep(0.02)
    assert shown[1] == 'A worker has taken this task; working on it…'
    worker, _ = _tasks(store, tmp_path, None)
    assert await worker.execute(task_id)
    assert (await asyncio.wait_for(call, 5))['words'] == 3 and len(shown) == 2


async def test_the_waiting_notice_is_in_the_users_language(tmp_path: pathlib.Path) -> None:
    from engine import i18n

    store, queue = MemoryStore(), ListQueue()
    bot, _ = _slow_tasks(store, tmp_path, queue, unclaimed=0.0, timeout=0.2)
    shown: list[str] = []

    async def report(text: str) -> None:
        shown.append(text)

    with i18n.use('ru'), pytest.raises(ActionError, match='ни один обработчик не взял эту задачу за 0 с'):
        await bot.run('count', {}, call='c1', report=report)
    assert shown[0].startswith('Жду, пока обработчик возьмёт эту задачу')


async def test_a_task_no_worker_takes_by_its_deadline_is_abandoned_and_the_call_fails_with_a_clear_message(
    tmp_path: pathlib.Path,
) -> None:
    store, queue = MemoryStore(), ListQueue()
    bot, _ = _slow_tasks(store, tmp_path, queue, unclaimed=0.05, timeout=0.3)
    shown: list[str] = []

    async def report(text: str) -> None:
        shown.append(text)

    with pytest.raises(
        ActionError, match=r'no worker took this task in 0 s, so it was dropped; please try again later'
    ):
        await asyncio.wait_for(bot.run('count', {}, call='c1', inputs=[_upload(tmp_path)], report=report), 5)
    assert len(shown) == 1
    [record] = await store.list_records(RECORD)
    assert record['status'] == 'abandoned' and record['attempts'] == 0
    again, _ = _slow_tasks(store, tmp_path, queue, timeout=60)  # the call run again after a restart
    with pytest.raises(ActionError, match='no worker took this task'):
        await again.run('count', {}, call='c1')
    assert len(queue.deferred) == 1  # not queued a second time


async def test_a_worker_that_takes_an_abandoned_task_late_does_not_run_it(tmp_path: pathlib.Path) -> None:
    store, queue = MemoryStore(), ListQueue()
    bot, _ = _slow_tasks(store, tmp_path, queue, timeout=0.1)
    with pytest.raises(ActionError, match='no worker took this task'):
        await bot.run('count', {}, call='c1', inputs=[_upload(tmp_path)])
    worker, kind = _tasks(store, tmp_path, None)
    [(_task, task_id)] = queue.deferred
    assert await worker.execute(task_id)  # done with it: the queue does not retry it
    record = await store.get_record(RECORD, task_id)
    assert kind.runs == 0 and record is not None and record['status'] == 'abandoned' and record['result'] is None


async def test_a_worker_skips_a_task_whose_deadline_passed_after_its_caller_stopped_waiting(
    tmp_path: pathlib.Path,
) -> None:
    store, queue = MemoryStore(), ListQueue()
    bot, _ = _slow_tasks(store, tmp_path, queue, timeout=0.1)
    call = asyncio.ensure_future(bot.run('count', {}, call='c1', inputs=[_upload(tmp_path)]))
    while not queue.deferred:
        await asyncio.sleep(0.01)
    call.cancel()  # the user typed cancel: nobody marks the task, its deadline is in the record
    [(_task, task_id)] = queue.deferred
    await asyncio.sleep(0.15)
    worker, kind = _tasks(store, tmp_path, None)
    assert await worker.execute(task_id)
    record = await store.get_record(RECORD, task_id)
    assert kind.runs == 0 and record is not None and record['status'] == 'abandoned'


async def test_a_worker_runs_a_task_taken_before_its_deadline_however_long_it_then_runs(
    tmp_path: pathlib.Path,
) -> None:
    class Looks(MemoryStore):
        looks = 0

        async def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None:
            self.looks += 1
            return await super().get_record(kind, record_id)

    store, queue = Looks(), ListQueue()
    bot, _ = _slow_tasks(store, tmp_path, queue, timeout=0.3)
    worker, kind = _tasks(store, tmp_path, None)
    gate = asyncio.Event()

    async def slow(args: Mapping[str, Any], inputs: Sequence[Attachment], out: pathlib.Path | None) -> dict[str, Any]:
        await gate.wait()
        return await kind(args, inputs, out)

    worker._kinds['count'] = slow
    call = asyncio.ensure_future(bot.run('count', {}, call='c1', inputs=[_upload(tmp_path)]))
    while not queue.deferred:
        await asyncio.sleep(0.01)
    running = asyncio.ensure_future(worker.execute(queue.deferred[0][1]))
    await asyncio.sleep(0.5)  # past the deadline, while the worker runs it
    assert store.looks < 60  # the waiting call still looks every recheck (0.02 s), not without pause
    gate.set()
    assert await running
    assert (await asyncio.wait_for(call, 5))['words'] == 3


# -- a hostile store, queue or worker ------------------------------------------------------------


async def _queued(tmp_path: pathlib.Path) -> tuple[MemoryStore, asyncio.Future[dict[str, Any]], str]:
    store, queue = MemoryStore(), ListQueue()
    bot, _ = _tasks(store, tmp_path, queue)
    call = asyncio.ensure_future(bot.run('count', {}, call='c1', inputs=[_upload(tmp_path)]))
    while not queue.deferred:
        await asyncio.sleep(0.01)
    return store, call, queue.deferred[0][1]


@pytest.mark.parametrize(
    'damage',
    [
        {'inputs': [{'name': 'passwd', 'path': '/etc/passwd'}]},
        {'inputs': 'dotdot'},
        {'inputs': 'not a list'},
        {'inputs': [{'name': 'no path'}]},
        {'args': ['not', 'a', 'dict']},
    ],
    ids=['outside', 'dotdot', 'not-a-list', 'no-path', 'args'],
)
async def test_a_damaged_task_record_is_not_run_and_the_user_is_told(
    tmp_path: pathlib.Path, damage: dict[str, Any]
) -> None:
    store, call, task_id = await _queued(tmp_path)
    record = await store.get_record(RECORD, task_id)
    assert record is not None
    if damage.get('inputs') == 'dotdot':  # in the task folder by its prefix only
        damage = {
            'inputs': [
                {'name': 'up', 'path': str(tmp_path / 'tasks' / task_id / 'in' / '..' / '..' / '..' / 'upload.txt')}
            ]
        }
    await store.put_record(RECORD, task_id, {**record, **damage, 'attempts': 'many'})
    worker, kind = _tasks(store, tmp_path, None)
    assert await worker.execute(task_id)
    worker.on_message({'task': task_id})
    with pytest.raises(ActionError, match='the queued work was damaged; please try again'):
        await asyncio.wait_for(call, 5)
    assert kind.runs == 0


@pytest.mark.parametrize('status', [None, 'lost', ['queued']])
async def test_a_waiting_call_whose_record_has_no_known_status_is_told_instead_of_waiting_forever(
    tmp_path: pathlib.Path, status: Any
) -> None:
    store, call, task_id = await _queued(tmp_path)
    record = await store.get_record(RECORD, task_id)
    assert record is not None
    await store.put_record(RECORD, task_id, {**record, 'status': status})
    with pytest.raises(ActionError, match='the queued work was damaged'):
        await asyncio.wait_for(call, 5)


async def test_an_input_linked_out_of_the_task_folder_is_not_read(tmp_path: pathlib.Path) -> None:
    store, call, task_id = await _queued(tmp_path)
    secret = tmp_path / 'secret.txt'
    secret.write_text('top secret', encoding='utf-8')
    copy = tmp_path / 'tasks' / task_id / 'in' / '0'
    copy.unlink()
    copy.symlink_to(secret)
    worker, kind = _tasks(store, tmp_path, None)
    assert await worker.execute(task_id)
    worker.on_message({'task': task_id})
    with pytest.raises(ActionError, match='damaged'):
        await asyncio.wait_for(call, 5)
    assert kind.runs == 0


async def test_a_queued_id_that_is_not_a_task_id_runs_nothing_and_makes_no_folder(tmp_path: pathlib.Path) -> None:
    store = MemoryStore()
    worker, kind = _tasks(store, tmp_path / 'data', None)
    await store.put_record(RECORD, '../../escape', {'kind': 'count', 'status': 'queued', 'args': {}, 'inputs': []})
    assert not await worker.execute('../../escape')
    assert kind.runs == 0 and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    'result',
    [None, ['words', 3], {'name': 'notes.txt'}, {'words': 3, 'name': '/etc/passwd', 'path': ''}],
    ids=['none', 'list', 'missing', 'file-outside'],
)
async def test_a_worker_answer_without_the_kinds_fields_or_with_a_file_elsewhere_is_refused(
    tmp_path: pathlib.Path, result: Any
) -> None:
    store, queue = MemoryStore(), ListQueue()
    bot = Tasks(store, tmp_path, recheck=0.02)
    bot.register('count', Counter(), returns=('words', 'name'), files=('name',) if 'path' in str(result) else ())
    bot.queue, bot.offloaded = queue, {'count'}
    call = asyncio.ensure_future(bot.run('count', {}, call='c1'))
    while not queue.deferred:
        await asyncio.sleep(0.01)
    task_id = queue.deferred[0][1]
    record = await store.get_record(RECORD, task_id)
    assert record is not None
    await store.put_record(RECORD, task_id, {**record, 'status': 'finished', 'result': result})  # an older worker
    with pytest.raises(ActionError, match='the queued work was damaged'):
        await asyncio.wait_for(call, 5)


async def test_a_damaged_record_of_what_was_applied_is_not_applied_again(tmp_path: pathlib.Path) -> None:
    import hashlib

    store, queue = MemoryStore(), ListQueue()
    bot, _ = _tasks(store, tmp_path, queue)
    applied: list[dict[str, Any]] = []

    async def apply(result: dict[str, Any]) -> dict[str, Any]:
        applied.append(result)
        return result

    task_id = hashlib.sha256(b'count\0c1').hexdigest()[:16]  # the task of call c1, as the store holds it
    damaged = {'id': task_id, 'kind': 'count', 'status': 'finished', 'result': {}, 'error': None, 'applied': 7}
    await store.put_record(RECORD, task_id, damaged)
    with pytest.raises(ActionError, match='damaged'):
        await bot.run('count', {}, call='c1', apply=apply)
    assert applied == [] and queue.deferred == []
