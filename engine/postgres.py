"""The PostgreSQL store: several bot processes (and machines) share conversations, records and flows.

Chosen by ``store = "postgresql://user@host/db"`` in ``[bot]`` or ``FLOWBOT_STORE``. Conversation
writes are group-committed like SQLite's: saves queued while one transaction is in flight go out
together in the next, as one ``INSERT ... SELECT FROM unnest(...)``.

Shards: :meth:`PostgresStore.claim` takes a session advisory lock per shard on a connection kept for
the process's life (PostgreSQL drops it when the process dies, so a replacement gets the shard at
once) and bumps the shard's fencing token in ``shard_leases``. Every flush first reads the tokens of
the claimed shards under ``FOR SHARE``: if another process has taken one over, the batch is refused
and :attr:`~engine.store.Store.on_lost` tells the app to stop, so a conversation is never run by two
processes at once, even when a process only *looks* dead (paused, cut off).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

from engine.i18n import _
from engine.store import (
    GroupCommitStore,
    ShardLostError,
    Shards,
    StoredConversation,
    StoreError,
    conversation_from_row,
    json_object,
    readable_records,
    settle_waiters,
)

__all__ = ['MIGRATIONS', 'PostgresStore', 'redact']

_log = logging.getLogger(__name__)

_LOCK_CLASS = 0x666C6F77
"""First key of flowbot's advisory locks ('flow'); the second is the shard, or :data:`_MIGRATION_LOCK`."""
_MIGRATION_LOCK = -1
"""Second key of the migration lock: no shard has it (a process holding shard 0 must not block others' start)."""

MIGRATIONS: Sequence[str] = (
    """
    CREATE TABLE conversations (
        key TEXT PRIMARY KEY, flow TEXT NOT NULL, version TEXT NOT NULL, state TEXT NOT NULL,
        data TEXT NOT NULL, stack TEXT NOT NULL, deadline DOUBLE PRECISION, extra TEXT NOT NULL,
        guild BIGINT, updated TIMESTAMPTZ NOT NULL DEFAULT now());
    CREATE TABLE records (
        kind TEXT NOT NULL, id TEXT NOT NULL, seq BIGSERIAL, created DOUBLE PRECISION NOT NULL,
        data JSON NOT NULL, PRIMARY KEY (kind, id));
    CREATE INDEX records_kind_seq ON records (kind, seq);
    CREATE TABLE flow_versions (
        name TEXT NOT NULL, version TEXT NOT NULL, source TEXT NOT NULL, PRIMARY KEY (name, version));
    CREATE TABLE shard_leases (
        shard INTEGER PRIMARY KEY, token BIGINT NOT NULL, owner TEXT NOT NULL, taken TIMESTAMPTZ NOT NULL);
    """,
)
"""Schema versions: entry ``n`` brings ``flowbot_schema.version`` from ``n`` to ``n + 1``. Append, never edit.

Conversation state is opaque text (the runtime's JSON, never queried); records are ``json``, which keeps
the text as given: ``jsonb`` refuses ``\u0000``, and one user's NUL character must not fail a whole
group commit."""

_UPSERT = """
INSERT INTO conversations (key, flow, version, state, data, stack, deadline, extra, guild, updated)
SELECT k, f, v, s, d, st, dl, ex, g, now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::float8[], $8::text[], $9::int8[])
    AS t(k, f, v, s, d, st, dl, ex, g)
ON CONFLICT (key) DO UPDATE SET flow = excluded.flow, version = excluded.version, state = excluded.state,
    data = excluded.data, stack = excluded.stack, deadline = excluded.deadline, extra = excluded.extra,
    guild = excluded.guild, updated = excluded.updated
"""

_SELECT = 'SELECT key, flow, version, state, data, stack, deadline, extra, guild FROM conversations'


def redact(dsn: str) -> str:
    """The URL without its password (``user:PASSWORD@`` or ``?password=PASSWORD``), for messages and logs."""
    dsn = re.sub(r'(://[^:/@]*):[^@]*@', r'\1:***@', dsn)
    return re.sub(r'([?&]password=)[^&#]*', r'\1***', dsn)


def _owner() -> str:
    return f'{socket.gethostname()}:{os.getpid()}'


class PostgresStore(GroupCommitStore):
    """Conversations, records, flow versions and shard leases in one PostgreSQL database.

    :param dsn: ``postgresql://user:password@host:port/database`` (libpq URL syntax; ``?host=/dir``
        for a unix socket).
    :param pool_size: connections for records and flushes.
    """

    def __init__(self, dsn: str, *, pool_size: int = 4) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self._pool: Any = None
        self._lock_conn: Any = None
        self._tokens: dict[int, int] = {}
        self._shards: Shards | None = None
        self._lost: str | None = None
        super().__init__()
        self._flusher: asyncio.Task[None] | None = None

    # -- connecting and migrating -------------------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            import asyncpg
        except ImportError as exc:  # installed without the [postgres] extra
            raise StoreError(
                _('the store {store} needs asyncpg: pip install "flowbot[postgres]"').format(store=redact(self.dsn))
            ) from exc

        try:
            self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.pool_size)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise StoreError(
                _('cannot connect to the store {store}: {error}').format(store=redact(self.dsn), error=exc)
            ) from exc
        async with self._pool.acquire() as conn:
            await self._migrate(conn)

    async def _migrate(self, conn: Any) -> None:
        """Bring the schema up to date; concurrent starts wait on one advisory lock."""
        async with conn.transaction():
            await conn.execute('SELECT pg_advisory_xact_lock($1, $2)', _LOCK_CLASS, _MIGRATION_LOCK)
            await conn.execute('CREATE TABLE IF NOT EXISTS flowbot_schema (version INTEGER NOT NULL)')
            current = await conn.fetchval('SELECT version FROM flowbot_schema')
            if current is None:
                await conn.execute('INSERT INTO flowbot_schema VALUES (0)')
                current = 0
            if current > len(MIGRATIONS):
                raise StoreError(
                    _('{path}: schema version {version} is newer than this flowbot knows ({known})').format(
                        path=redact(self.dsn), version=current, known=len(MIGRATIONS)
                    )
                )
            for version in range(current, len(MIGRATIONS)):
                await conn.execute(MIGRATIONS[version])
                await conn.execute('UPDATE flowbot_schema SET version = $1', version + 1)
                _log.info('store %s: schema migrated to version %d', redact(self.dsn), version + 1)

    def _ready(self) -> Any:
        if self._pool is None:
            raise StoreError('the PostgreSQL store is not open (Store.open was not awaited)')
        return self._pool

    # -- shards ----------------------------------------------------------------------------------------------------

    async def claim(self, shards: Shards) -> None:
        """Lock every shard (in order, so two processes never deadlock), then bump its fencing token."""
        import asyncpg

        pool = self._ready()
        if self._lock_conn is None:
            try:
                self._lock_conn = await asyncpg.connect(self.dsn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise StoreError(
                    _('cannot connect to the store {store} to claim shards: {error}').format(
                        store=redact(self.dsn), error=exc
                    )
                ) from exc
            self._lock_conn.add_termination_listener(lambda _conn: self._lose('the lock connection closed'))
        conn = self._lock_conn
        for shard in sorted(set(shards.ids)):
            said = False
            while not await conn.fetchval('SELECT pg_try_advisory_lock($1, $2)', _LOCK_CLASS, shard):
                if not said:
                    holder = await pool.fetchval('SELECT owner FROM shard_leases WHERE shard = $1', shard)
                    _log.warning('shard %d is held by %s; waiting until it stops', shard, holder or 'another process')
                    said = True
                await asyncio.sleep(0.5)
        owner = _owner()
        async with conn.transaction():
            for shard in shards.ids:
                self._tokens[shard] = await conn.fetchval(
                    'INSERT INTO shard_leases (shard, token, owner, taken) VALUES ($1, 1, $2, now()) '
                    'ON CONFLICT (shard) DO UPDATE SET token = shard_leases.token + 1, owner = excluded.owner, '
                    'taken = excluded.taken RETURNING token',
                    shard,
                    owner,
                )
        self._shards = shards
        _log.info('claimed shard(s) %s of %d as %s', sorted(shards.ids), shards.count, owner)

    def _lose(self, reason: str) -> None:
        if self._lost is not None:
            return
        self._lost = reason
        _log.critical('store: this process no longer owns its shards (%s); it must stop', reason)
        if self.on_lost is not None:
            self.on_lost(reason)

    # -- conversations (group commit) ------------------------------------------------------------------------------

    def _flush_soon(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_loop())

    async def _flush_loop(self) -> None:
        """One transaction at a time; what arrives meanwhile is the next batch."""
        await asyncio.sleep(0)  # let the saves of this event-loop turn join the first batch
        while self._waiters:
            pending, waiters = self._batch()
            error: Exception | None = None
            try:
                await self._write(pending)
            except Exception as exc:  # every waiter gets the error; the loop serves the next batch
                if not isinstance(exc, ShardLostError):
                    _log.exception('store: writing %d conversation(s) to %s failed', len(pending), redact(self.dsn))
                error = exc if isinstance(exc, StoreError) else StoreError(f'writing conversations failed: {exc}')
            settle_waiters(waiters, error)

    async def _write(self, pending: Mapping[str, tuple[Any, ...] | None]) -> None:
        if self._lost is not None:
            raise ShardLostError(self._lost)
        rows = [row for row in pending.values() if row is not None]
        if self._shards is not None:
            foreign = [row[0] for row in rows if not self._shards.owns(row[8])]
            if foreign:
                raise StoreError(f'conversation(s) of shards this process does not run: {foreign[:3]}')
        deleted = [key for key, row in pending.items() if row is None]
        async with self._ready().acquire() as conn, conn.transaction():
            if self._tokens:
                held = dict(
                    await conn.fetch(
                        'SELECT shard, token FROM shard_leases WHERE shard = ANY($1::int[]) FOR SHARE',
                        list(self._tokens),
                    )
                )
                moved = sorted(s for s, token in self._tokens.items() if held.get(s) != token)
                if moved:
                    self._lose(f'shard(s) {moved} were taken over by another process')
                    raise ShardLostError(f'shard(s) {moved} are owned by another process now')
            if rows:
                await conn.execute(_UPSERT, *([row[i] for row in rows] for i in range(9)))
            if deleted:
                await conn.execute('DELETE FROM conversations WHERE key = ANY($1::text[])', deleted)

    async def load_all(self, shards: Shards | None = None) -> list[StoredConversation | Exception]:
        pool = self._ready()
        if shards is None:
            rows = await pool.fetch(_SELECT)
        else:
            rows = await pool.fetch(
                f'{_SELECT} WHERE ((coalesce(guild, 0) >> 22) % $1) = ANY($2::int[])', shards.count, list(shards.ids)
            )
        return [conversation_from_row(*row) for row in rows]

    # -- records and flow versions ---------------------------------------------------------------------------------

    async def put_record(self, kind: str, record_id: str, data: Mapping[str, Any]) -> None:
        await self._ready().execute(
            'INSERT INTO records (kind, id, created, data) VALUES ($1, $2, $3, $4::json) '
            'ON CONFLICT (kind, id) DO UPDATE SET data = excluded.data',
            kind,
            record_id,
            time.time(),
            json.dumps(dict(data), default=str),
        )

    async def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None:
        text = await self._ready().fetchval(
            'SELECT data::text FROM records WHERE kind = $1 AND id = $2', kind, record_id
        )
        return json_object(text) if text is not None else None

    async def list_records(self, kind: str) -> list[dict[str, Any]]:
        rows = await self._ready().fetch('SELECT id, data::text FROM records WHERE kind = $1 ORDER BY seq', kind)
        return readable_records(kind, rows)

    async def put_flow_version(self, name: str, version: str, source: str) -> None:
        await self._ready().execute(
            'INSERT INTO flow_versions VALUES ($1, $2, $3) ON CONFLICT (name, version) DO NOTHING',
            name,
            version,
            source,
        )

    async def flow_versions(self) -> dict[tuple[str, str], str]:
        rows = await self._ready().fetch('SELECT name, version, source FROM flow_versions')
        return {(n, v): s for n, v, s in rows}

    async def close(self) -> None:
        """Write what is queued, then release the shards (a replacement may claim them at once)."""
        if self._flusher is not None and not self._flusher.done():
            try:
                await self._flusher
            except Exception:
                _log.exception('store: the last flush failed')
        if self._lock_conn is not None:
            conn, self._lock_conn = self._lock_conn, None
            self._lost = self._lost or 'closed'
            await conn.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
