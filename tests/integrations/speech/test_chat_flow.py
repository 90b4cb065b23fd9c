"""The repository's ``chat`` flow with the real speech actions: a Korean voice message in, text and a voice message out."""

from __future__ import annotations

import pathlib
import shutil
from typing import Any

import av

from engine.api import Attachment, ConversationKey, Message
from engine.app import build_app
from engine.config import Config
from engine.doubles import RecordingAdapter
from engine.plugins import SetupContext
from engine.runtime import Engine
from engine.states.actions import ActionContext
from engine.store import MemoryStore
from integrations.speech.audio import encode_voice_message
from tests.engine.helpers import KEY, USER, make_config
from tests.integrations.speech.helpers import espeak, ko_model_dir, speak_ko

CHAT_FLOW = pathlib.Path(__file__).resolve().parents[3] / 'flows' / 'chat.toml'


class _Adapter(RecordingAdapter):
    """Keeps a copy of every file sent: the conversation's work folder is gone once it ends."""

    def __init__(self, keep: pathlib.Path) -> None:
        super().__init__()
        self.keep = keep
        keep.mkdir()

    async def send_file(
        self, key: ConversationKey, path: pathlib.Path, *, text: str | None = None, voice_message: bool = False
    ) -> str:
        copy = pathlib.Path(shutil.copy(path, self.keep / path.name))
        return await super().send_file(key, copy, text=text, voice_message=voice_message)


async def _engine(
    tmp_path: pathlib.Path, speech: dict[str, Any], heard: list[str]
) -> tuple[Engine, _Adapter, SetupContext]:
    folder = tmp_path / 'flows'
    folder.mkdir()
    shutil.copy(CHAT_FLOW, folder / 'chat.toml')
    config: Config = make_config(tmp_path, folder)
    config.sections = {'speech': speech}

    async def chat(actx: ActionContext, *, text: str) -> dict[str, Any]:
        heard.append(text)
        return {'reply': '감사합니다'}

    async def speak(actx: ActionContext, *, text: str) -> dict[str, Any]:
        return {'spoken': False}  # the user is in no voice channel

    app = build_app(
        config,
        store=MemoryStore(),
        plugins=['integrations.builtin', 'integrations.speech'],
        actions={'model.chat': chat, 'voice.speak': speak},
    )
    engine = app.engine
    adapter = _Adapter(tmp_path / 'sent')
    engine.add_adapter(adapter)
    await engine.start()
    return engine, adapter, app.plugins


async def test_voice_message_gets_a_text_and_a_voice_message_reply(tmp_path: pathlib.Path) -> None:
    espeak()
    model = ko_model_dir()
    heard: list[str] = []
    engine, adapter, plugins = await _engine(
        tmp_path, {'language': 'ko', 'models': {'ko': str(model)}, 'tts_primary': 'espeak'}, heard
    )
    voice = encode_voice_message(speak_ko('안녕하세요', tmp_path / 'said.wav'), tmp_path / 'voice-message.ogg')
    try:
        await engine.dispatch(
            Message(
                key=KEY,
                user=USER,
                attachments=[Attachment('voice-message.ogg', 'audio/ogg', voice.path.stat().st_size, voice.path)],
            )
        )
        await engine.wait_idle(30)
    finally:
        for stop in plugins.on_stop:
            await stop()
        await engine.stop()

    assert heard and heard[0].strip() != ''  # the recognised words reached the model
    texts = [s for s in adapter.sent if s.kind == 'text']
    assert any('감사합니다' in s.text and '🎤' in s.text for s in texts)
    files = [s for s in adapter.sent if s.kind == 'file']
    assert len(files) == 1 and files[0].voice
    assert files[0].path is not None and files[0].path.suffix == '.ogg'
    with av.open(str(files[0].path)) as container:
        assert container.streams.audio[0].codec_context.name == 'opus'
        assert container.streams.audio[0].rate == 48000
