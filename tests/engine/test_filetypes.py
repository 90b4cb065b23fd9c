"""What a file is, from its first bytes and its name, whatever a chat platform labelled it."""

from __future__ import annotations

import io
import json
import pathlib
import zipfile

import pytest

from engine.filetypes import HEAD_BYTES, identify, identify_file, looks_like_csv


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as archive:
        archive.writestr('pos/1.txt', 'good')
    return buffer.getvalue()


@pytest.mark.parametrize(
    ('data', 'name', 'expected'),
    [
        (_zip(), 'reviews.zip', 'application/zip'),
        (_zip(), 'no-extension', 'application/zip'),
        (b'{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n', 'data', 'application/x-ndjson'),
        ('\ufeff{"text": "ä"}\n'.encode(), 'bom.jsonl', 'application/x-ndjson'),
        (b'[{"text": "a", "label": "x"}]', 'list.json', 'application/json'),
        (b'{\n  "text": "pretty"\n}\n', 'pretty.json', 'application/json'),
        (b'text,label\nhello,pos\nbye,neg\n', 'table', 'text/csv'),
        (b'text;label\nhello;pos\nbye;neg\n', 'semicolons', 'text/csv'),
        (b'just one line', 'notes.csv', 'text/csv'),
        ('Привет, как дела? Всё хорошо.\nА у тебя?\n'.encode(), 'note', 'text/plain'),
        (b'MZ\x90\x00\x03\x00\x00\x00', 'tool.jsonl', None),
        ('caf\xe9'.encode('latin-1'), 'latin.txt', None),
        (b'', 'empty.txt', 'text/plain'),
    ],
)
def test_identify_by_content_and_name(data: bytes, name: str, expected: str | None) -> None:
    assert identify(data, name) == expected


def test_prose_with_commas_is_not_a_table() -> None:
    assert not looks_like_csv('Hello, world.\nThis is fine, I think, really.\nYes.\n')
    assert looks_like_csv('a,b\n1,2\n3,4\n')


def test_a_head_cut_inside_a_character_or_a_line_is_still_read(tmp_path: pathlib.Path) -> None:
    line = json.dumps({'text': 'ж' * 1000, 'label': 'x'}, ensure_ascii=False).encode() + b'\n'
    head = line * 3 + line[:20] + 'ж'.encode()[:1]  # the head ends inside a line and inside a character
    assert identify(head, 'x', complete=False) == 'application/x-ndjson'
    assert identify(head, 'x', complete=True) is None  # as a whole file it would be broken UTF-8
    big = tmp_path / 'big.jsonl'
    big.write_bytes(line * (HEAD_BYTES // len(line) + 10))
    assert identify_file(big) == 'application/x-ndjson'
