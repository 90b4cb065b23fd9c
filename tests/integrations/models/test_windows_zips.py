"""A ZIP made by Windows' "Send to > Compressed folder" on a Russian system names its members in the OEM code
page (cp866) without the UTF-8 flag: the folder names, which are the labels, must read as typed."""

from __future__ import annotations

import io
import pathlib
import zipfile

from engine import i18n
from engine.api import Attachment

from .conftest import MakePlugin


class _RawName(zipfile.ZipInfo):
    """A member whose name is written as given bytes, without the UTF-8 flag (as old Windows tools write it)."""

    __slots__ = ('raw',)

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:
        return self.raw, self.flag_bits


def _zip(members: dict[str, bytes], encoding: str | None) -> bytes:
    """A ZIP whose names are bytes in ``encoding`` with no UTF-8 flag (``None``: as Python writes them)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            if encoding is not None:
                info = _RawName(name)
                info.raw = name.encode(encoding)
            zf.writestr(info, data)
    return buffer.getvalue()


async def _labels(plugin: object, tmp_path: pathlib.Path, data: bytes, language: str = 'ru') -> dict[str, int]:
    """The labels of ``data`` uploaded by a user writing in ``language``."""
    path = tmp_path / 'upload.zip'
    path.write_bytes(data)
    with i18n.use(language):
        result = await plugin.call('dataset.upload', attachments=[Attachment('upload.zip', size=len(data), path=path)])  # type: ignore[attr-defined]
    return dict(result['labels'])


MEMBERS = {'хорошие/1.txt': b'good', 'хорошие/2.txt': b'fine', 'плохие/1.txt': b'bad', 'плохие/2.txt': b'awful'}


async def test_cyrillic_folder_names_of_a_windows_zip_are_the_labels(
    make_plugin: MakePlugin, tmp_path: pathlib.Path
) -> None:
    assert await _labels(make_plugin(), tmp_path, _zip(MEMBERS, 'cp866')) == {'плохие': 2, 'хорошие': 2}


async def test_utf8_names_with_or_without_the_flag_stay_as_they_are(
    make_plugin: MakePlugin, tmp_path: pathlib.Path
) -> None:
    plugin = make_plugin()
    assert await _labels(plugin, tmp_path, _zip(MEMBERS, None)) == {'плохие': 2, 'хорошие': 2}
    assert await _labels(plugin, tmp_path, _zip(MEMBERS, 'utf-8')) == {'плохие': 2, 'хорошие': 2}


async def test_a_western_windows_zip_of_an_english_user_keeps_its_accented_labels(
    make_plugin: MakePlugin, tmp_path: pathlib.Path
) -> None:
    members = {'café/1.txt': b'good', 'café/2.txt': b'fine', 'naïve/1.txt': b'bad', 'naïve/2.txt': b'awful'}
    assert await _labels(make_plugin(), tmp_path, _zip(members, 'cp437'), 'en') == {'café': 2, 'naïve': 2}


async def test_a_japanese_or_portuguese_windows_zip_keeps_its_labels_in_the_uploaders_language(
    make_plugin: MakePlugin, tmp_path: pathlib.Path
) -> None:
    """Japanese Windows names members in cp932 (Shift-JIS), a Portuguese one in cp850 (ã is not cp437's)."""
    plugin = make_plugin()
    japanese = {'良い/1.txt': b'good', '良い/2.txt': b'fine', '悪い/1.txt': b'bad', '悪い/2.txt': b'awful'}
    assert await _labels(plugin, tmp_path, _zip(japanese, 'cp932'), 'ja') == {'悪い': 2, '良い': 2}
    portuguese = {'São/1.txt': b'good', 'São/2.txt': b'fine', 'Não/1.txt': b'bad', 'Não/2.txt': b'awful'}
    assert await _labels(plugin, tmp_path, _zip(portuguese, 'cp850'), 'pt') == {'Não': 2, 'São': 2}


async def test_names_in_another_code_page_than_the_uploaders_give_two_labels_never_an_error(
    make_plugin: MakePlugin, tmp_path: pathlib.Path
) -> None:
    """The maker's code page cannot be known: a Shift-JIS ZIP from an English user, or bytes that are no Shift-JIS
    from a Japanese one, still load (labels as cp437 reads them) rather than fail."""
    plugin = make_plugin()
    japanese = {'良い/1.txt': b'good', '良い/2.txt': b'fine', '悪い/1.txt': b'bad', '悪い/2.txt': b'awful'}
    assert sorted((await _labels(plugin, tmp_path, _zip(japanese, 'cp932'), 'en')).values()) == [2, 2]
    assert sorted((await _labels(plugin, tmp_path, _zip(MEMBERS, 'cp866'), 'ja')).values()) == [2, 2]
