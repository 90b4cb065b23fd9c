"""Downloads: size and type checks, streaming limit, generated names, clean-up per conversation."""

from __future__ import annotations

import pathlib
import re

import attrs
import pytest

from engine.api import ConversationKey
from integrations.discord.attachments import AttachmentError, Downloads
from integrations.discord.config import DEFAULT_CONTENT_TYPES

from .emulator import DiscordEmulator

KEY = ConversationKey('discord', '1', '2')


@attrs.frozen
class Remote:
    filename: str
    size: int
    url: str
    media_type: str | None
    duration: float | None = None


def _remote(emu: DiscordEmulator, data: bytes, name: str, ctype: str | None, size: int | None = None) -> Remote:
    att = emu.add_file(data, name, ctype)
    return Remote(name, len(data) if size is None else size, att['url'], ctype)


async def test_file_is_streamed_under_a_generated_name_and_removed_with_the_conversation(
    emulator: DiscordEmulator, tmp_path: pathlib.Path
) -> None:
    downloads = Downloads(1000, ['audio/'], tmp_path, chunk_size=16)
    local = await downloads.fetch(KEY, _remote(emulator, b'a' * 100, '../../etc/passwd.ogg', 'audio/ogg'))
    assert local.path is not None and local.path.read_bytes() == b'a' * 100
    assert local.path.parent.parent == tmp_path and local.path.suffix == '.ogg'
    assert 'passwd' not in str(local.path)
    assert (local.name, local.size, local.content_type) == ('../../etc/passwd.ogg', 100, 'audio/ogg')
    await downloads.close(KEY)
    assert not local.path.exists()
    await downloads.aclose()


async def test_file_larger_than_declared_is_cut_off_while_streaming(
    emulator: DiscordEmulator, tmp_path: pathlib.Path
) -> None:
    downloads = Downloads(1000, [], tmp_path, chunk_size=64)
    with pytest.raises(AttachmentError, match='larger than'):
        await downloads.fetch(KEY, _remote(emulator, b'x' * 5000, 'lie.bin', 'application/octet-stream', size=10))
    assert list(tmp_path.rglob('*.bin')) == []
    await downloads.aclose()


async def test_wrong_type_and_missing_file_get_clear_messages(
    emulator: DiscordEmulator, tmp_path: pathlib.Path
) -> None:
    downloads = Downloads(1000, ['audio/'], tmp_path)
    with pytest.raises(AttachmentError, match='image/png are not accepted'):
        await downloads.fetch(KEY, _remote(emulator, b'png', 'a.png', 'image/png'))
    gone = Remote('gone.ogg', 3, f'{emulator.base_url}/attachments/0/gone.ogg', 'audio/ogg')
    with pytest.raises(AttachmentError, match='could not download'):
        await downloads.fetch(KEY, gone)
    await downloads.aclose()


async def test_folder_left_by_an_earlier_run_is_removed_when_the_conversation_ends(
    emulator: DiscordEmulator, tmp_path: pathlib.Path
) -> None:
    earlier = Downloads(1000, [], tmp_path)
    local = await earlier.fetch(KEY, _remote(emulator, b'a' * 10, 'a.ogg', 'audio/ogg'))
    assert local.path is not None and local.path.exists()
    later = Downloads(1000, [], tmp_path)  # a restart: it knows the folder only from the disk
    await later.close(ConversationKey('discord', '1', '3'))
    assert local.path.exists()
    await later.close(KEY)
    assert not local.path.parent.exists()
    again = await later.fetch(KEY, _remote(emulator, b'b' * 10, 'b.ogg', 'audio/ogg'))
    await later.close(KEY)
    assert again.path is not None and not again.path.parent.exists()
    await earlier.aclose()
    await later.aclose()


@pytest.mark.parametrize(
    ('data', 'name', 'declared', 'expected'),
    [
        (b'{"text": "a", "label": "x"}\n', 'data.jsonl', None, 'application/x-ndjson'),
        (b'PK\x05\x06' + b'\x00' * 18, 'empty.zip', None, 'application/zip'),
        (b'PK\x05\x06' + b'\x00' * 18, 'archive.zip', 'application/zip', 'application/zip'),
        (b'text,label\na,b\n', 'table.csv', 'text/csv; charset=utf-8', 'text/csv'),
        (b'text,label\na,b\nc,d\n', 'renamed', 'application/octet-stream', 'text/csv'),
        (b'{"text": "x"}', 'notes.txt', 'text/plain', 'text/plain'),  # a .txt holding JSON stays text
    ],
)
async def test_files_are_taken_by_what_they_are_not_their_label(
    emulator: DiscordEmulator, tmp_path: pathlib.Path, data: bytes, name: str, declared: str | None, expected: str
) -> None:
    downloads = Downloads(1000, DEFAULT_CONTENT_TYPES, tmp_path)
    local = await downloads.fetch(KEY, _remote(emulator, data, name, declared))
    assert local.content_type == expected
    assert local.path is not None and local.path.read_bytes() == data
    await downloads.aclose()


@pytest.mark.parametrize(
    ('data', 'name', 'declared', 'message'),
    [
        (b'{"text": "a"}\n', 'fake.zip', None, "'fake.zip' is not a ZIP file"),
        (b'MZ\x90\x00' * 10, 'tool.jsonl', None, "'tool.jsonl' is not UTF-8 text"),
        (b'\x00\x01\x02\x03' * 10, 'blob', None, "I cannot take 'blob': it is not a ZIP, JSON lines"),
        (b'\x00\x01', 'fake.txt', 'text/plain', "'fake.txt' is not UTF-8 text"),
        (b'MZ' * 10, 'tool.exe', 'application/x-msdownload', 'application/x-msdownload are not accepted'),
    ],
)
async def test_files_that_are_not_what_they_claim_are_refused_and_removed(
    emulator: DiscordEmulator, tmp_path: pathlib.Path, data: bytes, name: str, declared: str | None, message: str
) -> None:
    downloads = Downloads(1000, DEFAULT_CONTENT_TYPES, tmp_path)
    with pytest.raises(AttachmentError, match=re.escape(message)):
        await downloads.fetch(KEY, _remote(emulator, data, name, declared))
    assert [p for p in tmp_path.rglob('*') if p.is_file()] == []
    await downloads.aclose()


async def test_a_file_over_the_limit_without_a_declared_size_is_cut_off(
    emulator: DiscordEmulator, tmp_path: pathlib.Path
) -> None:
    downloads = Downloads(100, DEFAULT_CONTENT_TYPES, tmp_path, chunk_size=16)
    with pytest.raises(AttachmentError, match='larger than'):
        await downloads.fetch(KEY, _remote(emulator, b'{"a": 1}\n' * 50, 'big.jsonl', None, size=0))
    assert [p for p in tmp_path.rglob('*') if p.is_file()] == []
    await downloads.aclose()
