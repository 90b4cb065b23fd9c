"""Compilation: one validated flow version becomes one ``transitions`` AsyncMachine.

Conversations are not attached to the machine (no ``add_model``: its model list makes that
O(live conversations) and costs kilobytes each). The runtime fires events with
``machine.events[name].trigger(conversation)``, the library's static-machine pattern, and
serialises each conversation's events itself. Callbacks are never strings, so transitions'
dotted-path resolution can never import anything named in a flow.

Our machines have no callbacks besides the conditions of ``choice`` states, so most of a trigger's
generic work (callback lists, logging, state objects' enter and exit) does nothing. :meth:`CompiledFlow.fire`
therefore takes the machine's own transitions for (state, trigger), checks their conditions with
transitions' :class:`~transitions.extensions.asyncio.AsyncCondition` and sets the state as the machine's
``set_state`` does; where the machine or those transitions have callbacks, it fires the event through the
machine. Both give the same result (``tests/engine/flows/test_compile.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

import attrs
from transitions import EventData
from transitions.extensions.asyncio import AsyncEvent, AsyncEventData, AsyncMachine, AsyncTransition

from engine.flows import model
from engine.states.handlers import handler_for
from engine.templates import compile_condition

if TYPE_CHECKING:
    from transitions.extensions.asyncio import AsyncCallbackFunc

__all__ = ['END', 'CompiledFlow', 'FlowMachine', 'Model', 'compile_flow', 'version_id']

END = model.END
"""The final state every flow has; reaching it ends the conversation (or returns from a sub-flow)."""


class Model(Protocol):
    """What a conversation must offer the machine: its state and a template context."""

    state: str

    def context(self) -> Mapping[str, Any]:
        """The variables a transition's condition is evaluated over (data, user, ...)."""
        ...


class _Event(AsyncEvent):
    """An event without transitions' task bookkeeping.

    ``AsyncMachine.process_context`` tracks tasks per model so a second event can cancel running
    callbacks; our callbacks are only conditions (no I/O), and the runtime already runs one event
    per conversation at a time, so that bookkeeping is pure overhead on the hot path.
    """

    async def trigger(self, model: Any, *args: Any, **kwargs: Any) -> bool:  # type: ignore[override]
        data = AsyncEventData(None, self, self.machine, model, args=args, kwargs=kwargs)
        result: bool = await self._trigger(data)
        return result


class FlowMachine(AsyncMachine):
    """AsyncMachine with our event class (transitions' documented extension point)."""

    event_cls = _Event

    @staticmethod
    async def await_all(callables: list[AsyncCallbackFunc]) -> list[bool | None]:
        """Like transitions', without an ``asyncio.gather`` when there is nothing to await.

        A transition awaits about ten callback lists (prepare, before, on_exit, on_enter, after, ...) that
        are empty in our machines; skipping the empty gathers halves the cost of a transition.
        """
        if not callables:
            return []
        return await AsyncMachine.await_all(callables)


def version_id(flow: model.Flow) -> str:
    """A flow's declared version plus a digest of its source: an edit is always a new version."""
    return f'{flow.version}-{hashlib.sha256(flow.source.encode()).hexdigest()[:10]}'


_MACHINE_CALLBACKS = ('prepare_event', 'before_state_change', 'after_state_change', 'finalize_event', 'on_final')
"""The machine-wide callback lists a trigger runs (``on_exception`` only matters when something raises)."""

Plan = dict[tuple[str, str], tuple[tuple[AsyncTransition, str], ...]]
"""The machine's transitions (with their destinations) by (source state, trigger), in the order the machine
tries them; only those that run no callback."""


def _plan(machine: FlowMachine) -> Plan:
    """What :meth:`CompiledFlow.fire` may do without the machinery: every (source, trigger) whose transitions
    run no callback (none of the machine's, the states' or their own); the others are left to the machine."""
    if any(getattr(machine, name) for name in _MACHINE_CALLBACKS):
        return {}
    plan: Plan = {}
    for trigger, event in machine.events.items():
        for source, found in event.transitions.items():
            if all(
                t.dest is not None
                and not (t.prepare or t.before or t.after)
                and not (machine.states[source].on_exit or machine.states[t.dest].on_enter)
                for t in found
            ):
                plan[(source, trigger)] = tuple((t, cast(str, t.dest)) for t in found)
    return plan


@attrs.frozen
class CompiledFlow:
    """One flow version and its machine, with what the runtime looks up per state (timeouts, asks).

    The machine is not changed after compiling (its :attr:`plan` is taken from it then).
    """

    flow: model.Flow
    version: str
    machine: FlowMachine
    timeouts: dict[str, float | None]
    asks: tuple[str, ...]
    """Ask states, in file order: the targets of ``back``."""
    plan: Plan = attrs.field(init=False, default=attrs.Factory(lambda self: _plan(self.machine), takes_self=True))
    """The transitions :meth:`fire` takes without the machinery (see the module docs)."""
    plain: dict[tuple[str, str], str] = attrs.field(
        init=False,
        default=attrs.Factory(
            lambda self: {key: edges[0][1] for key, edges in self.plan.items() if not edges[0][0].conditions},
            takes_self=True,
        ),
    )
    """The destination by (state, trigger) where the :attr:`plan`'s first transition has no condition: taken at
    once, by setting the conversation's state (what the machine's ``set_state`` does), without :meth:`fire`'s
    coroutine; a step's one look-up."""
    questions: dict[str, model.Ask] = attrs.field(
        init=False, default=attrs.Factory(lambda self: {a: self.flow.states[a] for a in self.asks}, takes_self=True)
    )
    """The ask states' definitions by name (the states whose handler takes answers): the runtime's one look-up for
    "is the conversation at a question" on every message."""
    name: str = attrs.field(init=False, default=attrs.Factory(lambda self: self.flow.name, takes_self=True))
    """The flow's name (an attribute, not a property: every stored step writes it)."""

    async def fire(self, conv: Model, event: str) -> bool:
        """Fire ``event`` on ``conv``; ``False`` when no transition applied."""
        edges = self.plan.get((conv.state, event))
        if edges is None:
            return bool(await self.machine.events[event].trigger(conv))
        for transition, dest in edges:
            if transition.conditions and not await self._holds(transition, conv, event):
                continue
            conv.state = dest  # what the machine's set_state does
            return True
        return False

    async def _holds(self, transition: AsyncTransition, conv: Model, event: str) -> bool:
        """Whether every condition of ``transition`` holds, checked as the machine checks them."""
        machine = self.machine
        data = AsyncEventData(machine.states[conv.state], machine.events[event], machine, conv, (), {})
        data.transition = transition
        return all([await cast(Awaitable[bool], c.check(data)) for c in transition.conditions])


def _condition(expression: str) -> Any:
    evaluate = compile_condition(expression)

    def check(event_data: EventData) -> bool:
        conv = cast(Model, event_data.model)
        return bool(evaluate(conv.context()))

    return check


def compile_flow(flow: model.Flow) -> CompiledFlow:
    """Build the machine of a flow that passed validation."""
    states = [*flow.states, END]
    transitions: list[dict[str, Any]] = []

    def add(trigger: str, source: str, dest: str | None, **extra: Any) -> None:
        transitions.append({'trigger': trigger, 'source': source, 'dest': dest or END, **extra})

    asks = tuple(name for name, spec in flow.states.items() if handler_for(spec).takes_answers)
    for name, spec in flow.states.items():
        for trigger, dest, condition in handler_for(spec).transitions(flow, name, spec):
            add(trigger, name, dest, **({'conditions': [_condition(condition)]} if condition else {}))
        add('cancel', name, END)
    for ask in asks:
        add(f'back_{ask}', [a for a in asks if a != ask], ask)  # type: ignore[arg-type]
    machine = FlowMachine(
        model=None,
        states=states,
        transitions=transitions,
        initial=flow.initial,
        auto_transitions=False,
        ignore_invalid_triggers=True,
        send_event=True,
        name=f'{flow.name}: ',
    )
    timeouts = {name: model.parse_duration(spec.timeout) for name, spec in flow.states.items()}
    return CompiledFlow(flow=flow, version=version_id(flow), machine=machine, timeouts=timeouts, asks=asks)
