"""OpenAI (or any OpenAI-compatible server) fine-tuning and chat through the official ``openai`` SDK.

Training data is chat-format JSONL: the configured system instruction, the text as the user
message and the label as the assistant's answer. The SDK retries 408/409/429/5xx and timeouts
(``max_retries``); what still fails becomes a :class:`ProviderError` with a message for the user.
The API key is passed to the client only and never logged.
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
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import openai
from openai import AsyncOpenAI

from integrations.models.chatformat import chat_example, check_chat_example, estimate_epochs, estimate_example_tokens
from integrations.models.config import ModelsConfig
from integrations.models.datasets import Example, Issue
from integrations.models.plots import plot_training
from integrations.models.providers.base import Estimate, Job, ModelProvider, ProviderError, TrainResult, Turn, Update

__all__ = ['OpenAIProvider', 'parse_result_csv']

_log = logging.getLogger(__name__)
T = TypeVar('T')
_PREDICT_CONCURRENCY = 4


def _explain(exc: openai.OpenAIError, what: str) -> ProviderError:
    """Turn an SDK exception into a message for the user; ``fatal`` when retrying later cannot help."""
    if isinstance(exc, openai.AuthenticationError):
        return ProviderError(f'OpenAI rejected the API key while trying to {what} (401); check [models] api_key')
    if isinstance(exc, openai.PermissionDeniedError):
        return ProviderError(f'OpenAI refused to {what}: permission denied (403)', fatal=True)
    if isinstance(exc, openai.RateLimitError):
        return ProviderError(f'OpenAI rate limit or quota reached while trying to {what} (429); try again later')
    if isinstance(exc, openai.NotFoundError):
        return ProviderError(f'OpenAI could not find what was needed to {what} (404): {_message(exc)}', fatal=True)
    if isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
        return ProviderError(f'OpenAI refused to {what}: {_message(exc)}', fatal=True)
    if isinstance(exc, openai.InternalServerError):
        return ProviderError(f'OpenAI had a server error ({exc.status_code}) while trying to {what}; try again later')
    if isinstance(exc, openai.APIStatusError):
        return ProviderError(f'OpenAI answered {exc.status_code} while trying to {what}: {_message(exc)}')
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(f'OpenAI did not answer in time while trying to {what}; try again later')
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError(f'cannot reach the OpenAI server to {what}; check [models] base_url and the network')
    return ProviderError(f'OpenAI failed to {what}: {exc}')


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
            if 'valid_mean_token_accuracy' in row and 'valid_accuracy' not in row:
                row['valid_accuracy'] = row['valid_mean_token_accuracy']
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
                issues.append(Issue(examples[index - 1].source or f'example {index}', error))
        if len(examples) < limits.min_openai_examples:
            issues.append(
                Issue('dataset', f'OpenAI needs at least {limits.min_openai_examples} examples, found {len(examples)}')
            )
        return issues

    async def estimate(self, examples: Sequence[Example]) -> Estimate:
        cap = self.config.limits.max_tokens_per_example
        tokens = sum(min(cap, estimate_example_tokens(line['messages'])) for line in self._lines(examples))
        epochs = self.config.n_epochs or estimate_epochs(len(examples))
        cost = tokens * epochs / 1_000_000 * self.config.price_per_million_tokens
        return Estimate(examples=len(examples), tokens=tokens, epochs=epochs, cost=round(cost, 4))

    async def _upload(self, name: str, examples: Sequence[Example]) -> str:
        body = ''.join(json.dumps(line, ensure_ascii=False) + '\n' for line in self._lines(examples))
        uploaded = await self._call(
            f'upload {name}',
            self.client.files.create(file=(name, body.encode('utf-8'), 'application/jsonl'), purpose='fine-tune'),
        )
        return uploaded.id

    async def start(self, job: Job, train: Sequence[Example], valid: Sequence[Example]) -> Job:
        issues = self.check(train)
        if issues:
            raise ProviderError('the dataset is not valid for OpenAI: ' + '; '.join(map(str, issues[:5])), fatal=True)
        training_file = await self._upload(f'{job.dataset}-{job.id}-train.jsonl', train)
        validation_file = await self._upload(f'{job.dataset}-{job.id}-valid.jsonl', valid) if valid else None
        extra: dict[str, Any] = {}
        if validation_file:
            extra['validation_file'] = validation_file
        if self.config.n_epochs:
            extra['hyperparameters'] = {'n_epochs': self.config.n_epochs}
        created = await self._call(
            'start fine-tuning',
            self.client.fine_tuning.jobs.create(
                model=self.config.base_model,
                training_file=training_file,
                suffix=self.config.suffix or None,
                metadata={'flowbot_job': job.id},
                **extra,
            ),
        )
        job.remote_id = created.id
        job.status = created.status
        job.examples, job.validation_examples = len(train), len(valid)
        job.extra.update(training_file=training_file, validation_file=validation_file, base_model=created.model)
        return job

    async def _find(self, job: Job) -> str | None:
        """The remote id of a job created just before a crash, found by its metadata."""
        page = await self._call('list fine-tuning jobs', self.client.fine_tuning.jobs.list(limit=50))
        for remote in page.data:
            if (remote.metadata or {}).get('flowbot_job') == job.id:
                return remote.id
        return None

    async def poll(self, job: Job) -> Update:
        if job.remote_id is None:
            job.remote_id = await self._find(job)
            if job.remote_id is None:
                return Update('failed', error='the job was interrupted before OpenAI accepted it; run train again')
        remote = await self._call('check the fine-tuning job', self.client.fine_tuning.jobs.retrieve(job.remote_id))
        page = await self._call(
            'read the job events', self.client.fine_tuning.jobs.list_events(job.remote_id, limit=20)
        )
        new: list[str] = []
        for event in page.data:  # newest first
            if event.id == job.last_event:
                break
            new.append(event.message)
        last = page.data[0].id if page.data else job.last_event
        latest = new[0] if new else ''
        progress = f'{remote.status}: {latest}' if latest else remote.status
        error = None
        if remote.status == 'failed':
            error = remote.error.message if remote.error and remote.error.message else 'the fine-tuning job failed'
        if remote.fine_tuned_model:
            job.model_id = remote.fine_tuned_model
        return Update(remote.status, progress, list(reversed(new)), error, last)

    async def cancel(self, job: Job) -> None:
        if job.remote_id is None:
            raise ProviderError(f'job {job.id} has not reached OpenAI yet')
        await self._call('cancel the fine-tuning job', self.client.fine_tuning.jobs.cancel(job.remote_id))

    async def result(self, job: Job, folder: pathlib.Path) -> TrainResult:
        if job.remote_id is None:
            raise ProviderError(f'job {job.id} has no OpenAI id', fatal=True)
        remote = await self._call('read the finished job', self.client.fine_tuning.jobs.retrieve(job.remote_id))
        if not remote.fine_tuned_model:
            raise ProviderError(f'OpenAI reports no fine-tuned model for job {remote.id}', fatal=True)
        rows: list[dict[str, float]] = []
        if remote.result_files:
            content = await self._call('download the result file', self.client.files.content(remote.result_files[0]))
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
            'answer',
            self.client.chat.completions.create(
                model=model or self.config.chat_model or self.config.base_model,
                messages=messages,  # type: ignore[arg-type]
                temperature=0 if max_tokens else 0.7,
                **extra,
            ),
        )
        if not response.choices:
            raise ProviderError('OpenAI returned no answer')
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
