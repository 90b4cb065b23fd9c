"""Labelled text datasets: importing folders and uploads with validation reports, storing, summarising.

A dataset is a JSONL file of ``{text, label, source}`` lines under ``<data_root>/datasets/`` plus a
store record (kind ``dataset``); the record ``current/dataset`` names the dataset commands use by
default. Imports never stop at the first bad line: every problem is reported with where it was,
and the good examples are kept.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
import logging
import os
import pathlib
import random
import shutil
import stat
import statistics
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import IO, Any

import attrs

from engine.files import FileGate, FileRefusedError
from engine.filetypes import looks_like_csv
from engine.i18n import _, current, format_number, ngettext
from engine.states.actions import ActionError
from engine.store import Store
from integrations.models.chatformat import check_chat_example, split_chat_example
from integrations.models.config import Limits
from integrations.models.paths import inside, safe_member_name, slug

__all__ = [
    'DEFAULT_LABEL',
    'DatasetInfo',
    'DatasetRepo',
    'Example',
    'ImportResult',
    'Issue',
    'archive_folder',
    'check_upload_size',
    'load_folder',
    'load_upload',
    'read_jsonl',
    'split_holdout',
    'summarize',
    'summary_text',
    'text_folders',
    'write_jsonl',
]

_log = logging.getLogger(__name__)

DEFAULT_LABEL = 'positive'
"""The label of the original bot, used when none is given."""
_MAX_LISTED_ISSUES = 20
_MAX_KEPT_ISSUES = 100
"""Problems kept per import (the rest are counted): a file of a million bad lines costs no memory."""
_MAX_LISTED_LABELS = 20
MAX_JSON_DEPTH = 32
"""Deepest JSON nesting read in an uploaded line (an example is two levels deep; chat format four)."""


@attrs.frozen
class Example:
    text: str
    label: str
    source: str = ''


@attrs.frozen
class Issue:
    """One problem found while importing: where (file or member), the line if known, and why."""

    where: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        return (
            _('{where} line {line}: {reason}').format(where=self.where, line=self.line, reason=self.reason)
            if self.line
            else f'{self.where}: {self.reason}'
        )


@attrs.define
class ImportResult:
    examples: list[Example] = attrs.field(factory=list)
    issues: list[Issue] = attrs.field(factory=list)
    """The first :data:`_MAX_KEPT_ISSUES` problems; :attr:`problem_count` counts them all."""
    problem_count: int = 0
    labels: set[str] = attrs.field(factory=set)
    """Labels of the examples read so far (for the distinct-label limit)."""
    max_labels: int = 1_000

    def take(self, item: Example | Issue) -> None:
        """Keep an example whose label follows the label rules, else record why not."""
        if isinstance(item, Issue):
            self.problem(item.where, item.reason, item.line)
            return
        reason = _label_problem(item.label)
        if reason is None and item.label not in self.labels and len(self.labels) >= self.max_labels:
            reason = _('more than {limit} different labels, skipped').format(limit=self.max_labels)
        if reason is not None:
            where, _sep, line = item.source.rpartition(':')
            self.problem(*((where, reason, int(line)) if line.isdigit() else (item.source, reason)))
            return
        self.examples.append(item)
        self.labels.add(item.label)

    def problem(self, where: str, reason: str, line: int | None = None) -> None:
        """Count a problem; keep the first :data:`_MAX_KEPT_ISSUES` (built only then: a file of a
        million bad lines costs a counter)."""
        self.problem_count += 1
        if len(self.issues) < _MAX_KEPT_ISSUES:
            self.issues.append(Issue(where, reason, line))

    def report(self) -> str:
        """The validation report: counts, then each problem (the first few) with its place."""
        labels = Counter(e.label for e in self.examples)
        count = len(self.examples)
        head = ngettext('{count} example read', '{count} examples read', count).format(count=format_number(count))
        if labels:
            shown = sorted(labels.items())[:_MAX_LISTED_LABELS]
            hidden = len(labels) - len(shown)
            more = (
                ngettext(', and {count} more label', ', and {count} more labels', hidden).format(count=hidden)
                if hidden
                else ''
            )
            head += ' (' + ', '.join(f'{_short(k, 40)}: {v}' for k, v in shown) + more + ')'
        if not self.problem_count:
            return head + _(', no problems.')
        problems = self.problem_count
        lines = [head + ngettext('; {count} problem:', '; {count} problems:', problems).format(count=problems)]
        lines += [f'- {issue}' for issue in self.issues[:_MAX_LISTED_ISSUES]]
        if problems > _MAX_LISTED_ISSUES:
            lines.append(_('- ... and {count} more').format(count=problems - _MAX_LISTED_ISSUES))
        return '\n'.join(lines)


def _short(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters for a report (user data is never echoed at length)."""
    return text if len(text) <= limit else text[: limit - 3] + '...'


def _too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether parsed JSON nests deeper than ``limit`` (checked without recursion)."""
    if isinstance(value, dict) and not any(isinstance(v, dict | list) for v in value.values()):
        return False  # the usual {"text": ..., "label": ...}
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


@attrs.define(kw_only=True)
class DatasetInfo:
    """The store record of a dataset."""

    name: str
    path: str
    count: int
    labels: dict[str, int]
    source: str
    created: float
    holdout: str | None = None
    """JSONL of examples held out for testing by the last training with a validation split."""


def _decode(data: bytes, where: str, limits: Limits, label: str) -> Example | Issue:
    if b'\x00' in data:
        return Issue(where, _('binary file, expected UTF-8 text'))
    try:
        text = data.decode('utf-8-sig').strip()
    except UnicodeDecodeError as exc:
        return Issue(where, _('not UTF-8 text (byte {start})').format(start=exc.start))
    if not text:
        return Issue(where, _('empty text'))
    if len(text) > limits.max_text_chars:
        return Issue(
            where,
            _('text too long ({count} characters, limit {max_text_chars})').format(
                count=len(text), max_text_chars=limits.max_text_chars
            ),
        )
    return Example(text, label, where)


def _label_problem(label: str) -> str | None:
    """Why ``label`` cannot be a label (empty, several lines, over 100 characters), or ``None``."""
    if not label:
        return _('the label must not be empty')
    if len(label) > 100 or '\n' in label or '\r' in label:
        return _('the label must be one line of at most 100 characters')
    return None


def _check_label(label: str) -> str:
    label = label.strip()
    problem = _label_problem(label)
    if problem:
        raise ActionError(problem)
    return label


def _txt_files(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == '.txt')


def load_folder(folder: pathlib.Path, gate: FileGate, label: str, limits: Limits) -> ImportResult:
    """Every ``*.txt`` directly in ``folder`` becomes an example with ``label``; what the file gate
    refuses (links out of the data root, the store, secrets, FIFOs) is skipped with its reason.

    A folder without ``.txt`` files whose subfolders have them is a labelled dataset, as in a ZIP: each
    subfolder's name is the label of its texts (``reviews/pos/*.txt``, ``reviews/neg/*.txt``).

    :param gate: the data root's file gate; sources are recorded relative to its first root.
    """
    label = _check_label(label)
    root = gate.roots[0].resolve()
    if not folder.is_dir():
        raise ActionError(_('{value} is not a folder under the data root').format(value=folder.relative_to(root)))
    files = [(file, label) for file in _txt_files(folder)]
    if not files:
        subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith('.'))
        files = [
            (file, _check_label(sub.name))
            for sub in subfolders
            if not sub.is_symlink() and gate.inside(sub)
            for file in _txt_files(sub)
        ]
    if not files:
        raise ActionError(_('no .txt files in {value} or its subfolders').format(value=folder.relative_to(root)))
    if len(files) > limits.max_files:
        raise ActionError(
            _('too many files: {count} (limit {max_files})').format(count=len(files), max_files=limits.max_files)
        )
    result = ImportResult(max_labels=limits.max_labels)
    total = 0
    for file, file_label in files:
        where = str(file.relative_to(root))
        try:
            with gate.open(file, name=where) as fh:
                size = os.fstat(fh.fileno()).st_size
                total += size
                if size > limits.max_text_chars * 4 or total > limits.max_uncompressed_bytes:
                    result.problem(where, _('file too large ({size} bytes)').format(size=size))
                    continue
                data = fh.read(limits.max_text_chars * 4 + 1)
        except FileRefusedError as exc:
            result.problem(where, _('{reason}, skipped').format(reason=exc.reason))
            continue
        result.take(_decode(data, where, limits, file_label))
    return result


_SPREADSHEETS = frozenset({'.xlsx', '.xlsm', '.xls', '.ods', '.numbers'})
"""Spreadsheet files: their tables are read once saved as CSV."""


def check_upload_size(path: pathlib.Path, display: str, limits: Limits) -> int:
    """Refuse an upload over ``max_upload_bytes`` (before it is copied for a worker, and when it is read);
    return its size."""
    size = path.stat().st_size
    if size > limits.max_upload_bytes:
        raise ActionError(
            _('{display} is too large ({size} bytes, limit {max_upload_bytes})').format(
                display=display, size=size, max_upload_bytes=limits.max_upload_bytes
            )
        )
    return size


def load_upload(
    path: pathlib.Path, display: str, label: str | None, limits: Limits, *, default_label: str | None = DEFAULT_LABEL
) -> ImportResult:
    """Read an uploaded ZIP of ``.txt`` files, JSONL (``{text,label}`` or chat format) or CSV.

    :param path: the downloaded file (trusted location).
    :param display: the user's file name, for messages and the format guess only.
    :param label: overrides labels (ZIP folder names, missing CSV/JSONL labels).
    :param default_label: the label of examples that name none; ``None`` reports them (test data must be labelled).
    """
    if label is not None:
        label = _check_label(label)
    size = check_upload_size(path, display, limits)
    if size == 0:
        raise ActionError(_('{display} is empty').format(display=display))
    if pathlib.PurePath(display).suffix.lower() in _SPREADSHEETS:  # an .xlsx is a ZIP too, of XML
        raise ActionError(
            _(
                '{display} is a spreadsheet; save it as CSV (UTF-8) with the columns "text" and "label" '
                'and send that file'
            ).format(display=display)
        )
    with path.open('rb') as fh:
        magic = fh.read(4)
    lower = display.lower()
    if magic in (b'PK\x03\x04', b'PK\x05\x06') or lower.endswith('.zip'):
        return _load_zip(path, display, label, limits, default_label)
    with path.open('rb') as fh:
        head = fh.read(64 * 1024)
    if b'\x00' in head:
        raise ActionError(
            _('{display} is a binary file; send a ZIP of .txt files, JSONL or CSV').format(display=display)
        )
    first = head.decode('utf-8-sig', 'replace').lstrip()[:1]
    try:  # read as a stream: memory stays bounded by the examples kept, whatever the file holds
        with path.open('r', encoding='utf-8-sig', newline='') as text:
            if lower.endswith(('.csv', '.tsv')):
                return _load_csv(text, display, label, limits)
            if lower.endswith(('.jsonl', '.json', '.ndjson')) or first in ('{', '['):
                return _load_jsonl(text, display, label, limits, default_label)
            if lower.endswith('.txt'):
                single = ImportResult(max_labels=limits.max_labels)
                if not (label or default_label):
                    raise ActionError(
                        _('{display} has no labels; send JSON, JSONL or CSV with "text" and "label"').format(
                            display=display
                        )
                    )
                data = path.read_bytes()  # one example: bounded by the upload limit
                single.take(_decode(data, display, limits, label or default_label or DEFAULT_LABEL))
                return single
            sample = head.decode('utf-8-sig', 'replace')
            if looks_like_csv(sample, complete=len(head) < 64 * 1024):  # a table renamed by a chat platform
                return _load_csv(text, display, label, limits)
    except UnicodeDecodeError:  # Excel's plain "CSV" is in the system code page (Windows-1251 on a Russian one)
        raise ActionError(
            _('{display} is not UTF-8 text; save it as UTF-8 (in Excel: "CSV UTF-8") and send it again').format(
                display=display
            )
        ) from None
    raise ActionError(
        _('{display}: unknown format; send a .zip of .txt files, a .jsonl or a .csv file').format(display=display)
    )


_OEM_CODE_PAGES = {
    **dict.fromkeys(('ru', 'be', 'kk'), 'cp866'),
    'uk': 'cp1125',
    **dict.fromkeys(('pt', 'es', 'fr', 'de', 'it', 'nl', 'da', 'no', 'nb', 'sv', 'fi', 'is'), 'cp850'),
    **dict.fromkeys(('pl', 'cs', 'sk', 'hu', 'ro', 'hr', 'sl', 'sr'), 'cp852'),
    'tr': 'cp857',
    'el': 'cp737',
    'ja': 'cp932',
    'zh': 'gbk',
    'ko': 'cp949',
}
"""The OEM code page Windows names ZIP members in, by the uploader's language; cp437 (zipfile's, an English
system's) for every other, and for a name that is not valid in the guessed one (a multi-byte code page)."""


def _member_name(member: zipfile.ZipInfo) -> str:
    """A member's name as its maker wrote it. Without the UTF-8 flag zipfile reads the bytes as cp437, but such
    names are UTF-8 (Linux and macOS tools) or the OEM code page of the maker's Windows (cp866 on a Russian one,
    where Explorer's "Compressed folder" makes them), guessed from the uploader's language: folder names are
    labels, so they must read as typed."""
    try:
        if member.flag_bits & 0x800:
            return member.filename
        raw = member.filename.encode('cp437')  # zipfile's decoding, undone
    except UnicodeEncodeError:  # not cp437: zipfile took the name from a Unicode extra field
        return member.filename
    for encoding in ('utf-8', _OEM_CODE_PAGES.get(current(), 'cp437')):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return member.filename  # cp437, which reads any bytes


def _load_zip(
    path: pathlib.Path, display: str, label: str | None, limits: Limits, default_label: str | None = DEFAULT_LABEL
) -> ImportResult:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ActionError(
            _('{display} is not a readable ZIP file: {error}').format(display=display, error=exc)
        ) from exc
    result = ImportResult(max_labels=limits.max_labels)
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        texts = [m for m in members if m.filename.lower().endswith('.txt')]
        if not texts:
            raise ActionError(_('{display} contains no .txt files').format(display=display))
        if len(texts) > limits.max_files:
            raise ActionError(
                _('{display} has {count} .txt files (limit {max_files})').format(
                    display=display, count=len(texts), max_files=limits.max_files
                )
            )
        declared = sum(m.file_size for m in texts)
        if declared > limits.max_uncompressed_bytes:
            raise ActionError(
                _('{display} unpacks to {size} bytes (limit {limit}); refused as too large').format(
                    display=display, size=declared, limit=limits.max_uncompressed_bytes
                )
            )
        for member in members:
            name = _member_name(member)
            where = f'{display}:{name}'
            if not name.lower().endswith('.txt'):
                if not name.split('/')[-1].startswith('.') and '__MACOSX' not in name:
                    result.problem(where, _('not a .txt file, skipped'))
                continue
            if '__MACOSX' in name.split('/'):
                continue
            reason = safe_member_name(name)
            if reason:
                result.problem(where, _('unsafe name ({reason}), skipped').format(reason=reason))
                continue
            if stat.S_ISLNK(member.external_attr >> 16):
                result.problem(where, _('symbolic link, skipped'))
                continue
            ratio = member.file_size / max(member.compress_size, 1)
            if member.file_size > 1024 * 1024 and ratio > limits.max_compression_ratio:
                result.problem(
                    where, _('compression ratio {ratio:.0f}:1 looks like a zip bomb, skipped').format(ratio=ratio)
                )
                continue
            if member.file_size > limits.max_text_chars * 4:
                result.problem(where, _('file too large ({file_size} bytes)').format(file_size=member.file_size))
                continue
            try:
                with archive.open(member) as fh:
                    data = fh.read(limits.max_text_chars * 4 + 1)  # never trust the declared size
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
                result.problem(where, _('cannot be read: {error}').format(error=exc))
                continue
            folder = name.rstrip('/').split('/')[:-1]
            item_label = label or (folder[-1] if folder else default_label)
            if item_label is None:
                result.problem(where, _('not in a folder named after its label, skipped'))
                continue
            item = _decode(data, where, limits, item_label)
            result.take(item)
    return result


def _add(result: ImportResult, limits: Limits, example: Example, where: str, line: int) -> None:
    if not example.text.strip():
        result.problem(where, _('empty text'), line)
    elif not example.label.strip():
        result.problem(where, _('empty label'), line)
    elif len(example.text) > limits.max_text_chars:
        result.problem(where, _('text too long ({count} characters)').format(count=len(example.text)), line)
    elif len(result.examples) >= limits.max_examples:
        result.problem(
            where,
            _('more than {max_examples} examples, the rest is ignored').format(max_examples=limits.max_examples),
            line,
        )
    else:
        result.take(example)


def _load_jsonl(
    text: IO[str], display: str, label: str | None, limits: Limits, default_label: str | None = DEFAULT_LABEL
) -> ImportResult:
    result = ImportResult(max_labels=limits.max_labels)
    skipped = 0
    start = text.readline()
    while start and not start.strip():
        skipped += 1
        start = text.readline()
    lines: Iterable[tuple[int, Any]]
    if start.lstrip().startswith(
        '['
    ):  # a JSON array of objects is accepted too (read whole: bounded by the upload limit)
        try:
            items = json.loads(start + text.read())
        except json.JSONDecodeError as exc:
            raise ActionError(
                _('{display}: invalid JSON at line {lineno}: {msg}').format(
                    display=display, lineno=exc.lineno, msg=exc.msg
                )
            ) from exc
        except RecursionError:
            raise ActionError(
                _('{display}: the JSON is nested too deeply (limit {limit} levels)').format(
                    display=display, limit=MAX_JSON_DEPTH
                )
            ) from None
        if not isinstance(items, list):
            raise ActionError(
                _('{display}: expected a JSON list of objects or one object per line').format(display=display)
            )
        lines = enumerate(items, 1)
        parsed = True
    else:
        lines = enumerate(itertools.chain([start], text), skipped + 1)
        parsed = False
    for number, raw in lines:
        if not parsed:
            if not raw.strip():
                continue
            if '\x00' in raw:
                raise ActionError(
                    _('{display} line {number} holds a NUL byte; send UTF-8 text').format(
                        display=display, number=number
                    )
                )
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                result.problem(display, _('invalid JSON ({msg})').format(msg=exc.msg), number)
                continue
            except RecursionError:
                value = None
        else:
            value = raw
        if value is None or _too_deep(value):
            result.problem(display, _('nested more than {limit} levels deep').format(limit=MAX_JSON_DEPTH), number)
            continue
        where = f'{display}:{number}'
        if isinstance(value, dict) and 'messages' in value:
            errors = check_chat_example(value)
            if not errors and not any(isinstance(m, dict) and m.get('role') == 'user' for m in value['messages']):
                errors = ['missing_user_message: ' + _('add a user message (the text)')]
            if errors:
                result.problem(display, _short('; '.join(errors[:3]), 300), number)
                continue
            text_value, label_value = split_chat_example(value)
            _add(result, limits, Example(text_value.strip(), label or label_value.strip(), where), display, number)
        elif isinstance(value, dict) and 'text' in value:
            raw_text = value.get('text')
            raw_label = label or value.get('label')
            if raw_label is None and default_label is None:
                result.problem(display, _('no label, skipped'), number)
                continue
            raw_label = raw_label if raw_label is not None else default_label
            if not isinstance(raw_text, str) or not isinstance(raw_label, str):
                result.problem(display, _('"text" and "label" must be strings'), number)
                continue
            _add(result, limits, Example(raw_text.strip(), raw_label.strip(), where), display, number)
        else:
            result.problem(display, _('expected an object with "text" (and "label") or a chat "messages" list'), number)
    return result


def _load_csv(text: IO[str], display: str, label: str | None, limits: Limits) -> ImportResult:
    result = ImportResult(max_labels=limits.max_labels)
    first_line = text.readline(64 * 1024)
    delimiter = max(',;\t', key=first_line.count)  # the header names no commas, so its separator decides
    reader = csv.reader(itertools.chain([first_line], text), csv.excel, delimiter=delimiter)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration as exc:
        raise ActionError(_('{display} is empty').format(display=display)) from exc
    except csv.Error as exc:
        raise ActionError(_('{display} line 1: {error}').format(display=display, error=exc)) from exc
    if 'text' not in header or ('label' not in header and label is None):
        shown = ', '.join(repr(_short(h, 30)) for h in header[:10])
        more = _(' and {count} more').format(count=len(header) - 10) if len(header) > 10 else ''
        raise ActionError(
            _(
                '{display} line 1: wrong columns [{shown}{more}]; '
                'the first line must name the columns "text" and "label"'
            ).format(display=display, shown=shown, more=more)
        )
    text_at = header.index('text')
    label_at = header.index('label') if 'label' in header else None
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            result.problem(display, _('unreadable CSV: {error}').format(error=exc), reader.line_num)
            continue
        number = reader.line_num
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            result.problem(
                display,
                _('wrong number of columns: {count}, expected {count2}').format(count=len(row), count2=len(header)),
                number,
            )
            continue
        row_label = label or (row[label_at] if label_at is not None else DEFAULT_LABEL)
        _add(result, limits, Example(row[text_at].strip(), row_label.strip(), f'{display}:{number}'), display, number)
    return result


def summarize(examples: Sequence[Example]) -> dict[str, Any]:
    """Examples per label, duplicates (and duplicates with conflicting labels), empty texts, lengths."""
    labels = Counter(e.label for e in examples)
    by_text: dict[str, set[str]] = {}
    duplicates = 0
    for e in examples:
        seen = by_text.setdefault(e.text, set())
        if seen:
            duplicates += 1
        seen.add(e.label)
    conflicts = sum(1 for v in by_text.values() if len(v) > 1)
    lengths = sorted(len(e.text) for e in examples)
    summary: dict[str, Any] = {
        'count': len(examples),
        'labels': dict(sorted(labels.items())),
        'duplicates': duplicates,
        'conflicting_duplicates': conflicts,
        'empty': sum(1 for e in examples if not e.text.strip()),
        'length': {},
    }
    if lengths:
        summary['length'] = {
            'min': lengths[0],
            'median': int(statistics.median(lengths)),
            'mean': round(statistics.fmean(lengths), 1),
            'p90': lengths[min(len(lengths) - 1, int(len(lengths) * 0.9))],
            'max': lengths[-1],
        }
    return summary


def summary_text(name: str, summary: dict[str, Any]) -> str:
    """The summary as a few lines for chat."""
    labels = ', '.join(f'{k}: {v}' for k, v in summary['labels'].items()) or _('none')
    length = summary['length']
    count = summary['count']
    lines = [
        ngettext(
            'Dataset {name}: {count} example ({labels}).', 'Dataset {name}: {count} examples ({labels}).', count
        ).format(name=name, count=format_number(count), labels=labels)
    ]
    if length:
        lines.append(
            _('Length (characters): min {min}, median {median}, p90 {p90}, max {max}.').format(
                min=length['min'], median=format_number(length['median']), p90=length['p90'], max=length['max']
            )
        )
    if summary['duplicates']:
        duplicates = summary['duplicates']
        lines.append(
            ngettext(
                '{count} duplicate text, {conflicting} with conflicting labels.',
                '{count} duplicate texts, {conflicting} with conflicting labels.',
                duplicates,
            ).format(count=duplicates, conflicting=summary['conflicting_duplicates'])
        )
    if summary['empty']:
        empty = summary['empty']
        lines.append(ngettext('{count} empty text.', '{count} empty texts.', empty).format(count=empty))
    if len(summary['labels']) < 2:
        lines.append(_('Only one label: add examples of another label to train a classifier.'))
    return '\n'.join(lines)


def split_holdout(examples: Sequence[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Split off ``fraction`` of the examples for validation, stratified by label when possible."""
    if not 0 <= fraction < 1:
        raise ActionError(_('validation_split must be between 0 and 1 (e.g. 0.2)'))
    if fraction == 0:
        return list(examples), []
    rng = random.Random(seed)
    by_label: dict[str, list[Example]] = {}
    for e in examples:
        by_label.setdefault(e.label, []).append(e)
    train: list[Example] = []
    held: list[Example] = []
    for members in by_label.values():
        group = members[:]
        rng.shuffle(group)
        k = round(len(group) * fraction) if len(group) > 1 else 0
        held += group[:k]
        train += group[k:]
    if not held:
        raise ActionError(_('the dataset is too small to hold out a validation part; use validation_split=0'))
    return train, held


def write_jsonl(path: pathlib.Path, examples: Iterable[Example]) -> None:
    """Write atomically (temporary file + rename) so a crash never leaves half a dataset."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix='.tmp')
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as fh:
            for e in examples:
                fh.write(json.dumps(attrs.asdict(e), ensure_ascii=False) + '\n')
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def read_jsonl(path: pathlib.Path) -> list[Example]:
    examples = []
    with path.open(encoding='utf-8') as fh:
        for line in fh:
            if line.strip():
                item = json.loads(line)
                examples.append(Example(item['text'], item['label'], item.get('source', '')))
    return examples


class DatasetRepo:
    """Stores datasets as JSONL under ``<root>/datasets`` with a store record each and a current pointer."""

    def __init__(self, store: Store, root: pathlib.Path) -> None:
        self.store = store
        self.root = root
        self.folder = root / 'datasets'

    async def save(self, name: str, examples: Sequence[Example], source: str, *, add: bool = False) -> DatasetInfo:
        """Save ``examples`` as dataset ``name`` (or add them to the current dataset) and make it current."""
        if not examples:
            raise ActionError(_('no usable examples; nothing was saved'))
        if add:
            current = await self.current()
            if current is None:
                raise ActionError(_('there is no current dataset to add to; select one first'))
            name = current.name
            examples = [*self.examples(current), *examples]
            source = f'{current.source} + {source}'
        name = slug(name)
        path = self.folder / f'{name}.jsonl'
        await asyncio.to_thread(write_jsonl, path, examples)
        info = DatasetInfo(
            name=name,
            path=str(path.relative_to(self.root)),
            count=len(examples),
            labels=dict(sorted(Counter(e.label for e in examples).items())),
            source=source,
            created=time.time(),
        )
        await self.store.put_record('dataset', name, attrs.asdict(info))
        await self.store.put_record('current', 'dataset', {'name': name})
        _log.info('dataset %s saved: %d examples from %s', name, len(examples), source)
        return info

    async def get(self, name: str | None) -> DatasetInfo:
        """The named dataset, or the current one when ``name`` is empty; a clear error when there is none."""
        if not name:
            info = await self.current()
            if info is None:
                raise ActionError(_('no dataset selected yet: use select_dataset PATH or upload a file first'))
            return info
        record = await self.store.get_record('dataset', slug(name))
        if record is None:
            known = ', '.join(r['name'] for r in await self.store.list_records('dataset')) or 'none'
            raise ActionError(_('unknown dataset {name!r}; known datasets: {known}').format(name=name, known=known))
        return DatasetInfo(**record)

    async def current(self) -> DatasetInfo | None:
        pointer = await self.store.get_record('current', 'dataset')
        if not pointer:
            return None
        record = await self.store.get_record('dataset', pointer['name'])
        return DatasetInfo(**record) if record else None

    def examples(self, info: DatasetInfo) -> list[Example]:
        path = self.root / info.path
        try:
            return read_jsonl(path)
        except (OSError, ValueError, KeyError) as exc:
            _log.error('dataset %s cannot be read from %s: %s', info.name, path, exc)
            raise ActionError(
                _('dataset {name} cannot be read ({error}); select or upload it again').format(
                    name=info.name, error=exc
                )
            ) from exc

    async def set_holdout(self, info: DatasetInfo, held: Sequence[Example]) -> DatasetInfo:
        path = self.folder / f'{info.name}.holdout.jsonl'
        await asyncio.to_thread(write_jsonl, path, held)
        info.holdout = str(path.relative_to(self.root))
        await self.store.put_record('dataset', info.name, attrs.asdict(info))
        return info


_NOT_DATASETS = frozenset({'datasets', 'jobs', 'models', 'tmp', 'console', 'archive'})
"""Folders of the data root that flowbot itself fills."""


def _has_txt(folder: pathlib.Path) -> bool:
    try:
        return any(p.suffix.lower() == '.txt' for p in folder.iterdir())
    except OSError:
        return False


def text_folders(root: pathlib.Path, *, limit: int = 25, depth: int = 2) -> list[str]:
    """Folders under ``root`` (relative, ``/``-separated) that hold ``.txt`` files, for offering as datasets.

    Hidden folders, symlinks and flowbot's own folders are skipped; at most ``limit`` are returned, in name order.
    """
    found: list[str] = []

    def walk(folder: pathlib.Path, level: int) -> None:
        try:
            entries = sorted(folder.iterdir())
        except OSError as exc:
            _log.warning('cannot list %s for datasets: %r', folder, exc)
            return
        has_texts = any(e.suffix.lower() == '.txt' and e.is_file() for e in entries)
        labelled = not has_texts and any(e.is_dir() and not e.is_symlink() and _has_txt(e) for e in entries)
        if folder != root and (has_texts or labelled):
            found.append(folder.relative_to(root).as_posix())
        for entry in entries:
            if len(found) >= limit:
                return
            skip = entry.name.startswith('.') or (folder == root and entry.name in _NOT_DATASETS)
            if level < depth and not skip and entry.is_dir() and not entry.is_symlink():
                walk(entry, level + 1)

    walk(root, 0)
    return found[:limit]


def archive_folder(folder: pathlib.Path, gate: FileGate, target_dir: pathlib.Path, max_bytes: int) -> pathlib.Path:
    """Zip ``folder`` (recursively, streamed file by file) into ``target_dir/YYYY-MM-DD_NAME.zip``.

    Only what the file gate lets leave is packed (no symlink out of the data root, no store, ``-wal``
    or secret, however linked); the total size is checked before writing and the ZIP appears only
    when complete (temporary file + rename).
    """
    files = []
    total = 0
    for file in gate.walk(folder):
        if inside(file, target_dir):
            continue
        total += file.stat().st_size
        if total > max_bytes:
            raise ActionError(
                _('{name} is larger than the archive limit of {max_bytes} bytes').format(
                    name=folder.name, max_bytes=max_bytes
                )
            )
        files.append(file)
    if not files:
        raise ActionError(_('{name} has no files to archive').format(name=folder.name))
    target_dir.mkdir(parents=True, exist_ok=True)
    stem = f'{time.strftime("%Y-%m-%d")}_{slug(folder.name)}'
    target = target_dir / f'{stem}.zip'
    n = 2
    while target.exists():
        target = target_dir / f'{stem}_{n}.zip'
        n += 1
    fd, tmp = tempfile.mkstemp(dir=target_dir, suffix='.zip.tmp')
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, 'w', compression=zipfile.ZIP_DEFLATED) as zf:
            for file in files:
                arcname = str(pathlib.Path(folder.name) / file.relative_to(folder))
                try:
                    source = gate.open(file, name=arcname)
                except FileRefusedError as exc:  # changed since the walk: leave it out, say so in the log
                    _log.warning('archive: %s left out: %s', file, exc)
                    continue
                info = zipfile.ZipInfo(
                    arcname, max(time.localtime(os.fstat(source.fileno()).st_mtime)[:6], (1980, 1, 1, 0, 0, 0))
                )
                info.compress_type = zipfile.ZIP_DEFLATED
                with source, zf.open(info, 'w') as out:
                    shutil.copyfileobj(source, out, 1024 * 1024)
        os.replace(tmp, target)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return target
