"""DaveState message by message, with the recorded DAVE messages (no network)."""

from __future__ import annotations

import pytest

from integrations.discord.voice.dave import BinaryOut, DaveOp, DaveState, JsonOut
from integrations.discord.voice.rtp import SILENCE_FRAME
from tests.integrations.discord.voice.voice_emulator import load_dave_fixtures, split_commit_welcome

DAVE = load_dave_fixtures()
pytestmark = pytest.mark.skipif(DAVE is None, reason='recorded DAVE messages absent: <repo>/../shared/fixtures/dave/')


def test_external_sender_before_session_description_is_kept_and_transition_zero_applies_at_once() -> None:
    assert DAVE is not None
    state = DaveState(DAVE.bot_user_id, DAVE.channel_id)
    assert state.handle_binary(DaveOp.MLS_EXTERNAL_SENDER, DAVE.external_sender) == []
    state.handle_json(DaveOp.CLIENTS_CONNECT, {'user_ids': [str(DAVE.other_user_id), '5']})
    state.handle_json(DaveOp.CLIENT_DISCONNECT, {'user_id': '5'})
    assert state.connected == {DAVE.other_user_id}

    [package] = state.start(1)
    assert isinstance(package, BinaryOut) and package.op == DaveOp.MLS_KEY_PACKAGE
    assert package.frame()[0] == 26
    [commit_welcome] = state.handle_binary(DaveOp.MLS_PROPOSALS, b'\x00' + DAVE.proposals)
    assert isinstance(commit_welcome, BinaryOut) and commit_welcome.op == DaveOp.MLS_COMMIT_WELCOME
    commit, welcome = split_commit_welcome(commit_welcome.payload)
    assert welcome is not None

    assert not state.ready and state.protect(b'opus') is None  # held: never sent in the clear under DAVE v1
    assert state.protect(SILENCE_FRAME) == SILENCE_FRAME
    assert state.handle_binary(DaveOp.MLS_ANNOUNCE_COMMIT, b'\x00\x00' + commit) == []  # transition 0: no op 23
    assert state.ready
    protected = state.protect(b'opus frame')
    assert protected is not None and protected.endswith(b'\xfa\xfa')
    assert state.protect(SILENCE_FRAME) == SILENCE_FRAME


def test_malformed_transition_message_is_refused_with_its_content() -> None:
    assert DAVE is not None
    state = DaveState(DAVE.bot_user_id, DAVE.channel_id)
    with pytest.raises(ValueError, match='transition_id'):
        state.handle_json(DaveOp.PREPARE_TRANSITION, {'protocol_version': 1})
    assert state.handle_json(DaveOp.PREPARE_TRANSITION, {'transition_id': 4, 'protocol_version': 1}) == [
        JsonOut(DaveOp.TRANSITION_READY, {'transition_id': 4})
    ]
