"""Lint speed on big flows: the graph checks must stay near-linear in the number of states.

Run: ``.venv/bin/python -m benchmarks.lint [--states 1000 10000]``

Each flow is a chain of ``ask`` → ``choice`` → ``say`` groups: every choice branches back to an
earlier group or on to the next one, every ask has a timeout edge, and the last state ends, so
reachability, the can-it-end walk, template scans and line lookups all see every state. Prints
load (TOML + schema) and lint (``validate``) seconds per size; the goal is 10,000 states < 2 s.
"""

from __future__ import annotations

import argparse
import time

from engine.flows.loader import load_text
from engine.flows.validate import validate

__all__ = ['flow_source', 'main']


def flow_source(states: int) -> str:
    """A valid flow of about ``states`` states (a multiple of 3), branching back and forth."""
    groups = max(1, states // 3)
    lines = ['[flow]', 'name = "big"', '[trigger]', 'command = "big"']
    for i in range(groups):
        back = f'a{i // 2}'
        following = f'a{i + 1}' if i + 1 < groups else 'done'
        lines += [
            f'[states.a{i}]',
            'kind = "ask"',
            f'prompt = "Question {i}, {{{{ user.name }}}}?"',
            'save_as = "answer"',
            'timeout = "5m"',
            f'on_timeout = "{back}"',
            f'[states.c{i}]',
            'kind = "choice"',
            f'when = [{{ if = "answer == \'back\'", goto = "{back}" }}]',
            f'else = "s{i}"',
            f'[states.s{i}]',
            'kind = "say"',
            f'text = "Got {{{{ answer }}}} at {i}"',
            f'next = "{following}"',
        ]
    lines += ['[states.done]', 'kind = "end"', 'text = "Bye"']
    return '\n'.join(lines) + '\n'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--states', type=int, nargs='+', default=[1_000, 10_000])
    args = parser.parse_args()
    print(f'{"states":>8} {"load s":>8} {"lint s":>8} {"problems":>9}')
    for size in args.states:
        source = flow_source(size)
        started = time.perf_counter()
        flow = load_text(source, 'big.toml')
        loaded = time.perf_counter()
        problems = validate([flow])
        linted = time.perf_counter()
        print(f'{len(flow.states):>8} {loaded - started:>8.3f} {linted - loaded:>8.3f} {len(problems):>9}')


if __name__ == '__main__':
    main()
