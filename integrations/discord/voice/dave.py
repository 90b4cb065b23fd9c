"""DAVE (Discord Audio & Video End-to-End Encryption) for the sending side, on ``davey``.

:class:`DaveState` turns the voice gateway's DAVE opcodes into ``davey.DaveSession`` calls and
returns what the client must answer; it does no I/O, so the connection stays the only place that
talks to the socket and tests can drive it message by message.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable

import attrs
import davey

from integrations.discord.voice.rtp import SILENCE_FRAME

__all__ = ['BinaryOut', 'DaveOp', 'DaveState', 'JsonOut', 'Outgoing', 'parse_server_binary']

_log = logging.getLogger(__name__)


class DaveOp:
    """DAVE opcodes of voice gateway v8 (JSON 11-24 and 31, binary 25-30)."""

    CLIENTS_CONNECT = 11
    CLIENT_DISCONNECT = 13
    PREPARE_TRANSITION = 21
    EXECUTE_TRANSITION = 22
    TRANSITION_READY = 23
    PREPARE_EPOCH = 24
    MLS_EXTERNAL_SENDER = 25
    MLS_KEY_PACKAGE = 26
    MLS_PROPOSALS = 27
    MLS_COMMIT_WELCOME = 28
    MLS_ANNOUNCE_COMMIT = 29
    MLS_WELCOME = 30
    MLS_INVALID_COMMIT_WELCOME = 31

    JSON = frozenset({CLIENTS_CONNECT, CLIENT_DISCONNECT, PREPARE_TRANSITION, EXECUTE_TRANSITION, PREPARE_EPOCH})


@attrs.frozen
class JsonOut:
    """A JSON message the client must send: ``{"op": op, "d": d}``."""

    op: int
    d: dict[str, object]


@attrs.frozen
class BinaryOut:
    """A binary message the client must send: one opcode byte, then ``payload``."""

    op: int
    payload: bytes

    def frame(self) -> bytes:
        return bytes([self.op]) + self.payload


Outgoing = JsonOut | BinaryOut


def parse_server_binary(frame: bytes) -> tuple[int, int, bytes]:
    """Split a server binary frame into (sequence, opcode, payload)."""
    if len(frame) < 3:
        raise ValueError(f'binary voice gateway frame too short: {len(frame)} bytes')
    (sequence,) = struct.unpack_from('>H', frame)
    return sequence, frame[2], frame[3:]


@attrs.define
class DaveState:
    """One voice session's DAVE state: protocol version, MLS group, pending transitions.

    :param user_id: the bot's user id (its MLS identity).
    :param channel_id: the voice channel id (the MLS group id).
    """

    user_id: int
    channel_id: int
    protocol_version: int = 0
    session: davey.DaveSession | None = None
    connected: set[int] = attrs.field(factory=set)
    """User ids in the call besides us, from ops 11/13: the proposals may add only these."""
    pending: dict[int, int] = attrs.field(factory=dict)
    """transition id -> protocol version it leads to."""
    external_sender: bytes | None = None
    """The voice server's MLS external sender (op 25)."""

    @property
    def ready(self) -> bool:
        """True when frames must and can be end-to-end encrypted."""
        return self.protocol_version > 0 and self.session is not None and self.session.ready

    def encrypt(self, frame: bytes) -> bytes:
        """End-to-end encrypt one Opus frame when the session is ready; silence always passes as is."""
        if frame == SILENCE_FRAME or not self.ready:
            return frame
        assert self.session is not None
        return self.session.encrypt_opus(frame)

    def start(self, protocol_version: int) -> list[Outgoing]:
        """SESSION_DESCRIPTION chose ``protocol_version``: (re)start the group, offering a key package."""
        self.protocol_version = protocol_version
        self.pending.clear()
        if protocol_version > 0:
            return self._reinit()
        if self.session is not None:
            self.session.reset()
            self.session.set_passthrough_mode(True, 10)
        return []

    def handle_json(self, op: int, d: dict[str, object]) -> list[Outgoing]:
        """Handle a JSON DAVE op (11, 13, 21, 22, 24)."""
        if op == DaveOp.CLIENTS_CONNECT:
            self.connected.update(int(str(u)) for u in _list(d.get('user_ids')))
        elif op == DaveOp.CLIENT_DISCONNECT:
            self.connected.discard(int(str(d.get('user_id'))))
        elif op == DaveOp.PREPARE_TRANSITION:
            transition, version = _int(d, 'transition_id'), _int(d, 'protocol_version')
            self.pending[transition] = version
            if version == 0 and self.session is not None:
                _log.info('DAVE downgrade to transport encryption only prepared (transition %s)', transition)
                self.session.set_passthrough_mode(True, 120)
            if transition == 0:
                self._execute(transition)
                return []
            return [JsonOut(DaveOp.TRANSITION_READY, {'transition_id': transition})]
        elif op == DaveOp.EXECUTE_TRANSITION:
            self._execute(_int(d, 'transition_id'))
        elif op == DaveOp.PREPARE_EPOCH:
            epoch, version = _int(d, 'epoch'), _int(d, 'protocol_version')
            if epoch == 1:
                _log.info('DAVE group restarts (epoch 1, protocol version %s): new key package', version)
                self.protocol_version = version
                return self._reinit()
        return []

    def handle_binary(self, op: int, payload: bytes) -> list[Outgoing]:
        """Handle a binary DAVE op (25, 27, 29, 30); ``payload`` follows the opcode byte."""
        if op == DaveOp.MLS_EXTERNAL_SENDER:
            self.external_sender = payload  # kept for groups restarted later (epoch 1, failed commits)
            if self.session is not None:
                self.session.set_external_sender(payload)
            return []
        session = self.session
        if session is None:
            _log.warning('DAVE op %s arrived without a DAVE session; ignored', op)
            return []
        if op == DaveOp.MLS_PROPOSALS:
            kind = davey.ProposalsOperationType.append if payload[0] == 0 else davey.ProposalsOperationType.revoke
            result = session.process_proposals(kind, payload[1:], sorted(self.connected | {self.user_id}))
            if result is not None:
                return [BinaryOut(DaveOp.MLS_COMMIT_WELCOME, result.commit + (result.welcome or b''))]
        elif op in (DaveOp.MLS_ANNOUNCE_COMMIT, DaveOp.MLS_WELCOME):
            (transition,) = struct.unpack_from('>H', payload)
            try:
                if op == DaveOp.MLS_ANNOUNCE_COMMIT:
                    session.process_commit(payload[2:])
                else:
                    session.process_welcome(payload[2:])
            except Exception as exc:  # davey raises plain exceptions for any MLS failure
                _log.warning('DAVE %s for transition %s failed (%s): asking to be re-added', _name(op), transition, exc)
                return [JsonOut(DaveOp.MLS_INVALID_COMMIT_WELCOME, {'transition_id': transition}), *self._reinit()]
            self.pending[transition] = self.protocol_version
            if transition == 0:
                self._execute(transition)
                return []
            return [JsonOut(DaveOp.TRANSITION_READY, {'transition_id': transition})]
        else:
            _log.debug('unhandled DAVE binary op %s', op)
        return []

    def _reinit(self) -> list[Outgoing]:
        if self.session is None:
            self.session = davey.DaveSession(self.protocol_version, self.user_id, self.channel_id)
        else:
            self.session.reinit(self.protocol_version, self.user_id, self.channel_id)
        if self.external_sender is not None:
            self.session.set_external_sender(self.external_sender)
        return [BinaryOut(DaveOp.MLS_KEY_PACKAGE, self.session.get_serialized_key_package())]

    def _execute(self, transition: int) -> None:
        if transition not in self.pending:
            _log.warning('DAVE transition %s executed but never prepared; ignored', transition)
            return
        version = self.pending.pop(transition)
        if version != self.protocol_version:
            _log.info('DAVE protocol version %s -> %s (transition %s)', self.protocol_version, version, transition)
        self.protocol_version = version


def _name(op: int) -> str:
    return 'commit' if op == DaveOp.MLS_ANNOUNCE_COMMIT else 'welcome'


def _list(value: object) -> Iterable[object]:
    return value if isinstance(value, list) else ()


def _int(d: dict[str, object], name: str) -> int:
    value = d.get(name)
    if not isinstance(value, int):
        raise ValueError(f'DAVE message lacks integer {name!r}: {d!r}')
    return value
