"""RTP packet headers and Discord's UDP IP discovery packets: pure byte layouts, no I/O.

Kept apart from the socket code so the emulator in the tests and the client share one definition.
"""

from __future__ import annotations

import struct

import attrs

__all__ = [
    'DISCOVERY_SIZE',
    'FRAME_SAMPLES',
    'PAYLOAD_TYPE',
    'SILENCE_FRAME',
    'RtpHeader',
    'discovery_request',
    'discovery_response',
    'parse_discovery_request',
    'parse_discovery_response',
    'split_incoming',
]

PAYLOAD_TYPE = 0x78
"""Discord's dynamic payload type for Opus."""
FRAME_SAMPLES = 960
"""Samples per channel in one 20 ms Opus frame at 48 kHz: the RTP timestamp step."""
SILENCE_FRAME = b'\xf8\xff\xfe'
"""An Opus frame of silence; five of them end speech so clients don't interpolate."""
DISCOVERY_SIZE = 74

_HEADER = struct.Struct('>BBHII')
_DISCOVERY = struct.Struct('>HHI64sH')


@attrs.frozen
class RtpHeader:
    """The 12-byte RTP header Discord expects (version 2, no CSRC, no extension)."""

    sequence: int
    timestamp: int
    ssrc: int
    payload_type: int = PAYLOAD_TYPE

    SIZE = 12

    def pack(self) -> bytes:
        return _HEADER.pack(0x80, self.payload_type, self.sequence, self.timestamp, self.ssrc)

    @classmethod
    def unpack(cls, data: bytes) -> RtpHeader:
        """Read a header; raise ``ValueError`` for anything that is not plain RTP version 2."""
        if len(data) < cls.SIZE:
            raise ValueError(f'RTP packet too short: {len(data)} bytes')
        first, payload_type, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
        if first >> 6 != 2:
            raise ValueError(f'not RTP version 2: first byte {first:#x}')
        return cls(sequence, timestamp, ssrc, payload_type & 0x7F)


def split_incoming(data: bytes) -> tuple[RtpHeader, int, int]:
    """Read an incoming voice packet: (header, associated-data size, extension body size).

    Other members' packets may carry CSRCs and a header extension (``0xBEDE`` one-byte form). In the
    ``*_rtpsize`` modes the fixed header, the CSRCs and the 4-byte extension header are the associated
    data; the extension body is encrypted with the audio and comes first in the plaintext.

    :raises ValueError: not RTP version 2, truncated, or not Opus (RTCP and video are not ours to read).
    """
    header = RtpHeader.unpack(data)
    if header.payload_type != PAYLOAD_TYPE:
        raise ValueError(f'not an Opus packet: payload type {header.payload_type}')
    size = RtpHeader.SIZE + 4 * (data[0] & 0x0F)
    extension = 0
    if data[0] & 0x10:
        if len(data) < size + 4:
            raise ValueError('RTP header extension truncated')
        extension = 4 * int.from_bytes(data[size + 2 : size + 4], 'big')
        size += 4
    if len(data) < size + 4:
        raise ValueError(f'RTP packet too short: {len(data)} bytes')
    return header, size, extension


def discovery_request(ssrc: int) -> bytes:
    """The 74-byte IP discovery request (type 1, length 70) the client sends after READY."""
    return _DISCOVERY.pack(1, 70, ssrc, b'', 0)


def parse_discovery_request(data: bytes) -> int:
    """Return the SSRC of a discovery request; used by emulators."""
    kind, length, ssrc, _, _ = _unpack(data)
    if kind != 1 or length != 70:
        raise ValueError(f'not an IP discovery request: type {kind}, length {length}')
    return ssrc


def discovery_response(ssrc: int, address: str, port: int) -> bytes:
    """The server's answer (type 2): the client's address as the server sees it."""
    return _DISCOVERY.pack(2, 70, ssrc, address.encode('ascii'), port)


def parse_discovery_response(data: bytes) -> tuple[str, int]:
    """Return the (external address, port) from a discovery response."""
    kind, length, _, raw_address, port = _unpack(data)
    if kind != 2 or length != 70:
        raise ValueError(f'not an IP discovery response: type {kind}, length {length}')
    return raw_address.split(b'\0', 1)[0].decode('ascii'), port


def _unpack(data: bytes) -> tuple[int, int, int, bytes, int]:
    if len(data) != DISCOVERY_SIZE:
        raise ValueError(f'IP discovery packet must be {DISCOVERY_SIZE} bytes, got {len(data)}')
    kind, length, ssrc, address, port = _DISCOVERY.unpack(data)
    return kind, length, ssrc, address, port
