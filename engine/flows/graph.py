"""Flow diagrams: Mermaid ``stateDiagram-v2`` text (renders on GitHub, needs no tools) and Graphviz.

Maintainers read a flow faster as a picture than as TOML; both renderings come from one list of
edges so they always agree with what :mod:`engine.flows.compile` builds (and with ``lint``'s
reachability rules, via :func:`engine.flows.validate.edges`).
"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence

import attrs

from engine import i18n
from engine.errors import FlowbotError
from engine.flows import model
from engine.flows.validate import edges
from engine.states.handlers import handler_for, question, short

__all__ = [
    'GRAPHVIZ_FORMATS',
    'TEXT_FORMATS',
    'DiagramEdge',
    'GraphvizMissingError',
    'diagram_edges',
    'docs_section',
    'render_file',
    'replace_docs_section',
    'to_dot',
    'to_mermaid',
]

GRAPHVIZ_FORMATS = ('svg', 'png', 'pdf')
"""``-o`` suffixes rendered through Graphviz ``dot``."""
TEXT_FORMATS = ('dot', 'gv', 'mmd', 'md', 'txt')
"""``-o`` suffixes written as text: DOT for ``dot``/``gv``, Mermaid for the others."""

DOCS_START = '<!-- diagrams:start -->'
DOCS_END = '<!-- diagrams:end -->'

_END = '[*]'
_PLAIN_ID = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')
_MERMAID_WORDS = {'note', 'state', 'direction', 'end', 'class', 'classdef', 'click', 'style', 'as', 'default', 'scale'}
_KIND_STYLE = {
    # kind: (mermaid classDef, graphviz shape, graphviz fill)
    'say': ('fill:#e8f4fd,stroke:#1f6feb', 'note', '#e8f4fd'),
    'ask': ('fill:#fff4d6,stroke:#bf8700', 'box', '#fff4d6'),
    'call': ('fill:#e6f6e6,stroke:#1a7f37', 'component', '#e6f6e6'),
    'choice': ('fill:#f3e8fd,stroke:#8250df', 'diamond', '#f3e8fd'),
    'wait': ('fill:#fde8e8,stroke:#cf222e', 'hexagon', '#fde8e8'),
    'flow': ('fill:#eaeef2,stroke:#57606a', 'box3d', '#eaeef2'),
    'end': ('fill:#ffffff,stroke:#24292f', 'doubleoctagon', '#ffffff'),
}


class GraphvizMissingError(FlowbotError, RuntimeError):
    """Graphviz ``dot`` is not installed, so only Mermaid (and DOT text) can be produced."""


@attrs.frozen
class DiagramEdge:
    """One arrow: ``target`` is a state name or ``None`` for the end of the conversation."""

    source: str
    target: str | None
    label: str
    style: str = 'normal'
    """``normal``, ``timeout``, ``error`` or ``interrupt`` (drawn lighter)."""


def _timeout_text(spec: model.State) -> str:
    try:
        seconds = model.parse_duration(spec.timeout)
    except ValueError:
        return str(spec.timeout)
    if seconds is None:
        return ''
    return str(spec.timeout) if isinstance(spec.timeout, str) else f'{seconds:g}s'


def _earlier_asks(flow: model.Flow, ask: str) -> list[str]:
    """The questions ``back`` can return to from ``ask``: the nearest ask states leading to it."""
    incoming: dict[str, set[str]] = {name: set() for name in flow.states}
    for name in flow.states:
        for _, target in edges(flow, name):
            if target in incoming:
                incoming[target].add(name)
    found: list[str] = []
    seen = {ask}
    stack = sorted(incoming[ask])
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if handler_for(flow.states[name]).takes_answers:
            found.append(name)
        else:
            stack.extend(sorted(incoming[name]))
    order = list(flow.states)
    return sorted(found, key=order.index)


def diagram_edges(flow: model.Flow) -> list[DiagramEdge]:
    """Every arrow of the diagram, in file order: normal moves, timeouts, errors, interrupts, ends."""
    out: list[DiagramEdge] = []
    for name, spec in flow.states.items():
        for kind, target in edges(flow, name):
            style = {'timeout': 'timeout', 'error': 'error', 'fail': 'error'}.get(kind, 'normal')
            label = kind
            if kind == 'timeout':
                label = f'timeout {_timeout_text(spec)}'
            elif kind == 'fail' and (ask := question(spec)) is not None:
                label = f'fail after {ask.attempts} tries'
            out.append(DiagramEdge(name, target, label, style))
        if handler_for(spec).ends(flow, name):
            out.append(DiagramEdge(name, None, '', 'normal'))
        if spec.timeout is not None and spec.on_timeout is None:
            out.append(DiagramEdge(name, None, f'timeout {_timeout_text(spec)}', 'timeout'))
        if handler_for(spec).takes_answers:
            out.extend(DiagramEdge(name, earlier, 'back', 'interrupt') for earlier in _earlier_asks(flow, name))
            out.append(DiagramEdge(name, None, 'cancel', 'interrupt'))
    return out


def _describe(name: str, spec: model.State) -> list[str]:
    """Short description lines of a state: its kind and what it does."""
    return [spec.kind, *handler_for(spec).describe(spec)]


def _trigger_text(flow: model.Flow) -> str:
    trigger = flow.trigger
    if trigger.command:
        options = ' '.join(o.name if o.is_required else f'[{o.name}]' for o in trigger.options)
        return f'!{trigger.command}{" " + options if options else ""}'
    if trigger.message:
        return 'any message' if trigger.filter is None else 'matching message'
    return 'start'


# -- Mermaid ----------------------------------------------------------------------------------------


def _mermaid_text(text: str) -> str:
    """Escape what Mermaid's state grammar would cut or parse (``#``, ``:``, ``;``, angle brackets).

    Mermaid turns ``#name;`` entity codes back into characters when it renders.
    """
    out = text.replace('#', '#35;')
    for char, code in ((';', '#59;'), (':', '#58;'), ('<', '#lt;'), ('>', '#gt;')):
        out = out.replace(char, code)
    return out


def _mermaid_ids(flow: model.Flow) -> dict[str, str]:
    ids: dict[str, str] = {}
    for i, name in enumerate(flow.states):
        plain = _PLAIN_ID.match(name) and name.lower() not in _MERMAID_WORDS
        ids[name] = name if plain else f's{i}_{re.sub(r"[^A-Za-z0-9_]", "_", name)}'
    return ids


def to_mermaid(flow: model.Flow) -> str:
    """The flow as Mermaid ``stateDiagram-v2`` text: states by kind, conditions, timeouts, interrupts."""
    ids = _mermaid_ids(flow)
    lines = ['stateDiagram-v2']
    for name, spec in flow.states.items():
        sid = ids[name]
        if sid != name:
            lines.append(f'    state "{_mermaid_text(name)}" as {sid}')
        lines.extend(f'    {sid} : {_mermaid_text(line)}' for line in _describe(name, spec))
    lines.append(f'    [*] --> {ids[flow.initial]} : {_mermaid_text(_trigger_text(flow))}')
    for edge in diagram_edges(flow):
        target = _END if edge.target is None else ids[edge.target]
        label = f' : {_mermaid_text(edge.label)}' if edge.label else ''
        lines.append(f'    {ids[edge.source]} --> {target}{label}')
    kinds: dict[str, list[str]] = {}
    for name, spec in flow.states.items():
        kinds.setdefault(spec.kind, []).append(ids[name])
    for kind, members in kinds.items():
        lines.append(f'    classDef kind_{kind} {_KIND_STYLE[kind][0]}')
        lines.append(f'    class {",".join(members)} kind_{kind}')
    return '\n'.join(lines) + '\n'


# -- Graphviz ---------------------------------------------------------------------------------------


def _dot_text(text: str) -> str:
    return text.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def to_dot(flow: model.Flow) -> str:
    """The same diagram as Graphviz DOT text (for ``dot -Tpng``)."""
    lines = [
        f'digraph "{_dot_text(flow.name)}" {{',
        '  rankdir=TB; fontname="Helvetica"; labelloc=t;',
        f'  label="{_dot_text(f"flow {flow.name} (version {flow.version})")}";',
        '  node [fontname="Helvetica", fontsize=10, style=filled];',
        '  edge [fontname="Helvetica", fontsize=9];',
        '  __start [shape=circle, label="", width=0.25, fillcolor=black];',
        '  __end [shape=doublecircle, label="", width=0.2, fillcolor=black];',
    ]
    for name, spec in flow.states.items():
        _, shape, fill = _KIND_STYLE[spec.kind]
        label = '\n'.join([name, *_describe(name, spec)])
        lines.append(f'  "{_dot_text(name)}" [shape={shape}, fillcolor="{fill}", label="{_dot_text(label)}"];')
    lines.append(f'  __start -> "{_dot_text(flow.initial)}" [label="{_dot_text(_trigger_text(flow))}"];')
    styles = {
        'normal': '',
        'timeout': ', style=dashed, color="#cf222e", fontcolor="#cf222e"',
        'error': ', color="#cf222e", fontcolor="#cf222e"',
        'interrupt': ', style=dotted, color="#8c959f", fontcolor="#8c959f"',
    }
    for edge in diagram_edges(flow):
        target = '__end' if edge.target is None else f'"{_dot_text(edge.target)}"'
        lines.append(f'  "{_dot_text(edge.source)}" -> {target} [label="{_dot_text(edge.label)}"{styles[edge.style]}];')
    lines.append('}')
    return '\n'.join(lines) + '\n'


def render_file(flow: model.Flow, output: pathlib.Path, *, timeout: float = 60.0) -> pathlib.Path:
    """Write the diagram to ``output``, the format chosen by its suffix.

    ``.svg``/``.png``/``.pdf`` go through Graphviz ``dot`` (:class:`GraphvizMissingError` without
    it), ``.dot``/``.gv`` are DOT text, ``.mmd``, ``.md``, ``.txt`` Mermaid text; any other suffix is a
    :class:`ValueError` (a ``.jpg`` of Mermaid text would not open).

    :param timeout: seconds ``dot`` may take before it is stopped.
    """
    suffix = output.suffix.lower().lstrip('.')
    if suffix not in GRAPHVIZ_FORMATS + TEXT_FORMATS:
        known = ', '.join('.' + s for s in GRAPHVIZ_FORMATS + TEXT_FORMATS)
        raise ValueError(
            i18n._('cannot write .{suffix} files; use one of {known}').format(
                suffix=suffix or i18n._('(no suffix)'), known=known
            )
        )
    if suffix in GRAPHVIZ_FORMATS:
        dot = shutil.which('dot')
        if dot is None:
            raise GraphvizMissingError(
                i18n._(
                    'Graphviz "dot" is not installed, so {file} cannot be drawn '
                    '(Debian: apt install graphviz). Mermaid text needs nothing: use -o FILE.mmd or no -o.'
                ).format(file=output.name)
            )
        try:
            subprocess.run(
                [dot, f'-T{suffix}', '-o', str(output)],
                input=to_dot(flow).encode(),
                check=True,
                capture_output=True,
                timeout=timeout,
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(
                i18n._('dot failed for flow {name}: {error}').format(
                    name=flow.name, error=exc.stderr.decode(errors='replace')
                )
            ) from exc
        return output
    text = to_dot(flow) if suffix in ('dot', 'gv') else to_mermaid(flow)
    output.write_text(text, encoding='utf-8')
    return output


# -- docs -------------------------------------------------------------------------------------------


def docs_section(flows: Iterable[model.Flow]) -> str:
    """The generated part of ``docs/flows.md``: one Mermaid diagram per flow, by name."""
    parts = [
        DOCS_START,
        '<!-- Generated by `flowbot graph --docs`; do not edit by hand (tests/test_docs_diagrams.py checks it). -->',
        '',
        'Each shipped flow as a state diagram (generated from `flows/*.toml`): arrows carry conditions, `timeout`,',
        '`error` and the `cancel`/`back` interrupts of questions. `flowbot graph NAME -o NAME.png` draws one as a',
        'picture, and the `flow NAME` command sends it in chat.',
        '',
    ]
    for flow in sorted(flows, key=lambda f: f.name):
        description = short(flow.flow.description, 200)
        parts += [f'### {flow.name}', '']
        if description:
            parts += [f'{description} (`{_trigger_text(flow)}`, file `flows/{pathlib.Path(flow.path).name}`)', '']
        parts += ['```mermaid', to_mermaid(flow).rstrip('\n'), '```', '']
    parts.append(DOCS_END)
    return '\n'.join(parts)


def replace_docs_section(document: str, flows: Sequence[model.Flow]) -> str:
    """``document`` with the text between the diagram markers regenerated (appended if absent)."""
    section = docs_section(flows)
    start, end = document.find(DOCS_START), document.find(DOCS_END)
    if start == -1 or end == -1 or end < start:
        return (document.rstrip('\n') + '\n\n' if document.strip() else '') + section + '\n'
    return document[:start] + section + document[end + len(DOCS_END) :]
