"""The shipped dataset/training flows, run by the real engine with the models plugin (local provider)."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from engine.api import Attachment
from engine.doubles import RecordingAdapter
from tests.engine.helpers import Harness, build_harness

FLOWS = ('train', 'test', 'select_dataset', 'archive', 'getfile', 'jobs')
REPO_FLOWS = pathlib.Path(__file__).resolve().parents[3] / 'flows'


@pytest.fixture
async def harness(tmp_path: pathlib.Path) -> Harness:
    folder = tmp_path / 'flows'
    folder.mkdir()
    for name in FLOWS:
        shutil.copy(REPO_FLOWS / f'{name}.toml', folder)
    root = tmp_path / 'data'
    for label, words in (('pos', 'good'), ('neg', 'bad')):
        (root / 'reviews' / label).mkdir(parents=True)
        for i in range(8):
            (root / 'reviews' / label / f'{i}.txt').write_text(f'{words} review number {i} {words}')
    harness = await build_harness(
        tmp_path,
        folder=folder,
        plugins=('integrations.builtin', 'integrations.models'),
        adapter=RecordingAdapter(grants_all=True),
    )
    yield harness  # type: ignore[misc]
    await harness.stop()


async def _finish_jobs(harness: Harness) -> None:
    service = harness.app.plugins.services['models']
    for job in await service.jobs.list():
        await service.jobs.wait(job.id)
    await harness.engine.wait_idle(5)


async def test_select_then_train_with_confirmation_reports_with_plot(harness: Harness) -> None:
    await harness.command('select_dataset', 'reviews/pos')
    assert 'Dataset reviews_pos selected. 8 examples read (positive: 8)' in harness.last
    await harness.command('select_dataset', 'reviews/neg label=negative add=true')
    assert 'negative: 8' in harness.last

    await harness.command('train', 'validation_split=0.25')
    ask = harness.adapter.sent[-1]
    assert ask.kind == 'ask'
    assert 'Training local on reviews_pos: 12 examples (4 more held out for testing)' in ask.text
    assert [o.value for o in ask.options] == ['start', 'cancel']
    await harness.press('start')
    await _finish_jobs(harness)

    texts = harness.texts()
    assert any(t.startswith('Training started: job') for t in texts)
    files = [s for s in harness.adapter.sent if s.kind == 'file']
    assert files and files[-1].path is not None and files[-1].path.suffix == '.png'
    assert 'finished: model local-1' in files[-1].text
    assert not harness.live()

    await harness.command('test')
    report = [s for s in harness.adapter.sent if s.kind == 'file'][-1]
    assert report.text.startswith('Test ')
    assert 'accuracy' in report.text


async def test_train_refuses_a_single_label_dataset_without_asking(harness: Harness) -> None:
    await harness.command('train', 'path=reviews/pos')
    assert 'cannot be used for training yet' in harness.last
    assert 'two labels' in harness.last
    assert not any(s.kind == 'ask' for s in harness.adapter.sent)


async def test_train_with_an_uploaded_zip_and_cancel_at_confirmation(harness: Harness, tmp_path: pathlib.Path) -> None:
    import zipfile

    path = tmp_path / 'upload.zip'
    with zipfile.ZipFile(path, 'w') as zf:
        for i in range(5):
            zf.writestr(f'pos/{i}.txt', f'nice thing {i}')
            zf.writestr(f'neg/{i}.txt', f'awful thing {i}')
    await harness.command('train', attachments=[Attachment('upload.zip', path=path, size=path.stat().st_size)])
    assert any('Dataset upload saved and selected. 10 examples read (neg: 5, pos: 5)' in t for t in harness.texts())
    await harness.press('cancel')
    assert harness.last == 'Training cancelled; nothing was started.'
    service = harness.app.plugins.services['models']
    assert await service.jobs.list() == []


async def test_archive_then_getfile_sends_the_zip(harness: Harness) -> None:
    await harness.command('archive', 'reviews')
    assert 'Archived reviews as' in harness.last
    name = harness.last.split('getfile ')[1].split(' ')[0]
    await harness.command('getfile', name)
    sent = harness.adapter.sent[-1]
    assert sent.kind == 'file' and sent.path is not None and sent.path.name == name


async def test_getfile_outside_the_root_is_refused(harness: Harness) -> None:
    await harness.command('getfile', '../../etc/passwd')
    assert "'..' is not allowed" in harness.last
    assert not any(s.kind == 'file' for s in harness.adapter.sent)


async def test_jobs_lists_and_nothing_to_cancel(harness: Harness) -> None:
    await harness.command('jobs')
    assert harness.last == 'No training jobs yet.'
    await harness.command('jobs', 'nope cancel=true')
    await harness.press('yes')
    assert "unknown job 'nope'" in harness.last
