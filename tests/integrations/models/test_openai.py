"""The OpenAI provider through the real ``openai`` client against the fake server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import pathlib
from typing import Any

import pytest

from engine.states.actions import ActionError
from engine.store import SQLiteStore
from integrations.models.providers.openai import parse_result_csv

from .conftest import MakePlugin, RecordingNotifier, assert_training_refused, openai_settings
from .fake_openai import KEY, RESULT_CSV, FakeOpenAI

PNG = b'\x89PNG\r\n\x1a\n'


async def _dataset(plugin) -> None:  # type: ignore[no-untyped-def]
    await plugin.call('dataset.select', path='reviews/pos', label='positive')
    await plugin.call('dataset.select', path='reviews/neg', label='negative', add=True)


async def test_fine_tuning_uploads_chat_jsonl_and_reports_model_metrics_and_plot(
    make_plugin: MakePlugin, fake_openai: FakeOpenAI
) -> None:
    plugin = make_plugin(
        **openai_settings(fake_openai, system_instruction='Label the review.', suffix='rev', n_epochs=2)
    )
    await _dataset(plugin)
    estimate = await plugin.call('model.estimate', validation_split=0.25)
    assert estimate['examples'] == 18  # the billed training part, not the held-out 6
    assert 'OpenAI recommends at least 50 training examples; this has 18' in estimate['text']
    assert estimate['provider'] == 'openai'
    assert estimate['valid'] is True
    assert estimate['epochs'] == 2
    assert estimate['tokens'] > 18 * 10
    assert estimate['cost'] == pytest.approx(estimate['tokens'] * 2 * 3.0 / 1e6, abs=1e-4)

    uploaded: dict[str, dict[str, Any]] = {}
    started = await plugin.call('model.train', validation_split=0.25)
    assert started['remote_id'].startswith('ftjob-')
    uploaded.update((k, dict(v)) for k, v in fake_openai.files.items())
    await plugin.service.jobs.wait(started['job'])

    uploads = [f for f in uploaded.values() if f['purpose'] == 'fine-tune']
    assert len(uploads) == 2  # training and validation files
    assert sorted(f['filename'] for f in uploads) == [
        f'rev-{started["job"]}-train.jsonl',
        f'rev-{started["job"]}-valid.jsonl',
    ]
    assert fake_openai.training_files() == []  # deleted once the job ended
    lines = [json.loads(line) for line in uploads[0]['content'].decode().splitlines()]
    assert len(lines) == 18
    assert [m['role'] for m in lines[0]['messages']] == ['system', 'user', 'assistant']
    assert lines[0]['messages'][0]['content'] == 'Label the review.'
    assert {line['messages'][2]['content'] for line in lines} == {'positive', 'negative'}
    [remote] = fake_openai.jobs.values()
    assert remote['body']['suffix'] == 'rev'
    assert remote['body']['validation_file'] in uploaded
    assert remote['body']['metadata'] == {'flowbot_job': started['job']}
    assert remote['body']['method'] == {'type': 'supervised', 'supervised': {'hyperparameters': {'n_epochs': 2}}}
    assert 'hyperparameters' not in remote['body']

    [(topic, payload)] = plugin.notifier.notified
    assert topic == f'job:{started["job"]}'
    assert payload['status'] == 'succeeded'
    assert payload['model'].startswith('ft:gpt-4o-mini-2024-07-18:org:rev:')
    assert payload['metrics']['train_loss'] == pytest.approx(0.2)
    assert payload['metrics']['valid_loss'] == pytest.approx(0.3)
    assert 'valid_mean_token_accuracy' not in payload['metrics']
    assert payload['text'].count('validation accuracy') == 1
    assert pathlib.Path(payload['plot']).read_bytes().startswith(PNG)
    progress = [text for _, text in plugin.notifier.progressed]
    assert any(text.startswith('running: Step') for text in progress)

    # the new model is now current: chat and predict use it
    reply = await plugin.call('model.chat', text='hello')
    assert reply['reply'].startswith(payload['model'])
    assert fake_openai.chats[-1]['messages'][0] == {'role': 'system', 'content': 'Label the review.'}
    predicted = await plugin.call('model.predict', text='a good one')
    assert predicted['label'] == 'positive'
    assert fake_openai.chats[-1]['model'] == payload['model']


async def test_chat_history_is_bounded_per_conversation(make_plugin: MakePlugin, fake_openai: FakeOpenAI) -> None:
    plugin = make_plugin(**openai_settings(fake_openai, history_turns=2, chat_model='gpt-chat'))
    for i in range(4):
        reply = await plugin.call('model.chat', text=f'turn {i}')
    # system + 2 remembered turns (4 messages) + the new text
    assert reply['reply'] == 'gpt-chat heard 6 messages'
    record = await plugin.ctx.store.get_record('chat', 'console:local:admin')
    assert [t['user'] for t in record['turns']] == ['turn 2', 'turn 3']
    reply = await plugin.call('model.chat', text='again', reset=True)
    assert reply['reply'] == 'gpt-chat heard 2 messages'


async def test_fewer_than_ten_examples_fail_openai_validation(
    make_plugin: MakePlugin, fake_openai: FakeOpenAI, data_root: pathlib.Path
) -> None:
    plugin = make_plugin(**openai_settings(fake_openai))
    (data_root / 'few').mkdir()
    for i in range(3):
        (data_root / 'few' / f'{i}.txt').write_text(f'text {i}')
    await plugin.call('dataset.select', path='few')
    await assert_training_refused(plugin, 'at least 10 examples')
    assert fake_openai.count('POST', '/v1/files') == 0


async def test_wrong_key_gives_clear_error_and_is_never_logged(
    make_plugin: MakePlugin, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    plugin = make_plugin(**{**openai_settings(fake_openai), 'api_key': 'sk-wrong-key-123'})
    await _dataset(plugin)
    with pytest.raises(ActionError, match='rejected the API key'):
        await plugin.call('model.train')
    jobs = await plugin.call('model.jobs')
    assert jobs['jobs'][0]['status'] == 'failed'  # the attempt is kept, not lost
    assert 'sk-wrong-key-123' not in caplog.text
    assert KEY not in caplog.text


async def test_key_is_read_from_a_file(
    make_plugin: MakePlugin, fake_openai: FakeOpenAI, tmp_path: pathlib.Path
) -> None:
    key_file = tmp_path / 'key'
    key_file.write_text(KEY + '\n')
    settings = {**openai_settings(fake_openai), 'api_key': None, 'api_key_file': str(key_file)}
    plugin = make_plugin(**settings)
    assert (await plugin.call('model.chat', text='hi'))['provider'] == 'openai'


async def test_rate_limit_is_retried_then_succeeds(make_plugin: MakePlugin, fake_openai: FakeOpenAI) -> None:
    plugin = make_plugin(**openai_settings(fake_openai))
    fake_openai.fail('/v1/chat/completions', 429, times=2)
    reply = await plugin.call('model.chat', text='hi')
    assert 'heard' in reply['reply']
    assert fake_openai.count('POST', '/v1/chat/completions') == 3


async def test_persistent_server_errors_become_a_clear_message(
    make_plugin: MakePlugin, fake_openai: FakeOpenAI
) -> None:
    plugin = make_plugin(**openai_settings(fake_openai))
    fake_openai.fail('/v1/chat/completions', 503, times=10)
    with pytest.raises(ActionError, match=r'server error \(503\)'):
        await plugin.call('model.chat', text='hi')
    assert await plugin.ctx.store.get_record('chat', 'console:local:admin') is None
    assert fake_openai.count('POST', '/v1/chat/completions') == 3  # the first try and 2 retries
    fake_openai.faults.clear()
    fake_openai.fail('/v1/chat/completions', 429, times=10)
    with pytest.raises(ActionError, match='rate limit'):
        await plugin.call('model.chat', text='hi')


async def test_timeouts_become_a_clear_message(make_plugin: MakePlugin, fake_openai: FakeOpenAI) -> None:
    plugin = make_plugin(**openai_settings(fake_openai, timeout=0.2, max_retries=1))
    fake_openai.fail('/v1/chat/completions', 'timeout', times=2, delay=1.0)
    with pytest.raises(ActionError, match='did not answer in time'):
        await plugin.call('model.chat', text='hi')


async def test_failed_job_is_reported_with_openais_error(make_plugin: MakePlugin, fake_openai: FakeOpenAI) -> None:
    fake_openai.final = 'failed'
    plugin = make_plugin(**openai_settings(fake_openai))
    await _dataset(plugin)
    started = await plugin.call('model.train')
    await plugin.service.jobs.wait(started['job'])
    [(_, payload)] = plugin.notifier.notified
    assert payload['status'] == 'failed'
    assert fake_openai.failure in payload['error']
    assert fake_openai.failure in payload['text']


async def test_polling_survives_server_errors_with_backoff(make_plugin: MakePlugin, fake_openai: FakeOpenAI) -> None:
    plugin = make_plugin(**openai_settings(fake_openai, max_retries=0))
    await _dataset(plugin)
    started = await plugin.call('model.train')
    fake_openai.fail('/v1/fine_tuning/jobs/', 500, times=3)
    await plugin.service.jobs.wait(started['job'])
    [(_, payload)] = plugin.notifier.notified
    assert payload['status'] == 'succeeded'
    assert any('retrying' in text for _, text in plugin.notifier.progressed)


async def test_cancel_reports_cancelled(make_plugin: MakePlugin, fake_openai: FakeOpenAI) -> None:
    fake_openai.lifecycle = ['running'] * 1000
    plugin = make_plugin(**openai_settings(fake_openai))
    await _dataset(plugin)
    started = await plugin.call('model.train')
    result = await plugin.call('model.cancel', job=started['job'])
    assert result['job'] == started['job']
    await plugin.service.jobs.wait(started['job'])
    [(_, payload)] = plugin.notifier.notified
    assert payload['status'] == 'cancelled'
    with pytest.raises(ActionError, match='already cancelled'):
        await plugin.call('model.cancel', job=started['job'])
    with pytest.raises(ActionError, match='unknown job'):
        await plugin.call('model.cancel', job='nope')


async def test_job_resumes_after_restart_and_is_reported_exactly_once(
    make_plugin: MakePlugin, fake_openai: FakeOpenAI, tmp_path: pathlib.Path
) -> None:
    db = str(tmp_path / 'store.sqlite3')
    fake_openai.lifecycle = ['running'] * 3
    first = make_plugin(store=SQLiteStore(db), **openai_settings(fake_openai, poll_interval=10))
    await _dataset(first)
    started = await first.call('model.train')
    await first.stop()  # the bot goes down before the job finishes
    assert first.notifier.notified == []

    second = make_plugin(store=SQLiteStore(db), **openai_settings(fake_openai))
    await second.start()
    await second.service.jobs.wait(started['job'])
    assert [t for t, _ in second.notifier.notified] == [f'job:{started["job"]}']
    assert second.notifier.notified[0][1]['status'] == 'succeeded'
    await second.stop()

    third = make_plugin(store=SQLiteStore(db), **openai_settings(fake_openai))
    await third.start()
    assert await third.service.jobs.resume() == 0
    assert third.notifier.notified == []


async def test_finished_but_unreported_job_is_reported_after_restart_without_refetching(
    make_plugin: MakePlugin, fake_openai: FakeOpenAI, tmp_path: pathlib.Path
) -> None:
    db = str(tmp_path / 'store.sqlite3')
    notifier = RecordingNotifier(waiting=0)  # nobody waits: delivery is retried, then given up
    first = make_plugin(store=SQLiteStore(db), notifier=notifier, **openai_settings(fake_openai, delivery_grace=0))
    await _dataset(first)
    started = await first.call('model.train')
    await first.service.jobs.wait(started['job'])
    record = await first.ctx.store.get_record('job', started['job'])
    record['reported'] = False  # as if the process died between storing the result and notifying
    await first.ctx.store.put_record('job', started['job'], record)
    await first.stop()
    retrieves = fake_openai.count('GET', '/v1/fine_tuning/jobs/')

    second = make_plugin(store=SQLiteStore(db), **openai_settings(fake_openai))
    await second.start()
    await second.service.jobs.wait(started['job'])
    assert [p['model'] for _, p in second.notifier.notified] == [record['model_id']]
    assert fake_openai.count('GET', '/v1/fine_tuning/jobs/') == retrieves


async def test_result_waits_for_a_conversation_to_be_waiting(make_plugin: MakePlugin, fake_openai: FakeOpenAI) -> None:
    class LateNotifier(RecordingNotifier):
        async def notify(self, topic, payload=None):  # type: ignore[no-untyped-def]
            await super().notify(topic, payload)
            return 0 if len(self.notified) < 2 else 1

    plugin = make_plugin(notifier=LateNotifier(), **openai_settings(fake_openai, delivery_grace=30))
    await _dataset(plugin)
    started = await plugin.call('model.train')
    await plugin.service.jobs.wait(started['job'])
    assert len(plugin.notifier.notified) == 2
    record = await plugin.ctx.store.get_record('job', started['job'])
    assert record['reported'] is True


def test_result_file_in_base64_is_decoded() -> None:
    import base64

    rows = parse_result_csv(base64.b64encode(RESULT_CSV.encode()))
    assert [r['step'] for r in rows] == [1, 2, 3, 4]
    assert rows[1]['valid_accuracy'] == pytest.approx(0.65)
    assert 'valid_loss' not in rows[0]


async def test_job_created_just_before_a_crash_is_found_by_its_metadata(
    make_plugin: MakePlugin, fake_openai: FakeOpenAI, tmp_path: pathlib.Path
) -> None:
    db = str(tmp_path / 'store.sqlite3')
    first = make_plugin(store=SQLiteStore(db), **openai_settings(fake_openai, poll_interval=10))
    await _dataset(first)
    started = await first.call('model.train')
    await first.stop()
    record = await first.ctx.store.get_record('job', started['job'])
    record.update(remote_id=None, status='starting')  # the crash came before the remote id was stored
    await first.ctx.store.put_record('job', started['job'], record)

    second = make_plugin(store=SQLiteStore(db), **openai_settings(fake_openai))
    await second.start()
    await second.service.jobs.wait(started['job'])
    [(_, payload)] = second.notifier.notified
    assert payload['status'] == 'succeeded'
    assert (await second.ctx.store.get_record('job', started['job']))['remote_id'] == started['remote_id']
