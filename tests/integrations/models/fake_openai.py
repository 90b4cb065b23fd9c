"""A fake OpenAI API on 127.0.0.1 (aiohttp) for driving the real ``openai`` client in tests.

It implements files (multipart upload, list, content download, delete), fine-tuning jobs (create,
retrieve, list, events, cancel) with a scripted lifecycle and a result file, and chat completions;
``faults`` injects 401/429/5xx answers, timeouts, connection resets and answers lost after the server
acted, per path prefix; ``hold`` parks a request before or after it acted (a process can be killed
while it waits). Everything a test reads (``files``, ``jobs``, ``creates``) is plain data, so a test
running the server in another thread can poll it.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from typing import Any

import attrs
from aiohttp import web

from tests.loopback import serve

__all__ = ['RESULT_CSV', 'FakeOpenAI']

KEY = 'sk-test-secret-key'
RESULT_CSV = (
    'step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n'
    '1,1.20,0.50,,\n2,0.80,0.70,0.90,0.65\n3,0.40,0.90,,\n4,0.20,1.00,0.30,0.95\n'
)


@attrs.define
class Fault:
    prefix: str
    kind: int | str
    """An HTTP status, or ``'timeout'`` (answer after ``delay`` seconds)."""
    times: int = 1
    delay: float = 2.0


@attrs.define
class Hold:
    """Park matching requests: before acting (the server never acts if the client goes away) or after."""

    method: str
    path: str
    after: bool = False
    """Act first, then hold the answer: the client never learns that it happened."""
    times: int = 1
    arrived: int = 0
    released: bool = False


@attrs.define
class FakeOpenAI:
    """State and behaviour of the fake server; ``url`` is the ``base_url`` for the client."""

    lifecycle: list[str] = attrs.field(factory=lambda: ['validating_files', 'queued', 'running', 'running'])
    """Statuses a job goes through, one per retrieve, before ``final``."""
    final: str = 'succeeded'
    failure: str = 'Training file has too few examples with assistant messages.'
    base64_results: bool = False
    files: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    jobs: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    requests: list[tuple[str, str]] = attrs.field(factory=list)
    chats: list[dict[str, Any]] = attrs.field(factory=list)
    faults: list[Fault] = attrs.field(factory=list)
    holds: list[Hold] = attrs.field(factory=list)
    creates: int = 0
    """Job-create requests the server acted on (a second one would be a second bill)."""
    deleted: list[str] = attrs.field(factory=list)
    url: str = ''
    _runner: web.AppRunner | None = None

    def fail(self, prefix: str, kind: int | str, times: int = 1, delay: float = 2.0) -> None:
        """``kind``: an HTTP status, ``'timeout'``, ``'reset'`` (connection closed, nothing done) or
        ``'lost'`` (the request is carried out, then the connection is closed before the answer)."""
        self.faults.append(Fault(prefix, kind, times, delay))

    def hold(self, method: str, path: str, *, after: bool = False) -> Hold:
        """Park the next ``method path`` request (exact path) until :meth:`Hold.released` or the client leaves."""
        held = Hold(method, path, after)
        self.holds.append(held)
        return held

    def training_files(self) -> list[str]:
        """Uploaded files still stored (result files are the server's own)."""
        return [f for f, item in self.files.items() if item['purpose'] == 'fine-tune']

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_post('/v1/files', self._upload)
        app.router.add_get('/v1/files', self._list_files)
        app.router.add_delete('/v1/files/{id}', self._delete_file)
        app.router.add_get('/v1/files/{id}/content', self._content)
        app.router.add_post('/v1/fine_tuning/jobs', self._create)
        app.router.add_get('/v1/fine_tuning/jobs', self._list)
        app.router.add_get('/v1/fine_tuning/jobs/{id}', self._retrieve)
        app.router.add_get('/v1/fine_tuning/jobs/{id}/events', self._events)
        app.router.add_post('/v1/fine_tuning/jobs/{id}/cancel', self._cancel)
        app.router.add_post('/v1/chat/completions', self._chat)
        self._runner, port = await serve(app, access_log=True)
        self.url = f'http://127.0.0.1:{port}/v1'

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def count(self, method: str, prefix: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p.startswith(prefix))

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        for fault in self.faults:
            if fault.times > 0 and request.path.startswith(fault.prefix):
                fault.times -= 1
                if fault.kind == 'timeout':
                    await asyncio.sleep(fault.delay)
                    break
                if fault.kind in ('reset', 'lost'):
                    if fault.kind == 'lost':
                        await handler(request)
                    assert request.transport is not None
                    request.transport.abort()
                    return web.Response(status=500)
                status = int(fault.kind)
                return web.json_response(
                    {'error': {'message': f'injected {status}', 'type': 'test', 'code': str(status)}},
                    status=status,
                    headers={'retry-after-ms': '5'},
                )
        if request.headers.get('Authorization') != f'Bearer {KEY}':
            return web.json_response(
                {'error': {'message': 'Incorrect API key provided', 'type': 'invalid_request_error'}}, status=401
            )
        held = next(
            (h for h in self.holds if h.times > 0 and (h.method, h.path) == (request.method, request.path)), None
        )
        if held is None:
            return await handler(request)
        held.times -= 1
        held.arrived += 1
        response = await handler(request) if held.after else None
        while not held.released:
            if request.transport is None or request.transport.is_closing():
                return web.Response(status=499)  # the client left: before acting, nothing happens
            await asyncio.sleep(0.01)
        return response if response is not None else await handler(request)

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form['file']
        content = upload.file.read()  # type: ignore[union-attr]
        file_id = f'file-{uuid.uuid4().hex[:8]}'
        self.files[file_id] = {'content': content, 'purpose': form['purpose'], 'filename': upload.filename}  # type: ignore[union-attr]
        return web.json_response(self._file(file_id))

    def _file(self, file_id: str) -> dict[str, Any]:
        item = self.files[file_id]
        return {
            'id': file_id,
            'object': 'file',
            'bytes': len(item['content']),
            'created_at': int(time.time()),
            'filename': item['filename'],
            'purpose': item['purpose'],
            'status': 'processed',
        }

    async def _list_files(self, request: web.Request) -> web.Response:
        purpose = request.query.get('purpose')
        data = [self._file(f) for f in reversed(self.files) if purpose in (None, self.files[f]['purpose'])]
        return web.json_response({'object': 'list', 'data': data, 'has_more': False})

    async def _delete_file(self, request: web.Request) -> web.Response:
        file_id = request.match_info['id']
        if self.files.pop(file_id, None) is None:
            return web.json_response({'error': {'message': 'No such file'}}, status=404)
        self.deleted.append(file_id)
        return web.json_response({'id': file_id, 'object': 'file', 'deleted': True})

    async def _content(self, request: web.Request) -> web.Response:
        item = self.files.get(request.match_info['id'])
        if item is None:
            return web.json_response({'error': {'message': 'No such file'}}, status=404)
        return web.Response(body=item['content'], content_type='application/octet-stream')

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body['training_file'] not in self.files:
            return web.json_response({'error': {'message': 'invalid training_file'}}, status=400)
        job_id = f'ftjob-{uuid.uuid4().hex[:8]}'
        self.creates += 1
        self.jobs[job_id] = {
            'body': body,
            'step': 0,
            'status': 'validating_files',
            'events': [{'id': f'ev-{job_id}-0', 'message': f'Created fine-tuning job: {job_id}'}],
        }
        return web.json_response(self._job(job_id))

    def _job(self, job_id: str) -> dict[str, Any]:
        job = self.jobs[job_id]
        body = job['body']
        done = job['status'] == 'succeeded'
        return {
            'id': job_id,
            'object': 'fine_tuning.job',
            'created_at': 1_700_000_000,
            'model': body['model'],
            'organization_id': 'org-test',
            'hyperparameters': {'n_epochs': 3},
            'result_files': [job['result']] if done else [],
            'seed': 1,
            'status': job['status'],
            'training_file': body['training_file'],
            'validation_file': body.get('validation_file'),
            'fine_tuned_model': f'ft:{body["model"]}:org:{body.get("suffix")}:{job_id[-4:]}' if done else None,
            'trained_tokens': 1234 if done else None,
            'error': {'code': 'invalid_training_file', 'message': self.failure, 'param': 'training_file'}
            if job['status'] == 'failed'
            else None,
            'metadata': body.get('metadata'),
        }

    def _advance(self, job_id: str) -> None:
        job = self.jobs[job_id]
        if job['status'] in ('succeeded', 'failed', 'cancelled'):
            return
        if job['step'] < len(self.lifecycle):
            job['status'] = self.lifecycle[job['step']]
        else:
            job['status'] = self.final
            if self.final == 'succeeded':
                data = RESULT_CSV.encode()
                if self.base64_results:
                    data = base64.b64encode(data)
                file_id = f'file-result-{job_id[-4:]}'
                self.files[file_id] = {'content': data, 'purpose': 'fine-tune-results', 'filename': 'step_metrics.csv'}
                job['result'] = file_id
        job['step'] += 1
        job['events'].append({'id': f'ev-{job_id}-{job["step"]}', 'message': f'Step {job["step"]}: {job["status"]}'})

    async def _retrieve(self, request: web.Request) -> web.Response:
        job_id = request.match_info['id']
        if job_id not in self.jobs:
            return web.json_response({'error': {'message': 'No such job'}}, status=404)
        self._advance(job_id)
        return web.json_response(self._job(job_id))

    async def _list(self, request: web.Request) -> web.Response:
        data = [self._job(j) for j in reversed(self.jobs)]
        return web.json_response({'object': 'list', 'data': data, 'has_more': False})

    async def _events(self, request: web.Request) -> web.Response:
        job = self.jobs[request.match_info['id']]
        data = [
            {'object': 'fine_tuning.job.event', 'created_at': 1, 'level': 'info', 'type': 'message', **e}
            for e in reversed(job['events'])
        ]
        return web.json_response({'object': 'list', 'data': data, 'has_more': False})

    async def _cancel(self, request: web.Request) -> web.Response:
        job_id = request.match_info['id']
        if job_id not in self.jobs:
            return web.json_response({'error': {'message': 'No such job'}}, status=404)
        if self.jobs[job_id]['status'] in ('succeeded', 'failed', 'cancelled'):
            return web.json_response({'error': {'message': f'Job {job_id} has already completed'}}, status=400)
        self.jobs[job_id]['status'] = 'cancelled'
        return web.json_response(self._job(job_id))

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.chats.append(body)
        text = body['messages'][-1]['content']
        if body.get('max_tokens'):
            reply = 'positive' if 'good' in text else 'negative'
        else:
            reply = f'{body["model"]} heard {len(body["messages"])} messages'
        return web.json_response(
            {
                'id': 'chatcmpl-1',
                'object': 'chat.completion',
                'created': 1,
                'model': body['model'],
                'choices': [{'index': 0, 'finish_reason': 'stop', 'message': {'role': 'assistant', 'content': reply}}],
            }
        )
