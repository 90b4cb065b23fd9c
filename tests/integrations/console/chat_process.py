"""Drive a real ``flowbot chat`` process through its stdin and stdout, with deadlines on every read.

A reader thread moves stdout lines into a queue so a test can wait for a line with a timeout
instead of blocking forever on a pipe; stderr is collected for failure messages.
"""

from __future__ import annotations

import os
import pathlib
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

__all__ = ['REPO', 'ChatProcess', 'chat_folder']

REPO = pathlib.Path(__file__).resolve().parents[3]


def chat_folder(folder: pathlib.Path, flows: pathlib.Path | None = None, *, plugins: str | None = None) -> None:
    """Make ``folder`` a bot folder: a copy of ``flows`` (default: the repo's) and a ``bot.toml``.

    :param plugins: a TOML list of plugin modules; ``None`` keeps the engine's default plugins.
    """
    shutil.copytree(flows or REPO / 'flows', folder / 'flows', dirs_exist_ok=True)
    plugin_line = f'plugins = {plugins}\n' if plugins is not None else ''
    (folder / 'bot.toml').write_text(
        f'[bot]\nflows = ["flows"]\ndata_root = "data"\nreload = false\n{plugin_line}', encoding='utf-8'
    )


class ChatProcess:
    """``python -m engine.cli chat`` in ``cwd`` with ``FLOWBOT_STORE=store`` (a file, or a PostgreSQL URL)."""

    def __init__(self, cwd: pathlib.Path, store: pathlib.Path | str) -> None:
        env = {
            **os.environ,
            'FLOWBOT_STORE': str(store),
            'PYTHONUNBUFFERED': '1',
            'PYTHONPATH': str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''),
        }
        env.pop('FLOWBOT_CONFIG', None)
        env.pop('DISCORD_TOKEN', None)
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'engine.cli', 'chat'],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding='utf-8',
            bufsize=1,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump_stdout, daemon=True),
            threading.Thread(target=self._pump_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip('\n'))
        self._queue.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line.rstrip('\n'))

    @property
    def stderr(self) -> str:
        return '\n'.join(self._stderr)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + '\n')
        self.proc.stdin.flush()

    def expect(self, pattern: str, timeout: float = 15.0) -> str:
        """Read lines until one matches ``pattern`` (a regular expression searched in the line)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f'no line matching {pattern!r} within {timeout}s; got {self.lines}\n{self.stderr}')
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f'output ended before {pattern!r}; got {self.lines}\n{self.stderr}')
            self.lines.append(line)
            if re.search(pattern, line):
                return line

    def ask(self, line: str, pattern: str, timeout: float = 15.0) -> str:
        self.send(line)
        return self.expect(pattern, timeout)

    def finish(self, timeout: float = 15.0) -> list[str]:
        """Close stdin, wait for a clean exit, and return every line printed."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout)
        deadline = time.monotonic() + timeout
        while (line := self._queue.get(timeout=max(0.1, deadline - time.monotonic()))) is not None:
            self.lines.append(line)
        assert code == 0, f'flowbot chat exited with {code}\n{self.stderr}'
        return self.lines

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush, exactly like a crash."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        for thread in self._threads:
            thread.join(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
