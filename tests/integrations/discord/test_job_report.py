"""A job's report posted to its Discord channel when no conversation waits for it: it mentions the user."""

from __future__ import annotations

from engine.app import App

from .conftest import CHANNEL, Running


async def test_a_posted_report_mentions_the_user_in_the_channel(running: Running, app: App) -> None:
    place = {'adapter': 'discord', 'channel': str(CHANNEL), 'user': '11'}
    message_id = await app.engine.post(place, 'Training job j1 finished: model m.')
    (call,) = running.emulator.calls_to('POST', rf'/channels/{CHANNEL}/messages')
    assert call.content == '<@11> Training job j1 finished: model m.'
    await app.engine.post(place, 'succeeded: done', edit=message_id)
    (edit,) = running.emulator.calls_to('PATCH', rf'/channels/{CHANNEL}/messages/{message_id}')
    assert edit.json['content'] == 'succeeded: done'
