"""A user uploads their dataset as a spreadsheet (Excel, LibreOffice): they are told to save it as CSV,
not that a ZIP holds no .txt files or that a file is binary."""

from __future__ import annotations

import io
import pathlib
import zipfile

import pytest

from engine.api import Attachment
from engine.states.actions import ActionError

from .conftest import MakePlugin


def _xlsx() -> bytes:
    """What an .xlsx is inside: a ZIP of XML parts."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as zf:
        zf.writestr('[Content_Types].xml', '<Types/>')
        zf.writestr('xl/workbook.xml', '<workbook/>')
        zf.writestr('xl/worksheets/sheet1.xml', '<worksheet/>')
    return buffer.getvalue()


@pytest.mark.parametrize(
    ('name', 'data'),
    [
        ('reviews.xlsx', _xlsx()),
        ('reviews.ods', _xlsx()),
        ('reviews.xls', b'\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1' + b'\0' * 500),
    ],
)
async def test_a_spreadsheet_upload_is_refused_with_how_to_save_it_as_csv(
    make_plugin: MakePlugin, tmp_path: pathlib.Path, name: str, data: bytes
) -> None:
    plugin = make_plugin()
    path = tmp_path / 'upload.bin'
    path.write_bytes(data)
    with pytest.raises(ActionError) as refused:
        await plugin.call('dataset.upload', attachments=[Attachment(name, size=len(data), path=path)])
    message = str(refused.value)
    assert name in message and 'CSV' in message and '"text"' in message


async def test_a_csv_saved_by_a_russian_excel_in_windows_1251_says_how_to_save_it_as_utf8(
    make_plugin: MakePlugin, tmp_path: pathlib.Path
) -> None:
    data = 'text;label\nотличный товар;хорошо\nужасно;плохо\n'.encode('cp1251')
    path = tmp_path / 'upload.bin'
    path.write_bytes(data)
    with pytest.raises(ActionError) as refused:
        await plugin_upload(make_plugin, path, 'отзывы.csv')
    message = str(refused.value)
    assert message.startswith('отзывы.csv') and 'CSV UTF-8' in message and 'block' not in message


async def plugin_upload(make_plugin: MakePlugin, path: pathlib.Path, name: str) -> object:
    plugin = make_plugin()
    return await plugin.call('dataset.upload', attachments=[Attachment(name, size=path.stat().st_size, path=path)])
