"""The models integration's one object: datasets, the active provider, jobs, tests and chat together.

Actions (``integrations.models.actions``) are thin wrappers over these methods, so the same
behaviour is reachable from flows, tests and the benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from engine.api import Attachment
from engine.config import Config, ConfigError, read_secret
from engine.files import FileGate, FileRefusedError
from engine.i18n import N_, _, format_number, ngettext
from engine.states.actions import ActionError, Notifier
from engine.store import Store
from engine.tasks import Report, Tasks
from integrations.models.config import ModelsConfig
from integrations.models.datasets import (
    DatasetInfo,
    DatasetRepo,
    Example,
    archive_folder,
    check_upload_size,
    load_folder,
    load_upload,
    read_jsonl,
    split_holdout,
    summarize,
    summary_text,
    write_jsonl,
)
from integrations.models.evaluate import Evaluation, evaluate, evaluation_text, load_test_data
from integrations.models.jobs import JobManager, job_text, place_of
from integrations.models.paths import PathRefusedError, inside, resolve_inside, slug
from integrations.models.providers.base import TERMINAL, Job, ModelProvider, Turn
from integrations.models.providers.local import LocalProvider

if TYPE_CHECKING:
    from integrations.models.workers import JobQueue

__all__ = ['ModelsService']

_log = logging.getLogger(__name__)


class ModelsService:
    """Datasets under the data root, training on the configured provider, testing and chat."""

    def __init__(
        self,
        config: Config,
        models: ModelsConfig,
        store: Store,
        notifier: Notifier,
        *,
        openai_client: Any = None,
        tasks: Tasks | None = None,
    ) -> None:
        """:param openai_client: an ``AsyncOpenAI`` to use instead of building one (tests).
        :param tasks: the app's shared :class:`~engine.tasks.Tasks` (default: one of its own); with
            ``workers`` it gets the queue, and imports and tests are registered as task kinds.
        """
        self.config = models
        self.limits = models.limits
        self.store = store
        self.root = config.resolve(config.bot.data_root).resolve()
        archive = pathlib.Path(models.archive_dir).expanduser()
        self.archive_dir = (archive if archive.is_absolute() else self.root / archive).resolve()
        self.files = FileGate.from_config(config, extra_roots=[self.archive_dir])
        """The gate every file this service sends, packs or imports passes (store and secrets never leave)."""
        self.datasets = DatasetRepo(store, self.root)
        self.local = LocalProvider(self.root, poll_interval=models.local_poll_interval, seed=models.split_seed)
        self.providers: dict[str, ModelProvider] = {'local': self.local}
        key_file = config.resolve(models.api_key_file) if models.api_key_file else None  # relative to bot.toml
        key = read_secret(models.api_key, key_file, 'OPENAI_API_KEY')
        if models.provider == 'openai' and not key and openai_client is None:
            raise ConfigError(
                _('[models] provider = "openai" needs an API key (OPENAI_API_KEY, api_key_file or api_key)')
            )
        if (key or openai_client is not None) and models.provider != 'local':
            from integrations.models.providers.openai import OpenAIProvider

            self.providers['openai'] = OpenAIProvider(models, key or 'unused', client=openai_client)
        self.provider = self.providers['openai' if 'openai' in self.providers else 'local']
        _log.info('models: provider %s, data root %s', self.provider.name, self.root)
        self.queue: JobQueue | None = None
        if models.workers:
            dsn = getattr(store, 'dsn', None)
            if not isinstance(dsn, str):
                raise ConfigError(
                    _('[models] workers = true needs a PostgreSQL store ([bot] store = "postgresql://...")')
                )
            from integrations.models.workers import JobQueue

            self.queue = JobQueue(dsn, heartbeat=models.worker_heartbeat, stalled_after=models.worker_stalled_after)
        self.tasks = tasks or Tasks(store, self.root)
        if self.queue is not None:
            self.tasks.queue, self.tasks.offloaded = self.queue, frozenset(models.worker_tasks)
            self.tasks.timeout = models.task_timeout
        self.tasks.register(
            'dataset.import', self._import, returns=('examples', 'report', 'problems'), files=('examples',)
        )
        self.tasks.register('model.test', self._test, returns=('text',))
        self.jobs = JobManager(
            store,
            notifier,
            self.providers,
            self.root / 'jobs',
            max_poll_interval=models.max_poll_interval,
            delivery_grace=models.delivery_grace,
            on_success=self._switch,
            queue=self.queue,
        )

    # lifecycle

    async def start(self) -> None:
        """Resume watching jobs that were unfinished or unreported when the bot stopped (with workers:
        listen to them first, so that no job they finish meanwhile is missed)."""
        if self.queue is not None:
            await self.queue.open()
            await self.queue.listen(self._on_message)
            await self.tasks.prune()
        await self.jobs.resume()

    async def _on_message(self, message: Mapping[str, Any]) -> None:
        """A worker's message: a finished task wakes the calls waiting for it; the rest is about jobs."""
        if 'task' in message:
            self.tasks.on_message(message)
        else:
            await self.jobs.on_message(message)

    async def stop(self) -> None:
        await self.jobs.stop()
        if self.queue is not None:
            await self.queue.close()
        for provider in self.providers.values():
            await provider.close()

    # datasets

    async def select(
        self, path: str, label: str = 'positive', *, add: bool = False, call: str = '', report: Report | None = None
    ) -> dict[str, Any]:
        """Import a data-root folder as a dataset (read and checked in a worker with ``workers``).

        :param call: the action call's id, so that a call run again after a restart imports once.
        :param report: shows the user that no worker has taken it yet (:meth:`ActionContext.report`).
        """
        resolve_inside(self.root, path, what=_('dataset folder'))  # refused here, before anything is queued

        async def save(loaded: dict[str, Any]) -> dict[str, Any]:
            info = await self._save_import(slug(path), loaded, path, add=add)
            text = _('Added to dataset {name}. ') if add else _('Dataset {name} selected. ')
            return {
                **attrs.asdict(info),
                'report': loaded['report'],
                'text': text.format(name=info.name) + loaded['report'],
            }

        return await self._run_import({'folder': path, 'label': label}, (), call, save, report)

    async def upload(
        self,
        attachments: Sequence[Attachment],
        label: str | None,
        *,
        add: bool,
        call: str = '',
        report: Report | None = None,
    ) -> dict[str, Any]:
        """Import an uploaded ZIP, JSONL or CSV as a dataset (read and checked in a worker with ``workers``)."""
        if not attachments:
            raise ActionError(_('attach a ZIP of .txt files, a JSONL or a CSV file'))
        attachment = attachments[0]
        if attachment.path is None:
            raise ActionError(_('{name} was not downloaded; send it again').format(name=attachment.name))
        await self._check_size(attachment)

        async def save(loaded: dict[str, Any]) -> dict[str, Any]:
            name = slug(pathlib.PurePath(attachment.name).stem)
            info = await self._save_import(name, loaded, f'upload {attachment.name}', add=add)
            text = _('Added to dataset {name}. ') if add else _('Dataset {name} saved and selected. ')
            return {
                **attrs.asdict(info),
                'report': loaded['report'],
                'problems': loaded['problems'],
                'text': text.format(name=info.name) + loaded['report'],
            }

        return await self._run_import({'label': label}, [attachment], call, save, report)

    async def _check_size(self, upload: Attachment) -> None:
        """Refuse an upload over ``max_upload_bytes`` here, before it is copied for a worker."""
        if upload.path is not None:
            with contextlib.suppress(OSError):  # gone: the task asks for it again
                await asyncio.to_thread(check_upload_size, upload.path, upload.name, self.limits)

    async def _run_import(
        self,
        args: Mapping[str, Any],
        inputs: Sequence[Attachment],
        call: str,
        save: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
        report: Report | None,
    ) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix='flowbot-import-') as tmp:  # the examples, when read here
            return await self.tasks.run(
                'dataset.import', args, call=call, inputs=inputs, out=pathlib.Path(tmp), apply=save, report=report
            )

    async def _import(
        self, args: Mapping[str, Any], inputs: Sequence[Attachment], out: pathlib.Path | None
    ) -> dict[str, Any]:
        """The ``dataset.import`` task: read and check a folder or an upload; the examples go to ``out``."""
        label = args.get('label')
        if inputs:
            upload = inputs[0]
            assert upload.path is not None
            result = await asyncio.to_thread(load_upload, upload.path, upload.name, label, self.limits)
            shown = upload.name
            if not result.examples:
                raise ActionError(_('no usable examples in {name}.\n{value}').format(name=shown, value=result.report()))
        else:
            shown = str(args['folder'])
            folder = resolve_inside(self.root, shown, what=_('dataset folder'))
            result = await asyncio.to_thread(load_folder, folder, self.files, label or 'positive', self.limits)
            if not result.examples:
                raise ActionError(_('no usable examples in {path}.\n{value}').format(path=shown, value=result.report()))
        assert out is not None
        target = out / 'examples.jsonl'
        await asyncio.to_thread(write_jsonl, target, result.examples)
        return {'examples': str(target), 'report': result.report(), 'problems': result.problem_count}

    async def _save_import(self, name: str, loaded: Mapping[str, Any], source: str, *, add: bool) -> DatasetInfo:
        examples = await asyncio.to_thread(read_jsonl, pathlib.Path(loaded['examples']))
        return await self.datasets.save(name, examples, source, add=add)

    async def summary(self, dataset: str | None) -> dict[str, Any]:
        info = await self.datasets.get(dataset)
        examples = await asyncio.to_thread(self.datasets.examples, info)
        summary = summarize(examples)
        return {'dataset': info.name, **summary, 'text': summary_text(info.name, summary)}

    async def archive(self, path: str) -> dict[str, Any]:
        folder = resolve_inside(self.root, path, what=_('folder'))
        if not folder.is_dir():
            raise ActionError(_('{path} is not a folder under the data root').format(path=path))
        if folder == self.root or inside(self.archive_dir, folder):
            raise ActionError(_('archive a dataset folder, not the data root or the archive folder itself'))
        target = await asyncio.to_thread(
            archive_folder, folder, self.files, self.archive_dir, self.limits.max_archive_bytes
        )
        size = target.stat().st_size
        _log.info('archived %s to %s (%d bytes)', folder, target, size)
        return {
            'path': str(target),
            'name': target.name,
            'size': size,
            'text': _('Archived {path} as {name}.').format(path=path, name=target.name),
        }

    async def getfile(self, name: str) -> dict[str, Any]:
        error: ActionError | None = None
        for root in (self.root, self.archive_dir):
            try:
                candidate = resolve_inside(root, name, what=_('file'))
            except PathRefusedError as exc:
                error = error or exc
                continue
            if candidate.exists() or candidate.is_symlink():
                return self._sendable(candidate, name)
        if error is not None:
            raise error
        raise ActionError(_('no file {name!r} in the data folder or the archive').format(name=name))

    def _sendable(self, path: pathlib.Path, name: str) -> dict[str, Any]:
        try:
            path = self.files.check(path, name=name)
        except FileRefusedError as exc:
            raise PathRefusedError(str(exc)) from None
        size = path.stat().st_size
        if size > self.limits.max_getfile_bytes:
            raise ActionError(
                _('{name} is {size} bytes, larger than the {limit} bytes I can send').format(
                    name=name, size=format_number(size), limit=format_number(self.limits.max_getfile_bytes)
                )
            )
        return {
            'path': str(path),
            'name': path.name,
            'size': size,
            'files': [str(path)],
            'text': _('Here is {name}.').format(name=path.name),
        }

    # training

    async def estimate(self, dataset: str | None, validation_split: Any = 0.0) -> dict[str, Any]:
        """Check and price what would be billed: the training part, without the held-out examples."""
        fraction = _fraction(validation_split)
        info = await self.datasets.get(dataset)
        examples = await asyncio.to_thread(self.datasets.examples, info)
        train, held = split_holdout(examples, fraction, self.config.split_seed)
        estimate = await self.provider.estimate(train)
        problems = [str(i) for i in self.provider.check(train)]
        running = await self._running_on(info.name)
        if running:
            problems.append(running)
        text = ngettext(
            'Training {provider} on {dataset}: {count} example',
            'Training {provider} on {dataset}: {count} examples',
            estimate.examples,
        ).format(provider=self.provider.name, dataset=info.name, count=format_number(estimate.examples))
        if held:
            text += ' ' + _('({count} more held out for testing)').format(count=len(held))
        if self.provider.name == 'openai':
            text += _(', about {tokens} tokens x {epochs} epochs, estimated cost ${cost} ({model}).').format(
                tokens=format_number(estimate.tokens),
                epochs=estimate.epochs,
                cost=format_number(estimate.cost, 2),
                model=self.config.base_model,
            )
            recommended = self.limits.recommended_openai_examples
            if len(train) < recommended:
                text += '\n' + _(
                    'Warning: OpenAI recommends at least {recommended} training examples; this has {count}.'
                ).format(recommended=recommended, count=len(train))
        else:
            text += _(', runs locally at no cost.')
        if problems:
            text += '\n' + _('Problems:') + '\n' + '\n'.join(f'- {p}' for p in problems[:10])
        return {
            'dataset': info.name,
            'provider': self.provider.name,
            **attrs.asdict(estimate),
            'valid': not problems,
            'problems': problems,
            'text': text,
        }

    async def train(
        self,
        who: str,
        dataset: str | None,
        validation_split: Any = 0.0,
        *,
        place: dict[str, Any] | None = None,
        call: str = '',
    ) -> dict[str, Any]:
        """Start a job, or adopt the one this very call started before a restart (``call``).

        :param place: where the outcome goes when no conversation waits for it (default: ``who``).
        """
        adopted = await self.jobs.by_call(call)
        if adopted is not None:
            _log.info('job %s: its call ran again (a restart); adopting it instead of training again', adopted.id)
            return self._started(adopted, again=True)
        fraction = _fraction(validation_split)
        info = await self.datasets.get(dataset)
        running = await self._running_on(info.name)
        if running:  # a double-submitted !train would train (and on OpenAI, pay) twice
            raise ActionError(running)
        examples = await asyncio.to_thread(self.datasets.examples, info)
        train, held = split_holdout(examples, fraction, self.config.split_seed)
        problems = self.provider.check(train)
        if problems:
            raise ActionError(_('cannot train on this dataset:\n') + '\n'.join(f'- {p}' for p in problems[:10]))
        holdout = None
        if held:
            info = await self.datasets.set_holdout(info, held)
            holdout = info.holdout
        job = await self.jobs.submit(
            self.provider,
            who=who,
            place=place or place_of(who),
            call=call,
            dataset=info.name,
            train=train,
            valid=held,
            holdout=holdout,
        )
        return self._started(job)

    def _started(self, job: Job, *, again: bool = False) -> dict[str, Any]:
        if again:
            text = _(
                'Training job {id} on {provider} was started before the restart; I will report when it is done.'
            ).format(id=job.id, provider=job.provider)
        elif job.status == 'starting':
            text = ngettext(
                'Training job {id} on {provider} with {count} example could not start yet ({error}); '
                'I keep trying and will report when it is done.',
                'Training job {id} on {provider} with {count} examples could not start yet ({error}); '
                'I keep trying and will report when it is done.',
                job.examples,
            ).format(id=job.id, provider=job.provider, count=job.examples, error=job.error)
        else:
            text = ngettext(
                'Training started: job {id} on {provider} with {count} example. I will report when it is done.',
                'Training started: job {id} on {provider} with {count} examples. I will report when it is done.',
                job.examples,
            ).format(id=job.id, provider=job.provider, count=job.examples)
        return {
            'job': job.id,
            'provider': job.provider,
            'status': job.status,
            'remote_id': job.remote_id or '',
            'examples': job.examples,
            'validation_examples': job.validation_examples,
            'topic': job.topic,
            'text': text,
        }

    async def _running_on(self, dataset: str) -> str:
        """Why ``dataset`` cannot be trained now (a job still training it), or an empty string."""
        job = next((j for j in await self.jobs.list() if j.dataset == dataset and j.status not in TERMINAL), None)
        if job is None:
            return ''
        return _(
            'job {id} is still training {dataset}; wait for its report, or cancel it with: jobs {id} cancel=true'
        ).format(id=job.id, dataset=dataset)

    async def list_jobs(self) -> dict[str, Any]:
        jobs = await self.jobs.list()
        items = [
            {'job': j.id, 'status': j.status, 'provider': j.provider, 'dataset': j.dataset, 'model': j.model_id or ''}
            for j in jobs
        ]
        text = '\n'.join(job_text(j) + _delivery(j) for j in jobs[-20:]) or _('No training jobs yet.')
        active = [j['job'] for j in items if j['status'] not in ('succeeded', 'failed', 'cancelled')]
        return {'jobs': items, 'active': active, 'text': text}

    async def cancel(self, job_id: str) -> dict[str, Any]:
        job = await self.jobs.cancel(job_id)
        return {
            'job': job.id,
            'text': _('Cancelling job {id}; its outcome will be reported where it was started when it stops.').format(
                id=job.id
            ),
        }

    async def _switch(self, job: Job) -> None:
        if self.config.switch_on_success and job.model_id:
            await self.store.put_record('current', f'model:{job.provider}', {'model': job.model_id, 'job': job.id})
            _log.info('current %s model is now %s', job.provider, job.model_id)

    async def current_model(self) -> str | None:
        record = await self.store.get_record('current', f'model:{self.provider.name}')
        if record:
            return str(record['model'])
        return self.local.latest() if self.provider is self.local else None

    # testing, prediction and chat

    def _text(self, text: Any, what: str) -> str:
        value = str(text or '').strip()
        if not value:
            raise ActionError(_('give a text to {what}').format(what=what))
        if len(value) > self.limits.max_predict_chars:
            raise ActionError(
                _('the text is {count} characters; the limit is {max_predict_chars}').format(
                    count=len(value), max_predict_chars=self.limits.max_predict_chars
                )
            )
        return value

    async def predict(self, text: Any) -> dict[str, Any]:
        value = self._text(text, 'classify')
        model = await self.current_model()
        [label] = await self.provider.predict(model, [value])
        name = model or self.config.chat_model or self.config.base_model
        return {'label': label, 'model': name, 'text': _('{label} (model {name})').format(label=label, name=name)}

    async def _model_job(self) -> Job | None:
        """The job that trained the current model, when it is known."""
        record = await self.store.get_record('current', f'model:{self.provider.name}')
        job_id = record.get('job') if record else None
        if not job_id:
            return None
        try:
            return await self.jobs.get(str(job_id))
        except ActionError:
            return None

    async def _holdout(self, job: Job | None) -> tuple[list[Example], str]:
        """The examples held out from the current model's training: a hold-out belongs to its model."""
        if job is not None:
            holdout = job.holdout
            if not holdout:
                raise ActionError(
                    _(
                        'the current model {model} was trained on all of {dataset}, so nothing was held out: '
                        'attach a JSON list of {{"text", "label"}} objects, or train with validation_split (e.g. 0.2)'
                    ).format(model=job.model_id, dataset=job.dataset)
                )
        else:
            info = await self.datasets.get(None)
            holdout = info.holdout
            if not holdout:
                raise ActionError(
                    _(
                        'no test data: attach a JSON list of {{"text", "label"}} objects, '
                        'or train with validation_split (e.g. 0.2) to hold out part of the dataset'
                    ).format()
                )
        try:
            examples = await asyncio.to_thread(read_jsonl, self.root / holdout)
        except (OSError, ValueError, KeyError) as exc:
            _log.error('the held-out examples %s cannot be read: %s', holdout, exc)
            raise ActionError(_('the held-out examples of the current model are gone; attach test data')) from exc
        report = ''
        if len(examples) > self.limits.max_test_examples:
            report = _('the held-out split has {count} examples; tested the first {limit}').format(
                count=len(examples), limit=self.limits.max_test_examples
            )
            examples = examples[: self.limits.max_test_examples]
        return examples, report

    async def _overlap(self, job: Job | None, examples: Sequence[Example]) -> int:
        """How many test examples the current model was trained on (their accuracy proves nothing)."""
        if job is None:
            return 0
        path = self.jobs.examples_of(job)
        try:
            trained = await asyncio.to_thread(read_jsonl, path)
        except (OSError, ValueError, KeyError) as exc:
            _log.warning('job %s: its training examples %s cannot be read to check overlap: %s', job.id, path, exc)
            return 0
        seen = {_normal(e.text) for e in trained}
        return sum(1 for e in examples if _normal(e.text) in seen)

    async def test(
        self, data: str | None, attachments: Sequence[Attachment], *, call: str = '', report: Report | None = None
    ) -> dict[str, Any]:
        """Score the current model (in a worker with ``workers``): data-root file, attachment or hold-out.

        :param call: the action call's id: a call run again after a restart gets the same test.
        """
        args = {'data': data, 'test': uuid.uuid4().hex[:8]}
        if not data and attachments:
            await self._check_size(attachments[0])
        return await self.tasks.run('model.test', args, call=call, inputs=attachments[:1], report=report)

    async def _test(
        self, args: Mapping[str, Any], attachments: Sequence[Attachment], out: pathlib.Path | None
    ) -> dict[str, Any]:
        """The ``model.test`` task; its id comes from the caller, so a second run rewrites the same test."""
        data, test_id = args.get('data'), str(args['test'])
        report = ''
        trained_by = await self._model_job()
        if data:
            path = resolve_inside(self.root, data, what=_('test file'))
            if not path.exists():
                raise ActionError(_('no test file {data!r} under the data root').format(data=data))
            try:
                path = self.files.check(path, name=data)
            except FileRefusedError as exc:
                raise PathRefusedError(str(exc)) from None
            examples, report = await asyncio.to_thread(load_test_data, path, path.name, self.limits)
        elif attachments and (upload := attachments[0].path) is not None:
            examples, report = await asyncio.to_thread(load_test_data, upload, attachments[0].name, self.limits)
        else:
            examples, report = await self._holdout(trained_by)
        model = await self.current_model()
        if model is None and self.provider is self.local:
            raise ActionError(_('the local model is not trained yet; use train first'))
        overlap = await self._overlap(trained_by, examples)
        predicted = await self.provider.predict(model, [e.text for e in examples])
        name = model or self.config.chat_model or self.config.base_model
        evaluation = await asyncio.to_thread(
            evaluate, test_id, name, examples, predicted, self.root / 'tests' / test_id
        )
        await self.store.put_record('test', test_id, {**attrs.asdict(evaluation), 'created': time.time()})
        text = evaluation_text(evaluation)
        if overlap:  # right under the headline with the accuracy it qualifies
            headline, _sep, rest = text.partition('\n')
            warning = _(
                'Warning: {overlap} of {count} test examples are in the training data of the current model '
                '(job {job}); the accuracy on them says little.'
            ).format(overlap=overlap, count=len(examples), job=trained_by.id if trained_by else '?')
            text = '\n'.join(part for part in (headline, warning, rest) if part)
        if report:
            text += '\n' + _('Test data problems:') + '\n' + report
        files = [evaluation.plot]
        if len(text) > self.limits.max_report_chars:
            full = self.root / 'tests' / test_id / 'report.txt'
            mistakes = self._mistakes(evaluation, self.limits.max_getfile_bytes // 2)
            full.write_text(text + '\n\nAll misclassified:\n' + mistakes, encoding='utf-8')
            files.append(str(full))
            text = text[: self.limits.max_report_chars].rsplit('\n', 1)[0] + '\n' + _('(full report attached)')
        return {
            'test': test_id,
            'model': name,
            'accuracy': evaluation.accuracy,
            'count': evaluation.count,
            'misclassified': len(evaluation.misclassified),
            'per_label': evaluation.per_label,
            'overlap': overlap,
            'plot': evaluation.plot,
            'files': files,
            'text': text,
        }

    @staticmethod
    def _mistakes(evaluation: Evaluation, max_chars: int) -> str:
        """The misclassified examples, one a line, stopping before ``max_chars`` (the report must stay sendable)."""
        lines: list[str] = []
        size = 0
        for i, m in enumerate(evaluation.misclassified):
            line = f'{m["label"]} -> {m["predicted"]}: {m["text"]}'
            size += len(line) + 1
            if size > max_chars:
                lines.append(f'... and {len(evaluation.misclassified) - i} more')
                break
            lines.append(line)
        return '\n'.join(lines)

    async def add_misclassified(self, test: str | None) -> dict[str, Any]:
        """Add a test's misclassified examples (with their true labels) to the current dataset."""
        if test:
            record = await self.store.get_record('test', test)
            if record is None:
                raise ActionError(_('unknown test {test!r}').format(test=test))
        else:
            records = await self.store.list_records('test')
            if not records:
                raise ActionError(_('no test has been run yet'))
            record = records[-1]
        wrong = [Example(m['text'], m['label'], f'test {record["id"]}') for m in record['misclassified']]
        if not wrong:
            raise ActionError(_('test {id} has no misclassified examples').format(id=record['id']))
        info = await self.datasets.save('', wrong, f'test {record["id"]}', add=True)
        return {
            **attrs.asdict(info),
            'added': len(wrong),
            'text': _('Added {count} example(s) to {name}.').format(count=len(wrong), name=info.name),
        }

    async def chat(self, key: str, text: Any, *, reset: bool = False) -> dict[str, Any]:
        value = self._text(text, 'answer')
        record = (await self.store.get_record('chat', key)) or {'turns': []}
        turns = [] if reset else [Turn(t['user'], t['assistant']) for t in record['turns']]
        model = await self.current_model()
        reply = await self.provider.chat(model, turns, value)
        if not reply.strip():  # an empty message would show nothing at all; and it is no turn to remember
            raise ActionError(_('the model gave an empty answer; please ask again or rephrase'))
        limit = self.config.history_turns
        turns = [*turns, Turn(value, reply)][-limit:] if limit else []
        await self.store.put_record('chat', key, {'turns': [attrs.asdict(t) for t in turns]})
        return {'reply': reply, 'model': model or '', 'provider': self.provider.name, 'text': reply}


def _fraction(value: Any) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError) as exc:
        raise ActionError(
            _('validation_split must be a number such as 0.2, not {value!r}').format(value=value)
        ) from exc


def _normal(text: str) -> str:
    """Texts compared for overlap: case and spacing do not make a new example."""
    return ' '.join(text.casefold().split())


def _delivery(job: Job) -> str:
    """Where a finished job's outcome went, for the listing."""
    where = {
        'inline': N_('(reported in its conversation)'),
        'posted': N_('(posted to its channel)'),
        'undeliverable': N_('(its channel refused the report)'),
        'shown': '',
    }.get(job.delivered, N_('(report pending)') if job.status in TERMINAL else '')
    return ' ' + _(where) if where else ''
