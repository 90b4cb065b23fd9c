"""Every error flowbot raises on purpose has one base; only user errors reach a user with their message."""

from __future__ import annotations

import importlib

import pytest

from engine import i18n
from engine.errors import FlowbotError, UserError, user_message

ERRORS = [
    ('engine.config', 'ConfigError'),
    ('engine.commands', 'UsageError'),
    ('engine.flows.loader', 'FlowError'),
    ('engine.flows.graph', 'GraphvizMissingError'),
    ('engine.states.actions', 'ActionError'),
    ('engine.states.kinds', 'FlowRuntimeError'),
    ('engine.api', 'NotSupportedError'),
    ('engine.dialogs', 'ScriptError'),
    ('engine.reload', 'ReloadSignalError'),
    ('engine.store', 'StoreError'),
    ('engine.store', 'ShardLostError'),
    ('engine.templates', 'TemplateError'),
    ('engine.scaffold', 'InitError'),
    ('engine.files', 'FileRefusedError'),
    ('engine.patterns', 'PatternError'),
    ('integrations.discord.attachments', 'AttachmentError'),
    ('integrations.discord.voice.connection', 'VoiceConnectError'),
    ('integrations.discord.voice.opus', 'AudioError'),
    ('integrations.models.paths', 'PathRefusedError'),
    ('integrations.models.providers.base', 'ProviderError'),
    ('integrations.speech.audio', 'AudioError'),
    ('integrations.speech.stt', 'RecognitionError'),
    ('integrations.speech.decoder', 'DecoderSettingsError'),
    ('integrations.speech.install', 'ModelInstallError'),
    ('integrations.speech.tts', 'SynthesisError'),
]


@pytest.mark.parametrize(('module', 'name'), ERRORS)
def test_every_error_class_derives_from_the_one_base(module: str, name: str) -> None:
    assert issubclass(getattr(importlib.import_module(module), name), FlowbotError)


def test_action_template_and_usage_errors_are_for_the_user() -> None:
    from engine.commands import UsageError
    from engine.states.actions import ActionError
    from engine.templates import TemplateError

    for cls in (ActionError, TemplateError, UsageError):
        assert user_message(cls('shown as it is')) == 'shown as it is'


def test_other_errors_are_reported_as_internal() -> None:
    from engine.store import StoreError

    assert user_message(StoreError('/var/lib/secret')) == 'an internal error (logged)'
    assert user_message(ValueError('x')) == 'an internal error (logged)'
    with i18n.use('ru', 'en'):
        assert user_message(ValueError('x')) != 'an internal error (logged)'  # in the reply language
    assert not issubclass(StoreError, UserError)
