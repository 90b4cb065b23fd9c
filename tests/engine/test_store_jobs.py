"""The job part of the store port: the contract every backend (memory, SQLite, PostgreSQL) passes.

A new backend adds itself to ``STORES``; the job manager relies on exactly these properties: a job written
is read back whole, a rewrite replaces it (same id, no second row), the list is oldest first, ``open_only``
leaves out delivered jobs, and a write is visible to a second connection (another process) once it returns.
"""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Callable

import pytest

from engine.store import MemoryStore, SQLiteStore, Store

STORES: dict[str, Callable[[pathlib.Path], Store]] = {
    'memory': lambda tmp: MemoryStore(),
    'sqlite': lambda tmp: SQLiteStore(str(tmp / 'store.sqlite3')),
}


@pytest.fixture(params=[*STORES, 'postgres'])
async def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> AsyncIterator[Store]:
    if request.param == 'postgres':
        from engine.postgres import PostgresStore

        backend: Store = PostgresStore(await request.getfixturevalue('postgres_server').new_database())
        await backend.open()
    else:
        backend = STORES[request.param](tmp_path)
    yield backend
    await backend.close()


def _job(job_id: str, **fields: object) -> dict[str, object]:
    return {
        'id': job_id,
        'provider': 'openai',
        'place': {'adapter': 'discord', 'channel': '42', 'thread': None, 'user': '7', 'progress': 'm9'},
        'remote_id': None,
        'reported': False,
        'extra': {'train_upload_sent': 1.5},
        **fields,
    }


async def test_a_job_is_read_back_whole_and_a_rewrite_replaces_it(store: Store) -> None:
    await store.put_job(_job('a'))
    assert await store.get_job('a') == _job('a')
    await store.put_job(_job('a', remote_id='ftjob-1', extra={'create_sent': 2.0}))
    assert await store.get_job('a') == _job('a', remote_id='ftjob-1', extra={'create_sent': 2.0})
    assert [j['id'] for j in await store.list_jobs()] == ['a']
    assert await store.get_job('missing') is None


async def test_jobs_are_listed_oldest_first_and_open_only_leaves_out_delivered_ones(store: Store) -> None:
    for job_id in ('first', 'second', 'third'):
        await store.put_job(_job(job_id))
    await store.put_job(_job('second', reported=True))  # a rewrite keeps its place in the order
    assert [j['id'] for j in await store.list_jobs()] == ['first', 'second', 'third']
    assert [j['id'] for j in await store.list_jobs(open_only=True)] == ['first', 'third']


async def test_a_written_job_is_visible_to_another_connection_at_once(tmp_path: pathlib.Path) -> None:
    first = SQLiteStore(str(tmp_path / 'store.sqlite3'))
    await first.put_job(_job('a', remote_id='ftjob-1'))
    second = SQLiteStore(str(tmp_path / 'store.sqlite3'))  # as the restarted process would open it
    try:
        assert (await second.get_job('a') or {})['remote_id'] == 'ftjob-1'
    finally:
        await second.close()
        await first.close()
