"""Every fault the OpenAI client can meet, on every call of a job's lifecycle: retried where safe, looked
up where ambiguous, then a plain message; never a second remote job or file, never an orphaned upload."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Mapping
from typing import Any
from unittest.mock import patch

import attrs
import pytest

from engine.states.actions import ActionError
from engine.store import MemoryStore, Shards
from integrations.models.jobs import JobManager
from integrations.models.providers.base import Job, Update

from .conftest import MakePlugin, Plugin, RecordingNotifier, openai_settings
from .fake_openai import FakeOpenAI

CREATE = '/v1/fine_tuning/jobs'
_sleep = asyncio.sleep


async def fast_sleep(seconds: float) -> None:
    await _sleep(min(seconds, 0.01))


async def _plugin(make_plugin: MakePlugin, server: FakeOpenAI, **settings: object) -> Plugin:
    plugin = make_plugin(**openai_settings(server, **settings))
    plugin.service.providers['openai'].retry_delay = 0.05  # type: ignore[attr-defined]
    await plugin.call('dataset.select', path='reviews/pos', label='positive')
    await plugin.call('dataset.select', path='reviews/neg', label='negative', add=True)
    return plugin


async def _train_to_the_end(plugin: Plugin) -> dict[str, object]:
    started = await plugin.call('model.train')
    await plugin.service.jobs.wait(started['job'])
    [(_, payload)] = plugin.notifier.notified
    return dict(payload)


def _uploads(server: FakeOpenAI) -> int:
    return server.count('POST', '/v1/files')


async def test_a_create_whose_answer_was_lost_after_the_server_acted_is_found_not_repeated(
    make_plugin: MakePlugin, fake_openai: FakeOpenAI
) -> None:
    plugin = await _plugin(make_plugin, fake_openai)
    fake_openai.fail(CREATE, 'lost')
    payload = await _train_to_the_end(plugin)
    assert payload['status'] == 'succeeded'
    assert fake_openai.creates == 1 and len(fake_openai.jobs) == 1
    assert fake_openai.training_files() == []


async def test_a_create_that_timed_out_is_looked_up_then_sent_once_more(
    make_plugin: MakePlugin, fake_openai: FakeOpenAI
) -> None:
    plugin = await _plugin(make_plugin, fake_openai, timeout=0.3)
    fake_openai.fail(CREATE, 'timeout', delay=1.0)  # the client gives up and closes; the server drops it
    lists = fake_openai.count('GET', CREATE)
    payload = await _train_to_the_end(plugin)
    assert payload['status'] == 'succeeded'
    assert fake_openai.creates == 1 and fake_openai.count('POST', CREATE) == 2
    assert fake_openai.count('GET', CREATE) > lists  # it looked before sending again


async def test_an_upload_whose_answer_was_lost_is_reused_not_uploaded_again(
    make_plugin: MakePlugin, fake_openai: FakeOpenAI
) -> None:
    plugin = await _plugin(make_plugin, fake_openai)
    fake_openai.fail('/v1/files', 'lost')
    payload = await _train_to_the_end(plugin)
    assert payload['status'] == 'succeeded'
    assert _uploads(fake_openai) == 1
    assert fake_openai.training_files() == [] and len(fake_openai.deleted) == 1


@pytest.mark.parametrize('fault', [500, 502, 'reset', 429])
async def test_a_create_refused_for_a_while_is_retried_once_it_is_known_not_done(
    make_plugin: MakePlugin, fake_openai: FakeOpenAI, fault: int | str
) -> None:
    plugin = await _plugin(make_plugin, fake_openai)
    fake_openai.fail(CREATE, fault)
    payload = await _train_to_the_end(plugin)
    assert payload['status'] == 'succeeded'
    assert fake_openai.creates == 1
    assert fake_openai.count('POST', CREATE) == 2  # one refused, one done


async def test_a_create_that_keeps_failing_leaves_the_job_starting_and_it_starts_when_the_server_is_back(
    make_plugin: MakePlugin, fake_openai: FakeOpenAI
) -> None:
    plugin = await _plugin(make_plugin, fake_openai)
    fake_openai.fail(CREATE, 503, times=4)  # the first call and its retry, then one background round
    started = await plugin.call('model.train')
    assert started['status'] == 'starting'
    assert 'could not start yet' in started['text'] and 'server error (503)' in started['text']
    await plugin.service.jobs.wait(started['job'])
    [(_, payload)] = plugin.notifier.notified
    assert payload['status'] == 'succeeded'
    assert fake_openai.creates == 1 and fake_openai.training_files() == []


async def test_a_wrong_key_at_create_is_a_plain_message_and_leaves_no_file(
    make_plugin: MakePlugin, fake_openai: FakeOpenAI
) -> None:
    plugin = await _plugin(make_plugin, fake_openai)
    fake_openai.fail(CREATE, 401)
    with pytest.raises(ActionError, match='rejected the API key'):
        await plugin.call('model.train')
    assert fake_openai.creates == 0
    assert fake_openai.training_files() == []  # the uploaded file was deleted with the failed job
    [job] = (await plugin.call('model.jobs'))['jobs']
    assert job['status'] == 'failed'


async def test_a_job_that_vanished_from_openai_fails_with_a_plain_message(
    make_plugin: MakePlugin, fake_openai: FakeOpenAI
) -> None:
    fake_openai.lifecycle = ['running'] * 1000
    plugin = await _plugin(make_plugin, fake_openai)
    started = await plugin.call('model.train')
    fake_openai.jobs.clear()
    await plugin.service.jobs.wait(started['job'])
    [(_, payload)] = plugin.notifier.notified
    assert payload['status'] == 'failed'
    assert 'could not find' in str(payload['error']) and '404' in str(payload['error'])
    assert fake_openai.training_files() == []


@pytest.mark.parametrize('fault', ['reset', 'timeout', 500, 429])
async def test_polls_and_downloads_ride_out_faults(
    make_plugin: MakePlugin, fake_openai: FakeOpenAI, fault: int | str
) -> None:
    plugin = await _plugin(make_plugin, fake_openai, timeout=0.5, max_retries=0)
    started = await plugin.call('model.train')
    for path in (f'{CREATE}/', '/v1/files/file-result'):
        fake_openai.fail(path, fault, times=2, delay=1.0)
    await plugin.service.jobs.wait(started['job'])
    [(_, payload)] = plugin.notifier.notified
    assert payload['status'] == 'succeeded' and payload['metrics']


async def test_a_cancel_whose_answer_was_lost_is_checked_not_repeated(
    make_plugin: MakePlugin, fake_openai: FakeOpenAI
) -> None:
    fake_openai.lifecycle = ['running'] * 1000
    plugin = await _plugin(make_plugin, fake_openai)
    started = await plugin.call('model.train')
    fake_openai.fail(f'{CREATE}/{started["remote_id"]}/cancel', 'lost')
    await plugin.call('model.cancel', job=started['job'])
    await plugin.service.jobs.wait(started['job'])
    [(_, payload)] = plugin.notifier.notified
    assert payload['status'] == 'cancelled'
    assert fake_openai.count('POST', f'{CREATE}/{started["remote_id"]}/cancel') == 1
    assert fake_openai.training_files() == []


async def test_uploaded_files_are_kept_when_configured(make_plugin: MakePlugin, fake_openai: FakeOpenAI) -> None:
    plugin = await _plugin(make_plugin, fake_openai, delete_files=False)
    await _train_to_the_end(plugin)
    assert len(fake_openai.training_files()) == 1


async def test_a_report_the_channel_refuses_stays_in_jobs(make_plugin: MakePlugin, fake_openai: FakeOpenAI) -> None:
    plugin = await _plugin(make_plugin, fake_openai, delivery_grace=0)
    plugin.notifier.waiting = 0  # nobody waits, and posting fails every time

    async def refuse(*args: object, **kwargs: object) -> str | None:
        raise RuntimeError('403 Missing Access')

    plugin.notifier.post = refuse  # type: ignore[method-assign]
    with patch('integrations.models.jobs.asyncio.sleep', fast_sleep):
        started = await plugin.call('model.train')
        await plugin.service.jobs.wait(started['job'])
    listed = await plugin.call('model.jobs')
    assert '(its channel refused the report)' in listed['text']
    assert f'Training job {started["job"]} finished' in listed['text']


async def test_progress_never_pairs_a_final_status_with_events_read_before_it(tmp_path: pathlib.Path) -> None:
    notifier = RecordingNotifier()
    jobs = JobManager(MemoryStore(), notifier, {}, tmp_path)
    job = Job(id='j1', provider='openai', who='console:local:admin', dataset='d')
    await jobs._show(job, Update('running', 'running: Step 2', ['Step 1', 'Step 2']))
    await jobs._show(job, Update('succeeded', 'succeeded: Job done', ['Step 3', 'Job done']))
    assert [text for _, text in notifier.progressed] == [
        'running: Step 1',
        'running: Step 2',
        'Step 3',
        'succeeded: Job done',
    ]


async def test_a_restarted_process_watches_only_the_jobs_of_its_own_shards(tmp_path: pathlib.Path) -> None:
    shards = Shards((0,), 2)  # this process runs shard 0 of 2; guild 1 << 22 is on shard 1

    class ShardNotifier(RecordingNotifier):
        def owns(self, place: Mapping[str, Any]) -> bool:
            return shards.owns(place.get('guild'))

    store = MemoryStore()
    for job_id, guild in (('mine', '5'), ('theirs', str(1 << 22)), ('dm', None)):
        place = {'adapter': 'discord', 'channel': '1', 'user': '2', 'guild': guild}
        job = Job(id=job_id, provider='local', who='discord:1:2', dataset='d', place=place, status='failed')
        await store.put_job(attrs.asdict(job))
    jobs = JobManager(store, ShardNotifier(), {}, tmp_path, delivery_grace=0)
    assert await jobs.resume() == 2
    await jobs.wait('mine')
    await jobs.wait('dm')
    assert [j.id for j in await jobs.list() if j.reported] == ['mine', 'dm']
    await jobs.stop()
