"""The chat model answers garbage: an empty answer or something that is not a completion gets a plain
message, and nothing empty is remembered as a turn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from engine.states.actions import ActionError

from .conftest import MakePlugin, openai_settings
from .fake_openai import FakeOpenAI


class ScriptedChat(FakeOpenAI):
    """Chat completions answered with ``answer``: a message content, or a whole HTTP response."""

    answer: Any = 'fine'

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        if isinstance(self.answer, web.Response):
            return self.answer
        message = {'role': 'assistant', 'content': self.answer}
        choice = {'index': 0, 'finish_reason': 'stop', 'message': message}
        return web.json_response(
            {'id': 'c', 'object': 'chat.completion', 'created': 1, 'model': body['model'], 'choices': [choice]}
        )


@pytest.fixture
async def server() -> AsyncIterator[ScriptedChat]:
    fake = ScriptedChat()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.mark.parametrize('content', ['', '  \n ', None])
async def test_an_empty_model_answer_is_told_to_the_user_and_not_remembered(
    make_plugin: MakePlugin, server: ScriptedChat, content: str | None
) -> None:
    plugin = make_plugin(**openai_settings(server))
    server.answer = content
    with pytest.raises(ActionError, match='empty answer'):
        await plugin.call('model.chat', text='hello')
    assert await plugin.ctx.store.get_record('chat', 'console:local:admin') is None


async def test_an_answer_that_is_no_completion_gets_a_plain_message_naming_openai(
    make_plugin: MakePlugin, server: ScriptedChat
) -> None:
    plugin = make_plugin(**openai_settings(server))
    server.answer = web.Response(text='<html>502 Bad Gateway</html>', content_type='text/html')
    with pytest.raises(ActionError, match='OpenAI') as refused:
        await plugin.call('model.chat', text='hello')
    assert 'unexpectedly' not in str(refused.value) and 'log' not in str(refused.value)
