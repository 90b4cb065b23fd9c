"""Persistence port: conversations (restored after a restart) and plain records (feedback, jobs, ...).

:class:`SQLiteStore` is the embedded default; :class:`MemoryStore` serves tests and benchmarks.
Writes of conversations are group-committed: every ``save`` waits until its row is durable,
but many conversations share one transaction, which is what makes thousands of steps/s possible.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

__all__ = ['MemoryStore', 'SQLiteStore', 'Store', 'StoredConversation', 'open_store']

_log = logging.getLogger(__name__)


@attrs.define(kw_only=True)
class StoredConversation:
    """The durable part of a conversation, as the runtime saves it after every transition."""

    key: str
    flow: str
    version: str
    state: str
    data: dict[str, Any]
    stack: list[dict[str, Any]] = attrs.field(factory=list)
    deadline: float | None = None
    """Wall-clock (``time.time()``) when the state's timeout falls due."""
    extra: dict[str, Any] = attrs.field(factory=dict)
    """Runtime bookkeeping: attempts, history for ``back``, waited topic, progress message id."""


class Store(abc.ABC):
    """Where conversations and records live."""

    @abc.abstractmethod
    async def save(self, conv: StoredConversation) -> None:
        """Persist ``conv``; returns once it is durable."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Forget a finished conversation."""

    @abc.abstractmethod
    def load_all(self) -> Iterable[StoredConversation | Exception]:
        """Every unfinished conversation; a row that cannot be read comes back as the exception."""

    @abc.abstractmethod
    async def put_record(self, kind: str, record_id: str, data: Mapping[str, Any]) -> None:
        """Insert or replace a record of ``kind`` (``feedback``, ``correction``, ``job``, ...)."""

    @abc.abstractmethod
    async def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    async def list_records(self, kind: str) -> list[dict[str, Any]]:
        """All records of ``kind``, oldest first."""

    @abc.abstractmethod
    async def put_flow_version(self, name: str, version: str, source: str) -> None:
        """Keep a flow's source so conversations finish on the version they started with."""

    @abc.abstractmethod
    def flow_versions(self) -> dict[tuple[str, str], str]:
        """Every stored (name, version) -> TOML source."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release resources."""


class MemoryStore(Store):
    """Keeps everything in dictionaries; nothing survives the process."""

    def __init__(self) -> None:
        self.conversations: dict[str, StoredConversation] = {}
        self.records: dict[str, dict[str, dict[str, Any]]] = {}
        self.flows: dict[tuple[str, str], str] = {}

    async def save(self, conv: StoredConversation) -> None:
        self.conversations[conv.key] = conv

    async def delete(self, key: str) -> None:
        self.conversations.pop(key, None)

    def load_all(self) -> Iterable[StoredConversation | Exception]:
        return list(self.conversations.values())

    async def put_record(self, kind: str, record_id: str, data: Mapping[str, Any]) -> None:
        self.records.setdefault(kind, {})[record_id] = dict(data)

    async def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None:
        return self.records.get(kind, {}).get(record_id)

    async def list_records(self, kind: str) -> list[dict[str, Any]]:
        return list(self.records.get(kind, {}).values())

    async def put_flow_version(self, name: str, version: str, source: str) -> None:
        self.flows[(name, version)] = source

    def flow_versions(self) -> dict[tuple[str, str], str]:
        return dict(self.flows)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    key TEXT PRIMARY KEY, flow TEXT NOT NULL, version TEXT NOT NULL, state TEXT NOT NULL,
    data TEXT NOT NULL, stack TEXT NOT NULL, deadline REAL, extra TEXT NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL, id TEXT NOT NULL, created REAL NOT NULL, data TEXT NOT NULL, PRIMARY KEY (kind, id));
CREATE TABLE IF NOT EXISTS flow_versions (
    name TEXT NOT NULL, version TEXT NOT NULL, source TEXT NOT NULL, PRIMARY KEY (name, version));
"""


class SQLiteStore(Store):
    """SQLite in WAL mode with group commit.

    ``save`` queues the row and awaits a future; one flush per event-loop turn writes every queued
    row in a single transaction. A SIGKILL loses nothing that a ``save`` returned for.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute('PRAGMA journal_mode=WAL')
        self.db.execute('PRAGMA synchronous=NORMAL')
        self.db.executescript(_SCHEMA)
        self._pending: dict[str, tuple[Any, ...] | None] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._flush_handle: asyncio.Handle | None = None

    def _schedule(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append(fut)
        if self._flush_handle is None:
            self._flush_handle = loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._flush_handle = None
        pending, waiters = self._pending, self._waiters
        self._pending, self._waiters = {}, []
        error: Exception | None = None
        try:
            self.db.execute('BEGIN')
            for key, row in pending.items():
                if row is None:
                    self.db.execute('DELETE FROM conversations WHERE key = ?', (key,))
                else:
                    self.db.execute('INSERT OR REPLACE INTO conversations VALUES (?,?,?,?,?,?,?,?,?)', row)
            self.db.execute('COMMIT')
        except sqlite3.Error as exc:
            _log.exception('store: writing %d conversation(s) to %s failed', len(pending), self.path)
            if self.db.in_transaction:
                self.db.execute('ROLLBACK')
            error = exc
        for fut in waiters:
            if not fut.done():
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(error)

    async def save(self, conv: StoredConversation) -> None:
        self._pending[conv.key] = (
            conv.key,
            conv.flow,
            conv.version,
            conv.state,
            json.dumps(conv.data, separators=(',', ':'), default=str),
            json.dumps(conv.stack, separators=(',', ':'), default=str),
            conv.deadline,
            json.dumps(conv.extra, separators=(',', ':'), default=str),
            time.time(),
        )
        await self._schedule()

    async def delete(self, key: str) -> None:
        self._pending[key] = None
        await self._schedule()

    def load_all(self) -> Iterable[StoredConversation | Exception]:
        rows = self.db.execute('SELECT key, flow, version, state, data, stack, deadline, extra FROM conversations')
        for key, flow, version, state, data, stack, deadline, extra in rows.fetchall():
            try:
                yield StoredConversation(
                    key=key,
                    flow=flow,
                    version=version,
                    state=state,
                    data=_json_dict(data),
                    stack=json.loads(stack),
                    deadline=deadline,
                    extra=_json_dict(extra),
                )
            except (ValueError, TypeError) as exc:
                yield ValueError(f'conversation {key!r}: unreadable row: {exc}')

    async def put_record(self, kind: str, record_id: str, data: Mapping[str, Any]) -> None:
        self.db.execute(
            'INSERT INTO records VALUES (?,?,?,?) ON CONFLICT(kind, id) DO UPDATE SET data = excluded.data',
            (kind, record_id, time.time(), json.dumps(dict(data), default=str)),
        )

    async def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None:
        row = self.db.execute('SELECT data FROM records WHERE kind = ? AND id = ?', (kind, record_id)).fetchone()
        return _json_dict(row[0]) if row else None

    async def list_records(self, kind: str) -> list[dict[str, Any]]:
        rows = self.db.execute('SELECT data FROM records WHERE kind = ? ORDER BY created, rowid', (kind,))
        return [_json_dict(r[0]) for r in rows.fetchall()]

    async def put_flow_version(self, name: str, version: str, source: str) -> None:
        self.db.execute('INSERT OR REPLACE INTO flow_versions VALUES (?,?,?)', (name, version, source))

    def flow_versions(self) -> dict[tuple[str, str], str]:
        rows = self.db.execute('SELECT name, version, source FROM flow_versions').fetchall()
        return {(n, v): s for n, v, s in rows}

    async def close(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush()
        self.db.close()


def _json_dict(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise TypeError(f'expected a JSON object, got {type(value).__name__}')
    return value


def open_store(spec: str) -> Store:
    """``:memory:`` gives a :class:`MemoryStore`, anything else an SQLite file (its folder is created)."""
    if spec == ':memory:':
        return MemoryStore()
    import pathlib

    pathlib.Path(spec).parent.mkdir(parents=True, exist_ok=True)
    return SQLiteStore(spec)
