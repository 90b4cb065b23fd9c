"""The whole model loop as a user lives it, once per provider: select → train → progress → restart → report → test → chat.

The real app (``engine.app.build_app``) runs the shipped ``flows/`` with the real plugins over an
SQLite store in ``tmp_path``; a recording adapter named ``console`` plays the channel, so it keeps
its message ids across the restart like Discord does. The OpenAI run goes through the real
``openai`` client to the fake server on 127.0.0.1, whose job stays ``running`` until the test lets
it finish; the local run holds the training thread after its first learning-curve step. While the
job runs, the bot is stopped and a new app is built over the same store and data root: the job must
resume and its report must reach the waiting conversation exactly once.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import attrs
import pytest

from engine.api import Attachment, ChoicePress, Command, ConversationKey, Message, User
from engine.app import App, build_app
from engine.commands import UsageError
from engine.config import BotConfig, Config
from engine.doubles import RecordingAdapter, Sent
from integrations.models.service import ModelsService

from .conftest import openai_settings
from .fake_openai import FakeOpenAI

__all__: list[str] = []

REPO_FLOWS = pathlib.Path(__file__).resolve().parents[3] / 'flows'
PLUGINS = ('integrations.builtin', 'integrations.models', 'integrations.speech')
"""``chat.toml`` calls ``speech.*`` on voice messages, so the shipped flows need the speech plugin to load."""
KEY = ConversationKey('console', 'local', 'admin')
USER = User(id='admin', name='Admin')
BASE_MODEL = 'gpt-4o-mini-2024-07-18'
DEADLINE = 8.0
"""Seconds any awaited outcome may take before the test fails (the whole loop takes about 2 s)."""


def console_recorder() -> RecordingAdapter:
    """The recording adapter under the console's name: every permission, no voice."""
    return RecordingAdapter('console', grants_all=True)


def since(adapter: RecordingAdapter, start: int, kind: str | None = None) -> list[Sent]:
    """What the bot sent from index ``start`` on, optionally only one kind (text, ask, file, edit)."""
    return [s for s in adapter.sent[start:] if kind is None or s.kind == kind]


@attrs.define
class Bot:
    """One bot installation (store file, data root, channel) that can be stopped and started again."""

    config: Config
    adapter: RecordingAdapter
    app: App | None = None

    async def boot(self, *, connect: bool = True) -> App:
        """Start a fresh process-equivalent: new app, store connection, plugins and engine.

        :param connect: connect the channel right after the start, as the CLI does; ``False`` leaves
            it to the test (a channel that connects late).
        """
        app = build_app(self.config)
        await app.start()
        if connect:
            app.engine.add_adapter(self.adapter)
        self.app = app
        return app

    async def shutdown(self) -> None:
        if self.app is not None:
            app, self.app = self.app, None
            await app.stop()

    @property
    def running(self) -> App:
        assert self.app is not None, 'the bot is not running'
        return self.app

    @property
    def service(self) -> ModelsService:
        service: ModelsService = self.running.plugins.services['models']
        return service

    async def _send(self, event: Command | Message | ChoicePress) -> int:
        start = len(self.adapter.sent)
        await self.running.engine.dispatch(event)
        assert await self.running.engine.wait_idle(DEADLINE), f'the bot was still busy after {event}'
        return start

    async def command(self, name: str, args: str = '', attachments: Sequence[Attachment] = ()) -> int:
        """Type ``!name args``; returns where this turn's outputs start in ``adapter.sent``."""
        try:
            options = self.running.engine.options(name, args, KEY, attachments)
        except UsageError as exc:  # answered as an adapter would
            start = len(self.adapter.sent)
            await self.adapter.send_text(KEY, str(exc))
            return start
        return await self._send(Command(key=KEY, user=USER, name=name, options=options, attachments=attachments))

    async def press(self, value: str) -> int:
        return await self._send(ChoicePress(key=KEY, user=USER, value=value))

    async def say(self, text: str) -> int:
        return await self._send(Message(key=KEY, user=USER, text=text))


async def until(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Poll ``condition`` every 20 ms until it is truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f'timed out after {timeout} s waiting for {what}')
        await asyncio.sleep(0.02)


@pytest.fixture
def data_root(tmp_path: pathlib.Path) -> pathlib.Path:
    """Two folders of short reviews: ``reviews/pos`` (good) and ``reviews/neg`` (bad), 8 each."""
    root = tmp_path / 'data'
    for folder, word in (('pos', 'good'), ('neg', 'bad')):
        (root / 'reviews' / folder).mkdir(parents=True)
        for i in range(8):
            (root / 'reviews' / folder / f'{i}.txt').write_text(f'a {word} review number {i}, {word} {word}')
    return root


@attrs.define
class Provider:
    """How one provider is configured, held while running, and released."""

    name: str
    settings: dict[str, Any]
    release: Callable[[], None]
    server: FakeOpenAI | None = None


@pytest.fixture(params=['local', 'openai'])
async def provider(
    request: pytest.FixtureRequest, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Provider]:
    if request.param == 'openai':
        # The remote job stays 'running' (one new event per poll) until the test lets it succeed.
        fake_openai.lifecycle = ['validating_files', 'queued', 'running']
        fake_openai.final = 'running'

        def finish_remote() -> None:
            fake_openai.final = 'succeeded'

        yield Provider('openai', openai_settings(fake_openai), finish_remote, fake_openai)
        return

    from integrations.models.providers import local

    real_train = local.train_local
    gate = threading.Event()

    def held_train(train: Any, valid: Any, *, progress: Any = None, stop: Any = None, seed: int = 0) -> Any:
        """The real training, held after each step until released or stopped (the thread of a dying bot)."""

        def step(text: str) -> None:
            progress(text)
            while not gate.is_set() and not stop.is_set():
                gate.wait(0.01)

        return real_train(train, valid, progress=step, stop=stop, seed=seed)

    monkeypatch.setattr(local, 'train_local', held_train)
    yield Provider('local', {'provider': 'local', 'local_poll_interval': 0.05}, gate.set)
    gate.set()


def bot_config(tmp_path: pathlib.Path, data_root: pathlib.Path, models: dict[str, Any]) -> Config:
    """The shipped flows and plugins, an SQLite store file and ``models`` as ``[models]``."""
    return Config(
        bot=BotConfig(
            flows=[REPO_FLOWS],
            data_root=data_root,
            store=str(tmp_path / 'flowbot.sqlite3'),
            reload=False,
            plugins=list(PLUGINS),
            progress_interval=0.0,  # every progress update edits the message, no 1 s throttle
        ),
        sections={'models': models},
    )


@pytest.fixture
async def bot(tmp_path: pathlib.Path, data_root: pathlib.Path, provider: Provider) -> AsyncIterator[Bot]:
    bot = Bot(bot_config(tmp_path, data_root, provider.settings), console_recorder())
    await bot.boot()
    yield bot
    await bot.shutdown()


def _test_file(tmp_path: pathlib.Path) -> Attachment:
    items = [
        {'text': 'a good review, good acting', 'label': 'positive'},
        {'text': 'good good music', 'label': 'positive'},
        {'text': 'a bad review, bad story', 'label': 'negative'},
        {'text': 'bad bad ending', 'label': 'negative'},
    ]
    path = tmp_path / 'upload' / 'holdout.json'
    path.parent.mkdir()
    path.write_text(json.dumps(items), encoding='utf-8')
    return Attachment('holdout.json', content_type='application/json', size=path.stat().st_size, path=path)


async def test_train_restart_report_test_and_chat_loop(bot: Bot, provider: Provider, tmp_path: pathlib.Path) -> None:
    adapter = bot.adapter

    # 1. A dataset with two labels, from two folders.
    start = await bot.command('select_dataset', 'reviews/pos')
    assert 'Dataset reviews_pos selected. 8 examples read (positive: 8)' in since(adapter, start)[-1].text
    start = await bot.command('select_dataset', 'reviews/neg label=negative add=true')
    assert 'negative: 8' in since(adapter, start)[-1].text

    # 2. train: summary, estimate and a confirmation button.
    start = await bot.command('train')
    [ask] = since(adapter, start, 'ask')
    assert [o.value for o in ask.options] == ['start', 'cancel']
    assert f'Training {provider.name} on reviews_pos: 16 examples' in ask.text
    if provider.name == 'openai':
        assert 'estimated cost $' in ask.text and BASE_MODEL in ask.text
    else:
        assert 'runs locally at no cost' in ask.text
    assert 'Start training?' in ask.text

    # 3. Confirm: the job starts and its progress message is edited in place while it runs.
    start = await bot.press('start')
    [started] = [s for s in since(adapter, start, 'text') if s.text.startswith('Training started: job')]
    job_id = started.text.split()[3]
    assert f'on {provider.name} with 16 examples' in started.text
    [progress] = [s for s in since(adapter, start, 'text') if s.text == f'Training job {job_id} is running…']
    step = 'running: Step' if provider.name == 'openai' else 'running: learning curve 1/5'
    await until(
        lambda: any(s.kind == 'edit' and s.message_id == progress.message_id and step in s.text for s in adapter.sent),
        f'a progress edit containing {step!r}',
    )
    conv = bot.running.engine.conversation(KEY)
    assert conv is not None and conv.state == 'wait'
    job = await bot.service.jobs.get(job_id)
    assert job.status == 'running' and not job.reported

    # 4. Restart while the job runs: the bot goes down, the job goes on (remotely) or is resumed (locally).
    await bot.shutdown()
    stopped_at = len(adapter.sent)
    provider.release()
    await bot.boot()
    restored = bot.running.engine.conversation(KEY)
    assert restored is not None and restored.state == 'wait'  # the same dialog, waiting on job:<id>
    await until(lambda: since(adapter, stopped_at, 'file'), 'the training report after the restart')
    await bot.service.jobs.wait(job_id)
    assert await bot.running.engine.wait_idle(DEADLINE)

    after = since(adapter, stopped_at)
    reports = [s for s in after if s.kind != 'edit']
    assert len(reports) == 1, [s.text for s in reports]  # exactly once, nothing else sent anew
    [report] = reports
    assert report.key == KEY and report.kind == 'file'
    assert report.path is not None and report.path.suffix == '.png'
    assert report.path.read_bytes().startswith(b'\x89PNG')
    job = await bot.service.jobs.get(job_id)
    assert job.status == 'succeeded' and job.reported
    assert job.model_id is not None
    assert report.text.startswith(f'Training job {job_id} finished: model {job.model_id}')
    if provider.name == 'openai':
        assert provider.server is not None
        assert job.model_id.startswith(f'ft:{BASE_MODEL}:org:flowbot:')
        assert provider.server.count('POST', '/v1/fine_tuning/jobs') == 1  # resumed, not started again
    else:
        assert job.model_id == 'local-1'  # the interrupted run's version, trained again from its saved data
    edits = [s for s in after if s.kind == 'edit']
    assert edits and all(s.message_id == progress.message_id for s in edits)  # the same progress message
    resumed = 'succeeded: Step' if provider.name == 'openai' else 'running: training local-1 again after a restart'
    assert any(resumed in s.text for s in edits), [s.text for s in edits]
    assert bot.running.engine.conversation(KEY) is None

    # Another restart delivers nothing again, and the new model stays the current one.
    await bot.shutdown()
    stopped_at = len(adapter.sent)
    await bot.boot()
    assert await bot.service.jobs.resume() == 0
    assert await bot.service.current_model() == job.model_id
    assert since(adapter, stopped_at) == []

    # 5. test with a JSON file: accuracy, per-label figures and a confusion matrix picture.
    start = await bot.command('test', attachments=[_test_file(tmp_path)])
    [tested] = since(adapter, start, 'file')
    assert tested.text.startswith('Test ') and f' of {job.model_id}: accuracy 100.0% on 4 examples.' in tested.text
    assert '- negative: precision 1.00, recall 1.00, f1 1.00 (n=2)' in tested.text
    assert '- positive: precision 1.00, recall 1.00, f1 1.00 (n=2)' in tested.text
    assert tested.path is not None and tested.path.name == 'confusion.png'
    assert tested.path.read_bytes().startswith(b'\x89PNG')
    if provider.name == 'openai':
        assert provider.server is not None
        predictions = [c for c in provider.server.chats if c.get('max_tokens')]
        assert len(predictions) == 4 and {c['model'] for c in predictions} == {job.model_id}

    # 6. A free message gets a reply from the new model.
    start = await bot.say('is this a good film?')
    [reply] = since(adapter, start, 'text')
    if provider.name == 'openai':
        assert provider.server is not None
        chat = provider.server.chats[-1]
        assert chat['model'] == job.model_id and not chat.get('max_tokens')
        assert chat['messages'][-1] == {'role': 'user', 'content': 'is this a good film?'}
        assert reply.text == f'{job.model_id} heard 2 messages'
    else:
        assert reply.text.startswith('[local model local-1] This looks like "positive"')


async def test_a_job_finished_while_the_bot_was_down_is_reported_once_the_channel_connects(
    tmp_path: pathlib.Path, data_root: pathlib.Path, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_openai.lifecycle = ['running']
    fake_openai.final = 'running'
    bot = Bot(bot_config(tmp_path, data_root, openai_settings(fake_openai, delivery_grace=30)), console_recorder())
    adapter = bot.adapter
    await bot.boot()
    try:
        await bot.command('select_dataset', 'reviews/pos')
        await bot.command('select_dataset', 'reviews/neg label=negative add=true')
        await bot.command('train')
        start = await bot.press('start')
        [started] = [s for s in since(adapter, start, 'text') if s.text.startswith('Training started: job')]
        job_id = started.text.split()[3]
        await until(lambda: since(adapter, start, 'edit'), 'a progress edit')
        await bot.shutdown()
        fake_openai.final = 'succeeded'  # it finishes while the bot is down

        stopped_at = len(adapter.sent)
        app = await bot.boot(connect=False)  # the channel is slow to connect
        attempts: list[int] = []
        notify = app.engine.notify

        async def counted(topic: str, payload: Any = None) -> int:
            attempts.append(await notify(topic, payload))
            return attempts[-1]

        monkeypatch.setattr(app.engine, 'notify', counted)
        await until(lambda: attempts, 'a delivery attempt before the channel connects')
        assert attempts[0] == 0  # nobody can hear it yet, so the job manager keeps it
        assert app.engine.conversation(KEY) is not None

        app.engine.add_adapter(adapter)
        await until(lambda: since(adapter, stopped_at, 'file'), 'the report once the channel is there')
        await bot.service.jobs.wait(job_id)
        assert await app.engine.wait_idle(DEADLINE)
        [report] = [s for s in since(adapter, stopped_at) if s.kind != 'edit']
        assert report.key == KEY and report.text.startswith(f'Training job {job_id} finished: model ft:')
        assert attempts[-1] == 1
        assert (await bot.service.jobs.get(job_id)).reported
    finally:
        await bot.shutdown()
