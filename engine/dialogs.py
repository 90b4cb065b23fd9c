"""Scripted dialog tests: TOML scripts that talk to the real engine, so maintainers test flows without code.

A script (``flows/tests/*.toml``) lists cases; each case is a sequence of user turns (command,
text, attachment, button press, a timeout, a notification) with the bot output expected after each,
and the expected final state, conversation data and stored records. Actions can be replaced by
canned results, so a training dialog runs without a model. Every case runs on a fresh
:class:`~engine.runtime.Engine` with an in-memory store and a :class:`~engine.doubles.RecordingAdapter`; timeouts are
fired directly (no sleeping). See ``docs/maintainers.md`` for the format.

``flowbot test`` and ``make dialogs`` run them; the adapter they talk through is :mod:`engine.doubles`.
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import functools
import logging
import mimetypes
import pathlib
import re
import tempfile
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import attrs
import cattrs

from engine.api import Attachment, ChoicePress, Command, ConversationKey, Event, Message, User
from engine.app import build_app
from engine.commands import UsageError
from engine.config import Config
from engine.doubles import RecordingAdapter, Sent, shown
from engine.errors import FlowbotError
from engine.flows import model
from engine.flows.loader import Diagnostic, FlowError, LineIndex, did_you_mean, load_paths, read_flow_file
from engine.i18n import _, ngettext
from engine.runtime import Conversation, Engine, Internal
from engine.shipped import flow_folders
from engine.states.actions import ActionContext, ActionError, ActionFn, ActionRegistry
from engine.states.handlers import question
from engine.states.kinds import jsonable
from engine.store import MemoryStore
from engine.templates import render_value

__all__ = [
    'ENDED',
    'CannedAction',
    'Case',
    'CaseResult',
    'Expect',
    'Script',
    'ScriptError',
    'ScriptUser',
    'Turn',
    'format_results',
    'load_script',
    'run_case',
    'run_paths',
    'run_script',
    'script_files',
    'uncovered_flows',
]

_log = logging.getLogger(__name__)

ENDED = 'end'
"""The ``state`` value meaning "no conversation is running any more"."""


class ScriptError(FlowbotError):
    """A script file cannot be read or does not follow the format; the message says where."""


# -- the script format ------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Expect:
    """One expected bot output. A plain string in a script means ``{ text = "..." }`` (exact)."""

    text: str | None = None
    contains: str | None = None
    regex: str | None = None
    file: str | None = None
    """A file name or glob (``feedback-*.png``): the output must be a file with a matching name."""
    voice: bool | None = None
    choices: list[str] | None = None
    """Labels of the buttons offered, in order."""

    def describe(self) -> str:
        """The expectation in a few words, for a failure report (``contains 'saved'``)."""
        parts = [
            f'{name} {value!r}'
            for name, value in (
                ('text', self.text),
                ('contains', self.contains),
                ('regex', self.regex),
                ('file', self.file),
                ('voice', self.voice),
                ('choices', self.choices),
            )
            if value is not None
        ]
        return ', '.join(parts) or 'any output'


@attrs.frozen(kw_only=True)
class CannedAction:
    """What an action returns (or the error it raises) instead of running.

    Strings in ``result`` are templates over the call's arguments and ``script_dir`` (the script's
    folder), e.g. ``{ reply = "echo: {{ text }}", path = "{{ script_dir }}/files/report.txt" }``.
    """

    result: Any = None
    error: str | None = None


@attrs.frozen(kw_only=True)
class Turn:
    """One thing the user does, and what should follow."""

    command: str | None = None
    args: str | None = None
    """The raw argument text of a prefix command (``!feedback great bot``)."""
    options: dict[str, Any] | None = None
    """Typed options of a slash command (instead of ``args``)."""
    text: str | None = None
    attach: str | None = None
    """A file path relative to the script; sent with ``text`` (or with ``command``)."""
    content_type: str | None = None
    press: str | None = None
    """The value (or label) of an offered button."""
    timeout: bool = False
    """Let the current state's timeout fall due now."""
    notify: str | None = None
    """Fire ``Engine.notify`` on this topic (a job finished, ...)."""
    payload: dict[str, Any] = attrs.field(factory=dict)
    """The notification's payload; strings may use ``{{ script_dir }}``."""
    locale: str | None = None
    expect: list[Expect] | None = None
    """Every output of this turn, in order; left out: not checked."""
    state: str | None = None
    """The state after the turn, or ``end`` when the conversation is over."""
    data: dict[str, Any] | None = None
    """Values the conversation data must contain after the turn."""

    def describe(self) -> str:
        """The turn as the user would type it (``!feedback great``, ``[press yes]``), for reports and transcripts."""
        if self.command is not None:
            if self.options is not None:
                words = ' '.join(f'{k}={v!r}' for k, v in self.options.items())
                return f'/{self.command}{" " + words if words else ""}'
            return f'!{self.command}{" " + self.args if self.args else ""}' + (
                f' [attach {self.attach}]' if self.attach else ''
            )
        if self.attach is not None:
            return f'[attach {self.attach}]' + (f' {self.text!r}' if self.text else '')
        if self.text is not None:
            return repr(self.text)
        if self.press is not None:
            return f'[press {self.press}]'
        if self.timeout:
            return '[timeout]'
        return f'[notify {self.notify}]'


@attrs.frozen(kw_only=True)
class ScriptUser:
    """Who talks in a case: ids and roles decide permission groups when the case is not ``trusted``."""

    id: str = 'tester'
    name: str = 'Tester'
    roles: list[str] = attrs.field(factory=list)
    guild: str | None = None


@attrs.frozen(kw_only=True)
class Case:
    """One conversation from a fresh engine: the user's turns, canned actions, and what must hold at the end."""

    name: str
    turns: list[Turn]
    actions: dict[str, CannedAction] = attrs.field(factory=dict)
    """Canned actions for this case (over the script's)."""
    user: ScriptUser = attrs.field(factory=ScriptUser)
    trusted: bool = True
    """Like the console: every permission granted. ``false`` tests permission groups."""
    dm: bool = False
    locale: str | None = None
    state: str | None = None
    """Final state (``end`` when the conversation is over)."""
    data: dict[str, Any] | None = None
    """Final conversation data (a subset); for an ended conversation, its data when it ended."""
    records: dict[str, list[dict[str, Any]]] = attrs.field(factory=dict)
    """Stored records by kind, each a subset of the real one, in order, e.g. ``feedback = [{ text = "hi" }]``."""
    calls: dict[str, list[dict[str, Any]]] = attrs.field(factory=dict)
    """Arguments each action was called with, in order (a subset of each call's arguments)."""


@attrs.frozen(kw_only=True)
class Script:
    """One script file: the flow it tests, the flows to load, actions canned for every case, and its cases."""

    path: pathlib.Path
    flow: str
    """The flow under test (shipped flows without a script are reported)."""
    cases: list[Case]
    description: str = ''
    flows: list[str] = attrs.field(factory=list)
    """Flow files or folders relative to the script; default: the configured flow folders."""
    actions: dict[str, CannedAction] = attrs.field(factory=dict)


_converter = cattrs.Converter(forbid_extra_keys=True)
_SCRIPT_KEYS = sorted(
    {f.name for cls in (Script, Case, Turn, Expect, CannedAction, ScriptUser) for f in attrs.fields(cls)} - {'path'}
)


def _structure_expect(value: Any, _type: Any) -> list[Expect] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(Expect(text=item))
        elif isinstance(item, dict):
            out.append(_converter.structure(item, Expect))
        else:
            raise ValueError(
                _('an expectation is a string (exact text) or a table such as {example}').format(
                    example='{ contains = "..." }'
                )
            )
    return out


_converter.register_structure_hook_func(lambda t: t == (list[Expect] | None), _structure_expect)
_converter.register_structure_hook_func(lambda t: t is Any, lambda v, _: v)


def _turn_problem(turn: Turn) -> str | None:
    kinds = [
        name
        for name, given in (
            ('command', turn.command is not None),
            ('text', turn.text is not None and turn.command is None and turn.attach is None),
            ('attach', turn.attach is not None and turn.command is None),
            ('press', turn.press is not None),
            ('timeout', turn.timeout),
            ('notify', turn.notify is not None),
        )
        if given
    ]
    if len(kinds) != 1:
        found = ', '.join(kinds) or _('none')
        return _('a turn needs exactly one of command, text, attach, press, timeout or notify (found: {found})').format(
            found=found
        )
    if turn.args is not None and turn.options is not None:
        return _('give either args (typed text) or options (slash command), not both')
    if (turn.args is not None or turn.options is not None) and turn.command is None:
        return _('args and options belong to a command turn')
    return None


def load_script(path: pathlib.Path) -> Script:
    """Read and check one script; :class:`ScriptError` names the file, line and key of a problem."""
    try:  # as a flow file is read: a FIFO, a device or a huge file is refused, never waited on
        text = read_flow_file(path)
        raw = tomllib.loads(text)
    except FlowError as exc:
        error = exc.diagnostics[0].message
        raise ScriptError(_('{path}: cannot read the script: {error}').format(path=path, error=error)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ScriptError(_('{path}: cannot read the script: {error}').format(path=path, error=exc)) from exc
    except RecursionError:
        error = _('TOML nested too deeply to read')
        raise ScriptError(_('{path}: cannot read the script: {error}').format(path=path, error=error)) from None
    index = LineIndex(text)
    try:
        script = _converter.structure({**raw, 'path': str(path)}, Script)
    except Exception as exc:
        messages = []
        for message in cattrs.transform_error(exc, path='$'):
            what, _sep, where = message.partition(' @ $')
            parts: list[str | int] = [
                int(p) if p.isdigit() else p.strip('\'"') for p in re.split(r'\.|\[|\]', where) if p
            ]
            extra = re.fullmatch(r'extra fields found \((.+)\)', what)
            if extra:
                keys = [k.strip() for k in extra.group(1).split(',')]
                parts.append(keys[0])
                unknown = _('unknown key "{key}"{hint}')
                what = '; '.join(unknown.format(key=k, hint=did_you_mean(k, _SCRIPT_KEYS)) for k in keys)
            line = index.line(parts)
            messages.append(f'{path}{":" + str(line) if line else ""}: {where.lstrip(".") or _("script")}: {what}')
        raise ScriptError('\n'.join(messages)) from exc
    problems = []
    if not script.cases:
        problems.append(_('{path}: a script needs at least one [[cases]] table').format(path=path))
    for c, case in enumerate(script.cases, start=1):
        if not case.turns:
            problems.append(
                _('{path}: case {number} "{name}" has no [[cases.turns]]').format(path=path, number=c, name=case.name)
            )
        for t, turn in enumerate(case.turns, start=1):
            problem = _turn_problem(turn)
            if problem:
                problems.append(
                    _('{path}: case "{name}", turn {number}: {problem}').format(
                        path=path, name=case.name, number=t, problem=problem
                    )
                )
    for name, canned in {**script.actions, **{k: v for c in script.cases for k, v in c.actions.items()}}.items():
        if canned.result is not None and canned.error is not None:
            problems.append(_('{path}: action "{name}": give result or error, not both').format(path=path, name=name))
    if problems:
        raise ScriptError('\n'.join(problems))
    return script


def script_files(paths: Iterable[pathlib.Path]) -> list[pathlib.Path]:
    """``*.toml`` in each folder (and below), or the files given."""
    files: list[pathlib.Path] = []
    for path in paths:
        try:
            files.extend(sorted(path.rglob('*.toml')) if path.is_dir() else [path])
        except OSError:  # a name too long, a folder not readable: reading it reports why, as a failed script
            files.append(path)
    return files


class _ScriptEngine(Engine):
    """The real engine, remembering each finished conversation's flow, state and data."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.finished: dict[ConversationKey, tuple[str, str, dict[str, Any]]] = {}

    async def finish(self, conv: Conversation) -> None:
        self.finished[conv.key] = (conv.compiled.name, conv.state, copy.deepcopy(conv.data))
        await super().finish(conv)


# -- running ----------------------------------------------------------------------------------------


@attrs.define(kw_only=True)
class CaseResult:
    """How one case went; a failure carries its report (the turn, expected and actual, the conversation)."""

    script: pathlib.Path
    case: str
    passed: bool
    message: str = ''
    flows: set[str] = attrs.field(factory=set)
    """Flows that conversations ran on (for coverage)."""
    transcript: list[str] = attrs.field(factory=list)
    """The conversation as ``user>``/``bot>`` lines (``flowbot test --show`` prints it)."""


class _Failure(FlowbotError):
    pass


def _mismatch(expected: Any, actual: Any, where: str) -> str | None:
    """Where ``actual`` differs from ``expected`` (tables may have more keys), or ``None``."""
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return _('{where}: expected a table, actual {actual}').format(where=where, actual=repr(actual))
        for key, value in expected.items():
            if key not in actual:
                return _('{where}: expected {expected}, actual: missing (keys: {keys})').format(
                    where=f'{where}.{key}', expected=repr(value), keys=', '.join(map(str, actual))
                )
            found = _mismatch(value, actual[key], f'{where}.{key}')
            if found:
                return found
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list | tuple) or len(actual) != len(expected):
            return ngettext(
                '{where}: expected {count} item {expected}, actual {actual}',
                '{where}: expected {count} items {expected}, actual {actual}',
                len(expected),
            ).format(where=where, count=len(expected), expected=repr(expected), actual=repr(actual))
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            found = _mismatch(e, a, f'{where}[{i}]')
            if found:
                return found
        return None
    if expected != actual or isinstance(expected, bool) != isinstance(actual, bool):
        return _('{where}: expected {expected}, actual {actual}').format(
            where=where, expected=repr(expected), actual=repr(actual)
        )
    return None


def _text_diff(expected: str, actual: str) -> str:
    lines = difflib.ndiff(expected.splitlines() or [''], actual.splitlines() or [''])
    return '\n'.join(f'      {line}' for line in lines if not line.startswith('?'))


def _check_output(expect: Expect, output: Sent) -> str | None:
    if expect.file is not None:
        name = output.path.name if output.path else None
        if output.kind != 'file' or name is None or not fnmatch.fnmatch(name, expect.file):
            return _('expected a file named {name}, actual {actual}').format(
                name=repr(expect.file), actual=output.describe()
            )
    if expect.voice is not None and output.voice != expect.voice:
        return _('expected voice={voice}, actual {actual}').format(voice=expect.voice, actual=output.describe())
    if expect.choices is not None and list(output.choices) != expect.choices:
        return _('expected buttons {expected}, actual {actual}').format(
            expected=repr(expect.choices), actual=repr(list(output.choices))
        )
    if expect.text is not None and output.text != expect.text:
        return _(
            'expected text {expected}\n    actual text   {actual}\n    diff (- expected, + actual):\n{diff}'
        ).format(expected=shown(expect.text), actual=shown(output.text), diff=_text_diff(expect.text, output.text))
    if expect.contains is not None and expect.contains not in output.text:
        return _('expected text containing {expected}\n    actual text {actual}').format(
            expected=repr(expect.contains), actual=shown(output.text)
        )
    if expect.regex is not None and not re.search(expect.regex, output.text):
        return _('expected text matching /{pattern}/\n    actual text {actual}').format(
            pattern=expect.regex, actual=shown(output.text)
        )
    return None


class _Run:
    """One case on one fresh engine."""

    def __init__(self, script: Script, case: Case, config: Config, flows: Sequence[model.Flow], workdir: str) -> None:
        self.script = script
        self.case = case
        self.calls: dict[str, list[dict[str, Any]]] = {}
        bot = attrs.evolve(config.bot, data_root=pathlib.Path(workdir), store=':memory:', reload=False)
        self.config = attrs.evolve(config, bot=bot)
        self.store = MemoryStore()
        app = build_app(self.config, store=self.store, engine_type=_ScriptEngine, load_flows=False)
        self.engine = cast(_ScriptEngine, app.engine)
        self.ctx = app.plugins
        self._wrap_actions(self.engine.actions, {**script.actions, **case.actions})
        problems = self.engine.library.check(flows)
        if problems:
            raise _Failure(_('the flows do not pass lint:') + '\n' + '\n'.join(f'    {d}' for d in problems))
        self.engine.library.activate(flows)
        self.adapter = RecordingAdapter('console', grants_all=case.trusted)
        self.engine.add_adapter(self.adapter)
        user = case.user
        self.key = ConversationKey(self.adapter.name, 'dm' if case.dm else 'script', user.id)
        self.user = User(id=user.id, name=user.name, roles=frozenset(user.roles), guild=user.guild)
        self.transcript: list[str] = []
        self.flows_run: set[str] = set()

    def _wrap_actions(self, actions: ActionRegistry, canned: Mapping[str, CannedAction]) -> None:
        """Record every call's arguments; replace the canned ones (keeping the real signature for lint)."""
        for name in [*actions, *(n for n in canned if n not in actions)]:
            original = actions.get(name)
            actions.add(name, self._recorder(name, original.fn if original else None, canned.get(name)), replace=True)

    def _recorder(self, name: str, fn: ActionFn | None, canned: CannedAction | None) -> ActionFn:
        calls = self.calls
        script_dir = str(self.script.path.parent.resolve())

        async def record(ctx: ActionContext, **args: Any) -> Any:
            calls.setdefault(name, []).append(jsonable(args))
            if canned is None:
                if fn is None:
                    raise ActionError(_('the action "{name}" is not available').format(name=name))
                return await fn(ctx, **args)
            if canned.error is not None:
                raise ActionError(canned.error)
            context = {**args, 'script_dir': script_dir}
            return render_value(canned.result if canned.result is not None else {}, context)

        if fn is None:
            return record
        return functools.wraps(fn)(record)

    def _event(self, turn: Turn) -> Event | None:
        locale = turn.locale or self.case.locale
        common: dict[str, Any] = {'key': self.key, 'user': self.user, 'locale': locale, 'is_dm': self.case.dm}
        attachments: tuple[Attachment, ...] = ()
        if turn.attach is not None:
            path = (self.script.path.parent / turn.attach).resolve()
            if not path.is_file():
                raise _Failure(_('the file to attach does not exist: {path}').format(path=path))
            content_type = turn.content_type or mimetypes.guess_type(path.name)[0] or 'application/octet-stream'
            attachments = (Attachment(name=path.name, content_type=content_type, size=path.stat().st_size, path=path),)
        if turn.command is not None:
            if turn.options is not None:
                return Command(name=turn.command, options=turn.options, attachments=attachments, **common)
            options = self.engine.options(turn.command, turn.args or '', self.key, attachments, locale)
            return Command(name=turn.command, options=options, attachments=attachments, **common)
        if turn.press is not None:
            return ChoicePress(value=turn.press, **common)
        if turn.text is not None or attachments:
            return Message(text=turn.text or '', attachments=attachments, **common)
        return None

    def _observe(self) -> None:
        conv = self.engine.conversation(self.key)
        if conv is not None:
            self.flows_run.add(conv.compiled.name)
            self.flows_run.update(frame['flow'] for frame in conv.stack)
        finished = self.engine.finished.get(self.key)
        if finished:
            self.flows_run.add(finished[0])

    async def _do(self, turn: Turn) -> None:
        try:
            event = self._event(turn)
        except UsageError as exc:  # a command typed wrong: answered as an adapter would, nothing starts
            await self.adapter.send_text(self.key, str(exc))
            return
        if event is not None:
            if isinstance(event, ChoicePress):
                event = self._press(event)
            await self.engine.dispatch(event)
        elif turn.timeout:
            conv = self.engine.conversation(self.key)
            if conv is None:
                raise _Failure(_('no conversation is running, so nothing can time out'))
            if conv.scope.timer is None:
                raise _Failure(
                    _('state "{state}" of flow {flow} has no timeout').format(state=conv.state, flow=conv.compiled.name)
                )
            await self.engine.dispatch(Internal(kind='timeout', epoch=conv.epoch), self.key)
        else:
            assert turn.notify is not None
            payload = render_value(turn.payload, {'script_dir': str(self.script.path.parent.resolve())})
            if not await self.engine.notify(turn.notify, payload):
                raise _Failure(_('no conversation waits on topic {topic}').format(topic=repr(turn.notify)))
        if not await self.engine.wait_idle(timeout=30.0):
            raise _Failure(_('the engine was still busy 30 s after the turn (an action that never returns?)'))

    def _press(self, event: ChoicePress) -> ChoicePress:
        """Accept a button's label as well as its value, like a user reading the buttons."""
        offered = [o for o in reversed(self.adapter.sent) if o.kind == 'ask'][:1]
        conv = self.engine.conversation(self.key)
        spec = question(conv.spec) if conv else None
        if offered and spec is not None and event.value in offered[0].choices:
            for i, label in enumerate(offered[0].choices):
                if label == event.value and i < len(spec.choices):
                    return attrs.evolve(event, value=spec.choices[i].value)
        return event

    def _state(self) -> tuple[str, dict[str, Any]]:
        conv = self.engine.conversation(self.key)
        if conv is not None:
            return conv.state, conv.data
        finished = self.engine.finished.get(self.key)
        return ENDED, finished[2] if finished else {}

    async def run(self) -> None:
        for hook in self.ctx.on_start:
            await hook()
        try:
            for number, turn in enumerate(self.case.turns, start=1):
                await self._turn(number, turn)
            await self._final()
        finally:
            await self.engine.stop()
            for hook in self.ctx.on_stop:
                try:
                    await hook()
                except Exception:
                    _log.exception('plugin stop hook failed after script case %s', self.case.name)

    async def _turn(self, number: int, turn: Turn) -> None:
        start = len(self.adapter.sent)
        self.transcript.append(f'user> {turn.describe()}')
        where = _('turn {number} ({turn})').format(number=number, turn=turn.describe())
        try:
            await self._do(turn)
        except _Failure as exc:
            raise _Failure(f'{where}: {exc}') from None
        finally:
            self._observe()
        outputs = [o for o in self.adapter.sent[start:] if o.kind != 'edit']
        self.transcript.extend(f'bot>  [{o.message_id}] {o.describe()}' for o in outputs)
        if turn.expect is not None:
            if len(outputs) != len(turn.expect):
                nothing = '      ' + _('(nothing)')
                expected = '\n'.join(f'      {e.describe()}' for e in turn.expect) or nothing
                actual = '\n'.join(f'      {o.describe()}' for o in outputs) or nothing
                wanted = ngettext('{count} output', '{count} outputs', len(turn.expect)).format(count=len(turn.expect))
                raise _Failure(
                    _('{where}: expected {outputs}, the bot sent {count}').format(
                        where=where, outputs=wanted, count=len(outputs)
                    )
                    + '\n    '
                    + _('expected:')
                    + f'\n{expected}\n    '
                    + _('actual:')
                    + f'\n{actual}'
                )
            for i, (expect, output) in enumerate(zip(turn.expect, outputs, strict=True), start=1):
                problem = _check_output(expect, output)
                if problem:
                    raise _Failure(
                        _('{where}, output {number} of {count}:').format(where=where, number=i, count=len(outputs))
                        + f'\n    {problem}'
                    )
        self._check_state(where, turn.state, turn.data)

    def _check_state(self, where: str, state: str | None, data: dict[str, Any] | None) -> None:
        """Fail unless the conversation is in ``state`` with ``data`` (a subset); ``None``: not checked."""
        actual_state, actual_data = self._state()
        if state is not None and actual_state != state:
            raise _Failure(
                _('{where}: expected state {expected}, actual {actual}').format(
                    where=where, expected=repr(state), actual=repr(actual_state)
                )
            )
        if data is not None:
            problem = _mismatch(data, actual_data, 'data')
            if problem:
                raise _Failure(f'{where}: {problem}')

    async def _final(self) -> None:
        case = self.case
        self._check_state(_('at the end'), case.state, case.data)
        for kind, expected in case.records.items():
            problem = _mismatch(expected, await self.store.list_records(kind), f'records.{kind}')
            if problem:
                raise _Failure(_('at the end') + f': {problem}')
        for name, expected in case.calls.items():
            problem = _mismatch(expected, self.calls.get(name, []), f'calls."{name}"')
            if problem:
                raise _Failure(_('at the end') + f': {problem}')


async def run_case(script: Script, case: Case, config: Config, flows: Sequence[model.Flow]) -> CaseResult:
    """Run one case on a fresh engine; a failure comes back in the result, never raised."""
    with tempfile.TemporaryDirectory(prefix='flowbot-script-') as workdir:
        run: _Run | None = None
        try:
            run = _Run(script, case, config, flows, workdir)
            await run.run()
        except _Failure as exc:
            transcript = '\n'.join(f'    {line}' for line in (run.transcript if run else []))
            message = str(exc) + ('\n  ' + _('conversation:') + f'\n{transcript}' if transcript else '')
            return CaseResult(
                script=script.path, case=case.name, passed=False, message=message, flows=run.flows_run if run else set()
            )
        except Exception as exc:
            _log.exception('script %s case %s crashed', script.path, case.name)
            message = _('crashed: {error}').format(error=repr(exc))
            return CaseResult(script=script.path, case=case.name, passed=False, message=message)
        return CaseResult(
            script=script.path, case=case.name, passed=True, flows=run.flows_run, transcript=run.transcript
        )


def _script_flows(script: Script, config: Config) -> tuple[list[model.Flow], list[Diagnostic]]:
    paths = [script.path.parent / p for p in script.flows] if script.flows else flow_folders(config)
    return load_paths(paths)


async def run_script(script: Script, config: Config) -> list[CaseResult]:
    """Run every case of ``script``, each on a fresh engine; flows that do not load fail every case.

    :param config: the bot's configuration (plugins, permission groups, flow folders unless the script names its own).
    """
    flows, problems = _script_flows(script, config)
    if problems:
        message = _('the flows do not load:') + '\n' + '\n'.join(f'    {d}' for d in problems)
        return [CaseResult(script=script.path, case=case.name, passed=False, message=message) for case in script.cases]
    names = [f.name for f in flows]
    if script.flow not in names:  # a renamed or deleted flow must not leave a script passing on other flows
        message = _('the script is for flow "{flow}", which does not exist{hint}').format(
            flow=script.flow, hint=did_you_mean(script.flow, names)
        )
        return [CaseResult(script=script.path, case=case.name, passed=False, message=message) for case in script.cases]
    return [await run_case(script, case, config, flows) for case in script.cases]


async def run_paths(paths: Iterable[pathlib.Path], config: Config) -> list[CaseResult]:
    """Run every script under ``paths``; unreadable scripts are failed results too."""
    results: list[CaseResult] = []
    files = script_files(paths)
    if not files:
        raise ScriptError(_('no dialog scripts (*.toml) in {paths}').format(paths=', '.join(str(p) for p in paths)))
    for file in files:
        try:
            script = load_script(file)
        except ScriptError as exc:
            results.append(CaseResult(script=file, case='(script)', passed=False, message=str(exc)))
            continue
        results.extend(await run_script(script, config))
    return results


def uncovered_flows(results: Sequence[CaseResult], config: Config) -> list[str]:
    """Configured flows no case ran (every shipped flow should have a script)."""
    flows, _ = load_paths(flow_folders(config))
    ran = set().union(*(r.flows for r in results)) if results else set()
    return sorted({f.name for f in flows} - ran)


def format_results(results: Sequence[CaseResult], uncovered: Sequence[str] = (), *, show: bool = False) -> str:
    """pytest-like report: each failure with its turn, expected and actual, then a summary line.

    :param show: also print the conversation of every passing case (to write expectations from).
    """
    lines = []
    for result in results:
        if show and result.passed:
            lines += [f'PASSED {result.script} :: {result.case}', *(f'    {t}' for t in result.transcript), '']
        if not result.passed:
            body = '\n'.join(f'  {line}' if line else '' for line in result.message.splitlines())
            lines += [f'FAILED {result.script} :: {result.case}', body, '']
    passed = sum(r.passed for r in results)
    failed = len(results) - passed
    if uncovered:
        lines.append(_('flows without a dialog script: {flows}').format(flows=', '.join(uncovered)))
    # "N passed, N failed" stays English, like PASSED/FAILED: CI tools read this closing line.
    scripts = len({r.script for r in results})
    files = ngettext('{count} script file', '{count} script files', scripts).format(count=scripts)
    lines.append(f'{passed} passed, {failed} failed ({files})')
    return '\n'.join(lines)
