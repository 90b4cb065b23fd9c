"""What a file is, judged by its first bytes and its name: ZIP, JSON lines, JSON, CSV or plain UTF-8 text.

Chat platforms label uploads unreliably (Discord sends no content type for ``.jsonl``), so adapters and
importers ask :func:`identify` instead of trusting the label. Only the head of the file is read; the
verdict on a truncated head never depends on the cut-off last line.
"""

from __future__ import annotations

import codecs
import csv
import json
import pathlib

__all__ = ['HEAD_BYTES', 'ZIP_MAGIC', 'identify', 'identify_file', 'looks_like_csv', 'suffix_type']

HEAD_BYTES = 64 * 1024
"""How much of a file :func:`identify_file` reads."""

ZIP_MAGIC = (b'PK\x03\x04', b'PK\x05\x06')
"""A ZIP starts with a local file header, or with the end record when it is empty."""

_BY_SUFFIX = {
    '.zip': 'application/zip',
    '.jsonl': 'application/x-ndjson',
    '.ndjson': 'application/x-ndjson',
    '.json': 'application/json',
    '.csv': 'text/csv',
    '.tsv': 'text/csv',
    '.txt': 'text/plain',
}
_CSV_DELIMITERS = ',;\t'


def suffix_type(name: str) -> str | None:
    """The content type a dataset file name promises (``.zip``, ``.jsonl``, ``.csv`` ...), ``None`` for others."""
    return _BY_SUFFIX.get(pathlib.PurePath(name).suffix.lower())


def _text(head: bytes, complete: bool) -> str | None:
    """``head`` as UTF-8 (a BOM dropped, a character cut at the end forgiven), ``None`` if it is not text."""
    if b'\x00' in head:
        return None
    try:
        return codecs.getincrementaldecoder('utf-8-sig')().decode(head, final=complete)
    except UnicodeDecodeError:
        return None


def _whole_lines(text: str, complete: bool) -> list[str]:
    lines = text.splitlines()
    if not complete and lines and not text.endswith(('\n', '\r')):
        lines.pop()  # cut off by the head's end
    return [line for line in lines if line.strip()]


def _json_lines(text: str, complete: bool) -> bool:
    lines = _whole_lines(text, complete)
    if not lines:
        return False
    for line in lines[:50]:
        try:
            if not isinstance(json.loads(line), dict):
                return False
        except ValueError:
            return False
    return True


def looks_like_csv(text: str, *, complete: bool = True) -> bool:
    """True for a table: a header and rows with the same two or more columns, split by ``,`` ``;`` or tab."""
    lines = _whole_lines(text, complete)[:50]
    if len(lines) < 2:
        return False
    try:
        dialect = csv.Sniffer().sniff('\n'.join(lines), delimiters=_CSV_DELIMITERS)
    except csv.Error:
        return False
    rows = list(csv.reader(lines, dialect))
    width = len(rows[0])
    return width >= 2 and all(len(row) == width for row in rows)


def identify(head: bytes, name: str = '', *, complete: bool = True) -> str | None:
    """The content type the bytes show, or ``None`` when they are none of the kinds flowbot reads.

    :param head: the file's first bytes (all of it when ``complete``).
    :param name: the user's file name: ``.csv`` and ``.tsv`` make UTF-8 text a table.
    :param complete: whether ``head`` is the whole file (else its last line may be cut).
    """
    if head.startswith(ZIP_MAGIC):
        return 'application/zip'
    text = _text(head, complete)
    if text is None:
        return None
    stripped = text.lstrip()
    if suffix_type(name) == 'text/csv':
        return 'text/csv'
    if stripped.startswith('{') and _json_lines(text, complete):
        return 'application/x-ndjson'
    if stripped.startswith(('[', '{')):
        return 'application/json'
    if looks_like_csv(text, complete=complete):
        return 'text/csv'
    return 'text/plain'


def identify_file(path: pathlib.Path, name: str = '') -> str | None:
    """:func:`identify` on the first :data:`HEAD_BYTES` of ``path``."""
    with path.open('rb') as fh:
        head = fh.read(HEAD_BYTES + 1)
    return identify(head[:HEAD_BYTES], name or path.name, complete=len(head) <= HEAD_BYTES)
