"""The state behaviours the handlers share: render a text, send, prompt, parse an answer, run an action.

The machine decides the next state; these functions do a state's work *outside* transition
callbacks: they send, prompt, start actions as tasks and enter sub-flows. They move a conversation
on only through the port (``engine.move``), so this module imports neither the handlers
(:mod:`engine.states.handlers` imports it) nor the stepping (:mod:`engine.states.steps`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable
from typing import Any

from engine import i18n, patterns
from engine.api import Attachment, ChoicePress, Event, Message, Option
from engine.commands import finite_float, parse_bool
from engine.conversation import Conversation, Internal, attachment, jsonable
from engine.errors import FlowbotError, UserError
from engine.flows import model
from engine.states.actions import ActionContext, ActionError
from engine.states.port import Runtime
from engine.templates import compile_condition, is_template, render, render_value

__all__ = [
    'FlowRuntimeError',
    'answer',
    'attachment',
    'enter_subflow',
    'jsonable',
    'offered_choice',
    'on_call_result',
    'prompt',
    'render_text',
    'say',
    'start_call',
    'template_context',
]

_log = logging.getLogger(__name__)


class FlowRuntimeError(FlowbotError):
    """A flow did something only detectable at run time (no condition matched, a loop)."""


def render_text(engine: Runtime, conv: Conversation, text: model.Text | None) -> str:
    """A flow text in the conversation's language, rendered as a template if it is one."""
    source = text if isinstance(text, str) else model.localize(text, conv.locale, engine.config.bot.language)
    return render(source, template_context(engine, conv)) if is_template(source) else source


def template_context(engine: Runtime, conv: Conversation) -> dict[str, Any]:
    """What a state's templates can read: the conversation's data plus ``bot`` and ``flows``."""
    context = dict(conv.context())
    context['bot'] = {'name': engine.config.bot.name, 'prefix': engine.prefix(conv)}
    context['flows'] = engine.flows_summary()
    return context


async def say(engine: Runtime, conv: Conversation, text: model.Text | None, files: list[str], voice: bool) -> None:
    """Send a ``say``/``end`` state's text, or its files with the text as the first one's caption."""
    body = render_text(engine, conv, text)
    adapter = engine.adapter(conv)
    if not files:  # most: the text alone, without a template context or a list of paths
        if body:
            await adapter.send_text(conv.key, body)
        return
    context = template_context(engine, conv)
    paths = [engine.files.check(render(f, context)) for f in files]  # all checked before any is sent
    for i, path in enumerate(paths):
        await adapter.send_file(conv.key, path, text=body if i == 0 and body else None, voice_message=voice)


def prompt(engine: Runtime, conv: Conversation, spec: model.Ask, text: str | None = None) -> Awaitable[str]:
    """Ask ``spec``'s question (or ``text`` instead, such as its help) with its choices as buttons.

    Returns the adapter's send to await (the message id), not a coroutine of its own: a prompt ends every step."""
    text = render_text(engine, conv, spec.prompt) if text is None else text
    choices = (
        [Option(c.value, render_text(engine, conv, c.label) or c.value) for c in spec.choices] if spec.choices else []
    )
    if spec.choices_from:
        choices += _dynamic_choices(engine, conv, spec.choices_from)
    if not choices and spec.expect == 'boolean':
        choices = [Option('yes', i18n._('Yes')), Option('no', i18n._('No'))]
    adapter = engine.adapter(conv)
    return adapter.ask(conv.key, text, choices) if choices else adapter.send_text(conv.key, text)


def _dynamic_choices(engine: Runtime, conv: Conversation, expression: str) -> list[Option]:
    """The choices ``choices_from`` gives now; anything that is not a list of tables or strings is an error."""
    found = compile_condition(expression)(template_context(engine, conv))
    if found is None:
        return []
    if not isinstance(found, list):
        raise FlowRuntimeError(f'choices_from "{expression}" gave {type(found).__name__}, not a list')
    options = []
    for item in found:
        if isinstance(item, dict) and 'value' in item:
            options.append(Option(str(item['value']), str(item.get('label') or item['value'])))
        elif isinstance(item, str | int | float):
            options.append(Option(str(item), str(item)))
        else:
            raise FlowRuntimeError(f'choices_from "{expression}" gave an item that is no choice: {item!r}')
    return options


def offered_choice(spec: model.Ask, text: str) -> str | None:
    """The value of the choice of ``spec`` that ``text`` names (its value, number or label in any language, any
    case), ``None`` when it names none; the engine asks first when the text is also an interrupt's word."""
    lowered = text.strip().lower()
    for i, choice in enumerate(spec.choices, start=1):
        labels = [choice.label] if isinstance(choice.label, str) else list(choice.label.values())
        if lowered in {choice.value.lower(), str(i), *(label.lower() for label in labels if label)}:
            return choice.value
    return None


def _parse(spec: model.Ask, event: Event) -> tuple[bool, Any, str]:
    """(valid, value, reason) for an answer to ``spec``."""
    expect = spec.expect
    if spec.attachments and expect != 'attachment' and isinstance(event, Message) and event.attachments:
        return True, jsonable(event.attachments[0]), ''
    if isinstance(event, Message):
        raw = event.text.strip()
    elif isinstance(event, ChoicePress):
        raw = event.value
    else:
        return False, None, i18n._('please answer the question')
    if len(raw) > patterns.MAX_MATCH_CHARS:
        return (
            False,
            None,
            i18n._('the answer is too long ({count} characters; at most {limit})').format(
                count=i18n.format_number(len(raw)), limit=i18n.format_number(patterns.MAX_MATCH_CHARS)
            ),
        )
    if expect == 'attachment':
        files = list(event.attachments) if isinstance(event, Message) else []
        if spec.content_types:
            files = [a for a in files if a.content_type.startswith(tuple(spec.content_types))]
        if not files:
            if spec.content_types:
                return False, None, i18n._('please attach a file ({types})').format(types=', '.join(spec.content_types))
            return False, None, i18n._('please attach a file')
        return True, jsonable(files[0]), ''
    if spec.choices or expect == 'choice':
        if (picked := offered_choice(spec, raw)) is not None:
            return True, picked, ''
        if expect == 'choice':
            return (
                False,
                None,
                i18n._('please pick one of: {choices}').format(choices=', '.join(c.value for c in spec.choices)),
            )
    if expect == 'boolean':
        answer = parse_bool(raw)
        return (True, answer, '') if answer is not None else (False, None, i18n._('please answer yes or no'))
    if expect in ('number', 'integer'):
        try:
            number: float | int = int(raw) if expect == 'integer' else finite_float(raw)
        except ValueError:
            whole = expect == 'integer'
            return (
                False,
                None,
                i18n._('please answer with a whole number') if whole else i18n._('please answer with a number'),
            )
        if spec.min is not None and number < spec.min:
            return False, None, i18n._('the smallest allowed value is {min}').format(min=i18n.format_number(spec.min))
        if spec.max is not None and number > spec.max:
            return False, None, i18n._('the largest allowed value is {max}').format(max=i18n.format_number(spec.max))
        return True, number, ''
    if not raw:
        return False, None, i18n._('the answer is empty')
    if spec.min is not None and len(raw) < spec.min:
        n = int(spec.min)
        return (
            False,
            None,
            i18n.ngettext(
                'the answer needs at least {n} character', 'the answer needs at least {n} characters', n
            ).format(n=n),
        )
    if spec.max is not None and len(raw) > spec.max:
        n = int(spec.max)
        return (
            False,
            None,
            i18n.ngettext(
                'the answer can have at most {n} character', 'the answer can have at most {n} characters', n
            ).format(n=n),
        )
    if spec.pattern and not patterns.fullmatch(spec.pattern, raw):
        return False, None, i18n._('the answer does not have the expected form')
    return True, raw, ''


def answer(engine: Runtime, conv: Conversation, spec: model.Ask, event: Event) -> Awaitable[None]:
    """Validate an answer: save it and go on, or re-prompt, or give up after ``attempts`` (:func:`_rejected`).

    Returns the move's coroutine (or the rejection's) for the caller to await rather than awaiting it in one of
    its own: the valid answer is the step, and it needs no coroutine of its own.
    """
    ok, value, reason = _parse(spec, event)
    if not ok:
        return _rejected(engine, conv, spec, reason)
    if spec.save_as:
        conv.data[spec.save_as] = value
    conv.data['input'] = value if isinstance(value, str) else getattr(event, 'text', '') or str(value)
    conv.history.append(conv.state)
    return engine.move(conv, 'next')


async def _rejected(engine: Runtime, conv: Conversation, spec: model.Ask, reason: str) -> None:
    """An invalid answer: say why and ask again, or give up after ``attempts``."""
    conv.attempts += 1
    attempts = conv.attempts
    if attempts >= spec.attempts:
        if spec.on_fail is None:
            await engine.reply(conv, engine.text('too_many_attempts', conv))
        await engine.move(conv, 'fail')
        return
    if spec.expect == 'choice' and spec.choices:  # name the choices as offered (labels, numbers)
        labels = [render_text(engine, conv, c.label) or c.value for c in spec.choices]
        offered = ', '.join(f'{i} {label}' for i, label in enumerate(labels, start=1))
        reason = i18n._('please pick one of: {choices}').format(choices=offered)
    message = (
        render_text(engine, conv, spec.invalid) if spec.invalid else i18n._('Sorry, {reason}.').format(reason=reason)
    )
    left = spec.attempts - attempts
    await engine.save(conv)
    more = i18n.ngettext('{n} attempt left', '{n} attempts left', left).format(n=left)
    await engine.reply(conv, f'{message} ({more})')
    await prompt(engine, conv, spec)


def start_call(engine: Runtime, conv: Conversation, spec: model.Call) -> None:
    """Start a ``call`` state's action as a task (its result comes back as an ``Internal`` event)."""
    action = engine.action(spec.action)
    context = template_context(engine, conv)
    event = conv.event
    if conv.scope.call is None:  # persisted with the state, kept on a re-run
        conv.scope.call = uuid.uuid4().hex[:12]
    call_id = conv.scope.call

    async def work() -> Any:
        if action is None:
            raise ActionError(i18n._('the action "{action}" is not available').format(action=spec.action))
        args = render_value(spec.args, context)
        ctx = ActionContext(
            key=conv.key,
            user=conv.user,
            adapter=engine.adapter(conv),
            data=conv.data,
            attachments=_attachments(conv, event),
            locale=conv.locale or engine.config.bot.language,
            workdir=engine.workdir(conv),
            progress=lambda text: engine.show_progress(conv, text),
            flow=conv.compiled.name,
            state=conv.state,
            call_id=call_id,
        )
        with i18n.use(ctx.locale):
            return await action.fn(ctx, **args)

    engine.start_action(conv, work)


def _attachments(conv: Conversation, event: Event | None) -> list[Attachment]:
    files = list(getattr(event, 'attachments', ()) or ())
    if not files:
        files = [attachment(stored) for stored in conv.data.get('attachments', [])]
    return files


def enter_subflow(engine: Runtime, conv: Conversation, spec: model.SubFlow) -> None:
    """Push the current flow and start ``spec``'s flow with its ``with`` values as ``options``."""
    child = engine.flow(spec.flow)
    if child is None:
        raise FlowRuntimeError(f'sub-flow "{spec.flow}" is not loaded')
    args = jsonable(render_value(spec.args, template_context(engine, conv)))
    conv.stack.append(
        {'flow': conv.compiled.name, 'version': conv.compiled.version, 'state': conv.state, 'data': conv.data}
    )
    engine.leave_state(conv)
    conv.compiled = child
    conv.state = child.flow.initial
    conv.data = {'options': args, 'attachments': conv.data.get('attachments', [])}


async def on_call_result(engine: Runtime, conv: Conversation, spec: model.Call, event: Internal) -> None:
    """A ``call`` state's action finished (``done``/``error``), or is to run again after a restart (``rerun``)."""
    if event.kind == 'done':
        result = jsonable(event.payload)
        conv.data['result'] = result
        if spec.save_as:
            conv.data[spec.save_as] = result
        await engine.move(conv, 'next')
    elif event.kind == 'error':
        error = event.payload
        if isinstance(error, UserError):
            message = str(error)
        else:
            _log.error(
                'action %s failed in %s/%s for %s',
                spec.action,
                conv.compiled.name,
                conv.state,
                conv.key,
                exc_info=error,
            )
            message = i18n._('the action {action} failed unexpectedly (logged)').format(action=spec.action)
        conv.data['error'] = message
        if spec.on_error is None:
            await engine.reply(conv, engine.text('error', conv, error=message))
        await engine.move(conv, 'error')
    elif event.kind == 'rerun':
        start_call(engine, conv, spec)
