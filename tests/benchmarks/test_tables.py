"""The benchmarks still run end to end and print their tables (tiny sizes: no figure is judged here)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

__all__: list[str] = []

REPO = pathlib.Path(__file__).resolve().parents[2]


def _run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, '-m', *args], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_engine_benchmark_prints_every_row_asked_for_with_its_rounds_and_goal() -> None:
    out = _run(
        'benchmarks.engine',
        '--conversations', '40', '--rounds', '2', '--clock', 'cpu',
        '--only', 'ptb', '--only', 'flowbot-memory', '--only', 'flowbot-sqlite',
    )  # fmt: skip
    assert 'best of 2 round(s), a fresh process each, CPU time' in out
    ptb = next(line for line in out.splitlines() if line.startswith("python-telegram-bot's"))
    # PTB comes from the bench extra: either its row, or why it is missing (never a traceback)
    assert 'not installed (telegram): pip install -e .[bench]' in ptb or '1.00x' in ptb
    for label in ('flowbot, in memory', 'flowbot, SQLite (durable every step)'):
        row = next(line for line in out.splitlines() if line.startswith(label))
        assert float(row[44:54].replace(',', '')) > 0  # steps/s
        assert 'goal >= ' in row if '1.00x' in ptb else row[54:64].strip() == '-'


def test_engine_benchmark_profile_sums_each_rounds_profile_and_removes_the_parts(tmp_path: pathlib.Path) -> None:
    prefix = tmp_path / 'p'
    out = _run(
        'benchmarks.engine',
        '--conversations',
        '30',
        '--rounds',
        '2',
        '--only',
        'flowbot-memory',
        '--profile',
        str(prefix),
    )
    assert 'flowbot, in memory: ' in out and ' calls per step' in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ['p-flowbot-memory.prof']


def test_discord_benchmark_runs_both_loops_through_the_emulator() -> None:
    out = _run('benchmarks.discord', '--messages', '60', '--users', '10', '--rate', '200', '--concurrency', '20')
    assert 'open loop at 200/s: latency p50' in out and '(60 replies)' in out
    assert 'closed loop, 20 in flight: throughput' in out
