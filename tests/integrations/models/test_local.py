"""The local (scikit-learn) provider end to end through the plugin's actions."""

from __future__ import annotations

import json
import pathlib
import threading
from collections.abc import Callable
from typing import Any

import pytest

from engine.api import Attachment
from engine.states.actions import ActionError

from .conftest import MakePlugin, assert_training_refused

PNG = b'\x89PNG\r\n\x1a\n'


def _train_until_stopped(entered: threading.Event) -> Callable[..., Any]:
    """A ``train_local`` stand-in: sets ``entered``, blocks until the job is stopped, then ends cancelled."""
    from integrations.models.providers import local

    def train(
        train: Any, valid: Any, *, progress: Any = None, stop: threading.Event | None = None, seed: int = 0
    ) -> Any:
        entered.set()
        assert stop is not None
        stop.wait(10)
        raise local.Cancelled

    return train


async def _select_both(plugin) -> None:  # type: ignore[no-untyped-def]
    await plugin.call('dataset.select', path='reviews/pos', label='positive')
    await plugin.call('dataset.select', path='reviews/neg', label='negative', add='true')


async def test_chat_before_training_says_local_model_is_not_trained(make_plugin: MakePlugin) -> None:
    plugin = make_plugin()
    result = await plugin.call('model.chat', text='hello')
    assert 'not trained yet' in result['reply']
    assert 'train' in result['reply']


async def test_local_training_reports_once_with_plot_and_model_answers(make_plugin: MakePlugin) -> None:
    plugin = make_plugin()
    await _select_both(plugin)
    estimate = await plugin.call('model.estimate')
    assert estimate['provider'] == 'local'
    assert estimate['valid'] is True
    assert estimate['examples'] == 24

    started = await plugin.call('model.train', validation_split='0.25')
    assert started['validation_examples'] == 6
    await plugin.service.jobs.wait(started['job'])

    assert [t for t, _ in plugin.notifier.notified] == [f'job:{started["job"]}']
    payload = plugin.notifier.notified[0][1]
    assert payload['status'] == 'succeeded'
    assert payload['model'] == 'local-1'
    assert pathlib.Path(payload['plot']).read_bytes().startswith(PNG)
    assert 'valid_accuracy' in payload['metrics']
    assert any('learning curve' in text for _, text in plugin.notifier.progressed)

    assert (await plugin.call('model.predict', text='a really good film'))['label'] == 'positive'
    assert (await plugin.call('model.predict', text='boring, bad and awful'))['label'] == 'negative'
    reply = (await plugin.call('model.chat', text='good music'))['reply']
    assert reply.startswith('[local model local-1]')
    assert 'positive' in reply

    tested = await plugin.call('model.test')  # the held-out quarter
    assert tested['count'] == 6
    assert 0 <= tested['accuracy'] <= 1
    assert pathlib.Path(tested['plot']).read_bytes().startswith(PNG)
    record = await plugin.ctx.store.get_record('test', tested['test'])
    assert record is not None
    assert len(record['misclassified']) == tested['misclassified']

    jobs = await plugin.call('model.jobs')
    assert jobs['jobs'][0]['status'] == 'succeeded'
    assert jobs['active'] == []


async def test_test_with_attached_json_scores_and_saves_misclassified(
    make_plugin: MakePlugin, tmp_path: pathlib.Path
) -> None:
    plugin = make_plugin()
    await _select_both(plugin)
    started = await plugin.call('model.train')
    await plugin.service.jobs.wait(started['job'])
    test_file = tmp_path / 'upload.bin'
    data = [
        {'text': 'good good film', 'label': 'positive'},
        {'text': 'bad bad film', 'label': 'negative'},
        {'text': 'good acting', 'label': 'negative'},  # deliberately mislabelled
    ]
    test_file.write_text(json.dumps(data), encoding='utf-8')
    result = await plugin.call('model.test', attachments=[Attachment('test.json', path=test_file)])
    assert result['count'] == 3
    assert result['misclassified'] >= 1
    assert 'precision' in result['text']
    added = await plugin.call('dataset.add_misclassified', test=result['test'])
    assert added['count'] == 24 + added['added']


async def test_test_data_that_is_not_a_list_is_refused(make_plugin: MakePlugin, tmp_path: pathlib.Path) -> None:
    plugin = make_plugin()
    bad = tmp_path / 'x'
    bad.write_text('[{"text": "a"', encoding='utf-8')
    with pytest.raises(ActionError, match='invalid JSON at line 1'):
        await plugin.call('model.test', attachments=[Attachment('t.json', path=bad)])
    bad.write_text('{"text": "a", "label": "b"}', encoding='utf-8')
    with pytest.raises(ActionError, match='JSON list'):
        await plugin.call('model.test', attachments=[Attachment('t.json', path=bad)])


async def test_test_examples_without_a_label_are_reported_not_scored_as_positive(
    make_plugin: MakePlugin, data_root: pathlib.Path
) -> None:
    plugin = make_plugin()
    await _select_both(plugin)
    started = await plugin.call('model.train')
    await plugin.service.jobs.wait(started['job'])
    data = [{'text': 'good film', 'label': 'positive'}, {'text': 'bad bad film'}, {'text': 'bad film', 'label': ''}]
    (data_root / 'check.json').write_text(json.dumps(data))
    result = await plugin.call('model.test', data='check.json')
    assert result['count'] == 1
    assert 'check.json line 2: no label' in result['text']
    assert 'check.json line 3: empty label' in result['text']
    (data_root / 'check.csv').write_text('text\ngood film\n')
    with pytest.raises(ActionError, match='"label"'):
        await plugin.call('model.test', data='check.csv')


async def test_test_without_data_or_holdout_explains_what_to_send(make_plugin: MakePlugin) -> None:
    plugin = make_plugin()
    await _select_both(plugin)
    with pytest.raises(ActionError, match='no test data'):
        await plugin.call('model.test')


async def test_single_label_dataset_cannot_train_locally(make_plugin: MakePlugin) -> None:
    plugin = make_plugin()
    await plugin.call('dataset.select', path='reviews/pos')
    await assert_training_refused(plugin, 'two labels')


async def test_second_training_makes_a_new_version_and_switches(make_plugin: MakePlugin) -> None:
    plugin = make_plugin()
    await _select_both(plugin)
    for expected in ('local-1', 'local-2'):
        started = await plugin.call('model.train')
        await plugin.service.jobs.wait(started['job'])
        assert plugin.notifier.notified[-1][1]['model'] == expected
    assert await plugin.service.current_model() == 'local-2'
    meta = json.loads((plugin.service.root / 'models' / 'local-2' / 'meta.json').read_text())
    assert meta['examples'] == 24


async def test_predict_refuses_empty_and_oversize_text(make_plugin: MakePlugin) -> None:
    plugin = make_plugin(limits={'max_predict_chars': 10})
    with pytest.raises(ActionError, match='give a text'):
        await plugin.call('model.predict', text='  ')
    with pytest.raises(ActionError, match='limit is 10'):
        await plugin.call('model.predict', text='x' * 11)
    with pytest.raises(ActionError, match='not trained yet'):
        await plugin.call('model.predict', text='fine')


async def test_cancelling_local_training_reports_cancelled(
    make_plugin: MakePlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integrations.models.providers import local

    entered = threading.Event()
    monkeypatch.setattr(local, 'train_local', _train_until_stopped(entered))
    plugin = make_plugin()
    await _select_both(plugin)
    started = await plugin.call('model.train')
    assert (await plugin.call('model.jobs'))['active'] == [started['job']]
    await plugin.call('model.cancel', job=started['job'])
    await plugin.service.jobs.wait(started['job'])
    assert entered.is_set()
    [(_, payload)] = plugin.notifier.notified
    assert payload['status'] == 'cancelled'
    assert not (plugin.service.root / 'models' / 'local-1').exists()  # the unfinished version is removed
    assert plugin.service.local.latest() is None


async def test_a_second_training_of_a_dataset_is_refused_while_the_first_runs(
    make_plugin: MakePlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integrations.models.providers import local

    entered = threading.Event()
    monkeypatch.setattr(local, 'train_local', _train_until_stopped(entered))
    plugin = make_plugin()
    await _select_both(plugin)
    first = await plugin.call('model.train')
    estimate = await plugin.call('model.estimate')
    assert not estimate['valid']
    assert f'job {first["job"]} is still training reviews_pos' in estimate['text']
    with pytest.raises(ActionError, match=f'job {first["job"]} is still training reviews_pos'):
        await plugin.call('model.train')
    assert len((await plugin.call('model.jobs'))['jobs']) == 1
    await plugin.call('model.cancel', job=first['job'])
    await plugin.service.jobs.wait(first['job'])
    assert (await plugin.call('model.estimate'))['valid']


async def test_test_file_named_under_the_data_root(make_plugin: MakePlugin, data_root: pathlib.Path) -> None:
    plugin = make_plugin()
    await _select_both(plugin)
    started = await plugin.call('model.train')
    await plugin.service.jobs.wait(started['job'])
    (data_root / 'check.json').write_text(json.dumps([{'text': 'good film', 'label': 'positive'}]))
    result = await plugin.call('model.test', data='check.json')
    assert result['count'] == 1
    assert result['accuracy'] == 1.0
    with pytest.raises(ActionError, match=r"'\.\.' is not allowed"):
        await plugin.call('model.test', data='../check.json')


async def test_local_job_interrupted_by_a_restart_is_trained_again_into_the_same_version(
    make_plugin: MakePlugin, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    import asyncio

    from engine.store import SQLiteStore
    from integrations.models.providers import local

    real_train = local.train_local
    entered = threading.Event()
    monkeypatch.setattr(local, 'train_local', _train_until_stopped(entered))  # it dies with the bot
    db = str(tmp_path / 'store.sqlite3')
    first = make_plugin(store=SQLiteStore(db), local_poll_interval=0.05)
    await _select_both(first)
    started = await first.call('model.train', validation_split='0.25')
    for _ in range(500):
        if entered.is_set():
            break
        await asyncio.sleep(0.01)
    assert entered.is_set()
    await first.stop()  # the bot goes down while the thread trains
    assert first.notifier.notified == []
    folder = first.service.root / 'models' / 'local-1'
    assert (folder / 'train.jsonl').is_file() and not (folder / 'meta.json').exists()

    monkeypatch.setattr(local, 'train_local', real_train)
    second = make_plugin(store=SQLiteStore(db), local_poll_interval=0.05)
    await second.start()
    await second.service.jobs.wait(started['job'])
    [(topic, payload)] = second.notifier.notified
    assert topic == f'job:{started["job"]}'
    assert payload['status'] == 'succeeded' and payload['model'] == 'local-1'
    assert 'valid_accuracy' in payload['metrics']  # the held-out part was kept too
    assert any('local-1 again after a restart (18 examples)' in text for _, text in second.notifier.progressed)
    assert json.loads((folder / 'meta.json').read_text())['examples'] == 18
    assert not (folder / 'train.jsonl').exists() and not (folder / 'valid.jsonl').exists()
    assert await second.service.current_model() == 'local-1'


async def test_local_job_without_kept_examples_fails_after_a_restart(make_plugin: MakePlugin) -> None:
    from integrations.models.providers.base import Job

    plugin = make_plugin()
    job = Job(id='j1', provider='local', who='console:local:admin', dataset='d', status='running', remote_id='local-7')
    update = await plugin.service.local.poll(job)
    assert update.status == 'failed'
    assert update.error is not None and 'run train again' in update.error


async def test_test_uses_the_current_models_holdout_and_warns_when_test_data_was_trained_on(
    make_plugin: MakePlugin, tmp_path: pathlib.Path
) -> None:
    plugin = make_plugin(provider='local', local_poll_interval=0.05)
    await plugin.call('dataset.select', path='reviews/pos', label='positive')
    await plugin.call('dataset.select', path='reviews/neg', label='negative', add=True)
    first = await plugin.call('model.train', validation_split=0.25)
    await plugin.service.jobs.wait(first['job'])
    tested = await plugin.call('model.test')  # the hold-out of this model: never trained on
    assert tested['count'] == 6 and tested['overlap'] == 0
    assert 'Warning' not in tested['text']

    second = await plugin.call('model.train')  # retrained on all of it: the old hold-out is no test any more
    await plugin.service.jobs.wait(second['job'])
    with pytest.raises(ActionError, match=r'trained on all of reviews_pos, so nothing was held out'):
        await plugin.call('model.test')

    items = [
        {'text': 'good film #0', 'label': 'positive'},
        {'text': 'Bad  film #0', 'label': 'negative'},  # case and spacing do not hide a trained example
        {'text': 'so good #5', 'label': 'positive'},
        {'text': 'a brand new and awful text', 'label': 'negative'},
    ]
    path = tmp_path / 'test.json'
    path.write_text(json.dumps(items), encoding='utf-8')
    attachment = Attachment('test.json', content_type='application/json', size=path.stat().st_size, path=path)
    tested = await plugin.call('model.test', attachments=[attachment])
    assert tested['overlap'] == 3
    headline, warning = tested['text'].split('\n')[:2]
    assert headline.startswith('Test ')
    assert warning.startswith(
        f'Warning: 3 of 4 test examples are in the training data of the current model (job {second["job"]})'
    )


async def test_a_long_test_report_file_stays_within_what_can_be_sent(
    make_plugin: MakePlugin, tmp_path: pathlib.Path
) -> None:
    plugin = make_plugin(limits={'max_report_chars': 200, 'max_getfile_bytes': 20_000})
    await _select_both(plugin)
    started = await plugin.call('model.train')
    await plugin.service.jobs.wait(started['job'])
    test_file = tmp_path / 'upload.bin'
    data = [{'text': f'good good film {i} ' + 'x' * 1_000, 'label': 'negative'} for i in range(200)]
    test_file.write_text(json.dumps(data), encoding='utf-8')
    result = await plugin.call('model.test', attachments=[Attachment('test.json', path=test_file)])
    assert result['misclassified'] > 20
    report = pathlib.Path(result['files'][1])
    assert report.stat().st_size <= 20_000
    assert report.read_text(encoding='utf-8').rstrip().endswith('more')
    assert '(full report attached)' in result['text']
