"""User-named paths stay inside the data root: traversal, absolute paths and symlinks out are refused."""

from __future__ import annotations

import os
import pathlib

import pytest

from integrations.models.paths import PathRefusedError, resolve_inside, safe_member_name, slug


@pytest.fixture
def root(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / 'root' / 'sets' / 'a').mkdir(parents=True)
    (tmp_path / 'outside').mkdir()
    (tmp_path / 'outside' / 'secret.txt').write_text('secret')
    return tmp_path / 'root'


def test_path_inside_root_resolves(root: pathlib.Path) -> None:
    assert resolve_inside(root, 'sets/a') == (root / 'sets' / 'a').resolve()
    assert resolve_inside(root, 'sets\\a') == (root / 'sets' / 'a').resolve()


@pytest.mark.parametrize('name', ['../outside', 'sets/../../outside', '..', 'sets/a/../../..'])
def test_dotdot_is_refused(root: pathlib.Path, name: str) -> None:
    with pytest.raises(PathRefusedError, match=r"'\.\.' is not allowed"):
        resolve_inside(root, name)


@pytest.mark.parametrize('name', ['/etc/passwd', 'C:/Windows', 'c:\\x', '\\\\server\\share'])
def test_absolute_paths_are_refused(root: pathlib.Path, name: str) -> None:
    with pytest.raises(PathRefusedError, match='absolute paths are not allowed'):
        resolve_inside(root, name)


def test_symlink_out_of_root_is_refused(root: pathlib.Path) -> None:
    os.symlink(root.parent / 'outside', root / 'sets' / 'escape')
    with pytest.raises(PathRefusedError, match='leads outside the data folder'):
        resolve_inside(root, 'sets/escape')
    with pytest.raises(PathRefusedError, match='leads outside'):
        resolve_inside(root, 'sets/escape/secret.txt')


def test_symlink_within_root_is_allowed(root: pathlib.Path) -> None:
    os.symlink(root / 'sets' / 'a', root / 'alias')
    assert resolve_inside(root, 'alias') == (root / 'sets' / 'a').resolve()


def test_empty_and_nul_names_are_refused(root: pathlib.Path) -> None:
    assert safe_member_name('') == 'empty path'
    assert safe_member_name('a\x00b') is not None
    with pytest.raises(PathRefusedError):
        resolve_inside(root, '   ')


def test_slug_keeps_names_file_safe() -> None:
    assert slug('my reviews/2024 (pos)') == 'my_reviews_2024_pos'
    assert slug('../..') == 'dataset'


def test_slug_keeps_letters_of_any_script_so_names_do_not_collide() -> None:
    assert slug('отзывы 😀/pos') == 'отзывы_pos'
    assert slug('новости') != slug('отзывы')
    assert slug('😀😀') == 'dataset'
