"""DAVE on the server side for tests: our own MLS external sender, and other members of the call.

An emulator cannot replay Discord's recorded proposals for members it made up, so this module plays
the voice server's part of MLS itself (RFC 9420, cipher suite 2, P-256): it signs ``Add``
proposals as the group's external sender, and each :class:`DaveMember` is a real ``davey`` session
that joins through the bot's welcome, decrypts what the bot sends and encrypts what it says.
"""

from __future__ import annotations

import attrs
import davey
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ['DaveMember', 'ExternalSender', 'mls_vector']

_MLS10 = b'\x00\x01'
_PUBLIC_MESSAGE = b'\x00\x01'
_SENDER_EXTERNAL = b'\x02'
_CONTENT_PROPOSAL = b'\x02'
_PROPOSAL_ADD = b'\x00\x01'
_CREDENTIAL_BASIC = b'\x00\x01'


def _varint(n: int) -> bytes:
    """RFC 9420 variable-length integer (1, 2 or 4 bytes)."""
    if n < 1 << 6:
        return n.to_bytes(1, 'big')
    if n < 1 << 14:
        return (n | 0x4000).to_bytes(2, 'big')
    return (n | 0x8000_0000).to_bytes(4, 'big')


def mls_vector(data: bytes) -> bytes:
    """An MLS ``opaque<V>``: varint length, then the bytes."""
    return _varint(len(data)) + data


class ExternalSender:
    """The voice server's MLS identity: a P-256 key that signs proposals for the group."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.public_key = self._key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def package(self) -> bytes:
        """Op 25's payload: ``ExternalSender { signature_key, credential }`` (basic credential)."""
        return mls_vector(self.public_key) + _CREDENTIAL_BASIC + mls_vector(b'\x00')

    def append(self, channel_id: int, epoch: int, key_packages: list[bytes]) -> bytes:
        """Op 27's payload (after the opcode): operation "append" and one signed Add proposal per key package."""
        messages = b''.join(self._proposal(channel_id, epoch, _PROPOSAL_ADD + kp) for kp in key_packages)
        return b'\x00' + mls_vector(messages)

    def _proposal(self, channel_id: int, epoch: int, proposal: bytes) -> bytes:
        """``MLSMessage(PublicMessage)`` from external sender 0, signed over ``FramedContentTBS``."""
        content = (
            mls_vector(channel_id.to_bytes(8, 'big'))
            + epoch.to_bytes(8, 'big')
            + _SENDER_EXTERNAL
            + (0).to_bytes(4, 'big')
            + mls_vector(b'')  # authenticated data
            + _CONTENT_PROPOSAL
            + proposal
        )
        to_sign = mls_vector(b'MLS 1.0 FramedContentTBS') + mls_vector(_MLS10 + _PUBLIC_MESSAGE + content)
        signature = self._key.sign(to_sign, ec.ECDSA(hashes.SHA256()))
        return _MLS10 + _PUBLIC_MESSAGE + content + mls_vector(signature)


@attrs.define
class DaveMember:
    """Another member of the call: a ``davey`` session, its user id and the SSRC it speaks with.

    :param follow: process the commits the bot makes (``False`` keeps this member on the old epoch,
        so it can tell which keys a frame was sent with).
    """

    user_id: int
    channel_id: int
    ssrc: int
    follow: bool = True
    session: davey.DaveSession = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.session = davey.DaveSession(1, self.user_id, self.channel_id)

    def key_package(self, external_sender: bytes, *, fresh: bool = False) -> bytes:
        """A key package for the next group (``fresh``: leave any group first)."""
        if fresh:
            self.session.reinit(1, self.user_id, self.channel_id)
        self.session.set_external_sender(external_sender)
        return self.session.get_serialized_key_package()

    def can_open(self, sender: int, payload: bytes) -> bool:
        """Whether this member's keys open ``payload`` (a frame ``sender`` end-to-end encrypted)."""
        if not self.session.ready:
            return False
        try:
            self.session.decrypt(sender, davey.MediaType.audio, payload)
        except Exception:  # davey raises a plain exception when no key fits
            return False
        return True

    def open(self, sender: int, payload: bytes) -> bytes:
        return self.session.decrypt(sender, davey.MediaType.audio, payload)

    def encrypt(self, frame: bytes) -> bytes:
        return self.session.encrypt_opus(frame)
