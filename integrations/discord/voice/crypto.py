"""Transport encryption of RTP packets: the two ``*_rtpsize`` AEAD modes Discord still accepts.

In both, the RTP header is the associated data, the Opus (or DAVE) payload is encrypted, and a
4-byte big-endian nonce counter is appended to the packet; the full nonce is that counter
zero-padded to the cipher's nonce size.
"""

from __future__ import annotations

import abc
import struct
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_decrypt, crypto_aead_xchacha20poly1305_ietf_encrypt

__all__ = [
    'AES_GCM',
    'MODES',
    'XCHACHA',
    'AesGcmRtpSize',
    'TransportCipher',
    'XChaChaRtpSize',
    'choose_mode',
    'cipher_for',
]

AES_GCM = 'aead_aes256_gcm_rtpsize'
XCHACHA = 'aead_xchacha20_poly1305_rtpsize'
MODES = (AES_GCM, XCHACHA)
"""Supported modes, most preferred first (AES-GCM is hardware-accelerated almost everywhere)."""

_COUNTER = struct.Struct('>I')


class TransportCipher(abc.ABC):
    """Encrypts (and, for emulators, decrypts) packets of one session with its secret key."""

    mode: str
    nonce_size: int

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError(f'secret key must be 32 bytes, got {len(key)}')
        self._key = key

    def encrypt(self, header: bytes, payload: bytes, counter: int) -> bytes:
        """Return the whole packet: header, ciphertext with tag, 4-byte counter."""
        tail = _COUNTER.pack(counter & 0xFFFFFFFF)
        return header + self._seal(tail.ljust(self.nonce_size, b'\0'), payload, header) + tail

    def decrypt(self, packet: bytes, header_size: int = 12) -> bytes:
        """Return the payload of ``packet``; raise on tampering (emulators and tests use this)."""
        header, body, tail = packet[:header_size], packet[header_size:-4], packet[-4:]
        return self._open(tail.ljust(self.nonce_size, b'\0'), body, header)

    @abc.abstractmethod
    def _seal(self, nonce: bytes, payload: bytes, aad: bytes) -> bytes: ...

    @abc.abstractmethod
    def _open(self, nonce: bytes, body: bytes, aad: bytes) -> bytes: ...


class AesGcmRtpSize(TransportCipher):
    """``aead_aes256_gcm_rtpsize`` with ``cryptography``."""

    mode = AES_GCM
    nonce_size = 12

    def __init__(self, key: bytes) -> None:
        super().__init__(key)
        self._aead = AESGCM(key)

    def _seal(self, nonce: bytes, payload: bytes, aad: bytes) -> bytes:
        return self._aead.encrypt(nonce, payload, aad)

    def _open(self, nonce: bytes, body: bytes, aad: bytes) -> bytes:
        return self._aead.decrypt(nonce, body, aad)


class XChaChaRtpSize(TransportCipher):
    """``aead_xchacha20_poly1305_rtpsize`` with PyNaCl (libsodium)."""

    mode = XCHACHA
    nonce_size = 24

    def _seal(self, nonce: bytes, payload: bytes, aad: bytes) -> bytes:
        return crypto_aead_xchacha20poly1305_ietf_encrypt(payload, aad, nonce, self._key)

    def _open(self, nonce: bytes, body: bytes, aad: bytes) -> bytes:
        return crypto_aead_xchacha20poly1305_ietf_decrypt(body, aad, nonce, self._key)


def choose_mode(offered: Sequence[str]) -> str:
    """Pick the best mode the server offers; raise ``ValueError`` naming them when none fits."""
    for mode in MODES:
        if mode in offered:
            return mode
    raise ValueError(f'the voice server offers no supported encryption mode: {", ".join(offered) or "none"}')


def cipher_for(mode: str, key: bytes) -> TransportCipher:
    """The cipher of ``mode`` keyed with the session's secret key."""
    ciphers: dict[str, type[TransportCipher]] = {AES_GCM: AesGcmRtpSize, XCHACHA: XChaChaRtpSize}
    if mode not in ciphers:
        raise ValueError(f'unsupported encryption mode {mode!r}')
    return ciphers[mode](key)
