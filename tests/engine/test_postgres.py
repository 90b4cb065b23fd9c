"""What only the PostgreSQL store does: shard claims that wait and fence, concurrent migrations, the CLI on it."""

from __future__ import annotations

import asyncio
import json
import pathlib

import asyncpg
import pytest

from engine.app import build_app
from engine.cli import main
from engine.config import load_config
from engine.postgres import PostgresStore
from engine.store import ShardLostError, Shards, StoredConversation, StoreError
from tests.postgres import PostgresServer

TWO = Shards((0, 1), 2)


def conv(key: str, guild: str | None = None) -> StoredConversation:
    return StoredConversation(key=key, flow='f', version='v', state='s', data={}, guild=guild)


async def opened(dsn: str) -> PostgresStore:
    store = PostgresStore(dsn)
    await store.open()
    return store


async def test_a_claimed_shard_waits_until_its_owner_stops(postgres_dsn: str) -> None:
    first, second = await opened(postgres_dsn), await opened(postgres_dsn)
    await first.claim(Shards((1,), 2))
    waiting = asyncio.ensure_future(second.claim(TWO))
    await asyncio.sleep(1.0)
    assert not waiting.done()  # shard 1 is still held
    await first.close()
    await asyncio.wait_for(waiting, 5)
    await second.save(conv('a', guild=str(1 << 22)))
    await second.close()


async def test_a_process_whose_shard_was_taken_over_cannot_write_and_is_told_to_stop(postgres_dsn: str) -> None:
    old, new = await opened(postgres_dsn), await opened(postgres_dsn)
    told: list[str] = []
    old.on_lost = told.append
    await old.claim(Shards((0,), 1))
    await old.save(conv('k', guild=None))
    # The old owner's lock connection is cut (as by a network partition); another process takes the shard.
    admin = await asyncpg.connect(postgres_dsn)
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = 0 AND granted"
    )
    await asyncio.wait_for(new.claim(Shards((0,), 1)), 5)
    with pytest.raises(ShardLostError):
        old_row = conv('k')
        old_row.state = 'stale write'
        await old.save(old_row)
    assert len(told) == 1
    [row] = await new.load_all()
    assert isinstance(row, StoredConversation) and row.state == 's'
    await admin.close()
    await old.close()
    await new.close()


async def test_the_token_fence_refuses_a_batch_even_before_the_lost_lock_is_noticed(postgres_dsn: str) -> None:
    old, new = await opened(postgres_dsn), await opened(postgres_dsn)
    told: list[str] = []
    old.on_lost = told.append
    await old.claim(Shards((0,), 1))
    # The old process's lock is gone without it noticing (its lock connection stays open).
    await old._lock_conn.execute('SELECT pg_advisory_unlock_all()')
    await new.claim(Shards((0,), 1))
    with pytest.raises(ShardLostError):
        await old.save(conv('k'))
    assert told and 'taken over' in told[0]
    assert await new.load_all() == []
    await old.close()
    await new.close()


async def test_a_process_starts_while_another_holds_shard_0(postgres_dsn: str) -> None:
    holder = await opened(postgres_dsn)
    await holder.claim(Shards((0,), 2))
    other = await asyncio.wait_for(opened(postgres_dsn), 5)  # its schema check takes no shard's lock
    await other.close()
    await holder.close()


async def test_a_store_refuses_conversations_of_shards_it_did_not_claim(postgres_dsn: str) -> None:
    store = await opened(postgres_dsn)
    await store.claim(Shards((0,), 2))
    with pytest.raises(StoreError, match='does not run'):
        await store.save(conv('x', guild=str(1 << 22)))
    await store.close()


async def test_processes_starting_together_migrate_once(postgres_dsn: str) -> None:
    stores = await asyncio.gather(*(opened(postgres_dsn) for _ in range(4)))
    conn = await asyncpg.connect(postgres_dsn)
    assert await conn.fetchval('SELECT version FROM flowbot_schema') == 1
    assert await conn.fetchval('SELECT count(*) FROM flowbot_schema') == 1
    await conn.execute('UPDATE flowbot_schema SET version = 99')
    await conn.close()
    with pytest.raises(StoreError, match='newer than this flowbot'):
        await opened(postgres_dsn)
    for store in stores:
        await store.close()


async def test_an_unreachable_server_is_a_clear_error_without_the_password(postgres_server: PostgresServer) -> None:
    dsn = f'postgresql://bot:s3cret@127.0.0.1:{postgres_server.port + 1}/nowhere'
    with pytest.raises(StoreError) as caught:
        await opened(dsn)
    assert 'cannot connect to the store' in str(caught.value)
    assert 's3cret' not in str(caught.value) and 'bot:***@' in str(caught.value)


async def test_a_bot_on_postgresql_writes_no_local_store_file(
    postgres_dsn: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('FLOWBOT_STORE', postgres_dsn)
    (tmp_path / 'bot.toml').write_text('[bot]\nflows = []\nplugins = []\nreload = false\n', encoding='utf-8')
    app = build_app(load_config())
    await app.start()
    await app.engine.store.put_record('feedback', 'a', {'text': 'hi'})
    await app.stop()
    assert list(tmp_path.iterdir()) == [tmp_path / 'bot.toml']


def test_export_reads_records_from_postgresql(
    postgres_server: PostgresServer, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fill() -> str:
        dsn = await postgres_server.new_database()
        store = await opened(dsn)
        for i in range(3):
            await store.put_record('feedback', f'f{i}', {'text': f'note {i}'})
        await store.close()
        return dsn

    dsn = asyncio.run(fill())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('FLOWBOT_STORE', dsn)
    assert main(['export', 'feedback', '-o', str(tmp_path / 'out.jsonl')]) == 0
    lines = (tmp_path / 'out.jsonl').read_text(encoding='utf-8').splitlines()
    assert [json.loads(line)['text'] for line in lines] == ['note 0', 'note 1', 'note 2']


def test_export_from_an_unreachable_server_says_so(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('FLOWBOT_STORE', 'postgresql://bot:pw@127.0.0.1:1/db')
    assert main(['export', 'feedback']) == 1
    err = capsys.readouterr().err
    assert 'flowbot: store error: cannot connect to the store postgresql://bot:***@127.0.0.1:1/db' in err
    assert 'Traceback' not in err
