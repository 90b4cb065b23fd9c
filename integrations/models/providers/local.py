"""The embedded default provider: TF-IDF + logistic regression (scikit-learn), trained in a worker thread.

Models are versioned folders ``<data_root>/models/local-<n>/`` holding ``model.joblib`` (a pickled
:class:`LocalModel`; only load folders this bot wrote) and ``meta.json``, written last, so a folder
with ``meta.json`` is complete. Until then the folder also keeps the job's examples
(``train.jsonl``, ``valid.jsonl``): a job whose training thread died with the bot is trained again
from them after a restart, into the same version. The learning curve
(loss and accuracy against the number of training examples) stands in for OpenAI's per-step
metrics, so the ``train`` flow looks the same with either provider.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pathlib
import re
import shutil
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from engine.errors import FlowbotError
from engine.i18n import _, format_number
from integrations.models.datasets import Example, Issue, read_jsonl, split_holdout, write_jsonl
from integrations.models.plots import plot_training
from integrations.models.providers.base import (
    Estimate,
    Job,
    ModelProvider,
    ProviderError,
    Save,
    TrainResult,
    Turn,
    Update,
    status_text,
)

__all__ = ['LocalModel', 'LocalProvider', 'train_local']

if TYPE_CHECKING:  # scikit-learn, numpy and joblib load when a model is first trained or used, not at bot start
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

_log = logging.getLogger(__name__)
_CURVE = (0.1, 0.25, 0.5, 0.75, 1.0)
_MODEL_DIR = re.compile(r'^local-(\d+)$')
_TRAIN, _VALID = 'train.jsonl', 'valid.jsonl'
"""The examples a job keeps in its model folder until the model is saved."""


class Cancelled(FlowbotError):
    """Raised inside the worker thread when the job was cancelled."""


class LocalModel:
    """A trained classifier plus its training texts, so chat can quote the nearest example."""

    def __init__(self, vectorizer: TfidfVectorizer, classifier: LogisticRegression, examples: Sequence[Example]):
        self.vectorizer = vectorizer
        self.classifier = classifier
        self.texts = [e.text for e in examples]
        self.labels = [e.label for e in examples]
        self.matrix = vectorizer.transform(self.texts)

    def predict(self, texts: Sequence[str]) -> list[str]:
        return [str(x) for x in self.classifier.predict(self.vectorizer.transform(list(texts)))]

    def explain(self, text: str) -> tuple[str, float, str, str]:
        """(label, probability, nearest training text, its label) for one text."""
        import numpy as np

        vector = self.vectorizer.transform([text])
        proba = self.classifier.predict_proba(vector)[0]
        best = int(np.argmax(proba))
        similarity = (self.matrix @ vector.T).toarray().ravel()
        nearest = int(np.argmax(similarity))
        return str(self.classifier.classes_[best]), float(proba[best]), self.texts[nearest], self.labels[nearest]


def _fit(vectorizer: TfidfVectorizer, texts: Sequence[str], labels: Sequence[str]) -> LogisticRegression:
    from sklearn.linear_model import LogisticRegression

    classifier = LogisticRegression(max_iter=1000)
    classifier.fit(vectorizer.transform(list(texts)), list(labels))
    return classifier


def _scores(
    classifier: LogisticRegression, vectorizer: TfidfVectorizer, examples: Sequence[Example], prefix: str
) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, log_loss

    x = vectorizer.transform([e.text for e in examples])
    y = [e.label for e in examples]
    proba = classifier.predict_proba(x)
    return {
        f'{prefix}_loss': float(log_loss(y, proba, labels=classifier.classes_)),
        f'{prefix}_accuracy': float(accuracy_score(y, classifier.predict(x))),
    }


def train_local(
    train: Sequence[Example],
    valid: Sequence[Example],
    *,
    progress: Any = None,
    stop: threading.Event | None = None,
    seed: int = 0,
) -> tuple[LocalModel, list[dict[str, float]]]:
    """Fit the model and a learning curve; blocking, meant for a worker thread.

    :param valid: scored at each curve step; when empty, 20% of ``train`` is held out for the curve
        only (the final model still learns from all of ``train``).
    :param progress: ``callable(text)`` told about each step.
    :returns: the model and one metrics row per curve step (``step`` = training examples used).
    """
    curve_train, curve_valid = list(train), list(valid)
    if not curve_valid and len(train) >= 20:
        curve_train, curve_valid = split_holdout(train, 0.2, seed)
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1, max_features=200_000)
    vectorizer.fit([e.text for e in train])
    rng = np.random.default_rng(seed)
    order = [curve_train[i] for i in rng.permutation(len(curve_train))]
    rows: list[dict[str, float]] = []
    labels = {e.label for e in train}
    for index, fraction in enumerate(_CURVE, 1):
        if stop is not None and stop.is_set():
            raise Cancelled
        subset = order[: max(2, int(len(order) * fraction))]
        if {e.label for e in subset} != labels:
            continue  # too few examples of some label at this size
        classifier = _fit(vectorizer, [e.text for e in subset], [e.label for e in subset])
        row = {'step': float(len(subset)), **_scores(classifier, vectorizer, subset, 'train')}
        if curve_valid:
            row.update(_scores(classifier, vectorizer, curve_valid, 'valid'))
        rows.append(row)
        if progress is not None:
            accuracy = row.get('valid_accuracy', row['train_accuracy'])
            progress(
                _('learning curve {index}/{total}: {count} examples, accuracy {accuracy}').format(
                    index=index, total=len(_CURVE), count=len(subset), accuracy=format_number(accuracy, 2)
                )
            )
    if stop is not None and stop.is_set():
        raise Cancelled
    classifier = _fit(vectorizer, [e.text for e in train], [e.label for e in train])
    return LocalModel(vectorizer, classifier, train), rows


@attrs.define
class _Run:
    status: str = 'running'
    progress: str = attrs.field(factory=lambda: status_text('starting'))  # built in the job's language
    events: list[str] = attrs.field(factory=list)
    error: str | None = None
    stop: threading.Event = attrs.field(factory=threading.Event)
    task: asyncio.Task[None] | None = None


class LocalProvider(ModelProvider):
    """Trains and serves :class:`LocalModel` versions from ``<root>/models``."""

    name = 'local'
    in_process = True

    def __init__(self, root: pathlib.Path, *, poll_interval: float = 0.25, seed: int = 0) -> None:
        self.root = root
        self.models = root / 'models'
        self.poll_interval = poll_interval
        self.seed = seed
        self._runs: dict[str, _Run] = {}
        self._cache: dict[str, LocalModel] = {}

    def check(self, examples: Sequence[Example]) -> list[Issue]:
        labels = {e.label for e in examples}
        issues = []
        if len(labels) < 2:
            issues.append(
                Issue(
                    _('dataset'),
                    _(
                        'the local model needs at least two labels, found {count} ({labels}); '
                        'add examples of another label (select a folder with a different label and add=true)'
                    ).format(count=len(labels), labels=', '.join(labels) or _('none')),
                )
            )
        if len(examples) < 4:
            issues.append(
                Issue(_('dataset'), _('only {count} example(s); at least 4 are needed').format(count=len(examples)))
            )
        return issues

    async def estimate(self, examples: Sequence[Example]) -> Estimate:
        words = sum(len(e.text.split()) for e in examples)
        return Estimate(examples=len(examples), tokens=words, epochs=1, cost=0.0)

    def _reserve(self) -> tuple[str, pathlib.Path]:
        self.models.mkdir(parents=True, exist_ok=True)
        numbers = [int(m.group(1)) for p in self.models.iterdir() if (m := _MODEL_DIR.match(p.name))]
        n = max(numbers, default=0) + 1
        while True:
            folder = self.models / f'local-{n}'
            try:
                folder.mkdir()
                return folder.name, folder
            except FileExistsError:
                n += 1

    async def start(self, job: Job, train: Sequence[Example], valid: Sequence[Example], save: Save) -> Job:
        issues = self.check(train)
        if issues:
            raise ProviderError('; '.join(i.reason for i in issues), fatal=True)
        if job.remote_id is None:  # the model folder is reserved and recorded before training starts
            model_id, folder = self._reserve()
        else:  # a start interrupted by a restart: same version, same folder
            model_id, folder = job.remote_id, self.models / job.remote_id
            folder.mkdir(parents=True, exist_ok=True)
        try:
            await asyncio.to_thread(self._keep_examples, folder, train, valid)
        except OSError as exc:
            _log.error('job %s: cannot keep its examples in %s: %s', job.id, folder, exc)
            raise ProviderError(
                _('cannot write the training files of {model_id}: {strerror}').format(
                    model_id=model_id, strerror=exc.strerror
                ),
                fatal=True,
            ) from exc
        job.remote_id = model_id
        await save()
        self._launch(job, model_id, folder, train, valid)
        job.status = 'running'
        job.examples, job.validation_examples = len(train), len(valid)
        return job

    async def cleanup(self, job: Job) -> None:
        """A model folder that never got its ``meta.json`` (failed, cancelled) is removed with its examples."""
        if not job.remote_id or not _MODEL_DIR.match(job.remote_id):
            return
        folder = self.models / job.remote_id
        if folder.is_dir() and not (folder / 'meta.json').exists():
            await asyncio.to_thread(shutil.rmtree, folder, True)
            _log.info('job %s ended %s; removed the unfinished %s', job.id, job.status, folder)

    @staticmethod
    def _keep_examples(folder: pathlib.Path, train: Sequence[Example], valid: Sequence[Example]) -> None:
        write_jsonl(folder / _TRAIN, train)
        write_jsonl(folder / _VALID, valid)

    def _launch(
        self, job: Job, model_id: str, folder: pathlib.Path, train: Sequence[Example], valid: Sequence[Example]
    ) -> _Run:
        """Train in a worker thread into ``folder``; the run is what :meth:`poll` reads."""
        run = _Run()
        self._runs[job.id] = run

        def report(text: str) -> None:
            run.progress = text
            run.events.append(text)  # list.append is atomic; the loop reads a snapshot

        async def work() -> None:
            try:
                model, rows = await asyncio.to_thread(
                    train_local, train, valid, progress=report, stop=run.stop, seed=self.seed
                )
                meta = {
                    'model': model_id,
                    'job': job.id,
                    'dataset': job.dataset,
                    'created': time.time(),
                    'examples': len(train),
                    'labels': sorted({e.label for e in train}),
                    'rows': rows,
                }
                await asyncio.to_thread(self._save, folder, model, meta)
                run.status = 'succeeded'
                run.progress = _('trained {model} on {count} examples').format(model=model_id, count=len(train))
            except Cancelled:
                run.status, run.progress = 'cancelled', status_text('cancelled')
            except Exception as exc:
                _log.exception('local training of job %s failed', job.id)
                run.status, run.error = 'failed', _('training failed: {error}').format(error=exc)

        run.task = asyncio.get_running_loop().create_task(work())
        return run

    async def _resume(self, job: Job) -> Update | None:
        """Train again a job whose thread died with the previous process, from the examples it kept."""
        model_id = job.remote_id or ''
        folder = self.models / model_id
        if not _MODEL_DIR.match(model_id) or not (folder / _TRAIN).is_file():
            return None
        try:
            train = await asyncio.to_thread(read_jsonl, folder / _TRAIN)
            valid = await asyncio.to_thread(read_jsonl, folder / _VALID) if (folder / _VALID).is_file() else []
        except (OSError, ValueError, KeyError) as exc:
            _log.error('job %s: the examples kept in %s cannot be read: %s', job.id, folder, exc)
            return None
        _log.info('job %s: local training was interrupted by a restart; training %s again', job.id, model_id)
        self._launch(job, model_id, folder, train, valid)
        text = _('training {model_id} again after a restart ({count} examples)').format(
            model_id=model_id, count=len(train)
        )
        return Update('running', _('running: {text}').format(text=text), [text], last_event='0')

    @staticmethod
    def _save(folder: pathlib.Path, model: LocalModel, meta: dict[str, Any]) -> None:
        """Model, then ``meta.json`` (each replaced atomically), then drop the kept examples."""
        import joblib

        joblib.dump(model, folder / 'model.joblib.tmp')
        os.replace(folder / 'model.joblib.tmp', folder / 'model.joblib')
        (folder / 'meta.json.tmp').write_text(json.dumps(meta, indent=1), encoding='utf-8')
        os.replace(folder / 'meta.json.tmp', folder / 'meta.json')
        for name in (_TRAIN, _VALID):
            (folder / name).unlink(missing_ok=True)

    async def poll(self, job: Job) -> Update:
        run = self._runs.get(job.id)
        if run is None:
            if job.remote_id and (self.models / job.remote_id / 'meta.json').exists():
                return Update('succeeded', 'trained')
            resumed = await self._resume(job)
            if resumed is not None:
                return resumed
            return Update('failed', error=_('local training was interrupted by a restart; run train again'))
        seen = int(job.last_event or 0)
        events = run.events[seen:]
        progress = f'{status_text(run.status)}: {run.progress}'
        return Update(run.status, progress, events, run.error, str(seen + len(events)))

    async def cancel(self, job: Job) -> None:
        run = self._runs.get(job.id)
        if run is None or run.status != 'running':
            raise ProviderError(_('job {id} is not running').format(id=job.id))
        run.stop.set()

    async def result(self, job: Job, folder: pathlib.Path) -> TrainResult:
        model_id = job.remote_id or ''
        try:
            meta = json.loads((self.models / model_id / 'meta.json').read_text(encoding='utf-8'))
        except (OSError, ValueError) as exc:
            raise ProviderError(
                _('model {model_id} has no readable metadata: {error}').format(model_id=model_id, error=exc), fatal=True
            ) from exc
        rows = meta.get('rows', [])
        plot = await asyncio.to_thread(
            plot_training,
            rows,
            folder / 'training.png',
            title=_('{model} learning curve').format(model=model_id),
            xlabel=_('training examples'),
        )
        final = {k: v for k, v in (rows[-1] if rows else {}).items() if k != 'step'}
        self._runs.pop(job.id, None)
        return TrainResult(model_id, final, plot)

    def latest(self) -> str | None:
        """The newest complete local model, if any."""
        if not self.models.is_dir():
            return None
        done = [
            (int(m.group(1)), p.name)
            for p in self.models.iterdir()
            if (m := _MODEL_DIR.match(p.name)) and (p / 'meta.json').exists()
        ]
        return max(done)[1] if done else None

    async def load(self, model: str | None) -> tuple[str, LocalModel] | None:
        model = model or self.latest()
        if model is None:
            return None
        if model not in self._cache:
            if not _MODEL_DIR.match(model):
                raise ProviderError(_('{model!r} is not a local model name').format(model=model), fatal=True)
            path = self.models / model / 'model.joblib'
            try:
                import joblib

                self._cache[model] = await asyncio.to_thread(joblib.load, path)
            except (OSError, EOFError, ValueError, AttributeError, ImportError) as exc:
                _log.error('local model %s cannot be loaded from %s: %s', model, path, exc)
                raise ProviderError(
                    _('local model {model} cannot be loaded; train again').format(model=model), fatal=True
                ) from exc
        return model, self._cache[model]

    async def predict(self, model: str | None, texts: Sequence[str]) -> list[str]:
        loaded = await self.load(model)
        if loaded is None:
            raise ProviderError(_('the local model is not trained yet; use train first'), fatal=True)
        return await asyncio.to_thread(loaded[1].predict, texts)

    async def chat(self, model: str | None, history: Sequence[Turn], text: str) -> str:
        loaded = await self.load(model)
        if loaded is None:
            return _('The local model is not trained yet, so I cannot answer; use train first.')
        name, local = loaded
        label, probability, nearest, nearest_label = await asyncio.to_thread(local.explain, text)
        quote = nearest if len(nearest) <= 200 else nearest[:197] + '...'
        return _(
            '[local model {name}] This looks like "{label}" (probability {probability}). '
            'Closest training example ({nearest_label}): "{quote}"'
        ).format(
            name=name,
            label=label,
            probability=format_number(probability, 2),
            nearest_label=nearest_label,
            quote=quote,
        )

    async def close(self) -> None:
        for run in self._runs.values():
            run.stop.set()
            if run.task is not None and not run.task.done():
                run.task.cancel()
