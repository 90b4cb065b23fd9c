"""``flowbot``: make a bot folder, run the bot, chat in the console, lint flows, export data.

Each sub-command imports what it needs only when it runs, so ``flowbot lint`` stays quick.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import pathlib
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from engine import __version__, i18n, shutdown
from engine.config import Config, ConfigError, load_config
from engine.flows.loader import Diagnostic, FlowError
from engine.flows.model import Flow
from engine.i18n import _, ngettext
from engine.shipped import flow_folders
from engine.shutdown import wait_within
from engine.store import Shards, StoreError

__all__ = ['main']

_log = logging.getLogger('flowbot')


def _setup_logging(verbose: bool) -> None:
    level = (
        logging.DEBUG
        if verbose
        else getattr(logging, os.environ.get('FLOWBOT_LOG', 'WARNING').upper(), logging.WARNING)
    )
    logging.basicConfig(level=level, format='%(asctime)s %(levelname)s %(name)s: %(message)s', stream=sys.stderr)
    # transitions logs exceptions raised inside triggers; the runtime logs them again with the
    # conversation's context, so one record per failure is enough.
    logging.getLogger('transitions').setLevel(logging.CRITICAL if not verbose else logging.DEBUG)
    # hikari warns at every start that Python runs without -O: advice for hikari's users, not for an operator.
    logging.getLogger('hikari.ux').setLevel(logging.ERROR if not verbose else logging.DEBUG)


def _print_diagnostics(problems: Sequence[Diagnostic], fmt: str = 'text') -> None:
    for d in problems:
        if fmt == 'github':
            line = f',line={d.line}' if d.line else ''
            print(f'::error file={d.file}{line},title=flowbot lint ({d.code})::{d.message}')
        else:
            print(d)


async def _chat(config: Config) -> int:
    from engine.app import build_app
    from integrations.console import run_console

    app = build_app(config)
    await app.start()
    try:
        await run_console(app.engine)
    finally:
        await app.stop()
    return 0


async def _run(config: Config) -> int:
    """The main job: Discord when a token is configured, else the console chat."""
    from engine.config import read_secret

    discord = config.sections.get('discord', {})
    token = read_secret(discord.get('token'), discord.get('token_file'), 'DISCORD_TOKEN')
    if token is None:
        print(
            _(
                'No DISCORD_TOKEN configured (environment, DISCORD_TOKEN_FILE or [discord] token_file): '
                'starting the console chat.'
            )
        )
        return await _chat(config)
    from engine.app import build_app, tune_collector
    from integrations.discord.bot import describe_failure, serve
    from integrations.discord.config import load_discord_config

    discord_config = load_discord_config(config)
    app = build_app(config)
    tune_collector()
    lost: list[str] = []
    stopping = asyncio.Event()  # a signal, or the shards lost: serve() is cancelled and closes the bot

    def on_lost(reason: str) -> None:  # another process runs our shards now: stop at once
        lost.append(reason)
        stopping.set()

    app.engine.store.on_lost = on_lost
    # Unsharded, the process claims "every shard" all the same: a second one on the same PostgreSQL
    # store waits instead of running the same conversations.
    try:
        await app.start(discord_config.shards() or Shards.every())
    except BaseException:
        await app.stop()  # release what was opened (the store's connections) before the message
        raise
    if lost:
        await app.stop()
        print(_('flowbot run: stopped: {reason}').format(reason=lost[0]), file=sys.stderr)
        return 1
    bot = asyncio.ensure_future(
        serve(app.engine, discord_config, announce=lambda line: print(line, flush=True), stopping=stopping)
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await _serve_until(bot, stopping)
    except asyncio.CancelledError:
        if lost:
            print(_('flowbot run: stopped: {reason}').format(reason=lost[0]), file=sys.stderr)
            return 1
        _log.info('stopping on a signal')
    except Exception as exc:  # a bad token, a refused intent, Discord unreachable: one line, no traceback (-v logs it)
        _log.debug('the Discord bot stopped', exc_info=True)
        print(f'flowbot run: {describe_failure(exc)}', file=sys.stderr)
        return 1
    finally:
        await app.stop()
    return 0


async def _serve_until(bot: asyncio.Future[None], stopping: asyncio.Event) -> None:
    """Await ``bot`` until it ends or ``stopping`` is set; then give its close a bounded time.

    ``bot`` is also cancelled, to cut a start short (Discord unreachable), but it does not rely on that:
    under load a library can absorb the cancellation, and serve() then stops on ``stopping`` after its start.
    """
    signalled = asyncio.ensure_future(stopping.wait())
    try:
        waiting: set[asyncio.Future[Any]] = {bot, signalled}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    finally:
        signalled.cancel()
    if not bot.done():
        bot.cancel()
        await wait_within(bot, 'closing the Discord bot')
        if not bot.done() or (not bot.cancelled() and bot.exception() is None):
            raise asyncio.CancelledError  # stopped: the same outcome whether or not the cancel was absorbed
    bot.result()  # its error, or CancelledError when it was stopped


async def _exit_promptly(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main``, then cancel the tasks still running (event handlers in flight, a shard a cut-short start
    left behind) with a bounded wait: ``asyncio.run`` would wait without limit for every one to finish.
    Tasks that ignore their cancellation are named in the log and the process exits without them."""
    code = await main
    timeout = shutdown.STEP_TIMEOUT
    tasks = asyncio.all_tasks() - {asyncio.current_task()}
    for task in tasks:
        task.cancel()
    if not tasks:
        return code
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    if pending:
        names = ', '.join(sorted(t.get_name() for t in pending))
        _log.warning(
            'shutdown: %d task(s) ignored cancellation for %gs, exiting without them: %s', len(pending), timeout, names
        )
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    return code


def _lint(config: Config, paths: list[pathlib.Path], fmt: str) -> int:
    from engine.app import build_app
    from engine.flows.loader import load_paths
    from engine.store import MemoryStore

    library = build_app(config, store=MemoryStore(), load_flows=False).engine.library
    flows, problems = load_paths(paths or flow_folders(config))
    problems += library.check(flows)
    _print_diagnostics(problems, fmt)
    if fmt == 'text':
        checked = ngettext('{count} flow checked', '{count} flows checked', len(flows)).format(count=len(flows))
        found = ngettext('{count} problem', '{count} problems', len(problems)).format(count=len(problems))
        print(f'{checked}, {found}', file=sys.stderr)
    return 1 if problems else 0


async def _export(config: Config, kind: str, output: pathlib.Path | None) -> int:
    from engine.config import ConfigError as _ConfigError
    from engine.store import open_store

    file = config.store_file
    if file is not None and not file.exists():
        raise _ConfigError(_('no store at {file}: nothing to export').format(file=file))
    store = open_store(config.store_spec)
    try:
        await store.open()
        records = await store.list_records(kind.rstrip('s') if kind.endswith('s') else kind)
    finally:
        await store.close()
    lines = ''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in records)
    if output:
        from engine.files import FileGate

        if FileGate.from_config(config).protects(output):
            print(
                _('flowbot export: refusing to write {file}: it is the store, a secret or the config').format(
                    file=output
                ),
                file=sys.stderr,
            )
            return 1
        try:
            output.write_text(lines, encoding='utf-8')
        except OSError as exc:
            print(
                _('flowbot export: cannot write {file}: {error}').format(file=output, error=exc.strerror or exc),
                file=sys.stderr,
            )
            return 1
        print(
            ngettext('{count} record written to {file}', '{count} records written to {file}', len(records)).format(
                count=len(records), file=output
            ),
            file=sys.stderr,
        )
    else:
        sys.stdout.write(lines)
    return 0


async def _test(config: Config, paths: list[pathlib.Path], show: bool = False) -> int:
    """Run dialog scripts (default: the ``tests/`` folder of each flow folder the bot serves)."""
    from engine.dialogs import ScriptError, format_results, run_paths, uncovered_flows

    default = [] if paths else [p / 'tests' for p in flow_folders(config) if p.is_dir()]
    try:
        results = await run_paths(paths or default, config)
    except ScriptError as exc:
        print(_('flowbot test: {error}').format(error=exc), file=sys.stderr)
        return 2
    print(format_results(results, uncovered_flows(results, config) if not paths else (), show=show))
    return 0 if results and all(r.passed for r in results) else 1


def _graph(
    config: Config, name: str | None, output: pathlib.Path | None, docs: pathlib.Path | None, check: bool
) -> int:
    """Draw one flow (by name or file), or regenerate the diagrams of ``docs/flows.md``."""
    from engine.flows import graph
    from engine.flows.loader import did_you_mean, load_file, load_paths

    flows, problems = load_paths(flow_folders(config))
    if docs is not None:
        if problems:
            raise FlowError(problems)
        try:
            return _graph_docs(flows, docs, check)
        except (OSError, UnicodeDecodeError) as exc:  # a folder, a name too long, no permission
            error = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            print(_('flowbot graph: {file}: {error}').format(file=docs, error=error), file=sys.stderr)
            return 1
    if name is None:
        print(_('flowbot graph: give a flow name (or a flow file), or --docs FILE'), file=sys.stderr)
        return 2
    by_name = {f.name: f for f in flows}
    if name in by_name:
        flow = by_name[name]
    elif name.endswith('.toml') and _is_file(pathlib.Path(name)):
        flow = load_file(pathlib.Path(name))
    else:
        print(
            _('flowbot graph: no flow named "{name}"{hint}').format(name=name, hint=did_you_mean(name, by_name)),
            file=sys.stderr,
        )
        return 2
    if output is None:
        sys.stdout.write(graph.to_mermaid(flow))
        return 0
    try:
        graph.render_file(flow, output)
    except graph.GraphvizMissingError as exc:
        print(_('flowbot graph: {error}').format(error=exc), file=sys.stderr)
        return 3
    except (OSError, RuntimeError, ValueError) as exc:
        print(_('flowbot graph: {file}: {error}').format(file=output, error=str(exc).strip()), file=sys.stderr)
        return 1
    print(_('{file}: diagram of flow {name}').format(file=output, name=flow.name), file=sys.stderr)
    return 0


def _is_file(path: pathlib.Path) -> bool:
    """``path.is_file()``, false for a name the file system refuses (too long) instead of an error."""
    try:
        return path.is_file()
    except OSError:
        return False


def _graph_docs(flows: Sequence[Flow], docs: pathlib.Path, check: bool) -> int:
    """Regenerate (or with ``check`` only compare) the diagrams section of ``docs``."""
    from engine.flows import graph

    current = docs.read_text(encoding='utf-8') if docs.exists() else ''
    updated = graph.replace_docs_section(current, flows)
    if check:
        if updated != current:
            print(
                _('{file}: the flow diagrams are out of date; run: flowbot graph --docs {file}').format(file=docs),
                file=sys.stderr,
            )
            return 1
        print(_('{file}: the flow diagrams are up to date').format(file=docs), file=sys.stderr)
        return 0
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(updated, encoding='utf-8')
    print(
        ngettext(
            '{file}: the diagram of {count} flow written', '{file}: diagrams of {count} flows written', len(flows)
        ).format(file=docs, count=len(flows)),
        file=sys.stderr,
    )
    return 0


def _reload(config: Config) -> int:
    """Ask the running bot (found through its pid file) to reload its flows."""
    from engine.reload import ReloadSignalError, signal_reload

    try:
        pid = signal_reload(config)
    except ReloadSignalError as exc:
        print(_('flowbot reload: {error}').format(error=exc), file=sys.stderr)
        return 1
    print(
        _('asked flowbot (pid {pid}) to reload its flows; rejected edits are logged').format(pid=pid), file=sys.stderr
    )
    return 0


def _init(folder: pathlib.Path, force: bool) -> int:
    """Make a bot folder; needs no configuration (there may be none yet)."""
    from engine.scaffold import InitError, init_folder, next_steps

    try:
        result = init_folder(folder, force=force)
    except (InitError, ConfigError) as exc:  # ConfigError: an installation without its shipped flows
        print(_('flowbot init: {error}').format(error=exc), file=sys.stderr)
        return 1
    print(next_steps(result))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='flowbot',
        description=_('flowbot: make a bot folder, run the bot, chat in the console, lint flows, export data.'),
    )
    parser.add_argument('--version', action='version', version=f'flowbot {__version__}')
    parser.add_argument(
        '-c', '--config', type=pathlib.Path, help=_('bot.toml (default: $FLOWBOT_CONFIG or ./bot.toml)')
    )
    parser.add_argument('-v', '--verbose', action='store_true', help=_('log everything (debug) to stderr'))
    sub = parser.add_subparsers(dest='command', required=True)
    sub.add_parser('run', help=_('the bot on Discord when a token is configured, else the console chat'))
    sub.add_parser('chat', help=_('talk to the flows in this terminal'))
    init = sub.add_parser('init', help=_('make a bot folder: bot.toml, a copy of the shipped flows to edit, data/'))
    init.add_argument('folder', nargs='?', type=pathlib.Path, default=pathlib.Path('.'), help=_('default: here'))
    init.add_argument('--force', action='store_true', help=_('replace files that exist'))
    lint = sub.add_parser('lint', help=_('check flow files'))
    lint.add_argument('paths', nargs='*', type=pathlib.Path)
    lint.add_argument('--format', choices=['text', 'github'], default='text')
    export = sub.add_parser('export', help=_('write stored records as JSON lines'))
    export.add_argument('kind', choices=['corrections', 'feedback', 'jobs'])
    export.add_argument('-o', '--output', type=pathlib.Path)
    test = sub.add_parser('test', help=_('run dialog scripts (default: flows/tests/)'))
    test.add_argument('paths', nargs='*', type=pathlib.Path)
    test.add_argument('--show', action='store_true', help=_('print the conversation of passing cases too'))
    graph = sub.add_parser('graph', help=_('draw a flow: Mermaid text, or SVG/PNG by the -o suffix (needs Graphviz)'))
    graph.add_argument('flow', nargs='?', help=_('flow name or flow file'))
    graph.add_argument('-o', '--output', type=pathlib.Path, help=_('FILE.svg/.png/.pdf (Graphviz), .dot, or .mmd'))
    graph.add_argument(
        '--docs',
        type=pathlib.Path,
        nargs='?',
        const=pathlib.Path('docs/flows.md'),
        default=None,
        help=_('regenerate the diagrams section of docs/flows.md (or the file given)'),
    )
    graph.add_argument('--check', action='store_true', help=_('with --docs: only check that it is up to date'))
    worker = sub.add_parser('worker', help=_('run training jobs queued by bot processes ([models] workers = true)'))
    worker.add_argument('--concurrency', type=int, default=4, help=_('jobs watched at once (default 4)'))
    sub.add_parser('reload', help=_('make the running bot reload its flows (SIGHUP through its pid file)'))
    speech = sub.add_parser('speech', help=_('speech models: flowbot speech install MODEL [--url U] [--sha256 H]'))
    speech.add_argument('speech_args', nargs=argparse.REMAINDER)
    return parser


_BOT_COMMANDS = ('run', 'chat', 'worker')
"""Commands that are the bot: they speak ``[bot] language``, as its replies do without a user locale."""


def _language_of_file(path: pathlib.Path | None) -> str | None:
    """``[bot] language`` read straight from the TOML, for a message about a configuration that did not load."""
    import tomllib

    try:
        file = path or pathlib.Path(os.environ.get('FLOWBOT_CONFIG') or 'bot.toml')
        language = tomllib.loads(file.read_text(encoding='utf-8')).get('bot', {}).get('language')
    except (OSError, ValueError, AttributeError):
        return None
    return language if isinstance(language, str) else None


def main(argv: Sequence[str] | None = None) -> int:
    """``flowbot``: its messages are in the terminal's language (``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG``),
    else ``[bot] language``; ``run``, ``chat`` and ``worker`` are the bot and speak ``[bot] language``."""
    terminal = i18n.environment_language()
    with i18n.use(terminal or 'en'):
        args = _parser().parse_args(argv)
    _setup_logging(args.verbose)
    if args.command == 'init':
        with i18n.use(terminal or 'en'):
            return _init(args.folder, args.force)
    with i18n.use(terminal or _language_of_file(args.config) or 'en'):  # the config's errors, in its language
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            return _fail(exc)
    if args.command in _BOT_COMMANDS:
        i18n.set_default(config.bot.language)
        return _command(args, config)
    with i18n.use(terminal or config.bot.language):
        return _command(args, config)


def _fail(exc: Exception) -> int:
    """The one line (or the diagnostics) an error of a command ends with, and its exit code."""
    if isinstance(exc, FlowError):
        _print_diagnostics(exc.diagnostics)
        print(_('flowbot: the flows above are invalid; nothing was started.'), file=sys.stderr)
        return 1
    if isinstance(exc, ConfigError):
        print(_('flowbot: configuration error: {error}').format(error=exc), file=sys.stderr)
        return 2
    print(_('flowbot: store error: {error}').format(error=exc), file=sys.stderr)
    return 1


def _command(args: argparse.Namespace, config: Config) -> int:
    try:
        if args.command == 'run':
            return asyncio.run(_exit_promptly(_run(config)))
        if args.command == 'chat':
            return asyncio.run(_chat(config))
        if args.command == 'lint':
            return _lint(config, args.paths, args.format)
        if args.command == 'export':
            return asyncio.run(_export(config, args.kind, args.output))
        if args.command == 'test':
            return asyncio.run(_test(config, args.paths, args.show))
        if args.command == 'graph':
            return _graph(config, args.flow, args.output, args.docs, args.check)
        if args.command == 'reload':
            return _reload(config)
        if args.command == 'worker':
            from integrations.models.workers import run_worker

            return asyncio.run(run_worker(config, concurrency=max(1, args.concurrency)))
        if args.command == 'speech':
            from integrations.speech.cli import main as speech_main

            return speech_main(list(args.speech_args), config)
    except (FlowError, ConfigError, StoreError) as exc:
        return _fail(exc)
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == '__main__':
    sys.exit(main())
