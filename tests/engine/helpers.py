"""A harness around an app for engine tests, talking through :class:`engine.doubles.RecordingAdapter`.

Apps are built by ``engine.app.build_app``, as the bot builds them, with the test's own actions added
before the flows are loaded.
"""

from __future__ import annotations

import pathlib
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from engine.api import (
    Attachment,
    ChoicePress,
    Command,
    ConversationKey,
    Message,
    User,
)
from engine.app import App, build_app
from engine.commands import UsageError
from engine.config import BotConfig, Config, PermissionGroup
from engine.conversation import Conversation
from engine.doubles import RecordingAdapter
from engine.runtime import Engine
from engine.states.actions import ActionFn
from engine.store import MemoryStore, Store

__all__ = ['KEY', 'USER', 'Harness', 'build_harness', 'make_config', 'write_flows']

KEY = ConversationKey('test', 'chan', 'u1')
USER = User(id='u1', name='Ann')


def write_flows(folder: pathlib.Path, flows: Mapping[str, str]) -> pathlib.Path:
    """Write ``{file stem: TOML}`` into ``folder`` (dedented) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem, text in flows.items():
        (folder / f'{stem}.toml').write_text(textwrap.dedent(text).lstrip(), encoding='utf-8')
    return folder


@attrs.define
class Harness:
    """An app with a recording adapter, and shortcuts to talk to it as one user."""

    app: App
    adapter: RecordingAdapter
    key: ConversationKey = KEY
    user: User = USER

    @property
    def engine(self) -> Engine:
        return self.app.engine

    async def command(self, name: str, args: str = '', *, key: ConversationKey | None = None, **kw: Any) -> None:
        key = key or self.key
        try:  # typed as an adapter types a prefix command
            options = self.engine.options(name, args, key, kw.get('attachments', ()), kw.get('locale'))
        except UsageError as exc:
            await self.adapter.send_text(key, str(exc))
            return
        command = Command(key=key, user=kw.pop('user', self.user), name=name, options=options, **kw)
        await self.engine.dispatch(command)
        await self.engine.wait_idle(5)

    async def say(
        self,
        text: str,
        *,
        key: ConversationKey | None = None,
        attachments: Sequence[Attachment] = (),
        **kw: Any,
    ) -> None:
        key = key or self.key
        event = Message(key=key, user=kw.pop('user', self.user), text=text, attachments=attachments, **kw)
        await self.engine.dispatch(event)
        await self.engine.wait_idle(5)

    async def press(self, value: str, *, key: ConversationKey | None = None) -> None:
        await self.engine.dispatch(ChoicePress(key=key or self.key, user=self.user, value=value))
        await self.engine.wait_idle(5)

    def texts(self, key: ConversationKey | None = None) -> list[str]:
        return self.adapter.texts(key or self.key)

    @property
    def last(self) -> str:
        return self.texts()[-1]

    def live(self, key: ConversationKey | None = None) -> bool:
        return self.engine.conversation(key or self.key) is not None

    def conversation(self, key: ConversationKey | None = None) -> Conversation:
        """The live conversation (the test fails if there is none)."""
        conv = self.engine.conversation(key or self.key)
        assert conv is not None, f'no live conversation for {key or self.key}'
        return conv

    async def stop(self) -> None:
        await self.app.stop()


def make_config(tmp_path: pathlib.Path, flows: pathlib.Path, **bot: Any) -> Config:
    permissions = bot.pop('permissions', {'admins': PermissionGroup(users=['boss'], roles=['r-admin'])})
    return Config(
        bot=BotConfig(flows=[flows], data_root=tmp_path / 'data', store=':memory:', reload=False, **bot),
        permissions=permissions,
    )


async def build_harness(
    tmp_path: pathlib.Path,
    flows: Mapping[str, str] | None = None,
    *,
    actions: Mapping[str, ActionFn] | None = None,
    store: Store | None = None,
    adapter: RecordingAdapter | None = None,
    folder: pathlib.Path | None = None,
    plugins: Sequence[str] = ('integrations.builtin',),
    start: bool = True,
    connect: bool = True,
    **bot: Any,
) -> Harness:
    """An app over ``flows`` (written into ``tmp_path/flows`` unless ``folder`` is given), started.

    :param connect: register the adapter before starting; ``False`` leaves that to the test (as a
        channel that connects only after the engine restored its conversations).
    """
    folder = folder or write_flows(tmp_path / 'flows', flows or {})
    config = make_config(tmp_path, folder, **bot)
    app = build_app(config, store=store or MemoryStore(), plugins=plugins, actions=actions)
    app.engine.progress_interval = 0.0
    adapter = adapter or RecordingAdapter()
    if connect:
        app.engine.add_adapter(adapter)
    if start:
        await app.start()
    return Harness(app=app, adapter=adapter)
