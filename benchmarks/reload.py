"""Maintainer tooling figures: hot-reload cost and latency, dialog-script speed, diagram rendering.

Run: ``.venv/bin/python -m benchmarks.reload [--flows 200] [--rounds 20]``

Prints:

- reload: one edited flow among the shipped ones, and among ``--flows`` synthetic 6-state flows
  (load + lint of the whole set + compile of the new version + activation), mean per reload;
- watch latency: from writing a flow file to the new version serving, through ``watchfiles``
  (it reports a change once 50 ms pass without another, grouping bursts for at most 400 ms);
- dialog scripts: the shipped ``flows/tests/`` scripts, cases per second (fresh engine per case);
- diagrams: Mermaid text for every shipped flow, and PNGs through Graphviz when ``dot`` is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import shutil
import statistics
import tempfile
import time

from engine.app import build_app
from engine.config import BotConfig, Config
from engine.dialogs import run_paths
from engine.flows.graph import render_file, to_mermaid
from engine.flows.loader import FlowError, load_paths
from engine.reload import FlowReloader
from engine.runtime import Engine
from engine.store import MemoryStore

__all__ = ['main']

REPO = pathlib.Path(__file__).resolve().parents[1]

SYNTHETIC = """
[flow]
name = "f{i}"
version = "{v}"
[trigger]
command = "f{i}"
[states.ask]
kind = "ask"
prompt = "Question {v}?"
save_as = "answer"
timeout = "5m"
[states.check]
kind = "choice"
when = [{{ if = "answer == 'yes'", goto = "yes" }}]
else = "no"
[states.yes]
kind = "say"
text = "Yes to {{{{ answer }}}}"
next = "done"
[states.no]
kind = "say"
text = "No"
[states.done]
kind = "end"
text = "Bye"
"""


def _engine(folder: pathlib.Path) -> Engine:
    config = Config(bot=BotConfig(flows=[folder], store=':memory:', data_root=folder.parent / 'data'))
    try:
        return build_app(config, store=MemoryStore()).engine
    except FlowError as exc:
        raise SystemExit('\n'.join(map(str, exc.diagnostics))) from None


async def _reload_rounds(folder: pathlib.Path, edit: pathlib.Path, rounds: int) -> float:
    engine = _engine(folder)
    reloader = FlowReloader(engine, [folder])
    original = edit.read_text()
    times = []
    for round_ in range(rounds):
        edit.write_text(original.replace('version = "', f'# edit {round_}\nversion = "', 1))
        start = time.perf_counter()
        result = await reloader.reload()
        times.append(time.perf_counter() - start)
        assert result.updated, result
    return statistics.mean(times)


async def _watch_latency(folder: pathlib.Path, edit: pathlib.Path, rounds: int) -> float:
    engine = _engine(folder)
    reloader = FlowReloader(engine, [folder])
    await reloader.start()
    await asyncio.sleep(0.5)
    latencies = []
    try:
        for round_ in range(rounds):
            before = reloader.reloads
            edit.write_text(edit.read_text() + f'\n# watched edit {round_}\n')
            start = time.perf_counter()
            while reloader.reloads == before:
                await asyncio.sleep(0.005)
            latencies.append(time.perf_counter() - start)
            await asyncio.sleep(0.1)
    finally:
        await reloader.stop()
    return statistics.median(latencies)


async def _run(flows: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        shipped = pathlib.Path(tmp) / 'shipped'
        shutil.copytree(REPO / 'flows', shipped, ignore=shutil.ignore_patterns('tests'))
        count = len(list(shipped.glob('*.toml')))
        mean = await _reload_rounds(shipped, shipped / 'feedback.toml', rounds)
        print(f'reload, 1 of {count} shipped flows edited: {mean * 1000:.1f} ms per reload (mean of {rounds})')

        synthetic = pathlib.Path(tmp) / 'synthetic'
        synthetic.mkdir()
        for i in range(flows):
            (synthetic / f'f{i}.toml').write_text(SYNTHETIC.format(i=i, v=1).lstrip())
        mean = await _reload_rounds(synthetic, synthetic / 'f0.toml', rounds)
        print(f'reload, 1 of {flows} synthetic flows edited: {mean * 1000:.1f} ms per reload (mean of {rounds})')

        latency = await _watch_latency(shipped, shipped / 'hi.toml', 5)
        print(f'watch latency, file saved to new version serving: {latency * 1000:.0f} ms (median of 5)')

    config = Config(bot=BotConfig(flows=[REPO / 'flows']))
    start = time.perf_counter()
    results = await run_paths([REPO / 'flows' / 'tests'], config)
    took = time.perf_counter() - start
    failed = sum(not r.passed for r in results)
    print(f'dialog scripts: {len(results)} cases in {took:.2f} s ({len(results) / took:.0f} cases/s), {failed} failed')

    shipped_flows, _ = load_paths([REPO / 'flows'])
    start = time.perf_counter()
    for flow in shipped_flows:
        to_mermaid(flow)
    took = time.perf_counter() - start
    print(f'mermaid: {len(shipped_flows)} flows in {took * 1000:.1f} ms')
    if shutil.which('dot'):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            for flow in shipped_flows:
                render_file(flow, pathlib.Path(tmp) / f'{flow.name}.png')
            took = time.perf_counter() - start
        print(
            f'graphviz png: {len(shipped_flows)} flows in {took:.2f} s ({took / len(shipped_flows) * 1000:.0f} ms each)'
        )
    else:
        print('graphviz png: skipped, "dot" is not installed (apt install graphviz)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0] if __doc__ else None)
    parser.add_argument('--flows', type=int, default=200, help='synthetic flows in the large reload set')
    parser.add_argument('--rounds', type=int, default=20, help='reloads to average')
    args = parser.parse_args()
    asyncio.run(_run(args.flows, args.rounds))


if __name__ == '__main__':
    main()
