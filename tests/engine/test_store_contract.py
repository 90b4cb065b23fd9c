"""The store port's contract, run on every durable store: SQLite (one machine) and PostgreSQL (a real server
started by the suite, see ``tests/postgres.py``)."""

from __future__ import annotations

import asyncio
import datetime
import logging
import pathlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from engine.store import Shards, SQLiteStore, Store, StoredConversation, StoreError, open_store

Opener = Callable[[], Awaitable[Store]]

GUILD_SHARD_0 = str(0 << 22)  # (guild >> 22) % 2 == 0
GUILD_SHARD_1 = str((1 << 22) | 5)


@pytest.fixture(params=['sqlite', 'postgresql'])
async def opener(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> AsyncIterator[Opener]:
    """Opens (and later closes) a store on the same place each call, as a restarted process would."""
    spec = str(tmp_path / 'store.sqlite3')
    if request.param == 'postgresql':
        spec = await request.getfixturevalue('postgres_server').new_database()
    opened: list[Store] = []

    async def open_() -> Store:
        store = open_store(spec)
        await store.open()
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


def conv(key: str = 'k1', *, guild: str | None = None, state: str = 'ask', **data: object) -> StoredConversation:
    return StoredConversation(
        key=key,
        flow='form',
        version='v1',
        state=state,
        data={'name': 'Zoë ✓', 'nested': {'list': [1, 2.5, None, True]}, **data},
        stack=[{'flow': 'parent', 'version': 'p1', 'state': 'call', 'data': {}}],
        deadline=1_700_000_000.25,
        extra={'attempts': 2, 'history': ['a', 'b']},
        guild=guild,
    )


async def by_key(store: Store, shards: Shards | None = None) -> dict[str, StoredConversation]:
    rows = await store.load_all(shards)
    assert all(isinstance(r, StoredConversation) for r in rows), rows
    return {r.key: r for r in rows if isinstance(r, StoredConversation)}


async def test_a_saved_conversation_comes_back_whole_after_a_restart(opener: Opener) -> None:
    store = await opener()
    await store.save(conv(guild=GUILD_SHARD_1))
    await store.close()
    again = await opener()
    assert await by_key(again) == {'k1': conv(guild=GUILD_SHARD_1)}


async def test_a_later_save_replaces_the_row_and_delete_forgets_it(opener: Opener) -> None:
    store = await opener()
    await store.save(conv(state='ask'))
    await store.save(conv(state='done', step=2))
    assert (await by_key(store))['k1'].state == 'done'
    assert (await by_key(store))['k1'].data['step'] == 2
    await store.delete('k1')
    await store.delete('never-saved')
    assert await by_key(store) == {}


async def test_concurrent_saves_share_commits_and_all_are_durable(opener: Opener) -> None:
    store = await opener()
    await asyncio.gather(*(store.save(conv(f'k{i}', n=i)) for i in range(500)))
    await asyncio.gather(*(store.delete(f'k{i}') for i in range(0, 500, 2)))
    await store.close()
    rows = await by_key(await opener())
    assert sorted(rows) == sorted(f'k{i}' for i in range(1, 500, 2))
    assert rows['k7'].data['n'] == 7


async def test_the_last_of_several_writes_to_one_key_in_one_batch_wins(opener: Opener) -> None:
    store = await opener()
    await asyncio.gather(store.save(conv(state='a')), store.delete('k1'), store.save(conv(state='c')))
    assert (await by_key(store))['k1'].state == 'c'


async def test_values_json_cannot_hold_are_stored_as_text(opener: Opener) -> None:
    store = await opener()
    when = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
    await store.save(conv(when=when))
    assert (await by_key(store))['k1'].data['when'] == str(when)


async def test_numbers_and_texts_beyond_what_orjson_writes_come_back_unchanged(opener: Opener) -> None:
    import numpy

    store = await opener()
    values = {
        'big': 2**70,
        'lone': 'a\ud800b',
        'nonascii': 'Zoë ✓ 日本',
        'numpy': numpy.float64(0.25),
        'keys': {7: 'x'},
    }
    await store.save(conv(**values))
    data = (await by_key(store))['k1'].data
    assert (data['big'], data['lone'], data['nonascii']) == (2**70, 'a\ud800b', 'Zoë ✓ 日本')
    assert data['numpy'] == 0.25 and isinstance(data['numpy'], float)  # a number, as json.dumps writes it
    assert data['keys'] == {'7': 'x'}


async def test_a_nul_character_is_kept_and_does_not_fail_the_others_in_its_batch(opener: Opener) -> None:
    store = await opener()
    await asyncio.gather(store.save(conv('nul', answer='a\x00b')), store.save(conv('plain')))
    await store.put_record('feedback', 'nul', {'text': 'x\x00y'})
    rows = await by_key(store)
    assert rows['nul'].data['answer'] == 'a\x00b' and 'plain' in rows
    assert await store.get_record('feedback', 'nul') == {'text': 'x\x00y'}


async def test_a_guild_that_is_not_a_snowflake_counts_as_no_guild(opener: Opener) -> None:
    store = await opener()
    await store.save(conv('text', guild='not-a-number'))
    await store.save(conv('huge', guild=str(2**64)))
    await store.save(conv('odd', guild='١٢٣'))  # digits, but not ASCII ones
    assert sorted(await by_key(store, Shards((0,), 2))) == ['huge', 'odd', 'text']
    assert await by_key(store, Shards((1,), 2)) == {}


async def test_loading_by_shard_returns_only_the_conversations_of_those_guilds(opener: Opener) -> None:
    store = await opener()
    await store.save(conv('dm'))
    await store.save(conv('g0', guild=GUILD_SHARD_0))
    await store.save(conv('g1', guild=GUILD_SHARD_1))
    assert sorted(await by_key(store, Shards((0,), 2))) == ['dm', 'g0']
    assert sorted(await by_key(store, Shards((1,), 2))) == ['g1']
    assert sorted(await by_key(store, Shards.every(2))) == ['dm', 'g0', 'g1']
    assert sorted(await by_key(store)) == ['dm', 'g0', 'g1']


async def test_records_are_listed_oldest_first_and_an_update_keeps_its_place(opener: Opener) -> None:
    store = await opener()
    for i in range(5):
        await store.put_record('feedback', f'f{i}', {'text': f'note {i}', 'n': i})
    await store.put_record('job', 'f1', {'other': 'kind'})
    await store.put_record('feedback', 'f1', {'text': 'edited', 'n': 1})
    assert [r['n'] for r in await store.list_records('feedback')] == [0, 1, 2, 3, 4]
    assert await store.get_record('feedback', 'f1') == {'text': 'edited', 'n': 1}
    assert await store.get_record('job', 'f1') == {'other': 'kind'}
    assert await store.get_record('feedback', 'missing') is None
    assert await store.list_records('nothing') == []


async def test_a_damaged_record_is_logged_and_left_out_of_the_listing_of_its_kind(
    opener: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    store = await opener()
    for i in range(3):
        await store.put_record('job', f'j{i}', {'n': i})
    damaged = {'j0': '[1, 2]'}
    if isinstance(store, SQLiteStore):  # SQLite keeps any text; PostgreSQL's JSON column only JSON
        damaged['j2'] = '{broken'
        for record_id, text in damaged.items():
            store.db.execute("UPDATE records SET data = ? WHERE kind = 'job' AND id = ?", (text, record_id))
    else:
        pool = store._ready()  # type: ignore[attr-defined]
        await pool.execute("UPDATE records SET data = $1::json WHERE kind = 'job' AND id = 'j0'", damaged['j0'])
    with caplog.at_level(logging.ERROR):
        listed = await store.list_records('job')
    assert [r['n'] for r in listed] == [i for i in range(3) if f'j{i}' not in damaged]
    for record_id in damaged:
        assert f"unreadable job record '{record_id}'" in caplog.text


async def test_flow_versions_are_kept_by_name_and_version(opener: Opener) -> None:
    store = await opener()
    await store.put_flow_version('form', 'v1', 'source 1')
    await store.put_flow_version('form', 'v2', 'source 2')
    await store.put_flow_version('form', 'v1', 'source 1')
    await store.close()
    again = await opener()
    assert await again.flow_versions() == {('form', 'v1'): 'source 1', ('form', 'v2'): 'source 2'}


async def test_opening_twice_leaves_the_schema_and_data_alone(opener: Opener) -> None:
    first = await opener()
    await first.put_record('feedback', 'a', {'x': 1})
    second = await opener()
    assert await second.list_records('feedback') == [{'x': 1}]


async def test_every_shard_can_be_claimed_by_one_process(opener: Opener) -> None:
    store = await opener()
    await store.claim(Shards.every(2))
    await store.save(conv('dm'))
    assert sorted(await by_key(store)) == ['dm']


# -- SQLite only ---------------------------------------------------------------------------------------------------


async def test_sqlite_refuses_to_run_part_of_the_shards(tmp_path: pathlib.Path) -> None:
    store = SQLiteStore(str(tmp_path / 's.sqlite3'))
    with pytest.raises(StoreError, match='several bot processes need a PostgreSQL store'):
        await store.claim(Shards((1,), 2))
    await store.close()


def _old_sqlite_file(path: pathlib.Path) -> None:
    """A store file as flowbot wrote it before schema versions (user_version 0, no guild column)."""
    import sqlite3

    db = sqlite3.connect(path)
    db.executescript(
        'CREATE TABLE conversations (key TEXT PRIMARY KEY, flow TEXT NOT NULL, version TEXT NOT NULL, '
        'state TEXT NOT NULL, data TEXT NOT NULL, stack TEXT NOT NULL, deadline REAL, extra TEXT NOT NULL, '
        'updated REAL NOT NULL);'
        'CREATE TABLE records (kind TEXT NOT NULL, id TEXT NOT NULL, created REAL NOT NULL, data TEXT NOT NULL, '
        'PRIMARY KEY (kind, id));'
        'CREATE TABLE flow_versions (name TEXT NOT NULL, version TEXT NOT NULL, source TEXT NOT NULL, '
        'PRIMARY KEY (name, version));'
        """INSERT INTO conversations VALUES ('old', 'form', 'v1', 'ask', '{}', '[]', NULL, '{}', 0);"""
    )
    db.commit()
    db.close()


async def test_an_sqlite_file_from_before_versioning_is_migrated_keeping_its_rows(tmp_path: pathlib.Path) -> None:
    path = tmp_path / 'old.sqlite3'
    _old_sqlite_file(path)
    store = SQLiteStore(str(path))
    [row] = await store.load_all()
    assert isinstance(row, StoredConversation) and row.key == 'old' and row.guild is None
    assert store.db.execute('PRAGMA user_version').fetchone()[0] == 2
    await store.close()


async def test_an_sqlite_schema_newer_than_this_flowbot_is_refused(tmp_path: pathlib.Path) -> None:
    import sqlite3

    path = tmp_path / 'new.sqlite3'
    db = sqlite3.connect(path)
    db.execute('PRAGMA user_version = 99')
    db.close()
    with pytest.raises(StoreError, match='newer than this flowbot'):
        SQLiteStore(str(path))


def test_processes_opening_an_old_sqlite_file_together_migrate_it_once(tmp_path: pathlib.Path) -> None:
    import concurrent.futures

    path = tmp_path / 'old.sqlite3'
    _old_sqlite_file(path)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(lambda _: SQLiteStore(str(path)), range(4)))
    assert [s.db.execute('PRAGMA user_version').fetchone()[0] for s in stores] == [2, 2, 2, 2]
    for store in stores:
        store.db.close()


async def test_a_cancelled_save_neither_fails_the_others_of_its_batch_nor_loses_its_row(opener: Opener) -> None:
    store = await opener()

    async def step(key: str) -> None:  # a conversation's step, waiting for its save
        await store.save(conv(key))

    saves = [asyncio.create_task(step(f'k{i}')) for i in range(3)]
    await asyncio.sleep(0)  # every save has queued its row and waits for the commit
    saves[1].cancel()
    await asyncio.gather(saves[0], saves[2])
    with pytest.raises(asyncio.CancelledError):
        await saves[1]
    assert sorted(await by_key(store)) == ['k0', 'k1', 'k2']  # the row was queued before the cancellation


async def test_a_failed_commit_fails_every_save_of_its_batch_with_a_logged_error(
    opener: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    store = await opener()
    broken = conv('broken')
    broken.flow = None  # type: ignore[assignment]  # NOT NULL: the batch's transaction fails as a whole
    results = await asyncio.gather(store.save(conv('good')), store.save(broken), return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results), results
    assert 'writing 2 conversation(s)' in caplog.text
    assert await by_key(store) == {}  # nothing of the failed batch was kept...
    await store.save(conv('next'))  # ...and the next batch is written
    assert list(await by_key(store)) == ['next']


async def test_sqlite_stamps_each_written_row_with_the_time_of_its_write(tmp_path: pathlib.Path) -> None:
    store = SQLiteStore(str(tmp_path / 's.sqlite3'))
    before = time.time()
    await store.save(conv())
    after = time.time()
    (updated,) = store.db.execute('SELECT updated FROM conversations').fetchone()
    await store.close()
    assert before - 0.01 <= updated <= after + 0.01  # seconds since 1970, as time.time(), to SQLite's millisecond


async def test_closing_writes_what_was_queued_at_the_call_even_if_nobody_waits(opener: Opener) -> None:
    store = await opener()
    await store.save(conv('gone'))
    queued = [store.save(conv('k1')), store.delete('gone'), store.save(conv('k2'))]  # rows taken here
    await store.close()
    assert all(asyncio.isfuture(q) and q.done() and q.exception() is None for q in queued)
    assert sorted(await by_key(await opener())) == ['k1', 'k2']


async def test_a_row_the_database_cannot_encode_fails_its_batch_and_the_next_is_written(opener: Opener) -> None:
    store = await opener()
    odd = conv('k\ud800')  # a lone surrogate: not UTF-8, refused before SQL runs (not a database error)
    results = await asyncio.wait_for(asyncio.gather(store.save(odd), return_exceptions=True), 5)
    assert isinstance(results[0], Exception), results
    await asyncio.wait_for(store.save(conv('next')), 5)
    assert list(await by_key(store)) == ['next']
