"""The console adapter (a channel, not a plugin): ``flowbot chat``, a REPL that runs the real flows locally."""

from integrations.console.adapter import ConsoleAdapter, run_console

__all__ = ['ConsoleAdapter', 'run_console']
