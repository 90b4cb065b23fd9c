"""``docs/flows.md`` embeds a Mermaid diagram of every shipped flow; this keeps them in step with the TOML."""

from __future__ import annotations

import pathlib

from engine.flows.graph import DOCS_END, DOCS_START, replace_docs_section
from engine.flows.loader import load_paths

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = REPO / 'docs' / 'flows.md'


def test_flow_diagrams_in_the_docs_are_up_to_date() -> None:
    flows, problems = load_paths([REPO / 'flows'])
    assert not problems
    current = DOCS.read_text(encoding='utf-8')
    assert DOCS_START in current and DOCS_END in current
    assert replace_docs_section(current, flows) == current, (
        'docs/flows.md is out of date with flows/*.toml: run `flowbot graph --docs` and commit the result'
    )
    for flow in flows:
        assert f'### {flow.name}\n' in current


def test_regenerating_keeps_the_text_around_the_markers() -> None:
    flows, _ = load_paths([REPO / 'flows'])
    document = f'# Flows\n\nIntro.\n\n{DOCS_START}\nstale\n{DOCS_END}\n\nAfter.\n'
    updated = replace_docs_section(document, flows)
    assert updated.startswith('# Flows\n\nIntro.\n\n' + DOCS_START)
    assert updated.endswith(DOCS_END + '\n\nAfter.\n')
    assert 'stale' not in updated and '```mermaid\nstateDiagram-v2\n' in updated
    assert replace_docs_section('', flows).startswith(DOCS_START)
