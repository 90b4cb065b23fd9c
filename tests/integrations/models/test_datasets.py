"""Dataset import (folders, ZIP, JSONL, CSV) with validation reports, limits, summary, archive and getfile."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import zipfile

import attrs
import pytest

from engine.api import Attachment
from engine.states.actions import ActionError
from integrations.models.paths import PathRefusedError

from .conftest import MakePlugin


def _zip(path: pathlib.Path, members: dict[str, bytes]) -> Attachment:
    with zipfile.ZipFile(path, 'w', compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return Attachment('upload.zip', content_type='application/zip', path=path)


def _file(path: pathlib.Path, name: str, text: str | bytes) -> Attachment:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return Attachment(name, path=path)


async def test_select_makes_examples_and_remembers_the_current_dataset(make_plugin: MakePlugin) -> None:
    plugin = make_plugin()
    result = await plugin.call('dataset.select', path='reviews/pos')
    assert result['name'] == 'reviews_pos'
    assert result['labels'] == {'positive': 12}
    lines = (plugin.service.root / result['path']).read_text().splitlines()
    first = json.loads(lines[0])
    assert first == {'text': 'good film #0', 'label': 'positive', 'source': 'reviews/pos/000.txt'}
    pointer = await plugin.ctx.store.get_record('current', 'dataset')
    assert pointer == {'name': 'reviews_pos'}
    assert (await plugin.ctx.store.get_record('dataset', 'reviews_pos'))['count'] == 12


async def test_adding_a_folder_says_added_not_selected(make_plugin: MakePlugin) -> None:
    plugin = make_plugin()
    await plugin.call('dataset.select', path='reviews/pos')
    result = await plugin.call('dataset.select', path='reviews/neg', label='negative', add='true')
    assert result['text'].startswith('Added to dataset reviews_pos. 12 examples read (negative: 12)')
    assert result['count'] == 24


async def test_select_skips_binary_empty_and_symlinked_files_with_reasons(
    make_plugin: MakePlugin, data_root: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    folder = data_root / 'mixed'
    folder.mkdir()
    (folder / 'ok.txt').write_text('fine text')
    (folder / 'bin.txt').write_bytes(b'\x00\x01\x02')
    (folder / 'empty.txt').write_text('   ')
    (tmp_path / 'secret.txt').write_text('secret')
    os.symlink(tmp_path / 'secret.txt', folder / 'link.txt')
    plugin = make_plugin()
    result = await plugin.call('dataset.select', path='mixed', label='other')
    assert result['count'] == 1
    report = result['report']
    assert 'mixed/bin.txt: binary file' in report
    assert 'mixed/empty.txt: empty text' in report
    assert 'mixed/link.txt: is outside the data folder, skipped' in report


async def test_select_refuses_paths_out_of_the_root(make_plugin: MakePlugin) -> None:
    plugin = make_plugin()
    with pytest.raises(PathRefusedError):
        await plugin.call('dataset.select', path='../..')
    with pytest.raises(PathRefusedError):
        await plugin.call('dataset.select', path='/etc')
    with pytest.raises(ActionError, match='not a folder'):
        await plugin.call('dataset.select', path='nothing-here')


async def test_zip_upload_labels_by_folder_and_reports_bad_members(
    make_plugin: MakePlugin, tmp_path: pathlib.Path
) -> None:
    plugin = make_plugin()
    upload = _zip(
        tmp_path / 'u.zip',
        {
            'set/pos/a.txt': b'good',
            'set/neg/b.txt': b'bad',
            'set/neg/c.txt': b'\xff\xfe bad bytes',
            '../evil.txt': b'x',
            'notes.md': b'# hi',
        },
    )
    result = await plugin.call('dataset.upload', attachments=[upload])
    assert result['labels'] == {'neg': 1, 'pos': 1}
    report = result['report']
    assert "upload.zip:../evil.txt: unsafe name ('..' is not allowed), skipped" in report
    assert 'upload.zip:set/neg/c.txt: not UTF-8 text' in report
    assert 'upload.zip:notes.md: not a .txt file' in report
    labelled = await plugin.call('dataset.upload', attachments=[upload], label='spam')
    assert labelled['labels'] == {'spam': 2}


async def test_zip_bomb_is_refused_by_declared_size(make_plugin: MakePlugin, tmp_path: pathlib.Path) -> None:
    plugin = make_plugin(limits={'max_uncompressed_bytes': 1_000_000})
    upload = _zip(tmp_path / 'bomb.zip', {'a/x.txt': b'0' * 2_000_000})
    assert upload.path is not None and upload.path.stat().st_size < 10_000
    with pytest.raises(ActionError, match='unpacks to 2000000 bytes'):
        await plugin.call('dataset.upload', attachments=[upload])


async def test_highly_compressed_member_is_skipped_as_a_bomb(make_plugin: MakePlugin, tmp_path: pathlib.Path) -> None:
    plugin = make_plugin()
    upload = _zip(tmp_path / 'b.zip', {'a/x.txt': b'0' * 3_000_000, 'a/y.txt': b'real text'})
    result = await plugin.call('dataset.upload', attachments=[upload])
    assert result['count'] == 1
    assert 'looks like a zip bomb' in result['report']


async def test_zip_with_too_many_files_and_oversize_upload_are_refused(
    make_plugin: MakePlugin, tmp_path: pathlib.Path
) -> None:
    plugin = make_plugin(limits={'max_files': 3, 'max_upload_bytes': 5000})
    many = _zip(tmp_path / 'm.zip', {f'l/{i}.txt': b'x' for i in range(4)})
    with pytest.raises(ActionError, match=r'4 \.txt files \(limit 3\)'):
        await plugin.call('dataset.upload', attachments=[many])
    big = _file(tmp_path / 'big', 'big.jsonl', 'x' * 6000)
    with pytest.raises(ActionError, match='too large'):
        await plugin.call('dataset.upload', attachments=[big])


async def test_jsonl_validation_report_lists_line_numbers(make_plugin: MakePlugin, tmp_path: pathlib.Path) -> None:
    lines = [
        json.dumps({'text': 'good', 'label': 'pos'}),
        '{"text": "broken"',
        json.dumps({'messages': [{'role': 'user', 'content': 'hi'}]}),
        json.dumps(
            {
                'messages': [
                    {'role': 'system', 'content': 's'},
                    {'role': 'user', 'content': 'u'},
                    {'role': 'assistant', 'content': 'neg'},
                ]
            }
        ),
        json.dumps({'text': '', 'label': 'pos'}),
        json.dumps([1, 2]),
        '',
        json.dumps({'text': 5, 'label': 'pos'}),
    ]
    upload = _file(tmp_path / 'f', 'data.jsonl', '\n'.join(lines))
    result = await make_plugin().call('dataset.upload', attachments=[upload])
    assert result['labels'] == {'neg': 1, 'pos': 1}
    report = result['report']
    assert 'data.jsonl line 2: invalid JSON' in report
    assert 'data.jsonl line 3: example_missing_assistant_message' in report
    assert 'data.jsonl line 5: empty text' in report
    assert 'data.jsonl line 6: expected an object' in report
    assert 'data.jsonl line 8: "text" and "label" must be strings' in report
    assert result['problems'] == 5


async def test_csv_import_reports_rows_and_refuses_wrong_columns(
    make_plugin: MakePlugin, tmp_path: pathlib.Path
) -> None:
    plugin = make_plugin()
    good = _file(tmp_path / 'c', 'data.csv', 'text,label\n"good, really",pos\nbad,neg\nonly one column\n,neg\n')
    result = await plugin.call('dataset.upload', attachments=[good])
    assert result['labels'] == {'neg': 1, 'pos': 1}
    assert 'data.csv line 4: wrong number of columns: 1, expected 2' in result['report']
    assert 'data.csv line 5: empty text' in result['report']
    wrong = _file(tmp_path / 'w', 'w.csv', 'sentence,category\na,b\n')
    with pytest.raises(ActionError, match='line 1: wrong columns'):
        await plugin.call('dataset.upload', attachments=[wrong])


async def test_binary_and_unknown_uploads_are_refused(make_plugin: MakePlugin, tmp_path: pathlib.Path) -> None:
    plugin = make_plugin()
    with pytest.raises(ActionError, match='binary file'):
        await plugin.call('dataset.upload', attachments=[_file(tmp_path / 'b', 'x.jsonl', b'\x00\x01abc')])
    with pytest.raises(ActionError, match='unknown format'):
        await plugin.call('dataset.upload', attachments=[_file(tmp_path / 'd', 'x.doc', 'hello')])
    with pytest.raises(ActionError, match='attach a ZIP'):
        await plugin.call('dataset.upload')


async def test_upload_with_no_usable_example_saves_nothing(make_plugin: MakePlugin, tmp_path: pathlib.Path) -> None:
    plugin = make_plugin()
    await plugin.call('dataset.select', path='reviews/pos')
    with pytest.raises(ActionError, match='no usable examples') as info:
        await plugin.call('dataset.upload', attachments=[_file(tmp_path / 'e', 'e.jsonl', '{"x": 1}\n')])
    assert 'e.jsonl line 1' in str(info.value)
    assert (await plugin.ctx.store.get_record('current', 'dataset')) == {'name': 'reviews_pos'}


async def test_summary_counts_labels_duplicates_and_lengths(make_plugin: MakePlugin, tmp_path: pathlib.Path) -> None:
    plugin = make_plugin()
    data = 'text,label\nsame,a\nsame,a\nsame,b\nlonger text here,b\n'
    await plugin.call('dataset.upload', attachments=[_file(tmp_path / 's', 'small.csv', data)])
    summary = await plugin.call('dataset.summary')
    assert summary['labels'] == {'a': 2, 'b': 2}
    assert summary['duplicates'] == 2
    assert summary['conflicting_duplicates'] == 1
    assert summary['length'] == {'min': 4, 'median': 4, 'mean': 7.0, 'p90': 16, 'max': 16}
    assert 'Dataset small: 4 examples (a: 2, b: 2)' in summary['text']
    with pytest.raises(ActionError, match='unknown dataset'):
        await plugin.call('dataset.summary', dataset='nope')


async def test_summary_without_dataset_says_how_to_select(make_plugin: MakePlugin) -> None:
    with pytest.raises(ActionError, match='no dataset selected'):
        await make_plugin().call('dataset.summary')


async def test_archive_zips_folder_with_date_name(make_plugin: MakePlugin, data_root: pathlib.Path) -> None:
    plugin = make_plugin()
    result = await plugin.call('dataset.archive', path='reviews')
    today = datetime.date.today().isoformat()
    assert result['name'] == f'{today}_reviews.zip'
    with zipfile.ZipFile(result['path']) as zf:
        names = zf.namelist()
    assert 'reviews/pos/000.txt' in names
    assert len(names) == 24
    again = await plugin.call('dataset.archive', path='reviews')
    assert again['name'] == f'{today}_reviews_2.zip'
    fetched = await plugin.call('dataset.getfile', name=f'{today}_reviews.zip')
    assert fetched['path'] == result['path']


async def test_archive_refuses_oversize_and_leaves_out_symlinks(
    make_plugin: MakePlugin, data_root: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    (tmp_path / 'secret.txt').write_text('secret')
    os.symlink(tmp_path / 'secret.txt', data_root / 'reviews' / 'pos' / 'leak.txt')
    plugin = make_plugin(limits={'max_archive_bytes': 100})
    with pytest.raises(ActionError, match='larger than the archive limit'):
        await plugin.call('dataset.archive', path='reviews')
    assert not list((data_root / 'archive').glob('*.zip*'))
    plugin = make_plugin()
    result = await plugin.call('dataset.archive', path='reviews/pos')
    with zipfile.ZipFile(result['path']) as zf:
        assert 'pos/leak.txt' not in zf.namelist()
    with pytest.raises(PathRefusedError):
        await plugin.call('dataset.archive', path='../')


async def test_getfile_only_serves_files_in_the_root_or_archive(
    make_plugin: MakePlugin, data_root: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    plugin = make_plugin(limits={'max_getfile_bytes': 20})
    got = await plugin.call('dataset.getfile', name='reviews/pos/000.txt')
    assert pathlib.Path(got['path']).read_text() == 'good film #0'
    assert got['files'] == [got['path']]
    with pytest.raises(PathRefusedError):
        await plugin.call('dataset.getfile', name='../../etc/passwd')
    with pytest.raises(PathRefusedError):
        await plugin.call('dataset.getfile', name='/etc/passwd')
    (data_root / 'big.txt').write_text('x' * 21)
    with pytest.raises(ActionError, match='larger than'):
        await plugin.call('dataset.getfile', name='big.txt')
    (data_root / 'flowbot.sqlite3').write_text('db')
    gate = plugin.service.files
    plugin.service.files = attrs.evolve(gate, protected=(*gate.protected, data_root / 'flowbot.sqlite3'))
    with pytest.raises(PathRefusedError, match='not shareable'):
        await plugin.call('dataset.getfile', name='flowbot.sqlite3')
    os.link(data_root / 'flowbot.sqlite3', data_root / 'copy.txt')
    with pytest.raises(PathRefusedError, match='not shareable'):
        await plugin.call('dataset.getfile', name='copy.txt')
    with pytest.raises(ActionError, match='no file'):
        await plugin.call('dataset.getfile', name='missing.txt')


async def test_csv_with_semicolons_or_tabs_is_read(make_plugin: MakePlugin, tmp_path: pathlib.Path) -> None:
    plugin = make_plugin()
    semi = _file(tmp_path / 's', 's.csv', 'label;text\npos;good, really good\nneg;bad\n')
    assert (await plugin.call('dataset.upload', attachments=[semi]))['labels'] == {'neg': 1, 'pos': 1}
    tabs = _file(tmp_path / 't', 't.csv', 'text\tlabel\ngood; fine\tpos\n')
    assert (await plugin.call('dataset.upload', attachments=[tabs]))['labels'] == {'pos': 1}
