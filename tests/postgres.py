"""A throwaway PostgreSQL server for the tests: ``initdb`` into a temporary folder, ``pg_ctl start`` on a free
loopback port, ``pg_ctl stop`` at the end. ``initdb`` refuses to run as root, so as root the server runs as the
``postgres`` user that Debian's package creates.
"""

from __future__ import annotations

import glob
import itertools
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import tempfile

__all__ = ['PostgresServer', 'find_bindir']

_NAMES = itertools.count(1)


def find_bindir() -> pathlib.Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: on the PATH, or Debian's ``/usr/lib/postgresql/N/bin``."""
    on_path = shutil.which('pg_ctl')
    if on_path and shutil.which('initdb'):
        return pathlib.Path(on_path).parent
    found = sorted(glob.glob('/usr/lib/postgresql/*/bin/pg_ctl'), key=lambda p: int(p.split('/')[4]))
    return pathlib.Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port: int = s.getsockname()[1]
        return port


class PostgresServer:
    """One server for the session; :meth:`new_database` gives each test its own database.

    :param durable: keep ``fsync`` on (benchmarks); tests turn it off, nothing they check needs it.
    """

    def __init__(self, bindir: pathlib.Path, *, durable: bool = False) -> None:
        self.bindir = bindir
        self.durable = durable
        self.root = pathlib.Path(tempfile.mkdtemp(prefix='flowbot-pg-'))
        self.data = self.root / 'data'
        self.port = _free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam('postgres')
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = ['runuser', '-u', 'postgres', '--']

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, cwd=self.root, timeout=120)

    def start(self) -> None:
        self._run(str(self.bindir / 'initdb'), '-D', str(self.data), '-U', 'postgres', '--auth=trust', '-E', 'UTF8')
        options = f'-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c max_connections=200'
        self._run(
            str(self.bindir / 'pg_ctl'),
            '-D',
            str(self.data),
            '-l',
            str(self.root / 'log'),
            '-o',
            options,
            '-w',
            'start',
        )

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / 'pg_ctl'), '-D', str(self.data), '-m', 'immediate', '-w', 'stop')
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, database: str = 'postgres') -> str:
        return f'postgresql://postgres@127.0.0.1:{self.port}/{database}'

    async def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import asyncpg

        name = f'test_{os.getpid()}_{next(_NAMES)}'
        conn = await asyncpg.connect(self.dsn())
        try:
            await conn.execute(f'CREATE DATABASE {name}')
        finally:
            await conn.close()
        return self.dsn(name)
