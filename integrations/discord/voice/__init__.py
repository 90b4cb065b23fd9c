"""Discord voice for flowbot: speaking and listening in voice channels, with DAVE end-to-end encryption.

hikari ships only the ``hikari.api.VoiceConnection`` interface; this package implements it (voice
gateway v8, UDP/RTP, AES-GCM or XChaCha20 transport encryption, DAVE via ``davey``, Opus via PyAV)
and adds listening (per-speaker decryption, Opus decoding and streaming recognition). See docs/voice.md.

The public interface:

:class:`VoiceManager`
    per guild: ``join``, ``speak`` (queued, barge-in aware), ``listen`` / ``stop_listening``,
    ``interrupt``, ``leave``, idle leave. What the Discord adapter uses.
:class:`DaveVoiceConnection`, :class:`VoiceConnectError`
    the connection itself, for ``bot.voice.connect_to(guild, channel, DaveVoiceConnection, ...)``.
:class:`Listener`, :class:`Utterance`, :class:`Receiver`
    hearing a channel: frames in, utterances out.
:func:`opus_frames`, :class:`AudioError`
    any audio file to the 20 ms Opus frames a connection plays.
"""

from __future__ import annotations

from integrations.discord.voice.connection import DaveVoiceConnection, Receiver, VoiceConnectError
from integrations.discord.voice.listen import Listener, Utterance
from integrations.discord.voice.manager import VoiceManager
from integrations.discord.voice.opus import AudioError, opus_frames

__all__ = [
    'AudioError',
    'DaveVoiceConnection',
    'Listener',
    'Receiver',
    'Utterance',
    'VoiceConnectError',
    'VoiceManager',
    'opus_frames',
]
