"""How a conversation steps through states: fire a trigger, then do the entered state's work.

The machine (:mod:`engine.flows.compile`) only decides where a conversation goes; these functions
ask the state's handler (:func:`~engine.states.handlers.handler_for`) what to do there, follow
automatic states (``say``, ``choice``, ``end``) until the conversation comes to rest (``ask``,
``call``, ``wait``), and return from sub-flows. The engine reaches them through ``Engine.move``,
so the handlers and :mod:`engine.states.kinds` move a conversation without importing this module.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from engine.conversation import Conversation, Internal
from engine.flows import model
from engine.states.handlers import HANDLERS, STAY, Rest, handler_for
from engine.states.kinds import FlowRuntimeError
from engine.states.port import Runtime

__all__ = ['MAX_AUTOMATIC_STEPS', 'enter', 'move', 'on_internal']

MAX_AUTOMATIC_STEPS = 200
"""Automatic states in a row before the engine calls it a loop (say → choice → say …)."""


def enter(engine: Runtime, conv: Conversation) -> Coroutine[Any, Any, None]:
    """Do the work of the state just entered, following automatic states until rest or the end (:func:`move`
    without a trigger).

    :raises FlowRuntimeError: no ``choice`` condition matched, or automatic states loop.
    """
    return move(engine, conv, None)


async def move(engine: Runtime, conv: Conversation, trigger: str | None) -> None:
    """Leave the current state by ``trigger``, do the entered state's work, and go on by the trigger it returns
    until the conversation rests or ends. A step is this one loop: no coroutine per state or transition.

    :param trigger: ``None`` when the current state was just entered (the start of a flow, a sub-flow).
    :raises FlowRuntimeError: the state has no ``trigger`` transition (a flow the checks could not catch), no
        ``choice`` condition matched, or automatic states loop.
    """
    automatic = False  # whether ``trigger`` came from an automatic state (a failed choice) or from the caller
    for _ in range(MAX_AUTOMATIC_STEPS):
        if trigger is not None:
            state = conv.state
            engine.leave_state(conv)
            compiled = conv.compiled
            dest = compiled.plain.get((state, trigger))
            if dest is not None:  # no condition to check: the common step, no coroutine
                conv.state = dest
            elif not await compiled.fire(conv, trigger):
                if automatic:
                    raise FlowRuntimeError(f'flow {compiled.name}: no condition of choice state "{state}" matched')
                raise FlowRuntimeError(f'flow {compiled.name}: no "{trigger}" transition from state "{state}"')
        if conv.state == model.END:
            if not (conv.stack and await _return_from_subflow(engine, conv)):  # no coroutine at the top flow's end
                await engine.finish(conv)
                return
            trigger = None
            continue
        compiled = conv.compiled
        spec = compiled.flow.states[conv.state]  # conv.spec without a call: not the end, so it exists
        timeout = compiled.timeouts[conv.state]
        if timeout is not None:
            engine.arm(conv, timeout)
        found = await HANDLERS[spec.kind].enter(engine, conv, spec)  # handler_for(spec), without a call
        if isinstance(found, Rest):
            return
        trigger, automatic = (None, False) if found == STAY else (found, True)
    raise FlowRuntimeError(f'flow {conv.compiled.name}: more than {MAX_AUTOMATIC_STEPS} automatic states in a row')


async def _return_from_subflow(engine: Runtime, conv: Conversation) -> bool:
    """Back to the flow that started the ending sub-flow, its result saved; ``False`` at the top."""
    if not conv.stack:
        return False
    frame = conv.stack.pop()
    parent = await engine.compiled_version(frame['flow'], frame['version'])
    if parent is None:
        raise FlowRuntimeError(f'the flow "{frame["flow"]}" that started a sub-flow is gone')
    result = {k: v for k, v in conv.data.items() if k not in ('options', 'attachments')}
    conv.compiled, conv.state, conv.data = parent, frame['state'], frame['data']
    save_as = getattr(conv.spec, 'save_as', None)  # the sub-flow state the conversation returned to
    if save_as:
        conv.data[save_as] = result
    engine.leave_state(conv)
    if not await conv.compiled.fire(conv, 'next'):
        raise FlowRuntimeError(f'flow {parent.name}: no way on from sub-flow state "{conv.state}"')
    return True


async def on_internal(engine: Runtime, conv: Conversation, event: Internal) -> None:
    """An action result, a timeout or a notification for the state the conversation is in.

    :param event: already checked to belong to the current state entry (its epoch matches).
    """
    spec = conv.spec
    if event.kind == 'timeout':
        conv.data['error'] = 'timeout'
        if spec is None or spec.on_timeout is None:
            await engine.reply(conv, engine.text('timeout', conv))
        await move(engine, conv, 'timeout')
    elif spec is not None:
        await handler_for(spec).on_result(engine, conv, spec, event)
