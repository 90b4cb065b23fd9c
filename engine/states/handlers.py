"""One handler per state kind (``say``, ``ask``, ``call``, ``choice``, ``wait``, ``flow``, ``end``).

A handler owns everything its kind means: the edges it can leave by (which ``compile`` turns into
transitions, ``lint`` checks and ``graph`` draws), its definition-time checks, the templates it
holds, and what happens at run time when a conversation enters the state, answers it or gets an
action's result. The rest of the engine asks :func:`handler_for` instead of testing a state's
class, so a new kind is one class here (plus its model in :mod:`engine.flows.model`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, ClassVar, cast

import attrs

from engine.conversation import Conversation, Internal
from engine.flows import model
from engine.flows.loader import did_you_mean
from engine.i18n import _
from engine.patterns import PatternError, compile_pattern
from engine.states import kinds
from engine.states.actions import ActionRegistry
from engine.states.port import Runtime
from engine.templates import render

__all__ = [
    'HANDLERS',
    'REST',
    'STAY',
    'Handler',
    'Report',
    'Rest',
    'check_regex',
    'handler_for',
    'question',
    'short',
    'strings',
]

Report = Callable[[Sequence[str | int], str, str], None]
"""How a check reports a problem: (path in the file, message, rule code)."""


@attrs.frozen
class Lint:
    """What a definition-time check sees besides the state: the flow, where to report, what exists."""

    flow: model.Flow
    report: Report
    actions: ActionRegistry | None = None
    """The registered actions; ``None`` skips the checks that need them."""
    flow_names: Collection[str] | None = None
    """The flows loaded together; ``None`` skips the sub-flow name check."""


class Rest:
    """What :meth:`Handler.enter` returns when the conversation stays in the state (waits for input)."""


REST = Rest()
STAY = 'stay'
"""What :meth:`Handler.enter` returns after it moved the conversation itself (into a sub-flow)."""


class Handler:
    """The behaviour of one state kind; subclasses override what differs from a plain ``say``."""

    kind: ClassVar[str] = ''
    takes_answers: ClassVar[bool] = False
    """Whether the state waits for the user's answer (and so ``help`` and ``back`` work in it)."""
    work_outlives_state: ClassVar[bool] = False
    """Whether what the state waits for goes on when the user leaves it (a ``wait``'s training job),
    so stopping says "stopped waiting" rather than "cancelled"."""
    automatic_trigger: ClassVar[str] = 'next'
    """The trigger fired after an automatic state did its work."""
    reruns_on_restore: ClassVar[bool] = False
    """Whether a conversation restored in this state starts its work again (a ``call``'s action)."""

    # -- definition ---------------------------------------------------------------------------

    def edges(self, flow: model.Flow, name: str, spec: model.State) -> list[tuple[str, str]]:
        """Every (label, target) the state can move to by its own fields; ``end`` targets are not states."""
        following = flow.following(name)
        out = [('answer' if self.takes_answers else 'next', following)] if following else []
        failure = self.failure(spec)
        if failure is not None and failure[1]:
            out.append((failure[0], failure[1]))
        return out + self._timeout_edge(spec)

    def failure(self, spec: model.State) -> tuple[str, str | None] | None:
        """The kind's own failure edge: its trigger and target (``None``: the end), or no such edge."""
        return None

    @staticmethod
    def _timeout_edge(spec: model.State) -> list[tuple[str, str]]:
        return [('timeout', spec.on_timeout)] if spec.on_timeout else []

    def ends(self, flow: model.Flow, name: str) -> bool:
        """Whether the flow can end right after this state (no state follows it)."""
        return flow.following(name) is None

    def transitions(self, flow: model.Flow, name: str, spec: model.State) -> Iterator[tuple[str, str | None, str]]:
        """(trigger, destination or ``None`` for the end, condition expression or ``''``) of the machine."""
        yield 'next', flow.following(name), ''
        if (failure := self.failure(spec)) is not None:
            yield failure[0], failure[1], ''
        yield 'timeout', spec.on_timeout, ''

    def edge_key(self, label: str) -> str:
        """The file key an edge with ``label`` was written as (for the line of a diagnostic)."""
        return {'timeout': 'on_timeout', 'fail': 'on_fail', 'error': 'on_error', 'else': 'else'}.get(label, 'next')

    def check(self, name: str, spec: model.State, lint: Lint) -> None:
        """Report what is wrong with the state's own fields (``lint``)."""

    def templates(self, spec: model.State) -> Iterator[tuple[str, str, bool]]:
        """(key, source, is_expression) of the kind's templates besides texts and files."""
        return iter(())

    def describe(self, spec: model.State) -> list[str]:
        """Short lines saying what the state does (``graph``), after its kind."""
        text: model.Text | None = getattr(spec, 'text', None)
        files: list[str] = getattr(spec, 'files', [])
        lines = [short(text)] if text else []
        if files:
            lines.append(f'{"voice" if getattr(spec, "voice", False) else "files"}: {", ".join(files)}')
        return lines

    # -- run time -----------------------------------------------------------------------------

    async def enter(self, engine: Runtime, conv: Conversation, spec: model.State) -> str | Rest:
        """Do the state's work on entry: the trigger to fire next, :data:`REST` to wait, or :data:`STAY`."""
        say = cast(model.Say, spec)
        await kinds.say(engine, conv, say.text, say.files, getattr(say, 'voice', False))
        return self.automatic_trigger

    async def on_result(self, engine: Runtime, conv: Conversation, spec: model.State, event: Internal) -> None:
        """An action's result or a notification for this state; other kinds have none and ignore it."""


class SayHandler(Handler):
    kind = 'say'


class EndHandler(Handler):
    kind = 'end'

    def edges(self, flow: model.Flow, name: str, spec: model.State) -> list[tuple[str, str]]:
        return self._timeout_edge(spec)

    def ends(self, flow: model.Flow, name: str) -> bool:
        return True

    def transitions(self, flow: model.Flow, name: str, spec: model.State) -> Iterator[tuple[str, str | None, str]]:
        yield 'next', None, ''
        yield 'timeout', spec.on_timeout, ''

    def check(self, name: str, spec: model.State, lint: Lint) -> None:
        if spec.next is not None:
            lint.report(
                ['states', name, 'next'],
                _('end state "{name}" cannot have next: it ends the flow').format(name=name),
                'bad-value',
            )


class AskHandler(Handler):
    kind = 'ask'
    takes_answers = True

    def failure(self, spec: model.State) -> tuple[str, str | None] | None:
        return 'fail', cast(model.Ask, spec).on_fail

    def check(self, name: str, spec: model.State, lint: Lint) -> None:
        ask = cast(model.Ask, spec)
        path: list[str | int] = ['states', name]
        if ask.expect == 'choice' and not ask.choices:
            lint.report(
                [*path, 'choices'],
                _('state "{name}" expects a choice but lists no choices').format(name=name),
                'bad-value',
            )
        if ask.attempts < 1:
            lint.report([*path, 'attempts'], _('attempts must be at least 1'), 'bad-value')
        if ask.pattern:
            check_regex(ask.pattern, [*path, 'pattern'], lint.report)

    def templates(self, spec: model.State) -> Iterator[tuple[str, str, bool]]:
        ask = cast(model.Ask, spec)
        if ask.choices_from:
            yield ('choices_from', ask.choices_from, True)

    def describe(self, spec: model.State) -> list[str]:
        ask = cast(model.Ask, spec)
        return [f'asks {short(ask.prompt)}', f'expects {ask.expect}' + (f' → {ask.save_as}' if ask.save_as else '')]

    async def enter(self, engine: Runtime, conv: Conversation, spec: model.State) -> str | Rest:
        assert isinstance(spec, model.Ask)  # not cast(): a C call, not a Python one, on every step
        conv.attempts = 0
        # Durable first: after a crash here the user can type ``help`` to see the question again,
        # instead of being taken back to an answer they already gave.
        await engine.save(conv)
        await kinds.prompt(engine, conv, spec)
        return REST


class CallHandler(Handler):
    kind = 'call'
    reruns_on_restore = True

    def failure(self, spec: model.State) -> tuple[str, str | None] | None:
        return 'error', cast(model.Call, spec).on_error

    def check(self, name: str, spec: model.State, lint: Lint) -> None:
        call = cast(model.Call, spec)
        if lint.actions is None:
            return
        path: list[str | int] = ['states', name]
        action = lint.actions.get(call.action)
        if action is None:
            hint = did_you_mean(call.action, lint.actions)
            lint.report(
                [*path, 'action'],
                _('unknown action "{action}"{hint}').format(action=call.action, hint=hint),
                'unknown-action',
            )
            return
        if action.params is not None:
            for arg in sorted(call.args.keys() - action.params):
                hint = did_you_mean(arg, action.params)
                lint.report(
                    [*path, 'args'],
                    _('action "{action}" has no argument "{arg}"{hint}').format(action=call.action, arg=arg, hint=hint),
                    'unknown-argument',
                )
        for arg in sorted(action.required - call.args.keys()):
            lint.report(
                [*path, 'args'],
                _('action "{action}" needs argument "{arg}"').format(action=call.action, arg=arg),
                'missing-argument',
            )

    def templates(self, spec: model.State) -> Iterator[tuple[str, str, bool]]:
        yield from (('args', t, False) for t in strings(cast(model.Call, spec).args))

    def describe(self, spec: model.State) -> list[str]:
        call = cast(model.Call, spec)
        return [f'action {call.action}' + (f' → {call.save_as}' if call.save_as else '')]

    async def enter(self, engine: Runtime, conv: Conversation, spec: model.State) -> str | Rest:
        call = cast(model.Call, spec)
        if call.progress:  # first, so the action's own reports edit this message instead of racing it
            await engine.show_progress(conv, kinds.render_text(engine, conv, call.progress))
        kinds.start_call(engine, conv, call)
        await engine.save(conv)
        return REST

    async def on_result(self, engine: Runtime, conv: Conversation, spec: model.State, event: Internal) -> None:
        await kinds.on_call_result(engine, conv, cast(model.Call, spec), event)


class ChoiceHandler(Handler):
    kind = 'choice'
    automatic_trigger = 'decide'

    def edges(self, flow: model.Flow, name: str, spec: model.State) -> list[tuple[str, str]]:
        decide = cast(model.Decide, spec)
        out = [(branch.when, branch.goto) for branch in decide.when]
        if decide.otherwise:
            out.append(('else', decide.otherwise))
        return out + self._timeout_edge(spec)

    def ends(self, flow: model.Flow, name: str) -> bool:
        return False

    def transitions(self, flow: model.Flow, name: str, spec: model.State) -> Iterator[tuple[str, str | None, str]]:
        decide = cast(model.Decide, spec)
        for branch in decide.when:
            yield 'decide', branch.goto, branch.when
        if decide.otherwise:
            yield 'decide', decide.otherwise, ''
        yield 'timeout', spec.on_timeout, ''

    def edge_key(self, label: str) -> str:
        return 'else' if label == 'else' else 'on_timeout' if label == 'timeout' else 'when'

    def check(self, name: str, spec: model.State, lint: Lint) -> None:
        decide = cast(model.Decide, spec)
        path: list[str | int] = ['states', name]
        if not decide.when:
            lint.report([*path, 'when'], _('choice state "{name}" has no conditions').format(name=name), 'bad-value')
        if decide.next is not None:
            lint.report(
                [*path, 'next'], _('a choice state goes by its conditions; use else instead of next'), 'bad-value'
            )

    def templates(self, spec: model.State) -> Iterator[tuple[str, str, bool]]:
        yield from (('when', branch.when, True) for branch in cast(model.Decide, spec).when)

    def describe(self, spec: model.State) -> list[str]:
        return []

    async def enter(self, engine: Runtime, conv: Conversation, spec: model.State) -> str | Rest:
        return self.automatic_trigger


class WaitHandler(Handler):
    kind = 'wait'
    work_outlives_state = True

    def templates(self, spec: model.State) -> Iterator[tuple[str, str, bool]]:
        yield ('until', cast(model.Wait, spec).until, False)

    def describe(self, spec: model.State) -> list[str]:
        return [f'until {cast(model.Wait, spec).until}']

    async def enter(self, engine: Runtime, conv: Conversation, spec: model.State) -> str | Rest:
        wait = cast(model.Wait, spec)
        engine.wait_for(conv, render(wait.until, kinds.template_context(engine, conv)))
        if wait.progress:
            await engine.show_progress(conv, kinds.render_text(engine, conv, wait.progress))
        await engine.save(conv)
        return REST

    async def on_result(self, engine: Runtime, conv: Conversation, spec: model.State, event: Internal) -> None:
        if event.kind != 'notify':
            return
        wait = cast(model.Wait, spec)
        conv.data['payload'] = event.payload
        if wait.save_as:
            conv.data[wait.save_as] = event.payload
        await engine.move(conv, 'next')


class FlowHandler(Handler):
    kind = 'flow'

    def check(self, name: str, spec: model.State, lint: Lint) -> None:
        sub = cast(model.SubFlow, spec)
        path: list[str | int] = ['states', name, 'flow']
        if lint.flow_names is not None and sub.flow not in lint.flow_names:
            lint.report(
                path,
                _('unknown flow "{flow}"{hint}').format(flow=sub.flow, hint=did_you_mean(sub.flow, lint.flow_names)),
                'unknown-flow',
            )
        if sub.flow == lint.flow.name:
            lint.report(
                path, _('flow "{name}" cannot run itself as a sub-flow').format(name=lint.flow.name), 'bad-value'
            )

    def templates(self, spec: model.State) -> Iterator[tuple[str, str, bool]]:
        yield from (('args', t, False) for t in strings(cast(model.SubFlow, spec).args))

    def describe(self, spec: model.State) -> list[str]:
        sub = cast(model.SubFlow, spec)
        return [f'sub-flow {sub.flow}' + (f' → {sub.save_as}' if sub.save_as else '')]

    async def enter(self, engine: Runtime, conv: Conversation, spec: model.State) -> str | Rest:
        kinds.enter_subflow(engine, conv, cast(model.SubFlow, spec))
        return STAY


HANDLERS: dict[str, Handler] = {
    h.kind: h
    for h in (SayHandler(), AskHandler(), CallHandler(), ChoiceHandler(), WaitHandler(), FlowHandler(), EndHandler())
}
"""The handler of every state kind, by the kind's name in flow files."""


def handler_for(spec: model.State) -> Handler:
    """The handler of ``spec``'s kind."""
    return HANDLERS[spec.kind]


def question(spec: model.State | None) -> model.Ask | None:
    """``spec`` if it is a question waiting for the user's answer, else ``None``."""
    if spec is None or not HANDLERS[spec.kind].takes_answers:
        return None
    assert isinstance(spec, model.Ask)  # the kind that takes answers (not cast(): called on every step)
    return spec


def check_regex(pattern: str, path: list[str | int], report: Report) -> None:
    """Report ``pattern`` if it is no valid regular expression."""
    try:
        compile_pattern(pattern)
    except PatternError as exc:
        shown = pattern if len(pattern) <= 80 else pattern[:77] + '...'
        report(
            path, _('invalid regular expression {pattern}: {error}').format(pattern=repr(shown), error=exc), 'bad-value'
        )


def strings(value: Any) -> Iterator[str]:
    """Every string inside nested lists and tables (the templates of ``args``)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)


def short(text: model.Text | None, limit: int = 48) -> str:
    """A text on one line, cut at ``limit`` characters (for diagrams)."""
    value = ' '.join(model.localize(text, 'en').split())
    return value if len(value) <= limit else value[: limit - 1] + '…'
