"""Loading flow files: TOML text to the neutral :mod:`engine.flows.model`, with file:line errors.

Safe by default: the loader only builds data classes; nothing in a flow file is imported or called.
"""

from __future__ import annotations

import difflib
import logging
import os
import pathlib
import re
import stat
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from engine import i18n
from engine.config import format_exception
from engine.errors import FlowbotError
from engine.files import FileRefusedError, check_name
from engine.flows import model

_log = logging.getLogger(__name__)

__all__ = [
    'MAX_FLOW_BYTES',
    'Diagnostic',
    'FlowError',
    'LineIndex',
    'did_you_mean',
    'load_file',
    'load_paths',
    'load_text',
]


@attrs.frozen
class Diagnostic:
    """One problem in a flow file."""

    file: str
    line: int | None
    message: str
    code: str = 'schema'

    def __str__(self) -> str:
        where = f'{self.file}:{self.line}' if self.line else self.file
        return f'{where}: {self.message} [{self.code}]'


class FlowError(FlowbotError):
    """A flow cannot be used; carries every diagnostic found."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        super().__init__('\n'.join(str(d) for d in diagnostics))
        self.diagnostics = list(diagnostics)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean "x"?)`` for the closest candidate, or an empty string (also when there are
    too many candidates to compare quickly: a flow of thousands of states)."""
    names = list(candidates)
    if len(names) > 500 or len(word) > 100:
        return ''
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return i18n._(' (did you mean "{word}"?)').format(word=close[0]) if close else ''


_HEADER = re.compile(r'^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$')
_KEY = re.compile(r'^\s*([A-Za-z0-9_\-."\']+)\s*=')


class LineIndex:
    """Maps TOML paths like ``("states", "ask", "prompt")`` to the line that defines them.

    ``tomllib`` keeps no positions, so this scans headers and ``key =`` lines; inline tables
    resolve to the line of their key, which is what a reader needs.
    """

    def __init__(self, text: str) -> None:
        self._lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        for number, line in enumerate(text.splitlines(), start=1):
            if header := _HEADER.match(line):
                table = _split_key(header.group(1))
                self._lines.setdefault(table, number)
            elif key := _KEY.match(line):
                self._lines.setdefault(table + _split_key(key.group(1)), number)

    def line(self, path: Sequence[str | int]) -> int | None:
        """The line defining ``path``, or of its nearest defined parent, so a message points at the closest place.

        :param path: keys from the top (list indexes are skipped: items share their array's header).
        :returns: a 1-based line number, or ``None`` when nothing on the path is defined.
        """
        parts = tuple(str(p) for p in path if not isinstance(p, int))
        while parts:
            if parts in self._lines:
                return self._lines[parts]
            parts = parts[:-1]
        return None


def _split_key(key: str) -> tuple[str, ...]:
    return tuple(part.strip().strip('"\'') for part in key.split('.'))


_converter = cattrs.Converter(forbid_extra_keys=True)
_RENAMES: dict[type, dict[str, str]] = {
    model.Branch: {'when': 'if'},
    model.Decide: {'otherwise': 'else'},
    model.SubFlow: {'args': 'with'},
}


def _structure_choice_item(value: Any, _: type) -> model.ChoiceItem:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return model.ChoiceItem(value=str(value), label=str(value))
    return _converter.structure_attrs_fromdict(value, model.ChoiceItem)


def _structure_text(value: Any, _: Any) -> model.Text:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value and all(isinstance(v, str) for v in value.values()):
        return dict(value)
    raise ValueError(
        i18n._('expected text or a table of translations such as {example}').format(
            example='{ en = "...", ru = "..." }'
        )
    )


def _hook(tp: Any, fn: Any) -> None:
    """Register ``fn`` for exactly ``tp`` (unions and generics included)."""
    _converter.register_structure_hook_func(lambda t: t == tp, fn)


_converter.register_structure_hook(model.ChoiceItem, _structure_choice_item)
_hook(model.Text, _structure_text)
_hook(model.Text | None, lambda v, t: None if v is None else _structure_text(v, t))
_hook(str | float | None, lambda v, _: v)
_hook(list[str | int | float], lambda v, _: _scalars(v))
_hook(Any, lambda v, _: v)

for _cls, _renames in _RENAMES.items():
    _converter.register_structure_hook(
        _cls,
        make_dict_structure_fn(
            _cls,
            _converter,
            _cattrs_forbid_extra_keys=True,
            **{k: override(rename=v) for k, v in _renames.items()},  # type: ignore[arg-type]
        ),
    )


def _scalars(value: Any) -> list[str | int | float]:
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise ValueError(i18n._('expected a list of strings or numbers'))
    return list(value)


def _fields(cls: type) -> set[str]:
    renames = _RENAMES.get(cls, {})
    return {renames.get(f.name, f.name) for f in attrs.fields(cls)}


_TOP_KEYS = {'flow', 'trigger', 'permission', 'states'}


def load_text(text: str, file: str = '<flow>') -> model.Flow:
    """Parse one flow; raise :class:`FlowError` with every schema problem found."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r'\(at line (\d+), column (\d+)\)', str(exc))
        line = int(match.group(1)) if match else None
        message = re.sub(r'\s*\(at line \d+, column \d+\)', '', str(exc))
        raise FlowError(
            [Diagnostic(file, line, i18n._('TOML syntax error: {error}').format(error=message), 'toml')]
        ) from exc
    except RecursionError:
        raise FlowError([Diagnostic(file, None, i18n._('TOML nested too deeply to read'), 'toml')]) from None
    index = LineIndex(text)
    problems: list[Diagnostic] = []

    def problem(path: Sequence[str | int], message: str, code: str = 'schema') -> None:
        dotted = '.'.join(str(p) for p in path)
        problems.append(Diagnostic(file, index.line(path), f'{dotted}: {message}' if dotted else message, code))

    for key in raw.keys() - _TOP_KEYS:
        problem([key], i18n._('unknown key{hint}').format(hint=did_you_mean(key, _TOP_KEYS)))
    flow_info = _structure(raw.get('flow'), model.FlowInfo, ['flow'], problem, required=True)
    trigger = _structure(raw.get('trigger', {}), model.Trigger, ['trigger'], problem)
    permission = raw.get('permission')
    if permission is not None and not isinstance(permission, str):
        problem(['permission'], i18n._('expected the name of a permission group (a string)'))
    states: dict[str, model.State] = {}
    raw_states = raw.get('states', {})
    if not isinstance(raw_states, dict) or not raw_states:
        problem(['states'], i18n._('a flow needs at least one [states.NAME] table'))
        raw_states = {}
    for name, table in raw_states.items():
        path = ['states', name]
        if not isinstance(table, dict):
            problem(path, i18n._('expected a table'))
            continue
        kind = table.get('kind')
        cls = model.STATE_KINDS.get(kind) if isinstance(kind, str) else None
        if cls is None:
            hint = did_you_mean(str(kind), model.STATE_KINDS) if kind else ''
            problem(
                [*path, 'kind'],
                i18n._('kind must be one of {kinds}, not {kind}{hint}').format(
                    kinds=', '.join(model.STATE_KINDS), kind=repr(kind), hint=hint
                ),
            )
            continue
        body = {k: v for k, v in table.items() if k != 'kind'}
        state = _structure(body, cls, path, problem)
        if state is not None:
            states[name] = state
    if problems or flow_info is None or trigger is None:
        raise FlowError(problems)
    return model.Flow(
        flow=flow_info,
        trigger=trigger,
        permission=permission if isinstance(permission, str) else None,
        states=states,
        source=text,
        path=file,
    )


def _structure(value: Any, cls: type[Any], path: list[str | int], problem: Any, *, required: bool = False) -> Any:
    if value is None:
        if required:
            problem(path, i18n._('missing [{table}] table').format(table='.'.join(map(str, path))))
        return None
    if not isinstance(value, Mapping):
        problem(path, i18n._('expected a table'))
        return None
    unknown = _unknown_keys(value, cls, path)
    for key_path, key, allowed in unknown:
        problem(key_path, i18n._('unknown key{hint}').format(hint=did_you_mean(key, allowed)))
    if unknown:
        return None
    try:
        return _converter.structure(dict(value), cls)
    except Exception as exc:
        for message in cattrs.transform_error(exc, path='$', format_exception=format_exception):
            text, _sep, where = message.partition(' @ $')
            sub = [p for p in re.split(r'\.|\[|\]', where) if p]
            sub_path = [*path, *(int(p) if p.isdigit() else p.strip('\'"') for p in sub)]
            problem(sub_path, text)
        return None


def _unknown_keys(
    value: Mapping[str, Any], cls: type, path: list[str | int]
) -> list[tuple[list[str | int], str, set[str]]]:
    """Unknown keys in ``value`` and the nested tables we know the classes of."""
    allowed = _fields(cls)
    found = [([*path, k], k, allowed) for k in value if k not in allowed]
    nested: dict[str, type] = {'options': model.OptionSpec, 'when': model.Branch, 'choices': model.ChoiceItem}
    if cls is model.Trigger and isinstance(value.get('filter'), Mapping):
        found += _unknown_keys(value['filter'], model.MessageFilter, [*path, 'filter'])
    for key, sub_cls in nested.items():
        items = value.get(key)
        if key in allowed and isinstance(items, list):
            for i, item in enumerate(items):
                if isinstance(item, Mapping):
                    found += _unknown_keys(item, sub_cls, [*path, key, i])
    return found


MAX_FLOW_BYTES = 1024 * 1024
"""Largest flow file read (the shipped ones are under 10 KB; 10,000 states take about 0.6 MB)."""


def read_flow_file(path: pathlib.Path) -> str:
    """The text of a flow file: a regular file (no FIFO, device or link to one) of at most
    :data:`MAX_FLOW_BYTES`, read without blocking; anything else is a :class:`FlowError`."""

    def refuse(reason: str) -> FlowError:
        return FlowError([Diagnostic(str(path), None, reason, 'io')])

    try:
        check_name(str(path), 'flow file path')
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0))
    except FileRefusedError as exc:
        raise refuse(str(exc)) from None
    except OSError as exc:
        raise refuse(i18n._('cannot read: {error}').format(error=exc.strerror or exc)) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise refuse(i18n._('not a regular file (a FIFO, device or folder): not read'))
    with os.fdopen(fd, 'rb') as fh:
        if info.st_size > MAX_FLOW_BYTES:
            raise refuse(
                i18n._('{size} bytes; flow files are limited to {limit}').format(
                    size=i18n.format_number(info.st_size), limit=i18n.format_number(MAX_FLOW_BYTES)
                )
            )
        try:
            data = fh.read(MAX_FLOW_BYTES + 1)
        except OSError as exc:
            raise refuse(i18n._('cannot read: {error}').format(error=exc.strerror or exc)) from None
    if len(data) > MAX_FLOW_BYTES:
        raise refuse(
            i18n._('more than {limit} bytes; flow files are limited to that').format(
                limit=i18n.format_number(MAX_FLOW_BYTES)
            )
        )
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError as exc:
        raise refuse(i18n._('not UTF-8 text (byte {offset})').format(offset=exc.start)) from None


def load_file(path: pathlib.Path) -> model.Flow:
    """Load one flow file (``flowbot graph FILE``).

    :raises FlowError: it cannot be read or is not a valid flow; the diagnostics name the line.
    """
    return load_text(read_flow_file(path), str(path))


def flow_files(paths: Iterable[pathlib.Path]) -> list[pathlib.Path]:
    """``*.toml`` directly in each folder (not ``tests/``), or the files given."""
    files: list[pathlib.Path] = []
    for path in paths:
        try:
            files.extend(sorted(path.glob('*.toml')) if path.is_dir() else [path])
        except OSError as exc:  # an unreadable folder: its files are reported missing, not a crash
            _log.error('cannot list flow folder %s: %s', path, exc)
    return files


def load_paths(paths: Iterable[pathlib.Path]) -> tuple[list[model.Flow], list[Diagnostic]]:
    """Load every flow file; return the good flows and the diagnostics of the bad ones."""
    flows: list[model.Flow] = []
    problems: list[Diagnostic] = []
    for file in flow_files(paths):
        try:
            flows.append(load_file(file))
        except FlowError as exc:
            problems.extend(exc.diagnostics)
    return flows, problems
