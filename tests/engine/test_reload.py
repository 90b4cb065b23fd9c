"""Hot reload: edits to flow files reach new conversations, never running ones; bad edits are refused."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import shutil
import signal
from collections.abc import Callable

import pytest

from engine.api import Command, ConversationKey, Message
from engine.app import build_app
from engine.cli import main
from engine.config import BotConfig, Config, PermissionGroup
from engine.doubles import RecordingAdapter
from engine.reload import FlowReloader, pid_file, signal_reload
from engine.runtime import Engine
from engine.store import SQLiteStore
from tests.engine.conftest import HarnessFactory
from tests.engine.helpers import USER

POLL_V1 = """
[flow]
name = "poll"
version = "1"
[trigger]
command = "poll"
[states.question]
kind = "ask"
prompt = "Favourite colour?"
save_as = "colour"
[states.done]
kind = "end"
text = "v1 noted {{ colour }}"
"""
POLL_V2 = POLL_V1.replace('Favourite colour?', 'Colour, version two?').replace('v1 noted', 'v2 noted')
POLL_V3 = POLL_V1.replace('Favourite colour?', 'Colour, version three?').replace('v1 noted', 'v3 noted')
POLL_BROKEN = POLL_V1.replace(
    '[states.done]', '[states.question2]\nkind = "say"\ntext = "x"\nnext = "nowhere"\n[states.done]'
)
HELLO = '[flow]\nname = "hello"\n[trigger]\ncommand = "hello"\n[states.a]\nkind = "end"\ntext = "hello v1"\n'
OUTER = """
[flow]
name = "outer"
[trigger]
command = "outer"
[states.inner]
kind = "flow"
flow = "poll"
[states.done]
kind = "end"
text = "outer done"
"""

ANN = ConversationKey('test', 'chan', 'ann')
BOB = ConversationKey('test', 'chan', 'bob')
CAT = ConversationKey('test', 'chan', 'cat')


def _write(folder: pathlib.Path, stem: str, text: str) -> None:
    (folder / f'{stem}.toml').write_text(text.lstrip(), encoding='utf-8')


async def _command(engine: Engine, key: ConversationKey, name: str) -> None:
    await engine.dispatch(Command(key=key, user=USER, name=name))
    await engine.wait_idle(5)


async def _say(engine: Engine, key: ConversationKey, text: str) -> None:
    await engine.dispatch(Message(key=key, user=USER, text=text))
    await engine.wait_idle(5)


async def test_valid_edit_serves_new_conversations_while_a_running_one_finishes_on_its_version(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path
) -> None:
    h = await engine_harness({'poll': POLL_V1, 'hello': HELLO})
    folder = tmp_path / 'flows'
    reloader = FlowReloader(h.engine, [folder])
    changed: list[int] = []

    async def on_changed() -> None:
        changed.append(h.engine.library.generation)

    h.engine.on_flows_changed.append(on_changed)
    await _command(h.engine, ANN, 'poll')
    assert h.adapter.texts(ANN) == ['Favourite colour?']

    _write(folder, 'poll', POLL_V2)
    result = await reloader.reload()

    assert result.updated == ('poll',) and not result.added and not result.removed and not result.rejected
    assert len(changed) == 1
    await _command(h.engine, BOB, 'poll')
    assert h.adapter.texts(BOB) == ['Colour, version two?']
    await _say(h.engine, ANN, 'red')
    await _say(h.engine, BOB, 'blue')
    assert h.adapter.texts(ANN)[-1] == 'v1 noted red'
    assert h.adapter.texts(BOB)[-1] == 'v2 noted blue'
    stored = {version for name, version in (await h.engine.store.flow_versions()) if name == 'poll'}
    active = h.engine.library.get('poll')
    assert active is not None and active.version in stored
    assert len(stored) == 2, 'both the first and the reloaded version are kept in the store'
    assert (await reloader.reload()).changed is False
    assert len(changed) == 1, 'a reload without changes does not notify'


async def test_invalid_edit_is_rejected_with_lint_messages_and_the_old_version_keeps_serving(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path
) -> None:
    h = await engine_harness({'poll': POLL_V1, 'hello': HELLO})
    folder = tmp_path / 'flows'
    maintainers = RecordingAdapter('ops')
    h.engine.add_adapter(maintainers)
    reloader = FlowReloader(h.engine, [folder], maintainers_channel='ops:flow-edits')
    changed: list[bool] = []

    async def on_changed() -> None:
        changed.append(True)

    h.engine.on_flows_changed.append(on_changed)
    _write(folder, 'poll', POLL_BROKEN)
    _write(folder, 'hello', HELLO + 'text = "duplicate key"\n')

    result = await reloader.reload()

    assert not result.changed and changed == []
    messages = [str(d) for d in result.rejected]
    assert any('poll.toml:' in m and 'unknown state "nowhere"' in m and '[unknown-state]' in m for m in messages)
    assert any('hello.toml:' in m and '[toml]' in m for m in messages)
    await _command(h.engine, ANN, 'poll')
    assert h.adapter.texts(ANN) == ['Favourite colour?']
    await _command(h.engine, BOB, 'hello')
    assert h.adapter.texts(BOB) == ['hello v1']
    [posted] = maintainers.sent
    assert posted.key == ConversationKey('ops', 'flow-edits', 'maintainers')
    assert posted.text.startswith('Flow edit rejected; the previous version keeps serving.')
    assert 'unknown state "nowhere"' in posted.text
    await reloader.reload()
    assert len(maintainers.sent) == 1, 'the same rejection is posted once, not on every reload'


async def test_a_good_edit_is_applied_next_to_a_rejected_one(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path
) -> None:
    h = await engine_harness({'poll': POLL_V1, 'hello': HELLO})
    folder = tmp_path / 'flows'
    _write(folder, 'poll', POLL_BROKEN)
    _write(folder, 'hello', HELLO.replace('hello v1', 'hello v2'))

    result = await FlowReloader(h.engine, [folder]).reload()

    assert result.updated == ('hello',)
    assert {d.file for d in result.rejected} == {str(folder / 'poll.toml')}
    await _command(h.engine, ANN, 'hello')
    await _command(h.engine, BOB, 'poll')
    assert h.adapter.texts(ANN) == ['hello v2']
    assert h.adapter.texts(BOB) == ['Favourite colour?']


async def test_removed_flow_takes_no_new_conversations_but_a_running_one_finishes(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path
) -> None:
    h = await engine_harness({'poll': POLL_V1, 'hello': HELLO})
    folder = tmp_path / 'flows'
    await _command(h.engine, ANN, 'poll')
    (folder / 'poll.toml').unlink()

    result = await FlowReloader(h.engine, [folder]).reload()

    assert result.removed == ('poll',)
    await _command(h.engine, BOB, 'poll')
    assert h.adapter.texts(BOB)[0].startswith('Unknown command "poll"')
    await _say(h.engine, ANN, 'green')
    assert h.adapter.texts(ANN)[-1] == 'v1 noted green'


async def test_removing_a_flow_another_one_still_uses_is_rejected_as_a_whole(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path
) -> None:
    h = await engine_harness({'poll': POLL_V1, 'outer': OUTER, 'hello': HELLO})
    folder = tmp_path / 'flows'
    (folder / 'poll.toml').unlink()
    _write(folder, 'hello', HELLO.replace('hello v1', 'hello v2'))

    result = await FlowReloader(h.engine, [folder]).reload()

    assert not result.changed
    assert any('unknown flow "poll"' in str(d) for d in result.rejected)
    assert h.engine.library.command('poll') is not None
    await _command(h.engine, ANN, 'hello')
    assert h.adapter.texts(ANN) == ['hello v1']


def _sqlite_config(tmp_path: pathlib.Path, folder: pathlib.Path, *, reload: bool = False) -> Config:
    return Config(
        bot=BotConfig(
            flows=[folder],
            data_root=tmp_path / 'data',
            store=str(tmp_path / 'data' / 'bot.sqlite3'),
            plugins=['integrations.builtin'],
            reload=reload,
        ),
        permissions={'admins': PermissionGroup()},
    )


async def test_versions_activated_by_reload_survive_a_restart(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / 'flows'
    folder.mkdir()
    _write(folder, 'poll', POLL_V1)
    config = _sqlite_config(tmp_path, folder)

    app = build_app(config)
    adapter = RecordingAdapter()
    app.engine.add_adapter(adapter)
    await app.start()
    await _command(app.engine, ANN, 'poll')  # on version 1
    _write(folder, 'poll', POLL_V2)
    assert (await FlowReloader(app.engine, [folder]).reload()).updated == ('poll',)
    await _command(app.engine, BOB, 'poll')  # on version 2, which is only known through the reload
    await app.stop()

    _write(folder, 'poll', POLL_V3)  # edited while the bot is down
    app = build_app(config)
    adapter = RecordingAdapter()
    app.engine.add_adapter(adapter)
    await app.start()
    try:
        await _say(app.engine, ANN, 'red')
        await _say(app.engine, BOB, 'blue')
        await _command(app.engine, CAT, 'poll')
        assert adapter.texts(ANN) == ['v1 noted red']
        assert adapter.texts(BOB) == ['v2 noted blue']
        assert adapter.texts(CAT) == ['Colour, version three?']
    finally:
        await app.stop()
    store = SQLiteStore(config.bot.store)
    assert len([v for name, v in (await store.flow_versions()) if name == 'poll']) == 3
    await store.close()


def _active_source(engine: Engine, name: str) -> str:
    compiled = engine.library.get(name)
    return compiled.flow.source if compiled else ''


async def _until(condition: Callable[[], bool], seconds: float = 15.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError('condition not reached in time')


async def test_running_app_watches_the_flow_folder_and_takes_sighup(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / 'flows'
    folder.mkdir()
    _write(folder, 'poll', POLL_V1)
    config = _sqlite_config(tmp_path, folder, reload=True)
    app = build_app(config)
    adapter = RecordingAdapter()
    app.engine.add_adapter(adapter)
    await app.start()
    try:
        reloader = app.reloader
        assert reloader is not None
        await asyncio.sleep(0.3)  # let the watcher arm before editing
        _write(folder, 'poll', POLL_V2)
        await _until(lambda: 'version two' in _active_source(app.engine, 'poll'))
        await _command(app.engine, ANN, 'poll')
        assert adapter.texts(ANN) == ['Colour, version two?']

        info = json.loads(pid_file(config).read_text())
        assert info['pid'] == os.getpid()
        if not reloader.handles_sighup:
            pytest.skip('SIGHUP cannot be handled on this platform/loop')
        (folder / 'tests').mkdir()
        _write(folder / 'tests', 'ignored', 'not a flow')  # scripts next to flows are not flows
        before = reloader.reloads
        assert signal_reload(config) == os.getpid()
        await _until(lambda: reloader.reloads > before)
        assert app.engine.library.command('poll') is not None
        os.kill(os.getpid(), signal.SIGHUP)
        await _until(lambda: reloader.reloads > before + 1)
    finally:
        await app.stop()
    assert not pid_file(config).exists(), 'the pid file is removed on stop'


def _save_like_an_editor(path: pathlib.Path, text: str) -> None:
    """Write a new file and rename it over ``path`` (vim, VS Code, ``sed -i``): ``path`` gets a new inode."""
    partial = path.with_name(f'.{path.name}.swp')
    partial.write_text(text.lstrip(), encoding='utf-8')
    os.replace(partial, path)


@pytest.mark.parametrize('how', ['file saved by an editor', 'folder replaced', 'folder created later'])
async def test_the_watch_goes_on_after_a_watched_path_is_replaced(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path, how: str
) -> None:
    h = await engine_harness({'poll': POLL_V1})
    folder = tmp_path / 'flows'
    if how == 'folder created later':
        shutil.rmtree(folder)  # the harness's copy; the engine has loaded it
    file = folder / 'poll.toml'
    reloader = FlowReloader(h.engine, [file if how == 'file saved by an editor' else folder], debounce_ms=50)
    await reloader.start()
    try:
        await asyncio.sleep(0.3)  # let the watcher arm before editing
        if how == 'file saved by an editor':
            _save_like_an_editor(file, POLL_V2)
            await _until(lambda: 'version two' in _active_source(h.engine, 'poll'))
        elif how == 'folder replaced':  # a deploy that copies the folder anew
            folder.rename(tmp_path / 'old-flows')
            folder.mkdir()
            _write(folder, 'poll', POLL_V2)
            await _until(lambda: 'version two' in _active_source(h.engine, 'poll'))
        else:
            folder.mkdir()
            _write(folder, 'poll', POLL_V2)
            await _until(lambda: 'version two' in _active_source(h.engine, 'poll'))
        await asyncio.sleep(0.3)
        _save_like_an_editor(file, POLL_V3)  # and the edits after it too
        await _until(lambda: 'version three' in _active_source(h.engine, 'poll'))
    finally:
        await reloader.stop()


def test_flowbot_reload_without_a_running_bot_says_so(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('FLOWBOT_CONFIG', raising=False)
    monkeypatch.delenv('FLOWBOT_DATA', raising=False)
    assert main(['reload']) == 1
    assert 'no running flowbot found' in capsys.readouterr().err
    (tmp_path / 'data').mkdir()
    (tmp_path / 'data' / 'flowbot.pid').write_text(json.dumps({'pid': 2**22 + 12345, 'started': None}))
    assert main(['reload']) == 1
    assert 'stale' in capsys.readouterr().err


@pytest.mark.parametrize('pid', [-1, 0, 1, True, 'x'])
def test_flowbot_reload_never_signals_every_process_or_init_from_a_damaged_pid_file(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], pid: object
) -> None:
    signalled: list[int] = []
    monkeypatch.setattr('engine.reload.os.kill', lambda target, _sig: signalled.append(target))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('FLOWBOT_CONFIG', raising=False)
    monkeypatch.delenv('FLOWBOT_DATA', raising=False)
    (tmp_path / 'data').mkdir()
    (tmp_path / 'data' / 'flowbot.pid').write_text(json.dumps({'pid': pid}))  # -1: kill(-1) is every process
    assert main(['reload']) == 1
    assert 'is not a flowbot pid file' in capsys.readouterr().err
    assert signalled == []


async def test_a_russian_bot_posts_the_rejected_edit_in_russian_from_the_lint_process(
    engine_harness: HarnessFactory, tmp_path: pathlib.Path
) -> None:
    """The lint runs in a child process, which inherits no language: the request carries the bot's."""
    from engine import i18n

    h = await engine_harness({'poll': POLL_V1})
    i18n.set_default('ru')  # what an engine with [bot] language = "ru" does at start
    maintainers = RecordingAdapter('ops')
    h.engine.add_adapter(maintainers)
    folder = tmp_path / 'flows'
    _write(folder, 'poll', POLL_BROKEN)

    await FlowReloader(h.engine, [folder], maintainers_channel='ops:flow-edits').reload()

    [posted] = maintainers.sent
    assert posted.text.startswith('Правка сценария отклонена; работает прежняя версия.')
    assert 'ведёт в неизвестное состояние «nowhere»' in posted.text


@pytest.mark.parametrize('pid', [2**31, 2**70])
def test_flowbot_reload_refuses_a_pid_too_big_for_the_system_instead_of_a_traceback(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], pid: int
) -> None:
    """os.kill takes a C int: a bigger pid was an OverflowError traceback out of flowbot reload."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('FLOWBOT_CONFIG', raising=False)
    monkeypatch.delenv('FLOWBOT_DATA', raising=False)
    (tmp_path / 'data').mkdir()
    (tmp_path / 'data' / 'flowbot.pid').write_text(json.dumps({'pid': pid}))
    assert main(['reload']) == 1
    assert 'is not a flowbot pid file' in capsys.readouterr().err
