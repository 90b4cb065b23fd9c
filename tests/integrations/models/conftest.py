"""Fixtures for the models tests: a data root with text folders, the plugin over a store, the fake OpenAI."""

from __future__ import annotations

import pathlib
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import pytest

from engine.api import Attachment, ConversationKey, User
from engine.config import BotConfig, Config
from engine.doubles import RecordingAdapter
from engine.plugins import SetupContext
from engine.states.actions import ActionContext, ActionError, ActionRegistry
from engine.store import MemoryStore, Store

from .fake_openai import KEY, FakeOpenAI

KEY_CONV = ConversationKey('console', 'local', 'admin')


class RecordingNotifier:
    """Stands in for the engine: records notifications; ``waiting`` says how many conversations listen."""

    def __init__(self, waiting: int = 1) -> None:
        self.waiting = waiting
        self.notified: list[tuple[str, dict[str, Any]]] = []
        self.progressed: list[tuple[str, str]] = []
        self.posted: list[tuple[dict[str, Any], str, str | None]] = []
        self.connected = True

    async def notify(self, topic: str, payload: Mapping[str, Any] | None = None) -> int:
        self.notified.append((topic, dict(payload or {})))
        return self.waiting

    async def progress(self, topic: str, text: str) -> list[str]:
        self.progressed.append((topic, text))
        return []

    def owns(self, place: Mapping[str, Any]) -> bool:
        return True

    async def post(
        self, place: Mapping[str, Any], text: str, *, files: Sequence[str] = (), edit: str | None = None
    ) -> str | None:
        """Records what went to the channel; ``None`` (not connected) when ``connected`` is false."""
        self.posted.append((dict(place), text, edit))
        return f'm{len(self.posted)}' if self.connected else None


class Plugin:
    """One plugin instance (as after one start of the bot) and a way to call its actions."""

    def __init__(self, ctx: SetupContext, notifier: RecordingNotifier) -> None:
        self.ctx = ctx
        self.notifier = notifier
        self.service = ctx.services['models']

    async def call(self, action_name: str, /, attachments: Sequence[Attachment] = (), **args: Any) -> Any:
        action = self.ctx.actions.get(action_name)
        assert action is not None, action_name
        context = ActionContext(
            key=KEY_CONV, user=User('admin'), adapter=RecordingAdapter(), data={}, attachments=attachments
        )
        return await action.fn(context, **args)

    async def start(self) -> None:
        for hook in self.ctx.on_start:
            await hook()

    async def stop(self) -> None:
        for hook in self.ctx.on_stop:
            await hook()


MakePlugin = Callable[..., Plugin]


async def assert_training_refused(plugin: Plugin, reason: str) -> None:
    """The estimate calls the selected dataset not valid because of ``reason``, and training refuses with it."""
    estimate = await plugin.call('model.estimate')
    assert estimate['valid'] is False
    assert reason in estimate['text']
    with pytest.raises(ActionError, match=re.escape(reason)):
        await plugin.call('model.train')


@pytest.fixture
def data_root(tmp_path: pathlib.Path) -> pathlib.Path:
    """A data root with two labelled folders of short reviews."""
    root = tmp_path / 'data'
    good = ['good film', 'really good acting', 'good story and good music', 'a good ending', 'good fun', 'so good']
    bad = ['bad film', 'boring and bad', 'terrible acting', 'bad story', 'awful music', 'bad ending, very bad']
    for folder, texts in (('reviews/pos', good * 2), ('reviews/neg', bad * 2)):
        (root / folder).mkdir(parents=True)
        for i, text in enumerate(texts):
            (root / folder / f'{i:03}.txt').write_text(f'{text} #{i}', encoding='utf-8')
    return root


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def make_plugin(data_root: pathlib.Path) -> AsyncIterator[MakePlugin]:
    """Build plugin instances; each is stopped at the end of the test."""
    from integrations.models import setup

    made: list[Plugin] = []

    def build(store: Store | None = None, notifier: RecordingNotifier | None = None, **models: Any) -> Plugin:
        config = Config(bot=BotConfig(data_root=data_root, store=':memory:'), sections={'models': models})
        notifier = notifier or RecordingNotifier()
        ctx = SetupContext(config=config, actions=ActionRegistry(), store=store or MemoryStore(), notifier=notifier)
        setup(ctx)
        plugin = Plugin(ctx, notifier)
        made.append(plugin)
        return plugin

    yield build
    for plugin in made:
        await plugin.stop()


def openai_settings(server: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    """``[models]`` for the fake server: fast polling, few quick retries."""
    return {
        'provider': 'openai',
        'api_key': KEY,
        'base_url': server.url,
        'poll_interval': 0.05,
        'max_poll_interval': 0.2,
        'timeout': 2.0,
        'max_retries': 2,
        'delivery_grace': 1.0,
        **extra,
    }


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's real key must never reach a test."""
    for name in ('OPENAI_API_KEY', 'OPENAI_API_KEY_FILE', 'OPENAI_BASE_URL'):
        monkeypatch.delenv(name, raising=False)
