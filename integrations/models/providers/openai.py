"""OpenAI (or any OpenAI-compatible server) fine-tuning and chat through the official ``openai`` SDK.

Training data is chat-format JSONL: the configured system instruction, the text as the user
message and the label as the assistant's answer. Reads (retrieve, list, events, downloads, chat) let
the SDK retry 408/409/429/5xx and timeouts (``max_retries``). Calls that create or change something
(file upload, job create, cancel) run with the SDK's retry *off* and go through :meth:`OpenAIProvider._once`:
the intent is recorded in the job first; after an ambiguous failure (timeout, reset, 5xx: the server may
have acted) the object is looked up (a file by its name, a job by its ``flowbot_job`` metadata) before
the call is tried again, so a lost answer never creates a second file or a second billed job.
What still fails becomes a :class:`ProviderError` with a message for the user. The API key is passed
to the client only and never logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import csv
import io
import json
import logging
import math
import pathlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import openai
from openai import AsyncOpenAI

from engine.i18n import _
from integrations.models.chatformat import chat_example, check_chat_example, estimate_epochs, estimate_example_tokens
from integrations.models.config import ModelsConfig
from integrations.models.datasets import Example, Issue
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

__all__ = ['OpenAIProvider', 'parse_result_csv']

_log = logging.getLogger(__name__)
T = TypeVar('T')
_PREDICT_CONCURRENCY = 4
_MAX_RETRY_AFTER = 60.0
_LOOKUP_PAGE = 100
"""How many of the newest files/jobs a look-up searches (our object is among the newest)."""


def _ambiguous(exc: openai.OpenAIError) -> bool:
    """The request may have reached the server and been acted on: no answer, or a server error."""
    return isinstance(exc, openai.APITimeoutError | openai.APIConnectionError | openai.InternalServerError) or (
        isinstance(exc, openai.APIStatusError) and exc.status_code in (408, 409)
    )


def _retry_after(exc: openai.OpenAIError, default: float) -> float:
    """Seconds the server asked us to wait (``retry-after-ms`` / ``retry-after``), capped."""
    response = getattr(exc, 'response', None)
    headers = getattr(response, 'headers', None) or {}
    try:
        if headers.get('retry-after-ms'):
            return min(_MAX_RETRY_AFTER, float(headers['retry-after-ms']) / 1000)
        if headers.get('retry-after'):
            return min(_MAX_RETRY_AFTER, float(headers['retry-after']))
    except ValueError:
        pass
    return default


def _explain(exc: openai.OpenAIError, what: str) -> ProviderError:
    """Turn an SDK exception into a message for the user; ``fatal`` when retrying later cannot help."""
    if isinstance(exc, openai.AuthenticationError):
        return ProviderError(
            _('OpenAI rejected the API key while trying to {what} (401); check [models] api_key').format(what=what)
        )
    if isinstance(exc, openai.PermissionDeniedError):
        return ProviderError(_('OpenAI refused to {what}: permission denied (403)').format(what=what), fatal=True)
    if isinstance(exc, openai.RateLimitError):
        return ProviderError(
            _('OpenAI rate limit or quota reached while trying to {what} (429); try again later').format(what=what)
        )
    if isinstance(exc, openai.NotFoundError):
        return ProviderError(
            _('OpenAI could not find what was needed to {what} (404): {value}').format(what=what, value=_message(exc)),
            fatal=True,
        )
    if isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
        return ProviderError(_('OpenAI refused to {what}: {value}').format(what=what, value=_message(exc)), fatal=True)
    if isinstance(exc, openai.InternalServerError):
        return ProviderError(
            _('OpenAI had a server error ({status_code}) while trying to {what}; try again later').format(
                status_code=exc.status_code, what=what
            )
        )
    if isinstance(exc, openai.APIStatusError):
        return ProviderError(
            _('OpenAI answered {status_code} while trying to {what}: {value}').format(
                status_code=exc.status_code, what=what, value=_message(exc)
            )
        )
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(
            _('OpenAI did not answer in time while trying to {what}; try again later').format(what=what)
        )
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError(
            _('cannot reach the OpenAI server to {what}; check [models] base_url and the network').format(what=what)
        )
    return ProviderError(_('OpenAI failed to {what}: {error}').format(what=what, error=exc))


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get('error', body)
        if isinstance(inner, dict) and inner.get('message'):
            return str(inner['message'])
    return exc.message


def parse_result_csv(data: bytes) -> list[dict[str, float]]:
    """Rows of OpenAI's result file (``step,train_loss,train_accuracy,valid_loss,...``); it may be base64."""
    text = data.decode('utf-8', errors='replace')
    if ',' not in text.split('\n', 1)[0]:
        try:
            text = base64.b64decode(b''.join(data.split()), validate=True).decode('utf-8', errors='replace')
        except (binascii.Error, ValueError):
            _log.warning('openai: the result file is neither CSV nor base64 CSV; no metrics')
    rows: list[dict[str, float]] = []
    for raw in csv.DictReader(io.StringIO(text)):
        row: dict[str, float] = {}
        for key, value in raw.items():
            if not key or value is None or not value.strip():
                continue
            try:
                number = float(value)
            except ValueError:
                continue
            if math.isfinite(number):
                row[key.strip()] = number
        if 'step' in row:
            if 'valid_mean_token_accuracy' in row:  # one name for one metric, so reports list it once
                row.setdefault('valid_accuracy', row['valid_mean_token_accuracy'])
                del row['valid_mean_token_accuracy']
            rows.append(row)
    return rows


class OpenAIProvider(ModelProvider):
    """Fine-tunes ``base_model`` and chats with the result (or with ``chat_model``)."""

    name = 'openai'

    def __init__(self, config: ModelsConfig, api_key: str, *, client: AsyncOpenAI | None = None) -> None:
        self.config = config
        self.poll_interval = config.poll_interval
        self.client = client or AsyncOpenAI(
            api_key=api_key, base_url=config.base_url, max_retries=config.max_retries, timeout=config.timeout
        )
        self.once_client = self.client.with_options(max_retries=0)
        """For calls that create something: a blind retry could create it twice."""
        self.retry_delay = 1.0
        """First pause before trying a create again (doubles; a 429's retry-after wins)."""

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except openai.OpenAIError as exc:
            error = _explain(exc, what)
            _log.warning('openai: %s failed: %s (%s)', what, error, type(exc).__name__)
            raise error from exc

    def _lines(self, examples: Sequence[Example]) -> list[dict[str, Any]]:
        return [chat_example(self.config.system_instruction, e.text, e.label) for e in examples]

    def check(self, examples: Sequence[Example]) -> list[Issue]:
        limits = self.config.limits
        issues = []
        for index, line in enumerate(self._lines(examples), 1):
            for error in check_chat_example(line, max_tokens=limits.max_tokens_per_example):
                issues.append(Issue(examples[index - 1].source or _('example {index}').format(index=index), error))
        if len(examples) < limits.min_openai_examples:  # checked on the training part: what is billed
            issues.append(
                Issue(
                    _('dataset'),
                    _('OpenAI needs at least {min_openai_examples} examples, found {count}').format(
                        min_openai_examples=limits.min_openai_examples, count=len(examples)
                    ),
                )
            )
        return issues

    async def estimate(self, examples: Sequence[Example]) -> Estimate:
        cap = self.config.limits.max_tokens_per_example
        tokens = sum(min(cap, estimate_example_tokens(line['messages'])) for line in self._lines(examples))
        epochs = self.config.n_epochs or estimate_epochs(len(examples))
        cost = tokens * epochs / 1_000_000 * self.config.price_per_million_tokens
        return Estimate(examples=len(examples), tokens=tokens, epochs=epochs, cost=round(cost, 4))

    async def _once(
        self,
        job: Job,
        save: Save,
        what: str,
        intent: str,
        call: Callable[[], Awaitable[T]],
        lookup: Callable[[], Awaitable[T | None]],
    ) -> T:
        """Make a creating call at most once in effect.

        ``job.extra[intent]`` is recorded (durably, through ``save``) before the call; if it is already
        there, an earlier attempt's answer was lost (a crash, a timeout), so ``lookup`` runs first.
        After an ambiguous failure ``lookup`` runs again before the next attempt; a 429 waits for its
        retry-after; a refusal (4xx) is final.
        """
        if job.extra.get(intent):
            found = await self._call(_('look up the earlier attempt to {what}').format(what=what), lookup())
            if found is not None:
                _log.info('openai: job %s: %s had been done before the answer was lost; reusing it', job.id, what)
                return found
        attempts = self.config.max_retries + 1
        delay = self.retry_delay
        for attempt in range(1, attempts + 1):
            job.extra[intent] = time.time()
            await save()
            try:
                return await call()
            except openai.OpenAIError as exc:
                error = _explain(exc, what)
                _log.warning('openai: job %s: %s failed (attempt %d/%d): %s', job.id, what, attempt, attempts, error)
                if _ambiguous(exc):
                    # A request that timed out may still be carried out a moment later: pause, then look.
                    await asyncio.sleep(delay)
                    found = await self._call(_('look up whether OpenAI did {what}').format(what=what), lookup())
                    if found is not None:
                        return found
                elif isinstance(exc, openai.RateLimitError):  # not done: wait as asked
                    if attempt < attempts:
                        await asyncio.sleep(_retry_after(exc, delay))
                else:  # refused: trying again cannot help (a 401 needs the admin first)
                    raise ProviderError(str(error), fatal=True) from exc
                if attempt == attempts:
                    raise error from exc
                delay *= 2
        raise AssertionError('unreachable')  # pragma: no cover

    def _file_name(self, job: Job, part: str) -> str:
        """Unique per job (the look-up key after a lost answer), named after the job, not a folder."""
        return f'{self.config.suffix or "flowbot"}-{job.id}-{part}.jsonl'

    async def _upload(self, job: Job, save: Save, part: str, examples: Sequence[Example]) -> str:
        key = f'{part}_file'
        if job.extra.get(key):
            return str(job.extra[key])
        name = self._file_name(job, part)
        body = ''.join(json.dumps(line, ensure_ascii=False) + '\n' for line in self._lines(examples)).encode('utf-8')

        async def upload() -> str:
            uploaded = await self.once_client.files.create(file=(name, body, 'application/jsonl'), purpose='fine-tune')
            return uploaded.id

        async def lookup() -> str | None:
            page = await self.client.files.list(purpose='fine-tune', limit=_LOOKUP_PAGE)
            return next((f.id for f in page.data if f.filename == name), None)

        file_id = await self._once(
            job, save, _('upload {name}').format(name=name), f'{part}_upload_sent', upload, lookup
        )
        job.extra[key] = file_id
        await save()
        return file_id

    async def start(self, job: Job, train: Sequence[Example], valid: Sequence[Example], save: Save) -> Job:
        if job.remote_id is not None:
            return job
        issues = self.check(train)
        if issues:
            raise ProviderError(
                _('the dataset is not valid for OpenAI: ') + '; '.join(map(str, issues[:5])), fatal=True
            )
        training_file = await self._upload(job, save, 'train', train)
        validation_file = await self._upload(job, save, 'valid', valid) if valid else None
        extra: dict[str, Any] = {}
        if validation_file:
            extra['validation_file'] = validation_file
        if self.config.n_epochs:  # the current form; top-level ``hyperparameters`` is deprecated
            extra['method'] = {
                'type': 'supervised',
                'supervised': {'hyperparameters': {'n_epochs': self.config.n_epochs}},
            }
        if job.extra.get('cancel') and not job.extra.get('create_sent'):
            raise ProviderError(_('job {id} was cancelled before it started').format(id=job.id), fatal=True)

        async def create() -> Any:
            return await self.once_client.fine_tuning.jobs.create(
                model=self.config.base_model,
                training_file=training_file,
                suffix=self.config.suffix or None,
                metadata={'flowbot_job': job.id},
                **extra,
            )

        async def lookup() -> Any:
            page = await self.client.fine_tuning.jobs.list(limit=_LOOKUP_PAGE)
            return next((r for r in page.data if (r.metadata or {}).get('flowbot_job') == job.id), None)

        created = await self._once(job, save, _('start fine-tuning'), 'create_sent', create, lookup)
        job.remote_id = created.id
        job.status = created.status
        job.extra.update(training_file=training_file, validation_file=validation_file, base_model=created.model)
        return job

    async def cleanup(self, job: Job) -> None:
        """Delete the uploaded training files ([models] delete_files); a file already gone counts as deleted."""
        if not self.config.delete_files:
            return
        for part in ('train', 'valid'):
            file_id = job.extra.get(f'{part}_file')
            if not file_id:
                continue
            try:
                await self.client.files.delete(str(file_id))
            except openai.NotFoundError:
                pass
            except openai.OpenAIError as exc:
                raise _explain(exc, _('delete the uploaded file {id}').format(id=file_id)) from exc
            _log.info('openai: job %s: deleted the uploaded %s file %s', job.id, part, file_id)
            job.extra[f'{part}_file_deleted'] = file_id

    async def poll(self, job: Job) -> Update:
        if job.remote_id is None:
            raise ProviderError(_('job {id} has not reached OpenAI').format(id=job.id), fatal=True)
        remote = await self._call(_('check the fine-tuning job'), self.client.fine_tuning.jobs.retrieve(job.remote_id))
        page = await self._call(
            _('read the job events'), self.client.fine_tuning.jobs.list_events(job.remote_id, limit=20)
        )
        new: list[str] = []
        for event in page.data:  # newest first
            if event.id == job.last_event:
                break
            new.append(event.message)
        last = page.data[0].id if page.data else job.last_event
        # One line from one answer: this retrieve's status with the newest event read just after it,
        # never a new status paired with an event kept from before a restart.
        latest = new[0] if new else ''
        progress = f'{status_text(remote.status)}: {latest}' if latest else status_text(remote.status)
        error = None
        if remote.status == 'failed':
            error = remote.error.message if remote.error and remote.error.message else _('the fine-tuning job failed')
        if remote.fine_tuned_model:
            job.model_id = remote.fine_tuned_model
        return Update(remote.status, progress, list(reversed(new)), error, last)

    async def cancel(self, job: Job) -> None:
        if job.remote_id is None:
            raise ProviderError(_('job {id} has not reached OpenAI yet').format(id=job.id))
        remote_id = job.remote_id

        async def cancel() -> Any:
            return await self.once_client.fine_tuning.jobs.cancel(remote_id)

        async def lookup() -> Any:
            remote = await self.client.fine_tuning.jobs.retrieve(remote_id)
            return remote if remote.status in ('cancelled', 'succeeded', 'failed') else None

        async def nothing() -> None:
            return None

        await self._once(job, nothing, _('cancel the fine-tuning job'), 'cancel_call_sent', cancel, lookup)

    async def result(self, job: Job, folder: pathlib.Path) -> TrainResult:
        if job.remote_id is None:
            raise ProviderError(_('job {id} has no OpenAI id').format(id=job.id), fatal=True)
        remote = await self._call(_('read the finished job'), self.client.fine_tuning.jobs.retrieve(job.remote_id))
        if not remote.fine_tuned_model:
            raise ProviderError(_('OpenAI reports no fine-tuned model for job {id}').format(id=remote.id), fatal=True)
        rows: list[dict[str, float]] = []
        if remote.result_files:
            content = await self._call(_('download the result file'), self.client.files.content(remote.result_files[0]))
            rows = parse_result_csv(content.content)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / 'metrics.csv').write_bytes(content.content)
        plot = (
            await asyncio.to_thread(plot_training, rows, folder / 'training.png', title=f'{remote.fine_tuned_model}')
            if rows
            else None
        )
        final: dict[str, float] = {}
        for row in rows:  # the last value of each metric (validation ones are not on every row)
            final.update({k: v for k, v in row.items() if k != 'step'})
        if remote.trained_tokens:
            final['trained_tokens'] = float(remote.trained_tokens)
        return TrainResult(remote.fine_tuned_model, final, plot)

    async def _complete(self, model: str | None, messages: list[dict[str, str]], max_tokens: int | None) -> str:
        extra: dict[str, Any] = {'max_tokens': max_tokens} if max_tokens else {}
        response = await self._call(
            _('answer'),
            self.client.chat.completions.create(
                model=model or self.config.chat_model or self.config.base_model,
                messages=messages,  # type: ignore[arg-type]
                temperature=0 if max_tokens else 0.7,
                **extra,
            ),
        )
        if not getattr(response, 'choices', None):  # no choices, or not a completion at all (an HTML error page)
            _log.warning('OpenAI answered a chat completion with %s: %.200r', type(response).__name__, response)
            raise ProviderError(_('OpenAI returned no answer'))
        return (response.choices[0].message.content or '').strip()

    def _system(self) -> list[dict[str, str]]:
        instruction = self.config.system_instruction
        return [{'role': 'system', 'content': instruction}] if instruction else []

    async def predict(self, model: str | None, texts: Sequence[str]) -> list[str]:
        gate = asyncio.Semaphore(_PREDICT_CONCURRENCY)

        async def one(text: str) -> str:
            async with gate:
                return await self._complete(model, [*self._system(), {'role': 'user', 'content': text}], 50)

        return list(await asyncio.gather(*(one(t) for t in texts)))

    async def chat(self, model: str | None, history: Sequence[Turn], text: str) -> str:
        messages = self._system()
        for turn in history:
            messages += [{'role': 'user', 'content': turn.user}, {'role': 'assistant', 'content': turn.assistant}]
        messages.append({'role': 'user', 'content': text})
        return await self._complete(model, messages, None)

    async def close(self) -> None:
        await self.client.close()
