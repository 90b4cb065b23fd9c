"""Hostile dataset and test-data uploads: a short report or a plain refusal, in bounded time and memory."""

from __future__ import annotations

import io
import json
import os
import pathlib
import zipfile
from collections.abc import Callable

import pytest

from engine.api import Attachment
from engine.states.actions import ActionError

from .conftest import Models, World, assert_safe, bounded


def _zip(members: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w', zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo('pos/link.txt')
            info.external_attr = 0o120777 << 16
            zf.writestr(info, symlink)
    return buffer.getvalue()


def _lines(items: list[object]) -> bytes:
    return ''.join(json.dumps(item) + '\n' for item in items).encode()


GOOD = {'text': 'fine', 'label': 'pos'}

UPLOADS: dict[str, tuple[str, Callable[[], bytes]]] = {
    'jsonl-100k-deep-list': ('deep.jsonl', lambda: b'[' * 100_000 + b'\n'),
    'json-100k-deep-array': ('deep.json', lambda: b'[' * 100_000 + b']' * 100_000),
    'jsonl-50k-deep-object': ('deep.jsonl', lambda: b'{"a":' * 50_000 + b'1' + b'}' * 50_000 + b'\n'),
    'jsonl-40-deep-extra-key': (
        'deep.jsonl',
        lambda: _lines([{**GOOD, 'x': json.loads('[' * 40 + ']' * 40)}]),
    ),
    'jsonl-300k-empty-objects': ('empty.jsonl', lambda: b'{}\n' * 300_000),
    'jsonl-150k-bad-json-lines': ('bad.jsonl', lambda: b'{oops\n' * 150_000),
    'csv-5mb-header': ('wide.csv', lambda: b'x,' * 2_500_000 + b'\n'),
    'csv-100k-columns': ('cols.csv', lambda: ','.join(f'c{i}' for i in range(100_000)).encode() + b'\n'),
    'jsonl-20k-distinct-labels': (
        'labels.jsonl',
        lambda: _lines([{'text': f't{i}', 'label': f'label-{i}'} for i in range(20_000)]),
    ),
    'csv-20k-distinct-labels': (
        'labels.csv',
        lambda: b'text,label\n' + b''.join(f't{i},l{i}\n'.encode() for i in range(20_000)),
    ),
    'label-with-newline': ('nl.jsonl', lambda: _lines([{'text': 'a', 'label': 'pos\nneg'}, GOOD])),
    'label-1000-chars': ('long.jsonl', lambda: _lines([{'text': 'a', 'label': 'x' * 1000}, GOOD])),
    'label-empty': ('empty-label.jsonl', lambda: _lines([{'text': 'a', 'label': ''}, GOOD])),
    'label-a-number': ('num.jsonl', lambda: _lines([{'text': 'a', 'label': 7}, GOOD])),
    'label-a-table': ('tab.jsonl', lambda: _lines([{'text': 'a', 'label': {'x': 1}}, GOOD])),
    'text-a-list': ('list.jsonl', lambda: _lines([{'text': ['a'], 'label': 'pos'}, GOOD])),
    'zip-label-folder-of-300-chars': ('labels.zip', lambda: _zip({'x' * 300 + '/a.txt': b'hello'})),
    'nul-bytes': ('nul.jsonl', lambda: b'{"text": "a\x00", "label": "pos"}\n'),
    'invalid-utf8': ('bad.jsonl', lambda: b'{"text": "\xff\xfe", "label": "pos"}\n'),
    'bom-then-good': ('bom.jsonl', lambda: b'\xef\xbb\xbf' + _lines([GOOD])),
    'empty-file': ('empty.jsonl', lambda: b''),
    'whitespace-only': ('blank.jsonl', lambda: b' \n\t\n' * 1000),
    'zip-bomb': ('bomb.zip', lambda: _zip({'pos/zeros.txt': b'\0' * 60_000_000})),
    'zip-dotdot-member': ('evil.zip', lambda: _zip({'../../evil.txt': b'escape', 'pos/a.txt': b'fine'})),
    'zip-absolute-member': ('abs.zip', lambda: _zip({'/etc/evil.txt': b'escape', 'pos/a.txt': b'fine'})),
    'zip-symlink-member': ('link.zip', lambda: _zip({'pos/a.txt': b'fine'}, symlink='/etc/passwd')),
    'zip-truncated': ('cut.zip', lambda: _zip({'pos/a.txt': b'fine' * 1000})[:60]),
    'zip-many-tiny-members': ('many.zip', lambda: _zip({f'pos/{i}.txt': b'x' for i in range(20_001)})),
    'png-named-csv': ('image.csv', lambda: b'\x89PNG\r\n\x1a\n' + b'\0' * 1000),
    'csv-header-only': ('head.csv', lambda: b'text,label\n'),
    'csv-unterminated-quote': ('quote.csv', lambda: b'text,label\n"never ends,pos\n' + b'x' * 200_000),
    'csv-cr-only-newlines': ('cr.csv', lambda: b'text,label\rgood,pos\rbad,neg\r'),
    'json-array-over-the-example-limit': ('many.json', lambda: json.dumps([GOOD] * 101_000).encode()),
    'jsonl-one-10mb-text': ('big.jsonl', lambda: _lines([{'text': 'y' * 10_000_000, 'label': 'pos'}])),
    'chat-1000-bad-messages': (
        'chat.jsonl',
        lambda: _lines([{'messages': [{'role': 'robot', 'content': 1}] * 1000}]),
    ),
    'txt-with-template-syntax': ('t.txt', lambda: b'{{ 9**(9**9) }} {% for i in range(10**9) %}'),
    'unknown-format': ('x.exe', lambda: b'MZ' + b'\x90' * 1000),
}

SIZES = {'over-the-upload-limit': ('huge.jsonl', 21 * 1024 * 1024)}


def _attach(world: World, name: str, data: bytes) -> Attachment:
    folder = world.base / 'uploads'
    folder.mkdir(exist_ok=True)
    path = folder / 'upload.bin'
    path.write_bytes(data)
    return Attachment(name, size=len(data), path=path)


async def _outcome(call: object) -> str:
    try:
        result = await call  # type: ignore[misc]
    except ActionError as exc:
        text = str(exc)
    else:
        text = result['text']
    assert_safe(text)
    return text


@pytest.mark.parametrize('case', sorted(UPLOADS))
async def test_a_hostile_dataset_upload_gets_a_bounded_report(models: Models, world: World, case: str) -> None:
    name, make = UPLOADS[case]
    attachment = _attach(world, name, make())
    with bounded(seconds=60, megabytes=64):  # allocation tracing slows these several times
        text = await _outcome(models.call('dataset.upload', attachments=[attachment]))
    assert len(text) < 3_000
    assert not (world.base / 'evil.txt').exists() and not (world.root / 'evil.txt').exists()


@pytest.mark.parametrize('case', sorted(UPLOADS))
async def test_a_hostile_test_data_upload_gets_a_bounded_report(models: Models, world: World, case: str) -> None:
    name, make = UPLOADS[case]
    attachment = _attach(world, name, make())
    with bounded(seconds=60, megabytes=64):  # allocation tracing slows these several times
        text = await _outcome(models.call('model.test', attachments=[attachment]))
    assert len(text) < 3_000


@pytest.mark.parametrize('case', sorted(SIZES))
async def test_an_upload_over_the_limit_is_refused_before_reading(models: Models, world: World, case: str) -> None:
    name, size = SIZES[case]
    path = world.base / 'sparse.bin'
    with path.open('wb') as fh:
        fh.truncate(size)  # sparse: refused by its size, never read
    with bounded(seconds=1), pytest.raises(ActionError, match='too large') as caught:
        await models.call('dataset.upload', attachments=[Attachment(name, size=size, path=path)])
    assert_safe(caught.value)


async def test_a_dataset_of_distinct_labels_reports_at_most_the_limit(models: Models, world: World) -> None:
    attachment = _attach(world, 'labels.jsonl', UPLOADS['jsonl-20k-distinct-labels'][1]())
    result = await models.call('dataset.upload', attachments=[attachment])
    assert len(result['labels']) == 1_000
    assert 'more labels' in result['text'] and '19000 problems:' in result['text']
    assert os.path.getsize(world.root / 'datasets' / f'{result["name"]}.jsonl') < 100_000


async def test_a_hostile_upload_name_never_becomes_a_path(models: Models, world: World) -> None:
    good = _lines([GOOD, {'text': 'bad', 'label': 'neg'}])
    for name in ('../../evil.jsonl', '/etc/evil.jsonl', 'a' * 400 + '.jsonl', '\x00.jsonl', '..jsonl'):
        result = await models.call('dataset.upload', attachments=[_attach(world, name, good)])
        saved = pathlib.Path(world.root / result['path']).resolve()
        assert saved.is_relative_to((world.root / 'datasets').resolve())
        assert len(saved.name.encode()) <= 255
