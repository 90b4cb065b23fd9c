"""A whole bot in a voice call for listening tests and the voice benchmark.

:func:`call` starts the Discord emulator (a guild with a text channel and two members in a voice
channel), the voice emulator (those two members are real ``davey`` sessions in the bot's DAVE group),
the engine with the shipped join/listen/leave/chat flows, the speech plugin on the Korean vosk model
and espeak-ng, and a stand-in ``model.chat`` (:mod:`.chat_plugin`), and a ``DiscordBot`` joined to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator

import attrs

from engine.app import App, build_app
from engine.config import BotConfig, Config
from integrations.discord.bot import DiscordBot
from integrations.discord.config import DiscordConfig
from integrations.discord.voice.manager import VoiceManager
from integrations.discord.voice.opus import opus_frames
from integrations.discord.voice.rtp import SILENCE_FRAME
from tests.integrations.discord.emulator import DiscordEmulator
from tests.integrations.discord.voice.dave_members import DaveMember
from tests.integrations.discord.voice.helpers import answer_voice_state_updates
from tests.integrations.discord.voice.voice_emulator import VoiceEmulator
from tests.integrations.speech.helpers import ko_model_dir, speak_ko

__all__ = ['ANN', 'BEN', 'BOT', 'GRAMMAR', 'GUILD', 'TEXT', 'VOICE', 'Call', 'call', 'speech_frames']

REPO = pathlib.Path(__file__).resolve().parents[4]
BOT = 900_000_000_000_000_001
GUILD = 500_000_000_000_000_001
TEXT = 600_000_000_000_000_001
VOICE = 700_000_000_000_000_001
ANN = 800_000_000_000_000_001
BEN = 800_000_000_000_000_002
GRAMMAR = ['일곱', '여덟', '하나', '둘', '셋', '안녕하세요', '감사합니다']


@attrs.define
class Call:
    discord: DiscordEmulator
    voice: VoiceEmulator
    bot: DiscordBot
    app: App
    ann: DaveMember
    ben: DaveMember

    @property
    def heard(self) -> list[tuple[str, str]]:
        """(user id, text) of every message the chat flow got."""
        heard: list[tuple[str, str]] = self.app.plugins.services['heard']
        return heard

    async def say(self, user: int, text: str) -> str:
        """A text message in the text channel; return the bot's reply."""
        before = len(self.replies())
        await self.discord.message_create(
            channel_id=TEXT, author=self.discord.user(user, 'ann'), content=text, guild_id=GUILD
        )
        calls = await self.discord.wait_for_call('POST', rf'/channels/{TEXT}/messages', count=before + 1)
        return calls[before].content or ''

    def replies(self) -> list[str]:
        return [c.content or '' for c in self.discord.calls_to('POST', rf'/channels/{TEXT}/messages')]


@contextlib.asynccontextmanager
async def call(tmp_path: pathlib.Path, mode: str, **discord: object) -> AsyncIterator[Call]:
    model = ko_model_dir()
    ann, ben = DaveMember(ANN, VOICE, ssrc=5151), DaveMember(BEN, VOICE, ssrc=5252)
    async with DiscordEmulator(bot_id=BOT) as emu, VoiceEmulator(members=[ann, ben], modes=[mode]) as voice:
        states = [emu.voice_state(GUILD, ANN, VOICE), emu.voice_state(GUILD, BEN, VOICE)]
        emu.guilds.append(emu.guild(GUILD, channels=[TEXT], voice_states=states))
        config = Config(
            bot=BotConfig(
                flows=[REPO / 'flows' / name for name in ('join.toml', 'listen.toml', 'leave.toml', 'chat.toml')],
                store=':memory:',
                data_root=tmp_path,
                plugins=['integrations.builtin', 'integrations.speech', 'tests.integrations.discord.voice.chat_plugin'],
                reload=False,
            ),
            sections={
                'speech': {'language': 'ko', 'models': {'ko': str(model)}, 'tts_primary': 'espeak', 'tts_fallback': ''}
            },
        )
        app = build_app(config)
        await app.start()
        options = {'secure': False, 'timeout': 5.0}
        settings = DiscordConfig(rest_url=emu.rest_url, listen_grammar=GRAMMAR, **discord)  # type: ignore[arg-type]
        bot = DiscordBot(
            app.engine,
            settings,
            token=emu.token,
            logs=None,
            voice=lambda b: VoiceManager(b, connection_options=options),
        )
        await asyncio.wait_for(bot.start(), 15)
        answering = asyncio.create_task(answer_voice_state_updates(emu, voice, GUILD, BOT))
        try:
            yield Call(emu, voice, bot, app, ann, ben)
        finally:
            answering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await answering
            await bot.close()
            await app.stop()


def speech_frames(tmp_path: pathlib.Path, text: str) -> list[bytes]:
    """What a Discord client sends for ``text``: Opus frames of the words, then five silence frames."""
    wav = speak_ko(text, tmp_path / f'said-{len(list(tmp_path.glob("said-*")))}.wav')
    return [*opus_frames(wav), *[SILENCE_FRAME] * 5]
