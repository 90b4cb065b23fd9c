"""Compilation: one AsyncMachine per flow version, no auto transitions, no conversations inside machines."""

from __future__ import annotations

import asyncio
import pathlib

import attrs
import pytest
from transitions.extensions.asyncio import AsyncMachine

from engine.api import ConversationKey
from engine.flows.compile import END, CompiledFlow, compile_flow, version_id
from engine.flows.library import FlowLibrary
from engine.flows.loader import FlowError, load_text
from engine.states.actions import ActionRegistry
from engine.store import MemoryStore
from engine.templates import TemplateError
from tests.engine.conftest import HarnessFactory
from tests.engine.helpers import build_harness, make_config, write_flows

FORM = """
[flow]
name = "form"
version = "2"
[trigger]
command = "form"
[states.first]
kind = "ask"
prompt = "First?"
save_as = "first"
[states.second]
kind = "ask"
prompt = "Second?"
save_as = "second"
[states.done]
kind = "end"
text = "{{ first }} {{ second }}"
"""


def test_machine_has_every_state_plus_end_and_no_auto_transitions() -> None:
    compiled = compile_flow(load_text(FORM))
    machine = compiled.machine
    assert isinstance(machine, AsyncMachine)
    assert machine.auto_transitions is False
    assert set(machine.states) == {'first', 'second', 'done', END}
    assert not [name for name in machine.events if name.startswith('to_')]
    assert machine.models == []
    assert compiled.asks == ('first', 'second')
    assert compiled.version == version_id(compiled.flow)
    assert compiled.version.startswith('2-')


def test_same_source_shares_one_machine_and_an_edit_is_a_new_version(tmp_path: pathlib.Path) -> None:
    library = FlowLibrary(ActionRegistry(), [])
    first = load_text(FORM, 'a.toml')
    library.activate([first])
    machine = library.get('form')
    assert machine is not None
    library.activate([load_text(FORM, 'a.toml')])
    assert library.get('form') is machine
    edited = load_text(FORM.replace('First?', 'Your first?'), 'a.toml')
    library.activate([edited])
    newer = library.get('form')
    assert newer is not None and newer is not machine
    assert newer.machine is not machine.machine
    assert newer.version != machine.version
    assert library.get('form', machine.version) is machine  # old version kept for running conversations
    assert library.command('form') is newer


async def test_machine_models_stay_empty_while_100_conversations_run(engine_harness: HarnessFactory) -> None:
    harness = await engine_harness({'form': FORM})
    compiled = harness.engine.library.get('form')
    assert compiled is not None
    keys = [ConversationKey('test', 'c', f'user{i}') for i in range(100)]
    await asyncio.gather(*(harness.command('form', key=key) for key in keys))
    await asyncio.gather(*(harness.say(f'a{i}', key=key) for i, key in enumerate(keys)))
    assert harness.engine.live_count() == 100
    assert all(harness.engine.conversation(key).state == 'second' for key in keys)  # type: ignore[union-attr]
    assert compiled.machine.models == []
    await asyncio.gather(*(harness.say(f'b{i}', key=key) for i, key in enumerate(keys)))
    assert harness.engine.live_count() == 0
    assert harness.adapter.texts(keys[42])[-1] == 'a42 b42'
    assert compiled.machine.models == []


async def test_invalid_flow_is_refused_with_the_lint_messages(tmp_path: pathlib.Path) -> None:
    folder = write_flows(
        tmp_path / 'flows', {'bad': FORM.replace('save_as = "second"', 'save_as = "second"\nnext = "nowhere"')}
    )
    with pytest.raises(FlowError) as caught:
        await build_harness(tmp_path, folder=folder)
    (problem,) = caught.value.diagnostics
    assert problem.code == 'unknown-state'
    assert problem.message == 'state "second" goes to unknown state "nowhere"'
    from engine.flows.loader import load_paths

    flows, _ = load_paths([folder])
    assert FlowLibrary(ActionRegistry(), []).check(flows) == [problem]


def test_build_app_refuses_a_flow_naming_a_python_function(tmp_path: pathlib.Path) -> None:
    from engine.app import build_app

    evil = (
        '[flow]\nname = "evil"\n[trigger]\ncommand = "evil"\n'
        '[states.run]\nkind = "call"\naction = "os.system"\nargs = { command = "true" }\n'
    )
    folder = write_flows(tmp_path / 'flows', {'evil': evil})
    config = make_config(tmp_path, folder)
    with pytest.raises(FlowError, match=r'unknown action "os.system" \[unknown-action\]'):
        build_app(config, store=MemoryStore(), plugins=[])


async def test_an_unregistered_action_in_an_unvalidated_flow_fails_cleanly_at_run_time(
    tmp_path: pathlib.Path,
) -> None:
    harness = await build_harness(
        tmp_path, {'hi': '[flow]\nname = "hi"\n[trigger]\ncommand = "hi"\n[states.a]\nkind = "end"\n'}
    )
    evil = load_text(
        '[flow]\nname = "evil"\n[trigger]\ncommand = "evil"\n[states.run]\nkind = "call"\naction = "os.system"\n'
    )
    harness.engine.library.activate([evil])  # bypasses validation on purpose
    await harness.command('evil')
    assert harness.texts() == ['Something went wrong: the action "os.system" is not available']
    assert not harness.live()
    await harness.stop()


async def test_callbacks_and_conditions_still_run_when_empty_lists_are_skipped() -> None:
    compiled = compile_flow(load_text(FORM))
    calls: list[str] = []

    async def entered(event_data: object) -> None:
        await asyncio.sleep(0)
        calls.append('enter second')

    compiled.machine.get_state('second').add_callback('enter', entered)
    compiled.machine.before_state_change = [lambda event_data: calls.append('before')]
    compiled = attrs.evolve(compiled)  # machines are not changed after compiling: plan this one anew

    class Conv:
        state = 'first'

        def context(self) -> dict[str, object]:
            return {}

    conv = Conv()
    assert await compiled.fire(conv, 'next') is True
    assert conv.state == 'second'
    assert calls == ['before', 'enter second']
    assert await compiled.machine.await_all([]) == []


class _Conv:
    """A model for firing machines directly: a state and a context."""

    def __init__(self, state: str, data: dict[str, object] | None = None) -> None:
        self.state = state
        self.data = data or {}

    def context(self) -> dict[str, object]:
        return self.data


async def _by_machine(compiled: CompiledFlow, state: str, trigger: str, data: dict[str, object]) -> tuple[bool, str]:
    conv = _Conv(state, data)
    fired = bool(await compiled.machine.events[trigger].trigger(conv))
    return fired, conv.state


async def _by_fire(compiled: CompiledFlow, state: str, trigger: str, data: dict[str, object]) -> tuple[bool, str]:
    conv = _Conv(state, data)
    return await compiled.fire(conv, trigger), conv.state


async def test_fire_moves_every_shipped_flow_exactly_as_its_machine_does() -> None:
    from engine.flows.loader import load_paths
    from engine.shipped import shipped_flows

    flows, _ = load_paths([shipped_flows()])
    checked = 0
    for flow in flows:
        compiled = compile_flow(flow)
        for state in [*flow.states, END]:
            for trigger in compiled.machine.events:
                conditional = any(t.conditions for t, _ in compiled.plan.get((state, trigger), ()))
                if conditional:
                    continue  # conditions read data: covered with chosen data below
                expected = await _by_machine(compiled, state, trigger, {})
                assert await _by_fire(compiled, state, trigger, {}) == expected, (flow.name, state, trigger)
                checked += 1
    assert checked > 500


BRANCHES = """
[flow]
name = "branches"
[trigger]
command = "branches"
[states.pick]
kind = "choice"
when = [{ if = "n > 10", goto = "big" }, { if = "n > 5", goto = "middle" }]
[states.big]
kind = "end"
text = "big"
[states.middle]
kind = "end"
text = "middle"
"""


@pytest.mark.parametrize(('n', 'expected'), [(20, (True, 'big')), (7, (True, 'middle')), (1, (False, 'pick'))])
async def test_fire_takes_the_first_branch_whose_condition_holds_as_the_machine_does(
    n: int, expected: tuple[bool, str]
) -> None:
    compiled = compile_flow(load_text(BRANCHES))
    assert await _by_machine(compiled, 'pick', 'decide', {'n': n}) == expected
    assert await _by_fire(compiled, 'pick', 'decide', {'n': n}) == expected


async def test_fire_raises_a_failing_condition_as_the_machine_does() -> None:
    compiled = compile_flow(load_text(BRANCHES))
    for fire in (_by_machine, _by_fire):
        with pytest.raises(TemplateError, match='n > 10'):
            await fire(compiled, 'pick', 'decide', {'n': 'many'})


def test_a_machine_with_callbacks_is_left_to_fire_its_own_transitions() -> None:
    compiled = compile_flow(load_text(FORM))
    assert compiled.plan[('first', 'next')][0][1] == 'second'
    compiled.machine.get_state('second').add_callback('enter', lambda event_data: None)
    assert ('first', 'next') not in attrs.evolve(compiled).plan
    assert ('second', 'next') in attrs.evolve(compiled).plan
    compiled.machine.after_state_change = [lambda event_data: None]
    assert attrs.evolve(compiled).plan == {}


async def test_fire_of_a_trigger_the_flow_does_not_have_fails_as_the_machine_does() -> None:
    compiled = compile_flow(load_text(FORM))
    assert await _by_fire(compiled, 'done', 'fail', {}) == await _by_machine(compiled, 'done', 'fail', {})
    with pytest.raises(KeyError):
        await compiled.fire(_Conv('first'), 'no_such_trigger')
