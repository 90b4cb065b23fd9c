"""Where a profiled run's time went: one summary for every benchmark's ``--profile`` option.

A profiler costs every call alike, so the shares lean towards code that makes many small calls; compare runs
of one benchmark with each other, not with the unprofiled figures.
"""

from __future__ import annotations

import cProfile
import pathlib
import pstats
from collections.abc import Sequence

__all__ = ['package', 'report']

REPO = pathlib.Path(__file__).resolve().parents[1]


def package(file: str) -> str:
    """What a profiled function belongs to: a library, flowbot's ``engine`` or ``integrations``, or Python's."""
    if '/site-packages/' in file:
        return file.split('/site-packages/')[1].split('/', maxsplit=1)[0].removesuffix('.py')
    for ours in ('engine', 'integrations'):
        if f'{REPO}/{ours}/' in file:
            return ours
    if file == '~':  # a C function: the socket, epoll, orjson, dict methods
        return 'builtins'
    return 'asyncio' if '/asyncio/' in file or file.endswith('selectors.py') else 'python'


def report(
    profiler: cProfile.Profile | Sequence[str], path: str | pathlib.Path, label: str, count: int, unit: str
) -> None:
    """Save the stats to ``path`` (for ``python -m pstats``) and print where the time went: calls per ``unit``,
    own time by package, and the functions with the most own time.

    :param profiler: the profiler, or the files of several profiled runs (each in its own process), summed.
    :param label: what was profiled, for the heading.
    :param count: how many ``unit`` (steps, commands) the profiled run did.
    """
    stats = pstats.Stats(profiler) if isinstance(profiler, cProfile.Profile) else pstats.Stats(*profiler)
    stats.dump_stats(path)
    rows: dict[tuple[str, int, str], tuple[int, int, float, float, object]] = stats.stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in rows.values()) or 1.0
    per = 1 / max(1, count)
    calls = sum(row[1] for row in rows.values())
    print(f'\n{label}: {calls * per:.0f} calls per {unit}; own time by function (profile in {path}):')
    packages: dict[str, float] = {}
    for (file, _line, _name), row in rows.items():
        packages[package(file)] = packages.get(package(file), 0.0) + row[2]
    shares = sorted(packages.items(), key=lambda p: -p[1])
    print('  by package: ' + ', '.join(f'{p} {100 * t / total:.0f}%' for p, t in shares[:8]))
    for (file, line, name), (_cc, ncalls, own, _cum, _callers) in sorted(rows.items(), key=lambda r: -r[1][2])[:20]:
        where = f'{file.split("site-packages/")[-1]}:{line}' if line else file
        print(f'  {100 * own / total:5.1f}%  {ncalls * per:5.1f}/{unit}  {name}  ({where})')
