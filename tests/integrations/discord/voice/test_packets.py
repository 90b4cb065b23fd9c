"""Byte layouts and transport encryption, checked without any network."""

from __future__ import annotations

import os

import pytest
from cryptography.exceptions import InvalidTag
from nacl.exceptions import CryptoError

from integrations.discord.voice.crypto import AES_GCM, XCHACHA, choose_mode, cipher_for
from integrations.discord.voice.gateway import CloseAction, describe_close, gateway_url
from integrations.discord.voice.rtp import (
    RtpHeader,
    discovery_request,
    discovery_response,
    parse_discovery_request,
    parse_discovery_response,
)


@pytest.mark.parametrize('mode', [AES_GCM, XCHACHA])
def test_rtpsize_packet_is_header_ciphertext_and_counter_and_rejects_tampering(mode: str) -> None:
    cipher = cipher_for(mode, os.urandom(32))
    header = RtpHeader(65535, 2**32 - 960, 42).pack()
    packet = cipher.encrypt(header, b'opus frame', 7)
    assert packet[:12] == header and packet[-4:] == (7).to_bytes(4, 'big')
    assert len(packet) == 12 + len(b'opus frame') + 16 + 4
    assert cipher.decrypt(packet) == b'opus frame'
    tampered = bytearray(packet)
    tampered[2] ^= 1  # the header is authenticated too
    with pytest.raises((InvalidTag, CryptoError)):
        cipher.decrypt(bytes(tampered))


def test_mode_choice_prefers_aes_and_names_unsupported_offers() -> None:
    assert choose_mode([XCHACHA, AES_GCM]) == AES_GCM
    with pytest.raises(ValueError, match='xsalsa20_poly1305_lite'):
        choose_mode(['xsalsa20_poly1305_lite'])
    with pytest.raises(ValueError, match='32 bytes'):
        cipher_for(AES_GCM, b'short')


def test_ip_discovery_packets_round_trip() -> None:
    request = discovery_request(1234)
    assert len(request) == 74 and parse_discovery_request(request) == 1234
    assert parse_discovery_response(discovery_response(1234, '203.0.113.9', 50004)) == ('203.0.113.9', 50004)
    with pytest.raises(ValueError, match='74 bytes'):
        parse_discovery_response(b'\x00\x02')


def test_rtp_header_round_trips_and_refuses_non_rtp() -> None:
    header = RtpHeader(1, 960, 99)
    assert RtpHeader.unpack(header.pack()) == header and header.pack()[:2] == b'\x80\x78'
    with pytest.raises(ValueError, match='version 2'):
        RtpHeader.unpack(b'\x00' * 12)


def test_gateway_url_asks_for_v8_and_keeps_loopback_plain() -> None:
    assert gateway_url('wss://c-fra.discord.media:443') == 'wss://c-fra.discord.media:443/?v=8'
    assert gateway_url('c-fra.discord.media') == 'wss://c-fra.discord.media/?v=8'
    assert gateway_url('wss://127.0.0.1:5000', secure=False) == 'ws://127.0.0.1:5000/?v=8'
    assert gateway_url('ws://127.0.0.1:5000') == 'ws://127.0.0.1:5000/?v=8'


@pytest.mark.parametrize(
    ('code', 'action'),
    [
        (4015, CloseAction.RESUME),
        (None, CloseAction.RESUME),
        (1006, CloseAction.RESUME),
        (4006, CloseAction.NEW_SESSION),
        (4009, CloseAction.NEW_SESSION),
        (4014, CloseAction.STOP),
        (4017, CloseAction.STOP),
        (4004, CloseAction.STOP),
    ],
)
def test_close_codes_map_to_resume_new_session_or_stop(code: int | None, action: CloseAction) -> None:
    assert describe_close(code).action is action
