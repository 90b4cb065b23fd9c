"""The speech plugin: understand voice messages (vosk, offline) and answer aloud (gTTS, espeak-ng fallback).

``setup`` reads ``[speech]`` (see :mod:`integrations.speech.config`), shares a
:class:`~integrations.speech.service.SpeechService` as ``ctx.services['speech']`` and registers:

``speech.recognize`` (language=None, grammar=None)
    Recognise the first audio attachment: ``{'text', 'language', 'duration', 'confidence', 'voice_reply'}``.
``speech.synthesize`` (text, language=None, voice_message=False)
    Speak ``text``: ``{'path', 'duration', 'engine'}`` and ``'waveform'`` when ``voice_message`` (then
    ``path`` is an OGG/Opus voice message file in the conversation's work folder).
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from engine.api import Attachment
from engine.config import section
from engine.i18n import _, format_number
from engine.plugins import SetupContext
from engine.states.actions import ActionContext, ActionError
from engine.tasks import tasks_of
from integrations.speech.audio import AUDIO_SUFFIXES, AudioError
from integrations.speech.config import SpeechConfig
from integrations.speech.service import SpeechService, Transcript
from integrations.speech.stt import RecognitionError
from integrations.speech.tts import Synthesis, SynthesisError

__all__ = ['SpeechConfig', 'SpeechService', 'Synthesis', 'Transcript', 'find_audio', 'register_actions', 'setup']

_log = logging.getLogger(__name__)


def setup(ctx: SetupContext) -> None:
    """Build the speech service from ``[speech]`` and register the ``speech.*`` actions."""
    config = section(ctx.config, 'speech', SpeechConfig).resolved(ctx.config)
    service = SpeechService.from_config(config)
    ctx.services['speech'] = service
    register_actions(ctx, service)
    ctx.on_stop.append(service.aclose)


def find_audio(attachments: Iterable[Attachment]) -> Attachment | None:
    """The first attachment that is audio by content type or, failing that, by file name ending."""
    for att in attachments:
        if att.is_audio:
            return att
    for att in attachments:
        name = att.path.name if att.path is not None else att.name
        if pathlib.PurePath(name).suffix.lower() in AUDIO_SUFFIXES:
            return att
    return None


def register_actions(ctx: SetupContext, service: SpeechService) -> None:
    """Register ``speech.recognize`` and ``speech.synthesize`` bound to ``service``, and their work as task
    kinds of the same names (:mod:`engine.tasks`): in ``flowbot worker`` processes with ``[models] workers``."""
    config = service.config

    async def recognize(
        actx: ActionContext, *, language: str | None = None, grammar: list[str] | None = None
    ) -> dict[str, Any]:
        """Recognise the voice message (or audio file) the user sent."""
        att = find_audio(actx.attachments)
        if att is None:
            raise ActionError(_('Please send a voice message or an audio file: I found no audio in your message.'))
        if att.path is None:
            _log.error('audio attachment %r of %s was not downloaded (url %s)', att.name, actx.key, att.url)
            raise ActionError(_('I could not fetch your audio file; please send it again.'))
        if att.size and att.size > config.max_bytes:
            raise ActionError(
                _('The audio file is too big ({size} MB); the limit is {limit} MB.').format(
                    size=format_number(att.size / 1048576, 1), limit=format_number(config.max_bytes / 1048576, 1)
                )
            )
        if att.duration is not None and att.duration > config.max_seconds + 0.5:
            raise ActionError(
                _('The audio is too long ({seconds} s); the limit is {limit} s. Please send a shorter one.').format(
                    seconds=round(att.duration), limit=round(config.max_seconds)
                )
            )
        result = await tasks.run(
            'speech.recognize',
            {'language': language, 'grammar': grammar},
            call=actx.call_id,
            inputs=[att],
            report=actx.report,
        )
        if not result['text']:
            raise ActionError(_('no words were recognised in it'))
        return {**result, 'voice_reply': config.voice_reply}

    async def synthesize(
        actx: ActionContext, *, text: str, language: str | None = None, voice_message: bool = False
    ) -> dict[str, Any]:
        """Speak a text, optionally as a Discord voice message."""
        if not isinstance(text, str):
            raise ActionError(_('There is no text to speak.'))
        args = {'text': text, 'language': language, 'voice_message': bool(voice_message)}
        return await tasks.run('speech.synthesize', args, call=actx.call_id, out=actx.workdir, report=actx.report)

    async def recognize_task(
        args: Mapping[str, Any], inputs: Sequence[Attachment], out: pathlib.Path | None
    ) -> dict[str, Any]:
        """The ``speech.recognize`` task (here or in a worker): the audio file of ``inputs``."""
        [audio] = inputs
        assert audio.path is not None
        try:
            result = await service.recognize_file(audio.path, args.get('language'), grammar=args.get('grammar'))
        except (AudioError, RecognitionError) as exc:
            _log.info('cannot recognise %s: %s', audio.name, exc)
            raise ActionError(str(exc)) from exc
        return {
            'text': result.text,
            'language': result.language,
            'duration': result.duration,
            'confidence': result.confidence,
        }

    async def synthesize_task(
        args: Mapping[str, Any], inputs: Sequence[Attachment], out: pathlib.Path | None
    ) -> dict[str, Any]:
        """The ``speech.synthesize`` task (here or in a worker): its files go to ``out``."""
        text, language = str(args['text']), args.get('language')
        try:
            if args.get('voice_message'):
                synthesis, voice = await service.voice_message(text, language, workdir=out)
                return {
                    'path': str(voice.path),
                    'duration': voice.duration,
                    'engine': synthesis.engine,
                    'waveform': voice.waveform,
                }
            synthesis = await service.synthesize(text, language, workdir=out)
        except (SynthesisError, AudioError) as exc:
            _log.info('cannot speak %d characters: %s', len(text), exc)
            raise ActionError(str(exc)) from exc
        return {'path': str(synthesis.path), 'duration': synthesis.duration, 'engine': synthesis.engine}

    tasks = tasks_of(ctx)
    tasks.register('speech.recognize', recognize_task, returns=('text', 'language', 'duration', 'confidence'))
    tasks.register('speech.synthesize', synthesize_task, returns=('path', 'duration', 'engine'), files=('path',))
    ctx.actions.add('speech.recognize', recognize)
    ctx.actions.add('speech.synthesize', synthesize)
