"""``engine.app.build_app`` is the one wiring (config → store → actions → plugins → library → engine)."""

from __future__ import annotations

import ast
import gc
import pathlib
from typing import Any

import pytest

from engine.app import SERVING_GC_THRESHOLD, build_app, tune_collector
from engine.config import BotConfig, Config
from engine.flows.loader import FlowError
from engine.runtime import Engine
from engine.states.actions import ActionContext
from engine.store import MemoryStore
from tests.engine.helpers import write_flows

REPO = pathlib.Path(__file__).resolve().parents[2]
FLOW = """
[flow]
name = "fb"
[trigger]
command = "fb"
[states.save]
kind = "call"
action = "feedback.save"
args = { text = "hi" }
[states.done]
kind = "end"
text = "saved"
"""


def _config(tmp_path: pathlib.Path, flows: list[pathlib.Path]) -> Config:
    return Config(bot=BotConfig(flows=flows, data_root=tmp_path / 'data', store=':memory:', reload=False))


def test_nothing_but_build_app_loads_plugins_or_makes_an_engine() -> None:
    found = []
    for path in sorted(REPO.glob('[!.]*/**/*.py')):
        if '.venv' in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
            name = node.func.id if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) else None
            if name in ('load_plugins', 'Engine'):
                found.append(f'{path.relative_to(REPO)}: {name}()')
    assert found == ['engine/app.py: load_plugins()']


def test_actions_given_replace_the_plugins_own_and_serve_the_flows(tmp_path: pathlib.Path) -> None:
    async def fake(ctx: ActionContext, **args: Any) -> None:
        return None

    folder = write_flows(tmp_path / 'flows', {'fb': FLOW})
    app = build_app(_config(tmp_path, [folder]), store=MemoryStore(), actions={'feedback.save': fake})
    action = app.engine.actions.get('feedback.save')
    assert action is not None and action.fn is fake
    assert app.engine.library.command('fb') is not None


def test_an_invalid_flow_stops_the_build_with_its_diagnostics(tmp_path: pathlib.Path) -> None:
    folder = write_flows(tmp_path / 'flows', {'fb': FLOW.replace('feedback.save', 'feedback.sav')})
    with pytest.raises(FlowError) as caught:
        build_app(_config(tmp_path, [folder]), store=MemoryStore())
    assert 'feedback.sav' in str(caught.value)


def test_without_loading_flows_the_library_is_empty_and_flow_folders_are_not_required(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _config(tmp_path, [tmp_path / 'missing'])
    config.sections = {'unread': {}}

    class Remembering(Engine):
        pass

    with caplog.at_level('WARNING', logger='engine.app'):
        app = build_app(config, store=MemoryStore(), engine_type=Remembering, load_flows=False)
    assert type(app.engine) is Remembering
    assert app.engine.library.active() == []
    assert 'feedback.save' in app.engine.actions  # the plugins are loaded all the same
    assert caplog.records == []  # lint and dialog scripts are not a bot that runs: no section warning


def test_a_serving_process_freezes_what_start_up_built_and_collects_young_objects_less_often() -> None:
    thresholds = gc.get_threshold()
    kept: list[object] = []  # built "at start-up": out of every generation the collector walks afterwards
    try:
        tune_collector()
        assert gc.get_threshold() == SERVING_GC_THRESHOLD
        assert gc.get_freeze_count() > 0
        assert not any(o is kept for o in gc.get_objects())
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
