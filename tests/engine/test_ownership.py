"""A bot process runs the conversations of its shards only, and lets go of one another process took over."""

from __future__ import annotations

from engine.api import ConversationKey, User
from engine.store import MemoryStore, ShardLostError, Shards, StoredConversation
from tests.engine.conftest import HarnessFactory

FORM = (
    '[flow]\nname = "form"\n[trigger]\ncommand = "form"\n'
    '[states.a]\nkind = "ask"\nprompt = "A?"\nsave_as = "a"\n'
    '[states.b]\nkind = "ask"\nprompt = "B?"\nsave_as = "b"\n'
    '[states.done]\nkind = "end"\ntext = "{{ a }}/{{ b }}"\n'
)
GUILD_0, GUILD_1 = str(2 << 22), str(3 << 22)


def in_guild(n: int, guild: str | None) -> tuple[ConversationKey, User]:
    return ConversationKey('test', f'chan{n}', f'u{n}'), User(id=f'u{n}', name='Ann', guild=guild)


async def test_a_process_restores_only_the_conversations_of_its_shards(engine_harness: HarnessFactory) -> None:
    store = MemoryStore()
    first = await engine_harness({'form': FORM}, store=store)
    people = [in_guild(0, GUILD_0), in_guild(1, GUILD_1), in_guild(2, None)]
    for key, user in people:
        await first.command('form', key=key, user=user)
    assert {c.guild for c in store.conversations.values()} == {GUILD_0, GUILD_1, None}
    shard_1 = await engine_harness({'form': FORM}, store=store, start=False)
    await shard_1.engine.start(Shards((1,), 2))
    assert [shard_1.live(key) for key, _ in people] == [False, True, False]
    shard_0 = await engine_harness({'form': FORM}, store=store, start=False)
    await shard_0.engine.start(Shards((0,), 2))
    assert [shard_0.live(key) for key, _ in people] == [True, False, True]  # direct messages are on shard 0


class FencedStore(MemoryStore):
    """Refuses writes once another process has (in the test's story) taken the shard over."""

    fenced = False

    async def save(self, conv: StoredConversation) -> None:
        if self.fenced:
            raise ShardLostError('shard(s) [0] are owned by another process now')
        await super().save(conv)

    async def delete(self, key: str) -> None:
        if self.fenced:
            raise ShardLostError('shard(s) [0] are owned by another process now')
        await super().delete(key)


async def test_a_conversation_whose_shard_was_taken_over_is_dropped_without_a_word(
    engine_harness: HarnessFactory,
) -> None:
    store = FencedStore()
    h = await engine_harness({'form': FORM}, store=store)
    await h.command('form')
    store.fenced = True
    await h.say('x')
    assert h.texts() == ['A?']  # the next question is durable before it is asked: the new owner asks it
    assert not h.live()
    [row] = store.conversations.values()
    assert row.state == 'a'
