"""A Russian user follows a training job: every progress line names the job's state in Russian."""

from __future__ import annotations

import pathlib
import shutil

from engine.doubles import RecordingAdapter
from tests.engine.helpers import build_harness

REPO_FLOWS = pathlib.Path(__file__).resolve().parents[3] / 'flows'
ENGLISH_STATES = ('starting', 'queued', 'running', 'succeeded', 'failed', 'cancelled')


async def test_a_russian_user_reads_the_training_progress_without_english_job_states(
    tmp_path: pathlib.Path,
) -> None:
    folder = tmp_path / 'flows'
    folder.mkdir()
    for name in ('train', 'select_dataset'):
        shutil.copy(REPO_FLOWS / f'{name}.toml', folder)
    for label, words in (('pos', 'good'), ('neg', 'bad')):
        (tmp_path / 'data' / 'reviews' / label).mkdir(parents=True)
        for i in range(8):
            (tmp_path / 'data' / 'reviews' / label / f'{i}.txt').write_text(f'{words} review {i}')
    h = await build_harness(
        tmp_path,
        folder=folder,
        plugins=('integrations.builtin', 'integrations.models'),
        adapter=RecordingAdapter(grants_all=True),
        language='ru',
    )
    try:
        await h.command('select_dataset', 'reviews/pos')
        await h.command('select_dataset', 'reviews/neg label=negative add=true')
        await h.command('train')
        await h.press('start')
        service = h.app.plugins.services['models']
        for job in await service.jobs.list():
            await service.jobs.wait(job.id)
        await h.engine.wait_idle(5)
    finally:
        await h.stop()
    edits = [s.text for s in h.adapter.sent if s.kind == 'edit']
    assert any(text.startswith(('выполняется: ', 'успешно: ')) for text in edits), edits  # fast runs skip 'running'
    assert not [t for t in edits if t.split(':')[0] in ENGLISH_STATES or t in ENGLISH_STATES], edits


def test_a_finished_jobs_metrics_read_in_russian_with_russian_numbers() -> None:
    from engine import i18n
    from integrations.models.jobs import job_text
    from integrations.models.providers.base import Job

    job = Job(id='j1', provider='local', who='u1', dataset='d', status='succeeded', model_id='local-1')
    job.metrics = {'train_loss': 0.2671, 'valid_accuracy': 0.9375, 'trained_tokens': 100.0}
    with i18n.use('ru'):
        text = job_text(job)
    assert '(потери на обучении 0,267, точность на валидации 0,938).' in text, text
