"""The benchmarks measure what they say they measure (their figures are in the README)."""

from __future__ import annotations

import pathlib
import pstats

from benchmarks import engine as engine_bench
from benchmarks import peers

__all__: list[str] = []


def test_a_profiled_engine_benchmark_row_profiles_its_timed_run_only_not_its_warm_up(tmp_path: pathlib.Path) -> None:
    path = tmp_path / 'row.prof'
    conversations = 20
    try:
        rate = engine_bench._row('flowbot-memory', conversations, 'cpu', str(path))
    finally:
        peers.profiler, peers.clock = None, peers.CLOCKS['wall']
    assert isinstance(rate, float) and rate > 0
    stats: dict[tuple[str, int, str], tuple[int, ...]] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    dispatches = sum(row[1] for (file, _, name), row in stats.items() if name == 'dispatch' and 'runtime' in file)
    # the calls per step the report prints are these over the timed steps: the warm-up's must not be in them
    assert dispatches == conversations * engine_bench.STEPS
