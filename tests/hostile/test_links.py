"""Links and special files under the data root: never sent, packed or imported, never blocking."""

from __future__ import annotations

import pathlib

import pytest

from engine.files import FileGate, FileRefusedError, sendable_roots
from engine.states.actions import ActionError

from .conftest import OUTSIDE, SECRET, STORE_MARK, TRAPS, Models, World, assert_safe, bounded, make_trap, zip_bytes


def _name(world: World, path: pathlib.Path) -> str:
    return str(path.relative_to(world.root))


@pytest.mark.parametrize('trap', TRAPS)
async def test_getfile_never_serves_a_trap(models: Models, world: World, trap: str) -> None:
    path = make_trap(world, trap, world.root / 'box')
    with bounded(), pytest.raises(ActionError) as caught:
        await models.call('dataset.getfile', name=_name(world, path))
    assert_safe(caught.value)


def _beside(world: World, trap: str) -> str:
    """Make the trap and an honest file in the same folder; return the folder's name for the action."""
    path = make_trap(world, trap, world.root / 'box')
    (path.parent / 'honest.txt').write_text('honest work', encoding='utf-8')
    return str(path.parent.relative_to(world.root)) if path.parent != world.root else '.'


@pytest.mark.parametrize('trap', TRAPS)
async def test_archive_packs_only_the_honest_files_beside_a_trap(models: Models, world: World, trap: str) -> None:
    folder = _beside(world, trap)
    with bounded():
        try:
            result = await models.call('dataset.archive', path=folder)
        except ActionError as exc:  # the store and the pid file live in the data root, which is never archived
            assert folder == '.'
            assert_safe(exc)
            return
    assert_safe(result['text'])
    packed = zip_bytes(pathlib.Path(result['path']))
    assert b'honest work' in packed
    for loot in (OUTSIDE, SECRET, STORE_MARK, 'root:x:0:0'):
        assert loot.encode() not in packed
    assert b'SQLite format' not in packed


@pytest.mark.parametrize('trap', TRAPS)
async def test_select_dataset_skips_a_trap_with_a_reason(models: Models, world: World, trap: str) -> None:
    folder = _beside(world, trap)
    with bounded():
        result = await models.call('dataset.select', path=folder, label='x')
    assert_safe(result['text'])
    assert result['count'] == 1, 'only the honest file'
    dataset = (world.root / 'datasets' / f'{result["name"]}.jsonl').read_text(encoding='utf-8')
    assert 'honest work' in dataset
    for loot in (OUTSIDE, SECRET, STORE_MARK, 'root:x:0:0'):
        assert loot not in dataset


@pytest.mark.parametrize('trap', TRAPS)
def test_the_gate_refuses_a_trap_as_a_flow_file_to_send(world: World, trap: str) -> None:
    path = make_trap(world, trap, world.root / 'box')
    gate = FileGate.from_config(world.config, extra_roots=sendable_roots(world.config)[1:])
    with bounded(), pytest.raises(FileRefusedError) as caught:
        gate.check(path)
    assert_safe(caught.value)
    assert str(world.outside) not in str(caught.value)
