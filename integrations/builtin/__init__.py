"""The builtin plugin: actions every flowbot has (feedback, corrections, help text, voice channel control)."""

from __future__ import annotations

import datetime
import logging
import re
import uuid
from typing import Any

from engine.api import NotSupportedError
from engine.commands import parse_bool, usage
from engine.files import FileGate
from engine.flows.loader import FlowError, read_flow_file
from engine.flows.model import localize
from engine.i18n import N_, _
from engine.plugins import SetupContext
from engine.states.actions import ActionContext, ActionError
from integrations.builtin import graph

__all__ = ['MAX_FEEDBACK_CHARS', 'setup']

_log = logging.getLogger(__name__)

MAX_FEEDBACK_CHARS = 4000


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')


_MESSAGE_LINK = re.compile(r'https?://(?:[a-z]+\.)?discord(?:app)?\.com/channels/(?:\d+|@me)/(\d+)/(\d+)/?')
"""A Discord message link: ``https://discord.com/channels/GUILD/CHANNEL/MESSAGE`` (``@me`` for direct messages)."""

_EMPTY = {'feedback': N_('The feedback is empty.'), 'correction': N_('The correction is empty.')}
_TOO_LONG = {
    'feedback': N_('The feedback is too long ({length} characters, at most {limit}).'),
    'correction': N_('The correction is too long ({length} characters, at most {limit}).'),
}


def _checked_text(text: Any, what: str) -> str:
    """The stripped ``text``; ``what`` (``feedback`` or ``correction``) names it in the refusal."""
    if not isinstance(text, str) or not text.strip():
        raise ActionError(_(_EMPTY[what]))
    if len(text) > MAX_FEEDBACK_CHARS:
        raise ActionError(_(_TOO_LONG[what]).format(length=len(text), limit=MAX_FEEDBACK_CHARS))
    return text.strip()


def setup(ctx: SetupContext) -> None:
    store = ctx.store
    config = ctx.config

    async def save_feedback(action: ActionContext, *, text: str) -> dict[str, Any]:
        """Store a user's feedback."""
        record = {
            'id': uuid.uuid4().hex[:12],
            'user': action.user.id,
            'user_name': action.user.name,
            'conversation': str(action.key),
            'text': _checked_text(text, 'feedback'),
            'time': _now(),
        }
        await store.put_record('feedback', record['id'], record)
        return record

    async def original_text(action: ActionContext, message_id: str) -> tuple[str, str]:
        message_id = str(message_id).strip()
        link = _MESSAGE_LINK.fullmatch(message_id)
        if link is not None:  # what "Copy Message Link" gives; copying the id needs Discord's Developer Mode
            channel, message_id = link.groups()
            if channel != action.key.channel:
                raise ActionError(
                    _('That message is in another channel; use {prefix}correct in that channel.').format(
                        prefix=action.adapter.prefix
                    )
                )
        original = await action.adapter.fetch_text(action.key, message_id)
        if original is None:
            raise ActionError(_('I cannot find a message of mine with id {id}.').format(id=message_id))
        return message_id, original

    async def find_reply(action: ActionContext, *, message_id: str) -> dict[str, Any]:
        """Check that a reply exists before the user is asked for its correction, so no answer is typed in vain."""
        message_id, original = await original_text(action, message_id)
        return {'message_id': message_id, 'original': original}

    async def save_correction(action: ActionContext, *, message_id: str, text: str) -> dict[str, Any]:
        """Store a correction of an earlier bot reply together with the reply's original text."""
        message_id, original = await original_text(action, message_id)
        record = {
            'id': uuid.uuid4().hex[:12],
            'message_id': message_id,
            'original': original,
            'correction': _checked_text(text, 'correction'),
            'user': action.user.id,
            'conversation': str(action.key),
            'time': _now(),
        }
        await store.put_record('correction', record['id'], record)
        return record

    async def instruction(action: ActionContext) -> dict[str, Any]:
        """The help text: every command from the flows' own triggers, plus the configured markdown."""
        lines = []
        prefix = action.adapter.prefix  # commands as the user writes them on this channel
        for flow in sorted(ctx.catalog(), key=lambda f: f.trigger.command or '~'):
            trigger = flow.trigger
            if trigger.command is None:
                continue
            description = localize(flow.flow.description or trigger.description, action.locale)
            also = ', '.join(prefix + a for a in trigger.aliases)
            aliases = ' ' + _('(also {aliases})').format(aliases=also) if trigger.aliases else ''
            lines.append(f'{usage(trigger.command, trigger, prefix=prefix)}{aliases} - {description}')
        if any(flow.trigger.message for flow in ctx.catalog()):
            lines.append(_('Any other message: a reply from the model.'))
        text = '\n'.join(lines)
        if config.bot.instruction_file:
            path = config.resolve(config.bot.instruction_file)
            if FileGate.from_config(config).protects(path):  # however linked: it would show a key to everyone
                _log.error('instruction file %s is the store, a secret or bot.toml; it is not shown', path)
            else:
                try:  # as a flow file is read: a FIFO or a device is refused, never waited on, and at most 1 MiB
                    text += '\n\n' + read_flow_file(path).strip()
                except FlowError as exc:
                    _log.error('instruction file %s cannot be read: %s', path, exc.diagnostics[0].message)
        return {'text': text}

    async def echo(action: ActionContext, *, text: str) -> dict[str, Any]:
        """A clearly labelled echo, for flows tested without a model."""
        return {'reply': f'(echo) {text}'}

    async def voice_join(action: ActionContext) -> dict[str, Any]:
        """Join the caller's voice channel."""
        try:
            channel = await action.adapter.voice_join(action.key)
        except NotSupportedError as exc:
            raise ActionError(_('Voice channels are not available here: {reason}.').format(reason=exc)) from exc
        return {'channel': channel}

    async def voice_leave(action: ActionContext) -> dict[str, Any]:
        """Leave the voice channel of this server, stopping any speech."""
        try:
            await action.adapter.voice_leave(action.key)
        except NotSupportedError as exc:
            raise ActionError(_('Voice channels are not available here: {reason}.').format(reason=exc)) from exc
        return {}

    async def voice_speak(action: ActionContext, *, text: str, language: str | None = None) -> dict[str, Any]:
        """Speak ``text`` in the caller's voice channel; ``spoken`` is false when they are in none."""
        if not await action.adapter.in_voice(action.key):
            return {'spoken': False}
        speech = ctx.services.get('speech')
        if speech is None:
            raise ActionError(_('Speech synthesis is not configured.'))
        from integrations.speech.tts import SynthesisError

        try:
            synthesis = await speech.synthesize(text, language=language, workdir=action.workdir)
            spoken = await action.adapter.voice_speak(action.key, synthesis.path)
        except NotSupportedError:
            return {'spoken': False}
        except SynthesisError as exc:
            raise ActionError(str(exc)) from exc
        return {'spoken': bool(spoken)}

    async def voice_listen(
        action: ActionContext, *, on: Any = True, language: str | None = None, grammar: list[str] | None = None
    ) -> dict[str, Any]:
        """Start (or with ``on`` false stop) hearing the voice channel: each utterance is a message of its speaker."""
        listening = on if isinstance(on, bool) else parse_bool(str(on))
        if listening is None:
            raise ActionError(_('Listen takes yes or no, not "{value}".').format(value=on))
        try:
            if not listening:
                await action.adapter.voice_listen(action.key, None)
                return {'listening': False, 'channel': ''}
            speech = ctx.services.get('speech')
            if speech is None:
                raise ActionError(_('Listening needs speech recognition, which is not configured.'))
            language = speech.language(language)
            adapter_config = getattr(action.adapter, 'config', None)  # [discord] listen_grammar, if any
            words = grammar or list(getattr(adapter_config, 'listen_grammar', None) or ()) or None

            def streams() -> Any:
                return speech.recognizer.stream(language, grammar=words)

            channel = await action.adapter.voice_listen(action.key, streams)
        except NotSupportedError as exc:
            raise ActionError(_('Voice channels are not available here: {reason}.').format(reason=exc)) from exc
        return {'listening': True, 'channel': channel}

    actions = ctx.actions
    actions.add('feedback.save', save_feedback)
    actions.add('corrections.find', find_reply)
    actions.add('corrections.save', save_correction)
    actions.add('help.instruction', instruction)
    actions.add('chat.echo', echo)
    actions.add('voice.join', voice_join)
    actions.add('voice.leave', voice_leave)
    actions.add('voice.speak', voice_speak)
    actions.add('voice.listen', voice_listen)
    graph.setup(ctx)
