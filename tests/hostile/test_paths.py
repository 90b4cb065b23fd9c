"""Hostile path names typed by a user, through every action that takes one: refused or not found, plainly."""

from __future__ import annotations

import pytest

from engine.states.actions import ActionError

from .conftest import Models, World, assert_safe, bounded

NAMES = [
    '../outside/loot.txt',
    '../../outside/loot.txt',
    '/etc/passwd',
    '/proc/self/environ',
    '/dev/zero',
    '//etc/passwd',
    '..',
    '../',
    '.',
    './',
    '',
    '   ',
    '\x00',
    'sets/\x00ok',
    'sets/../../outside/loot.txt',
    '..\\..\\outside\\loot.txt',
    'C:\\Windows\\win.ini',
    'c:/windows/win.ini',
    '\\\\server\\share\\x',
    '~/.ssh/id_rsa',
    '~root',
    '$HOME/.bashrc',
    '%2e%2e/%2e%2e/outside/loot.txt',
    '..%2f..%2foutside',
    'a' * 256,
    'sets/' + 'b' * 300,
    'é' * 200,
    '😀' * 70,
    'x/' * 3000,
    'a' * 100_000,
    'flowbot.sqlite3',
    'flowbot.sqlite3-wal',
    'flowbot.sqlite3-shm',
    'flowbot.sqlite3-journal',
    'keys/openai.txt',
    'keys',
    'flowbot.pid',
    'sets/ok/../../../outside/loot.txt',
    'sets/ok/../../keys/openai.txt',
    '\n/etc/passwd',
    '/etc/passwd\n',
    'sets/ok/a.txt/..',
    '\u202e/etc/passwd',
    'con',
    'NUL',
    '{{ 7*7 }}',
    '-rf',
    '*',
    '?',
    'sets/*/a.txt',
]
IDS = [repr(n)[:40] for n in NAMES]


async def _refused(call: object) -> str:
    with bounded(), pytest.raises(ActionError) as caught:
        await call  # type: ignore[misc]
    assert_safe(caught.value)
    return str(caught.value)


@pytest.mark.parametrize('name', NAMES, ids=IDS)
async def test_getfile_refuses_or_does_not_find_a_hostile_name(models: Models, name: str) -> None:
    await _refused(models.call('dataset.getfile', name=name))


@pytest.mark.parametrize('name', NAMES, ids=IDS)
async def test_archive_refuses_a_hostile_folder_name(models: Models, world: World, name: str) -> None:
    await _refused(models.call('dataset.archive', path=name))
    assert not list((world.root / 'archive').glob('*.zip')) if (world.root / 'archive').exists() else True


@pytest.mark.parametrize('name', NAMES, ids=IDS)
async def test_select_dataset_refuses_a_hostile_folder_name(models: Models, name: str) -> None:
    await _refused(models.call('dataset.select', path=name, label='x'))


@pytest.mark.parametrize('name', NAMES, ids=IDS)
async def test_model_test_refuses_a_hostile_data_file(models: Models, name: str) -> None:
    await _refused(models.call('model.test', data=name))
