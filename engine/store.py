"""Persistence port: conversations (restored after a restart) and plain records (feedback, jobs, ...).

:class:`SQLiteStore` is the embedded default for one machine; :class:`~engine.postgres.PostgresStore`
(``store = "postgresql://..."``) lets several bot processes share conversations; :class:`MemoryStore`
serves tests and benchmarks. Writes of conversations are group-committed: every ``save`` waits until
its row is durable, but many conversations share one transaction, which is what makes thousands of
steps/s possible.

Several bot processes split the conversations by Discord shard (:class:`Shards`): a process
:meth:`Store.claim` s its shards before it restores their conversations, and a store that lost a
claimed shard to another process refuses that process's writes (fencing).
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
import orjson

from engine.errors import FlowbotError
from engine.i18n import _

__all__ = [
    'GroupCommitStore',
    'MemoryStore',
    'SQLiteStore',
    'ShardLostError',
    'Shards',
    'Store',
    'StoreError',
    'StoredConversation',
    'conversation_from_row',
    'conversation_row',
    'guild_number',
    'json_object',
    'open_store',
    'readable_records',
    'settle_waiters',
]

_log = logging.getLogger(__name__)


class StoreError(FlowbotError):
    """The store cannot be used: unreachable, a schema from a newer flowbot, a shard owned elsewhere."""


class ShardLostError(StoreError):
    """Another process took over a shard this process claimed; its writes are refused from then on."""


@attrs.frozen
class Shards:
    """The Discord shards one bot process runs; it owns the conversations of their guilds.

    A guild belongs to shard ``(guild_id >> 22) % count``, as Discord routes its events; direct
    messages (no guild) arrive on shard 0.
    """

    ids: tuple[int, ...]
    count: int

    def __attrs_post_init__(self) -> None:
        if self.count < 1 or not self.ids or any(not 0 <= i < self.count for i in self.ids):
            raise ValueError(
                _('shard ids {ids} do not fit shard_count {count}').format(ids=list(self.ids), count=self.count)
            )

    @classmethod
    def every(cls, count: int = 1) -> Shards:
        """All ``count`` shards: what an unsharded process runs, so a second one on the same store waits.

        :param count: the shard count (1 without sharding).
        """
        return cls(tuple(range(count)), count)

    @property
    def is_every(self) -> bool:
        """This process runs every shard, so it owns every guild's conversations."""
        return set(self.ids) == set(range(self.count))

    def of(self, guild: str | int | None) -> int:
        """The shard a guild's events arrive on (shard 0 for no guild, or one that is not a snowflake)."""
        number = guild_number(guild)
        return (number >> 22) % self.count if number is not None else 0

    def owns(self, guild: str | int | None) -> bool:
        """Whether this process runs the conversations of ``guild`` (a DM belongs to the process of shard 0).

        :param guild: a guild id, or ``None`` for a direct message.
        """
        return self.of(guild) in self.ids


def guild_number(guild: str | int | None) -> int | None:
    """A guild id as the integer the stores keep (a Discord snowflake fits 63 bits); ``None`` for anything else."""
    if isinstance(guild, str):
        guild = int(guild) if guild.isascii() and guild.isdigit() else None
    return guild if guild is not None and 0 < guild < 2**63 else None


@attrs.define
class StoredConversation:
    """The durable part of a conversation, as the runtime saves it after every transition.

    Its fields may be given by position, in this order (every step's snapshot does: no keyword matching).
    """

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
    guild: str | None = None
    """The guild of the conversation's channel (``None`` in direct messages and the console): it
    decides which shard, and so which bot process, owns the conversation."""


class Store(abc.ABC):
    """Where conversations and records live.

    :meth:`open` runs once before anything else (connect, migrate the schema); :meth:`close` at the end.
    """

    on_lost: Callable[[str], None] | None = None
    """Called with a reason when the store finds that a shard this process claimed is owned elsewhere
    now; the process must stop serving (the app stops the bot)."""

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect and bring the schema up to date."""

    async def claim(self, shards: Shards) -> None:
        """Take ``shards`` for this process, waiting while another process holds one of them.

        The embedded stores serve one process, so they accept only every shard.
        """
        if not shards.is_every:
            raise StoreError(
                _(
                    'shard_ids {ids} of {count}: several bot processes need a PostgreSQL store '
                    '(store = "postgresql://..."); with this store one process must run every shard'
                ).format(ids=list(shards.ids), count=shards.count)
            )

    @abc.abstractmethod
    def save(self, conv: StoredConversation) -> Awaitable[None]:
        """Persist ``conv``: the row is taken at the call, the awaitable is done once it is durable.

        A plain awaitable, not necessarily a coroutine: a store that group-commits returns the waiter's
        future itself, so a step waiting for its commit keeps one object fewer alive.
        """

    @abc.abstractmethod
    def delete(self, key: str) -> Awaitable[None]:
        """Forget a finished conversation (taken at the call, as :meth:`save`)."""

    @abc.abstractmethod
    async def load_all(self, shards: Shards | None = None) -> list[StoredConversation | Exception]:
        """Every unfinished conversation (of ``shards`` only, when given); a row that cannot be read
        comes back as the exception."""

    @abc.abstractmethod
    async def put_record(self, kind: str, record_id: str, data: Mapping[str, Any]) -> None:
        """Insert or replace a record of ``kind`` (``feedback``, ``correction``, ``job``, ...)."""

    @abc.abstractmethod
    async def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None:
        """One record of ``kind`` by its id, or ``None`` when there is none (a job another process forgot)."""

    @abc.abstractmethod
    async def list_records(self, kind: str) -> list[dict[str, Any]]:
        """All records of ``kind``, oldest first."""

    @abc.abstractmethod
    async def put_flow_version(self, name: str, version: str, source: str) -> None:
        """Keep a flow's source so conversations finish on the version they started with."""

    @abc.abstractmethod
    async def flow_versions(self) -> dict[tuple[str, str], str]:
        """Every stored (name, version) -> TOML source."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release resources."""

    # Jobs: long work (a training run) that outlives any conversation. A job record holds who asked,
    # where its outcome goes and the remote ids of what it created; every write returns once durable,
    # so a job manager can record an intent *before* a side effect. These default to records of kind
    # ``job``; a backend may keep them in a table of their own (tests/engine/test_store_jobs.py is the
    # contract every backend must pass).

    async def put_job(self, job: Mapping[str, Any]) -> None:
        """Insert or replace the job ``job['id']``; returns once it is durable."""
        await self.put_record('job', str(job['id']), job)

    async def get_job(self, job_id: str) -> dict[str, Any] | None:
        """A training job's record by id, or ``None``; jobs are ``job`` records so every store keeps them alike."""
        return await self.get_record('job', job_id)

    async def list_jobs(self, *, open_only: bool = False) -> list[dict[str, Any]]:
        """Every job, oldest first; ``open_only``: only those whose outcome is not delivered yet."""
        jobs = await self.list_records('job')
        return [j for j in jobs if not j.get('reported')] if open_only else jobs


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

    async def load_all(self, shards: Shards | None = None) -> list[StoredConversation | Exception]:
        return [c for c in self.conversations.values() if shards is None or shards.owns(c.guild)]

    async def put_record(self, kind: str, record_id: str, data: Mapping[str, Any]) -> None:
        self.records.setdefault(kind, {})[record_id] = dict(data)

    async def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None:
        return self.records.get(kind, {}).get(record_id)

    async def list_records(self, kind: str) -> list[dict[str, Any]]:
        return list(self.records.get(kind, {}).values())

    async def put_flow_version(self, name: str, version: str, source: str) -> None:
        self.flows[(name, version)] = source

    async def flow_versions(self) -> dict[tuple[str, str], str]:
        return dict(self.flows)


_SQLITE_MIGRATIONS: Sequence[str] = (
    """
    CREATE TABLE IF NOT EXISTS conversations (
        key TEXT PRIMARY KEY, flow TEXT NOT NULL, version TEXT NOT NULL, state TEXT NOT NULL,
        data TEXT NOT NULL, stack TEXT NOT NULL, deadline REAL, extra TEXT NOT NULL, updated REAL NOT NULL);
    CREATE TABLE IF NOT EXISTS records (
        kind TEXT NOT NULL, id TEXT NOT NULL, created REAL NOT NULL, data TEXT NOT NULL, PRIMARY KEY (kind, id));
    CREATE TABLE IF NOT EXISTS flow_versions (
        name TEXT NOT NULL, version TEXT NOT NULL, source TEXT NOT NULL, PRIMARY KEY (name, version));
    """,
    'ALTER TABLE conversations ADD COLUMN guild INTEGER;',
)
"""Schema versions: entry ``n`` brings ``PRAGMA user_version`` from ``n`` to ``n + 1`` (files made before
versioning are at 0 and already have the tables of version 1, hence ``IF NOT EXISTS``)."""


def _migrate_sqlite(db: sqlite3.Connection, path: str) -> None:
    """Apply the missing migrations, one transaction each; the version is read under the write lock, so
    two processes opening an old file together migrate it once."""
    while True:
        db.execute('BEGIN IMMEDIATE')
        version = db.execute('PRAGMA user_version').fetchone()[0]
        if version >= len(_SQLITE_MIGRATIONS):
            db.execute('COMMIT')
            if version > len(_SQLITE_MIGRATIONS):
                known = len(_SQLITE_MIGRATIONS)
                raise StoreError(
                    _('{path}: schema version {version} is newer than this flowbot knows ({known})').format(
                        path=path, version=version, known=known
                    )
                )
            return
        try:
            for statement in _SQLITE_MIGRATIONS[version].split(';'):
                if statement.strip():
                    db.execute(statement)
            db.execute(f'PRAGMA user_version = {version + 1}')
            db.execute('COMMIT')
        except sqlite3.Error as exc:
            db.execute('ROLLBACK')
            raise StoreError(
                _('{path}: migrating the schema to version {version} failed: {error}').format(
                    path=path, version=version + 1, error=exc
                )
            ) from exc
        _log.info('store %s: schema migrated to version %d', path, version + 1)


_CONVERSATION_COLUMNS = 'key, flow, version, state, data, stack, deadline, extra, guild'


_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
"""Keys and values written as :func:`json.dumps` with ``default=str`` writes them (datetimes and dataclasses
through ``str``, non-text keys as text)."""


def _unknown(value: Any) -> Any:
    """What a value JSON has no type for becomes: a float subclass (numpy's) its number, anything else its text."""
    return float(value) if isinstance(value, float) else str(value)


def _json(value: Any) -> str:
    """Compact JSON of a conversation column, by orjson (a tenth of the standard library's time on every step).

    What orjson refuses (integers beyond 64 bits, unpaired surrogates) goes through :mod:`json`, which
    reads back the same; the one difference is that orjson writes NaN and infinities as ``null``.
    """
    try:
        return orjson.dumps(value, default=_unknown, option=_ORJSON_OPTIONS).decode()
    except TypeError:
        return json.dumps(value, separators=(',', ':'), default=str)


def conversation_row(conv: StoredConversation) -> tuple[Any, ...]:
    """The columns of a conversation row, in :data:`_CONVERSATION_COLUMNS` order (every store's layout)."""
    return (
        conv.key,
        conv.flow,
        conv.version,
        conv.state,
        _json(conv.data),
        _json(conv.stack) if conv.stack else '[]',  # no sub-flow running: most rows, no encoder call
        conv.deadline,
        _json(conv.extra),
        guild_number(conv.guild),
    )


_SQLITE_NOW = "(julianday('now') - 2440587.5) * 86400.0"
"""The time of the write as ``time.time()`` gives it (seconds since 1970), by SQLite (as PostgreSQL's ``now()``)."""
_SQLITE_UPSERT = (
    f'INSERT INTO conversations ({_CONVERSATION_COLUMNS}, updated) VALUES (?,?,?,?,?,?,?,?,?,{_SQLITE_NOW}) '
    'ON CONFLICT(key) '
    'DO UPDATE SET flow = excluded.flow, version = excluded.version, state = excluded.state, data = excluded.data, '
    'stack = excluded.stack, deadline = excluded.deadline, extra = excluded.extra, guild = excluded.guild, '
    'updated = excluded.updated'
)
_SQLITE_DELETE = 'DELETE FROM conversations WHERE key = ?'


class GroupCommitStore(Store):
    """A store that writes the conversation saves and deletes of one event-loop turn in one transaction.

    ``save`` and ``delete`` queue the row (a key once, with its latest row) and return the caller's own future,
    settled when its batch is durable or has failed (:func:`settle_waiters`): a cancelled waiter cancels nothing
    else. Subclasses say how a batch gets written (:meth:`_flush_soon`, then :meth:`_batch`).
    """

    def __init__(self) -> None:
        self._pending: dict[str, tuple[Any, ...] | None] = {}
        self._waiters: list[asyncio.Future[None]] = []

    def save(self, conv: StoredConversation) -> asyncio.Future[None]:
        self._pending[conv.key] = conversation_row(conv)
        return self._waiter()  # only the row and this future wait for the commit, not a coroutine

    def delete(self, key: str) -> asyncio.Future[None]:
        self._pending[key] = None
        return self._waiter()

    def _waiter(self) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._flush_soon()
        return fut

    @abc.abstractmethod
    def _flush_soon(self) -> None:
        """Make sure the queued batch is written soon (once, however many saves join it)."""

    def _batch(self) -> tuple[dict[str, tuple[Any, ...] | None], list[asyncio.Future[None]]]:
        """Take what is queued (rows by key, ``None`` for a deletion) and its waiters; what comes next is a new batch."""
        batch = self._pending, self._waiters
        self._pending, self._waiters = {}, []
        return batch


class SQLiteStore(GroupCommitStore):
    """SQLite in WAL mode with group commit.

    ``save`` queues the row and awaits a future; one flush per event-loop turn writes every queued
    row in a single transaction (one ``executemany`` for the rows, one for the deletions: a key is queued
    once, with its latest row). A SIGKILL loses nothing that a ``save`` returned for.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute('PRAGMA journal_mode=WAL')
            self.db.execute('PRAGMA synchronous=NORMAL')
            _migrate_sqlite(self.db, path)
        except sqlite3.Error as exc:
            raise StoreError(_('cannot open the store {path}: {error}').format(path=path, error=exc)) from exc
        super().__init__()
        self._flush_handle: asyncio.Handle | None = None

    def _flush_soon(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        pending, waiters = self._batch()
        error: Exception | None = None
        try:
            self.db.execute('BEGIN')
            self.db.executemany(_SQLITE_UPSERT, [row for row in pending.values() if row is not None])
            self.db.executemany(_SQLITE_DELETE, [(key,) for key, row in pending.items() if row is None])
            self.db.execute('COMMIT')
        except Exception as exc:  # also what fails before SQL runs (a text that is not UTF-8): never left open
            _log.exception('store: writing %d conversation(s) to %s failed', len(pending), self.path)
            if self.db.in_transaction:
                self.db.execute('ROLLBACK')
            error = exc
        settle_waiters(waiters, error)

    async def load_all(self, shards: Shards | None = None) -> list[StoredConversation | Exception]:
        rows = self.db.execute(f'SELECT {_CONVERSATION_COLUMNS} FROM conversations').fetchall()
        return [conversation_from_row(*row) for row in rows if shards is None or shards.owns(row[-1])]

    async def put_record(self, kind: str, record_id: str, data: Mapping[str, Any]) -> None:
        self.db.execute(
            'INSERT INTO records VALUES (?,?,?,?) ON CONFLICT(kind, id) DO UPDATE SET data = excluded.data',
            (kind, record_id, time.time(), json.dumps(dict(data), default=str)),
        )

    async def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None:
        row = self.db.execute('SELECT data FROM records WHERE kind = ? AND id = ?', (kind, record_id)).fetchone()
        return json_object(row[0]) if row else None

    async def list_records(self, kind: str) -> list[dict[str, Any]]:
        rows = self.db.execute('SELECT id, data FROM records WHERE kind = ? ORDER BY created, rowid', (kind,))
        return readable_records(kind, rows.fetchall())

    async def put_flow_version(self, name: str, version: str, source: str) -> None:
        self.db.execute('INSERT OR REPLACE INTO flow_versions VALUES (?,?,?)', (name, version, source))

    async def flow_versions(self) -> dict[tuple[str, str], str]:
        rows = self.db.execute('SELECT name, version, source FROM flow_versions').fetchall()
        return {(n, v): s for n, v, s in rows}

    async def close(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush()
        self.db.close()


def settle_waiters(waiters: list[asyncio.Future[None]], error: Exception | None) -> None:
    """Wake every ``save`` of a flushed batch: with success, or with the batch's error."""
    for fut in waiters:
        if not fut.done():
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)


def conversation_from_row(
    key: str,
    flow: str,
    version: str,
    state: str,
    data: str,
    stack: str,
    deadline: float | None,
    extra: str,
    guild: int | None,
) -> StoredConversation | Exception:
    """A stored row back as a conversation; JSON columns arrive as text from either database.

    A damaged row (a column of the wrong shape: SQLite keeps any type in any column) comes back as the
    error, so it is skipped and logged instead of failing the restore of every other conversation.
    """
    try:
        frames = json.loads(stack)
        if not isinstance(frames, list) or not all(isinstance(f, dict) for f in frames):
            raise TypeError(f'the sub-flow stack is {type(frames).__name__}, not a list of JSON objects')
        if deadline is not None and (isinstance(deadline, bool) or not isinstance(deadline, int | float)):
            raise TypeError(f'the deadline is {type(deadline).__name__}, not a number')
        return StoredConversation(
            key=key,
            flow=flow,
            version=version,
            state=state,
            data=json_object(data),
            stack=frames,
            deadline=deadline,
            extra=json_object(extra),
            guild=str(guild) if guild is not None else None,
        )
    except (ValueError, TypeError) as exc:
        return ValueError(f'conversation {key!r}: unreadable row: {exc}')


def readable_records(kind: str, rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """The records of ``(id, JSON text)`` rows; a damaged one (not a JSON object) is logged and left out,
    so one bad row does not stop an export, a listing or the start of the bot."""
    records = []
    for record_id, text in rows:
        try:
            records.append(json_object(text))
        except (ValueError, TypeError) as exc:
            _log.error('store: skipping the unreadable %s record %r: %s', kind, record_id, exc)
    return records


def json_object(text: str) -> dict[str, Any]:
    """Parse a stored JSON object; anything else means a damaged row, reported rather than used.

    :param text: the column's text.
    :raises TypeError: the text is JSON but not an object.
    """
    value = json.loads(text)
    if not isinstance(value, dict):
        raise TypeError(f'expected a JSON object, got {type(value).__name__}')
    return value


def open_store(spec: str) -> Store:
    """``:memory:`` gives a :class:`MemoryStore`, a ``postgresql://`` URL a
    :class:`~engine.postgres.PostgresStore` (connected by :meth:`Store.open`), anything else an SQLite
    file (its folder is created).

    :raises StoreError: the SQLite file's folder cannot be made (a file in the way, no permission, a bad name).
    """
    if spec == ':memory:':
        return MemoryStore()
    if spec.startswith(('postgresql://', 'postgres://')):
        from engine.postgres import PostgresStore

        return PostgresStore(spec)
    import pathlib

    try:
        pathlib.Path(spec).parent.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as exc:
        error = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise StoreError(_('cannot open the store {path}: {error}').format(path=spec, error=error)) from None
    return SQLiteStore(spec)
