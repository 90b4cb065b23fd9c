"""The hostile-input corpus: a bot's world with things worth stealing, and the checks every input must pass.

Every test here feeds one hostile input (a path, a link, an upload, an audio file, a flow edit, a
config value, a secret, a chat message) and asserts, through :func:`assert_safe`: a clear message,
no traceback, nothing from outside the data root, no secret, and bounded time and memory.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import sqlite3
import tempfile
import time
import tracemalloc
import zipfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import attrs
import pytest

from engine.api import ConversationKey, User
from engine.config import Config, load_config
from engine.doubles import RecordingAdapter
from engine.plugins import SetupContext
from engine.states.actions import ActionContext, ActionRegistry
from engine.store import MemoryStore

SECRET = 'sk-hostile0corpus0SECRET0d6c1f0a9b7e5d3c1f2a4b6c8d0e'
"""Planted in the API key file, the environment and the config; must never appear in any output."""
OUTSIDE = 'OUTSIDE-THE-DATA-ROOT-9f2c'
"""The content of a file outside the data root; must never be read, sent or packed."""
STORE_MARK = 'STORE-ROW-FEEDBACK-51ab'
"""A row in the store (and so in its -wal); must never leave."""

MAX_SECONDS = 5.0
MAX_MEGABYTES = 128


@attrs.define
class World:
    """A configured bot's folders: data root, store with a live -wal, secrets and an outside folder."""

    base: pathlib.Path
    root: pathlib.Path
    outside: pathlib.Path
    store: pathlib.Path
    secret_file: pathlib.Path
    config: Config
    db: sqlite3.Connection
    sockets: list[Any] = attrs.field(factory=list)

    def output_ok(self, text: str) -> None:
        assert_safe(text)


def assert_safe(text: Any) -> None:
    """A message fit for a user: short, no traceback, no secret, nothing from outside the data root."""
    text = str(text)
    assert text.strip(), 'an empty message explains nothing'
    assert len(text) <= 4_000, f'a {len(text)}-character message'
    for bad in ('Traceback', 'File "/', SECRET, OUTSIDE, STORE_MARK, 'ExceptionGroup', 'object at 0x'):
        assert bad not in text, f'{bad!r} in {text[:300]!r}'


@contextlib.contextmanager
def bounded(seconds: float = MAX_SECONDS, megabytes: float | None = MAX_MEGABYTES) -> Iterator[None]:
    """Fail if the block takes longer than ``seconds`` or allocates more than ``megabytes`` at its peak
    (``None``: time only; tracing allocations slows big inputs several times). Generous safety bounds
    on a shared machine, not speed goals: those are in ``benchmarks/``."""
    if megabytes is not None:
        tracemalloc.start()
    started = time.monotonic()
    try:
        yield
    finally:
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1] if megabytes is not None else 0
        tracemalloc.stop()
    assert elapsed < seconds, f'took {elapsed:.1f} s'
    if megabytes is not None:
        assert peak < megabytes * 1024 * 1024, f'peak {peak / 1024 / 1024:.0f} MiB'


def zip_bytes(path: pathlib.Path) -> bytes:
    """Every member of a ZIP, concatenated (to look for what must not be packed)."""
    with zipfile.ZipFile(path) as zf:
        return b''.join(zf.read(name) for name in zf.namelist())


@pytest.fixture
def world(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    base = tmp_path
    root = base / 'data'
    (root / 'sets' / 'ok').mkdir(parents=True)
    (root / 'sets' / 'ok' / 'a.txt').write_text('a fine example', encoding='utf-8')
    (root / 'keys').mkdir()
    secret_file = root / 'keys' / 'openai.txt'
    secret_file.write_text(SECRET, encoding='utf-8')
    outside = base / 'outside'
    outside.mkdir()
    (outside / 'loot.txt').write_text(OUTSIDE, encoding='utf-8')
    store = root / 'flowbot.sqlite3'
    db = sqlite3.connect(store)
    db.execute('PRAGMA journal_mode=WAL')
    db.execute('CREATE TABLE feedback (text TEXT)')
    db.execute('INSERT INTO feedback VALUES (?)', (STORE_MARK,))
    db.commit()
    assert store.with_name(store.name + '-wal').exists()
    (base / 'flows').mkdir()
    config_file = base / 'bot.toml'
    config_file.write_text(
        '[bot]\ndata_root = "data"\nstore = "data/flowbot.sqlite3"\nflows = ["flows"]\n'
        '[models]\nprovider = "local"\napi_key_file = "data/keys/openai.txt"\n',
        encoding='utf-8',
    )
    for name in ('OPENAI_API_KEY', 'OPENAI_API_KEY_FILE', 'FLOWBOT_DATA', 'FLOWBOT_STORE', 'FLOWBOT_CONFIG'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('DISCORD_TOKEN', SECRET)
    config = load_config(config_file)
    made = World(base, root, outside, store, secret_file, config, db)
    try:
        yield made
    finally:
        db.close()
        for sock in made.sockets:
            sock.close()


class Models:
    """The models plugin over the world's config, called like a flow calls its actions."""

    def __init__(self, world: World) -> None:
        from integrations.models import setup

        self.ctx = SetupContext(config=world.config, actions=ActionRegistry(), store=MemoryStore(), notifier=_Quiet())
        setup(self.ctx)
        self.service = self.ctx.services['models']

    async def call(self, name: str, /, attachments: Any = (), **args: Any) -> Any:
        action = self.ctx.actions.get(name)
        assert action is not None
        context = ActionContext(
            key=ConversationKey('console', 'local', 'eve'),
            user=User('eve'),
            adapter=RecordingAdapter(),
            data={},
            attachments=attachments,
        )
        return await action.fn(context, **args)

    async def stop(self) -> None:
        for hook in self.ctx.on_stop:
            await hook()


class _Quiet:
    async def notify(self, topic: str, payload: Any = None) -> int:
        return 0

    async def progress(self, topic: str, text: str) -> None:
        return None


@pytest.fixture
async def models(world: World) -> AsyncIterator[Models]:
    plugin = Models(world)
    yield plugin
    await plugin.stop()


TRAPS = [
    'etc-passwd',
    'proc-environ',
    'dev-zero',
    'dev-urandom',
    'outside-file',
    'outside-folder',
    'store',
    'store-wal',
    'store-shm',
    'secret',
    'config',
    'dangling',
    'loop',
    'relative-out',
    'store-hardlink',
    'secret-hardlink',
    'fifo',
    'hidden-env',
    'store-direct',
    'secret-direct',
    'pid-file',
    'socket',
    'chained-link',
]
"""Links and special files a hostile user or a careless admin leaves under the data root."""


def make_trap(world: World, name: str, folder: pathlib.Path) -> pathlib.Path:
    """Create the trap ``name`` in ``folder`` (under the data root); return its path, named ``*.txt``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f'{name}.txt'
    wal = world.store.with_name(world.store.name + '-wal')
    links: dict[str, pathlib.Path | str] = {
        'etc-passwd': '/etc/passwd',
        'proc-environ': '/proc/self/environ',
        'dev-zero': '/dev/zero',
        'dev-urandom': '/dev/urandom',
        'outside-file': world.outside / 'loot.txt',
        'outside-folder': world.outside,
        'store': world.store,
        'store-wal': wal,
        'store-shm': world.store.with_name(world.store.name + '-shm'),
        'secret': world.secret_file,
        'config': world.base / 'bot.toml',
        'dangling': world.root / 'nothing-here',
        'relative-out': os.path.relpath(world.outside / 'loot.txt', folder),
    }
    if name in links:
        os.symlink(links[name], path)
    elif name == 'loop':
        os.symlink(folder / 'loop-b.txt', path)
        os.symlink(path, folder / 'loop-b.txt')
    elif name == 'store-hardlink':
        os.link(world.store, path)
    elif name == 'secret-hardlink':
        os.link(world.secret_file, path)
    elif name == 'fifo':
        os.mkfifo(path)
    elif name == 'hidden-env':
        path = folder / '.env.txt'
        path.write_text(f'TOKEN={SECRET}\n', encoding='utf-8')
    elif name == 'store-direct':
        return world.store
    elif name == 'secret-direct':
        return world.secret_file
    elif name == 'pid-file':
        path = world.root / 'flowbot.pid'
        path.write_text('{"pid": 1}', encoding='utf-8')
    elif name == 'socket':
        import socket

        sock = socket.socket(socket.AF_UNIX)
        short = pathlib.Path(tempfile.mkdtemp(dir='/tmp')) / 's'  # AF_UNIX paths are short
        sock.bind(str(short))
        os.symlink(short, path)
        world.sockets.append(sock)
    elif name == 'chained-link':
        os.symlink(world.outside / 'loot.txt', folder / 'hop.lnk')
        os.symlink(folder / 'hop.lnk', path)
    else:  # pragma: no cover
        raise KeyError(name)
    return path
