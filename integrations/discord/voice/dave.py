"""DAVE (Discord Audio & Video End-to-End Encryption) for the sending side, on ``davey``.

:class:`DaveState` turns the voice gateway's DAVE opcodes into ``davey.DaveSession`` calls and
returns what the client must answer; it does no I/O, so the connection stays the only place that
talks to the socket and tests can drive it message by message.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable

import attrs
import davey

from integrations.discord.voice.rtp import SILENCE_FRAME

__all__ = ['BinaryOut', 'DaveOp', 'DaveState', 'JsonOut', 'Outgoing', 'parse_server_binary']

_log = logging.getLogger(__name__)

_MARKER = b'\xfa\xfa'
"""The last two bytes of every DAVE-encrypted frame."""


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
    """One voice session's DAVE state: protocol version, MLS groups, pending transitions.

    Two ``davey`` sessions may be alive at once: ``session`` holds the keys frames are sent and
    received with, ``group`` is where MLS messages (proposals, commits, welcomes) are processed. They
    are the same object in steady state. A restarted group (op 24 epoch 1, a failed commit) is built
    in a fresh ``group`` while ``session`` keeps encrypting with the old keys; op 22 swaps them.
    A commit for the group we send with is kept unprocessed until its op 22, because ``davey``
    switches the sender key as soon as it processes a commit and the whitepaper wants the old key
    used until the transition executes.

    :param user_id: the bot's user id (its MLS identity).
    :param channel_id: the voice channel id (the MLS group id).
    """

    user_id: int
    channel_id: int
    protocol_version: int = 0
    session: davey.DaveSession | None = None
    """The keys in use for media; ``None`` until the first transition executes."""
    group: davey.DaveSession | None = None
    """The session MLS messages are applied to (``session`` itself, or one being built)."""
    connected: set[int] = attrs.field(factory=set)
    """User ids in the call besides us, from ops 11/13: the proposals may add only these."""
    pending: dict[int, int] = attrs.field(factory=dict)
    """transition id -> protocol version it leads to."""
    deferred: dict[int, bytes] = attrs.field(factory=dict)
    """transition id -> commit to apply to ``session`` when the transition executes (op 22)."""
    external_sender: bytes | None = None
    """The voice server's MLS external sender (op 25)."""
    target_version: int | None = None
    """Protocol version a restarted group (op 24) leads to, once its transition executes."""
    on_change: Callable[[], None] | None = None
    """Called whenever what may be sent changes (a transition executed, a group was lost)."""

    @property
    def ready(self) -> bool:
        """True when frames must and can be end-to-end encrypted."""
        return self.protocol_version > 0 and self.session is not None and self.session.ready

    def protect(self, frame: bytes) -> bytes | None:
        """The payload to send for one Opus frame, or ``None`` when it must be held back.

        Under DAVE v1 a frame leaves only end-to-end encrypted with the keys of the executed
        transition; the Opus silence frame is the documented exception and passes as is.
        """
        if frame == SILENCE_FRAME or self.protocol_version == 0:
            return frame
        if not self.ready:
            return None
        assert self.session is not None
        return self.session.encrypt_opus(frame)

    def decrypt(self, user_id: int, payload: bytes) -> bytes | None:
        """The Opus frame ``user_id`` sent, or ``None`` when it cannot be opened (yet)."""
        if payload == SILENCE_FRAME or (self.protocol_version == 0 and not payload.endswith(_MARKER)):
            return payload
        if self.session is None or not self.session.ready:
            return None
        try:
            return self.session.decrypt(user_id, davey.MediaType.audio, payload)
        except Exception as exc:  # davey raises a plain exception for every decryption failure
            _log.debug('DAVE frame of user %s not decrypted: %s', user_id, exc)
            return None

    def start(self, protocol_version: int) -> list[Outgoing]:
        """SESSION_DESCRIPTION chose ``protocol_version``: a new session, so a new group and no keys yet."""
        self.protocol_version = protocol_version
        self.pending.clear()
        self.deferred.clear()
        self.target_version = None
        if protocol_version > 0:
            self.session = None
            self._changed()
            return self._new_group()
        if self.session is not None:
            self.session.set_passthrough_mode(True, 10)
        self.group = self.session
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
                return self._execute(transition)
            return [JsonOut(DaveOp.TRANSITION_READY, {'transition_id': transition})]
        elif op == DaveOp.EXECUTE_TRANSITION:
            return self._execute(_int(d, 'transition_id'))
        elif op == DaveOp.PREPARE_EPOCH:
            epoch, version = _int(d, 'epoch'), _int(d, 'protocol_version')
            if epoch == 1:
                _log.info('DAVE group restarts (epoch 1, protocol version %s): new key package', version)
                self.target_version = version
                self.deferred.clear()
                return self._new_group()
        return []

    def handle_binary(self, op: int, payload: bytes) -> list[Outgoing]:
        """Handle a binary DAVE op (25, 27, 29, 30); ``payload`` follows the opcode byte."""
        if op == DaveOp.MLS_EXTERNAL_SENDER:
            self.external_sender = payload  # kept for groups restarted later (epoch 1, failed commits)
            if self.group is not None:
                self.group.set_external_sender(payload)
            return []
        group = self.group
        if group is None:
            _log.warning('DAVE op %s arrived without a DAVE session; ignored', op)
            return []
        if op == DaveOp.MLS_PROPOSALS:
            if not payload:
                raise ValueError('empty DAVE proposals message')
            kind = davey.ProposalsOperationType.append if payload[0] == 0 else davey.ProposalsOperationType.revoke
            result = group.process_proposals(kind, payload[1:], sorted(self.connected | {self.user_id}))
            if result is not None:
                return [BinaryOut(DaveOp.MLS_COMMIT_WELCOME, result.commit + (result.welcome or b''))]
        elif op in (DaveOp.MLS_ANNOUNCE_COMMIT, DaveOp.MLS_WELCOME):
            if len(payload) < 2:
                raise ValueError(f'DAVE {_name(op)} message too short: {len(payload)} bytes')
            (transition,) = struct.unpack_from('>H', payload)
            message = payload[2:]
            self.pending[transition] = self._version_after()
            if op == DaveOp.MLS_ANNOUNCE_COMMIT and group is self.session and transition != 0:
                self.deferred[transition] = message  # applied at op 22: the old key stays in use until then
            else:
                try:
                    if op == DaveOp.MLS_ANNOUNCE_COMMIT:
                        group.process_commit(message)
                    else:
                        group.process_welcome(message)
                except Exception as exc:  # davey raises plain exceptions for any MLS failure
                    self.pending.pop(transition, None)
                    return self._failed(op, transition, exc)
            if transition == 0:
                return self._execute(transition)
            return [JsonOut(DaveOp.TRANSITION_READY, {'transition_id': transition})]
        else:
            _log.debug('unhandled DAVE binary op %s', op)
        return []

    def _version_after(self) -> int:
        return self.target_version if self.target_version is not None else max(self.protocol_version, 1)

    def _failed(self, op: int, transition: int, exc: Exception) -> list[Outgoing]:
        _log.warning('DAVE %s for transition %s failed (%s): asking to be re-added', _name(op), transition, exc)
        return [JsonOut(DaveOp.MLS_INVALID_COMMIT_WELCOME, {'transition_id': transition}), *self._new_group()]

    def _new_group(self) -> list[Outgoing]:
        """Start a fresh group session beside the one in use (which keeps its keys until op 22)."""
        version = self.target_version or max(self.protocol_version, 1)
        self.group = davey.DaveSession(version, self.user_id, self.channel_id)
        if self.external_sender is not None:
            self.group.set_external_sender(self.external_sender)
        return [BinaryOut(DaveOp.MLS_KEY_PACKAGE, self.group.get_serialized_key_package())]

    def _execute(self, transition: int) -> list[Outgoing]:
        if transition not in self.pending:
            _log.warning('DAVE transition %s executed but never prepared; ignored', transition)
            return []
        version = self.pending.pop(transition)
        commit = self.deferred.pop(transition, None)
        if commit is not None and self.group is not None:
            try:
                self.group.process_commit(commit)
            except Exception as exc:  # the group is out of step: no keys to send with until re-added
                self.session = None
                self._changed()
                return self._failed(DaveOp.MLS_ANNOUNCE_COMMIT, transition, exc)
        if version > 0 and self.group is not None and self.group.ready:
            self.session = self.group
            self.target_version = None
        if version != self.protocol_version:
            _log.info('DAVE protocol version %s -> %s (transition %s)', self.protocol_version, version, transition)
        self.protocol_version = version
        self._changed()
        return []

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


def _name(op: int) -> str:
    return 'commit' if op == DaveOp.MLS_ANNOUNCE_COMMIT else 'welcome'


def _list(value: object) -> Iterable[object]:
    return value if isinstance(value, list) else ()


def _int(d: dict[str, object], name: str) -> int:
    value = d.get(name)
    if not isinstance(value, int):
        raise ValueError(f'DAVE message lacks integer {name!r}: {d!r}')
    return value
