"""Definition-time validation: everything ``flowbot lint`` reports, before any conversation runs.

Each rule has a code (shown in brackets) so maintainers can look it up in ``docs/flows.md``.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any

from engine.files import FileGate, FileRefusedError, check_name
from engine.flows import model
from engine.flows.loader import Diagnostic, LineIndex, did_you_mean
from engine.i18n import _
from engine.interrupts import all_words
from engine.states.actions import ActionRegistry
from engine.states.handlers import Lint, check_regex, handler_for
from engine.templates import TemplateError, find_variables

__all__ = ['BUILTIN_VARIABLES', 'edges', 'validate', 'validate_flow']

BUILTIN_VARIABLES = frozenset(
    {'user', 'options', 'input', 'error', 'locale', 'flows', 'bot', 'attachments', 'data', 'result', 'payload'}
)
"""Names every template can read (see ``docs/flows.md``)."""

_COMMAND_NAME = re.compile(r'^[-_a-z0-9\u00c0-\uffff]{1,32}$')
_VARIABLE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')


def edges(flow: model.Flow, name: str) -> list[tuple[str, str]]:
    """Every (label, target) a state can move to; ``end`` targets are not states."""
    spec = flow.states[name]
    return handler_for(spec).edges(flow, name, spec)


def _ends(flow: model.Flow, name: str) -> bool:
    return handler_for(flow.states[name]).ends(flow, name)


def validate_flow(
    flow: model.Flow,
    *,
    actions: ActionRegistry | None = None,
    permissions: Collection[str] | None = None,
    flow_names: Collection[str] | None = None,
    languages: Sequence[str] = (),
    file_roots: Sequence[pathlib.Path] | None = None,
) -> list[Diagnostic]:
    """Check one flow; ``None`` for a collection skips the rules that need it.

    :param languages: ``[bot] languages``: every user-visible text needs a translation for each.
    :param file_roots: folders ``files`` may name (data root, flow folders); a path outside is refused.
    """
    index = LineIndex(flow.source)
    found: list[Diagnostic] = []

    def report(path: Sequence[str | int], message: str, code: str) -> None:
        found.append(Diagnostic(flow.path, index.line(path), message, code))

    _check_trigger(flow, report)
    if flow.permission is not None and permissions is not None and flow.permission not in permissions:
        report(
            ['permission'],
            _('unknown permission group "{name}"{hint}').format(
                name=flow.permission, hint=did_you_mean(flow.permission, permissions)
            ),
            'unknown-permission',
        )
    known_vars = BUILTIN_VARIABLES | {name for name in _saved_names(flow)}
    for name, spec in flow.states.items():
        path = ['states', name]
        for label, target in edges(flow, name):
            if target not in flow.states:
                key = handler_for(spec).edge_key(label)
                hint = did_you_mean(target, flow.states)
                report(
                    [*path, key],
                    _('state "{name}" goes to unknown state "{target}"{hint}').format(
                        name=name, target=target, hint=hint
                    ),
                    'unknown-state',
                )
        _check_state(flow, name, spec, report, actions, flow_names)
        if file_roots is not None:
            for file in getattr(spec, 'files', []):
                _check_file(file, file_roots, [*path, 'files'], report)
        for where, source, expression in _templates(spec):
            try:
                variables = find_variables(source, expression=expression)
            except TemplateError as exc:
                report([*path, where], str(exc), 'template')
                continue
            for var in sorted(variables - known_vars):
                hint = did_you_mean(var, known_vars)
                report(
                    [*path, where],
                    _('state "{name}" uses unknown variable "{var}"{hint}').format(name=name, var=var, hint=hint),
                    'unknown-variable',
                )
    if not any(d.code == 'unknown-state' for d in found):
        _check_graph(flow, report)
    if languages:
        _check_translations(flow, languages, report)
    return found


_TEMPLATE_PART = re.compile(r'\{\{.*?\}\}|\{%.*?%\}', re.DOTALL)


def _needs_words(text: str) -> bool:
    """Whether a text says something in a language (not only ``{{ result.text }}``, an emoji or punctuation)."""
    return any(c.isalpha() for c in _TEMPLATE_PART.sub('', text))


def _visible_texts(flow: model.Flow) -> Iterator[tuple[list[str | int], model.Text]]:
    """(path, text) for every text a user reads: descriptions, option descriptions, replies, prompts, buttons."""
    yield ['flow', 'description'], flow.flow.description
    yield ['trigger', 'description'], flow.trigger.description
    for i, option in enumerate(flow.trigger.options):
        yield ['trigger', 'options', i, 'description'], option.description
    for name, spec in flow.states.items():
        for key in ('text', 'prompt', 'invalid', 'help', 'progress'):
            value = getattr(spec, key, None)
            if value:
                yield ['states', name, key], value
        for choice in getattr(spec, 'choices', None) or []:
            if choice.label:
                yield ['states', name, 'choices'], choice.label


def _check_translations(flow: model.Flow, languages: Sequence[str], report: Any) -> None:
    """``missing-translation``: a plain string counts as the first listed language; tables need every one."""
    for path, text in _visible_texts(flow):
        given = {languages[0]} if isinstance(text, str) else set(text)
        shown = text if isinstance(text, str) else next(iter(text.values()), '')
        if not _needs_words(shown):
            continue
        missing = [lang for lang in languages if lang not in given]
        if missing:
            where = '.'.join(str(p) for p in path)
            report(
                path,
                _('{where} has no {missing} translation (languages {languages}); write it as {example}').format(
                    where=where,
                    missing=', '.join(missing),
                    languages=list(languages),
                    example=f'{{ {languages[0]} = "…", {missing[0]} = "…" }}',
                ),
                'missing-translation',
            )


def _check_trigger(flow: model.Flow, report: Any) -> None:
    trigger = flow.trigger
    for name in [trigger.command, *trigger.aliases]:
        if name is not None and not _COMMAND_NAME.match(name):
            report(
                ['trigger', 'command'],
                _('command name "{name}" must be 1-32 lowercase letters, digits, - or _').format(name=name),
                'bad-value',
            )
        if name is not None and (interrupt := all_words().get(name)) is not None:  # cancel, отмена
            report(
                ['trigger', 'command'],
                _('"{name}" is reserved: users type it for the interrupt {interrupt}').format(
                    name=name, interrupt=interrupt
                ),
                'bad-value',
            )
    if trigger.aliases and trigger.command is None:
        report(['trigger', 'aliases'], _('aliases need a command'), 'bad-value')
    seen: set[str] = set()
    for i, option in enumerate(trigger.options):
        path = ['trigger', 'options', i]
        if not _COMMAND_NAME.match(option.name):
            report(
                path,
                _('option name "{name}" must be 1-32 lowercase letters, digits, - or _').format(name=option.name),
                'bad-value',
            )
        if option.name in seen:
            report(path, _('option "{name}" is declared twice').format(name=option.name), 'bad-value')
        seen.add(option.name)
        if option.choices and option.type not in ('string', 'integer', 'number'):
            report(
                path,
                _('option "{name}": only string, integer and number options take choices').format(name=option.name),
                'bad-value',
            )
    required_after_optional = False
    for i, option in enumerate(trigger.options):
        if option.is_required and required_after_optional:
            report(
                ['trigger', 'options', i],
                _('required option "{name}" follows an optional one').format(name=option.name),
                'bad-value',
            )
        required_after_optional |= not option.is_required
    if trigger.filter and trigger.filter.pattern:
        check_regex(trigger.filter.pattern, ['trigger', 'filter', 'pattern'], report)
    if trigger.filter and not trigger.message:
        report(['trigger', 'filter'], _('a filter needs message = true'), 'bad-value')


def _check_file(file: str, roots: Sequence[pathlib.Path], path: list[str | int], report: Any) -> None:
    """Refuse a ``files`` entry whose fixed part already leads outside the allowed folders.

    A templated path (``{{ result.path }}``) is checked when it is sent; its text before the first
    ``{{`` is checked here, so ``/proc/self/{{ x }}`` is refused at once.
    """
    fixed = re.split(r'\{[{%#]', file, maxsplit=1)[0]
    templated = fixed != file
    if templated and '/' not in fixed.replace('\\', '/'):
        return  # nothing fixed but (part of) a name: only the rendered path can tell
    folder = fixed.replace('\\', '/').rsplit('/', 1)[0] or '/'  # '/{{ x }}' lies in '/'
    candidate = pathlib.Path(folder if templated else fixed)
    try:
        check_name(fixed, 'file path')
    except FileRefusedError as exc:
        report(path, f'files: {exc}', 'file-outside')
        return
    gate = FileGate(roots=tuple(roots))
    if not candidate.is_absolute():
        candidate = roots[0] / candidate if roots else candidate
    if not gate.inside(candidate):
        shown = file if len(file) <= 80 else file[:77] + '...'
        report(
            path,
            _('file {path} is outside the data folder and the flow folders; it would never be sent').format(
                path=repr(shown)
            ),
            'file-outside',
        )


def _check_state(
    flow: model.Flow,
    name: str,
    spec: model.State,
    report: Any,
    actions: ActionRegistry | None,
    flow_names: Collection[str] | None,
) -> None:
    path: list[str | int] = ['states', name]
    try:
        model.parse_duration(spec.timeout)
    except ValueError as exc:
        report([*path, 'timeout'], str(exc), 'bad-value')
    if spec.on_timeout and spec.timeout is None:
        report([*path, 'on_timeout'], _('state "{name}" has on_timeout but no timeout').format(name=name), 'bad-value')
    save_as = getattr(spec, 'save_as', None)
    if save_as is not None and (not _VARIABLE.match(save_as) or save_as in BUILTIN_VARIABLES):
        report(
            [*path, 'save_as'],
            _('save_as "{name}" must be a plain name, not a built-in variable').format(name=save_as),
            'bad-value',
        )
    handler_for(spec).check(name, spec, Lint(flow, report, actions, flow_names))


def _saved_names(flow: model.Flow) -> Iterator[str]:
    for spec in flow.states.values():
        save_as = getattr(spec, 'save_as', None)
        if save_as:
            yield save_as


def _templates(spec: model.State) -> Iterator[tuple[str, str, bool]]:
    """(key, source, is_expression) for every template in a state."""
    for key in ('text', 'prompt', 'invalid', 'help', 'progress'):
        yield from ((key, t, False) for t in _texts(getattr(spec, key, None)))
    for key in ('files',):
        yield from ((key, f, False) for f in getattr(spec, key, []))
    yield from handler_for(spec).templates(spec)


def _texts(text: model.Text | None) -> Iterable[str]:
    if text is None:
        return []
    return [text] if isinstance(text, str) else list(text.values())


def _check_graph(flow: model.Flow, report: Any) -> None:
    reachable: set[str] = set()
    stack = [flow.initial]
    while stack:
        name = stack.pop()
        if name in reachable:
            continue
        reachable.add(name)
        stack.extend(target for _, target in edges(flow, name))
    for name in flow.states:
        if name not in reachable:
            report(
                ['states', name],
                _('state "{name}" is unreachable from "{initial}"').format(name=name, initial=flow.initial),
                'unreachable',
            )
    # A state can end if it is terminal or leads to one along its normal (non-timeout) edges: walk the
    # reversed edges from the terminal states once (linear in states + edges).
    incoming: dict[str, list[str]] = {}
    for name in flow.states:
        for label, target in edges(flow, name):
            if label != 'timeout':
                incoming.setdefault(target, []).append(name)
    can_end = {name for name in flow.states if _ends(flow, name)}
    pending = list(can_end)
    while pending:
        for source in incoming.get(pending.pop(), ()):
            if source not in can_end:
                can_end.add(source)
                pending.append(source)
    for name in flow.states:
        if name in reachable and name not in can_end:
            report(
                ['states', name], _('the flow can never end once it reaches state "{name}"').format(name=name), 'no-end'
            )


def validate(
    flows: Sequence[model.Flow],
    *,
    actions: ActionRegistry | None = None,
    permissions: Collection[str] | None = None,
    languages: Sequence[str] = (),
    file_roots: Sequence[pathlib.Path] | None = None,
) -> list[Diagnostic]:
    """Check every flow and what they share: flow names and command names must be unique."""
    found: list[Diagnostic] = []
    names = {flow.name for flow in flows}
    owners: dict[str, model.Flow] = {}
    commands: dict[str, model.Flow] = {}
    for flow in flows:
        found += validate_flow(
            flow,
            actions=actions,
            permissions=permissions,
            flow_names=names,
            languages=languages,
            file_roots=file_roots,
        )
        index = LineIndex(flow.source)
        if flow.name in owners:
            found.append(
                Diagnostic(
                    flow.path,
                    index.line(['flow', 'name']),
                    _('flow "{name}" is also defined in {path}').format(name=flow.name, path=owners[flow.name].path),
                    'duplicate-flow',
                )
            )
        owners.setdefault(flow.name, flow)
        for command in [flow.trigger.command, *flow.trigger.aliases]:
            if command is None:
                continue
            if command in commands and commands[command] is not flow:
                found.append(
                    Diagnostic(
                        flow.path,
                        index.line(['trigger', 'command']),
                        _('command "{command}" is also defined by flow "{flow}" ({path})').format(
                            command=command, flow=commands[command].name, path=commands[command].path
                        ),
                        'duplicate-command',
                    )
                )
            commands.setdefault(command, flow)
    return found
