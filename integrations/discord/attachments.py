"""Attachment downloads: size limit, type check by content, streamed into a per-conversation folder.

Discord's content type is a hint, not the verdict: it is missing for extensions Discord does not know
(``.jsonl``) and generic for others, so anything that is not audio, video or an image is judged after
the download by its bytes and name (:func:`engine.filetypes.identify`: ZIP signature, UTF-8 text, JSON
lines, CSV). Files get generated names (the user's file name is only ever display text) in a folder per
conversation key, removed by :meth:`Downloads.close` when the conversation ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mimetypes
import pathlib
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol

import aiohttp
import attrs

from engine.api import Attachment, ConversationKey
from engine.filetypes import HEAD_BYTES, identify, suffix_type
from engine.i18n import _, format_number
from engine.states.actions import ActionError

__all__ = ['AttachmentError', 'Downloads', 'RemoteFile', 'content_type_of']

_log = logging.getLogger(__name__)

_SUFFIXES = {
    'audio/ogg': '.ogg',
    'application/ogg': '.ogg',
    'audio/mpeg': '.mp3',
    'audio/wav': '.wav',
    'audio/x-wav': '.wav',
    'audio/webm': '.webm',
    'audio/mp4': '.m4a',
    'text/plain': '.txt',
    'text/csv': '.csv',
    'image/jpeg': '.jpg',
    'application/zip': '.zip',
    'application/json': '.json',
    'application/x-ndjson': '.jsonl',
}
_MEDIA = ('audio/', 'video/', 'image/', 'application/ogg')
"""Types taken as declared: Discord labels these from the file itself, and the decoders check them."""
_UNKNOWN = ('', 'application/octet-stream')


class AttachmentError(ActionError):
    """An attachment that is refused (too big, wrong type) or could not be fetched; the text is for the user."""


class RemoteFile(Protocol):
    """What is needed of a platform attachment (``hikari.Attachment`` fits)."""

    @property
    def filename(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def url(self) -> str: ...

    @property
    def media_type(self) -> str | None: ...

    @property
    def duration(self) -> float | None: ...


def content_type_of(remote: RemoteFile) -> str:
    """The declared content type without parameters, else a guess from the name, else octet-stream."""
    declared = (remote.media_type or '').split(';')[0].strip().lower()
    return declared or mimetypes.guess_type(remote.filename)[0] or 'application/octet-stream'


def _mb(size: int) -> str:
    return _('{size} MB').format(size=format_number(size / 1024 / 1024, 1))


@attrs.define
class Downloads:
    """Fetches attachments for one adapter.

    :param max_bytes: larger files are refused (declared size first, then while streaming).
    :param allowed: content-type prefixes that are accepted; empty accepts everything.
    :param root: parent of the per-conversation folders (default: a fresh temporary folder).
    :param session: an ``aiohttp`` session factory (tests and proxies); a shared session by default.
    """

    max_bytes: int
    allowed: Sequence[str] = ()
    root: pathlib.Path = attrs.field(factory=lambda: pathlib.Path(tempfile.mkdtemp(prefix='flowbot-discord-')))
    chunk_size: int = 64 * 1024
    session_factory: Callable[[], aiohttp.ClientSession] = aiohttp.ClientSession
    _session: aiohttp.ClientSession | None = attrs.field(default=None, init=False)
    _folders: set[str] | None = attrs.field(default=None, init=False)
    """Names of the conversation folders under ``root`` (read from disk once, then kept up to date), so
    closing a conversation that downloaded nothing, as most do, costs no file system call."""

    def folder(self, key: ConversationKey) -> pathlib.Path:
        """The conversation's folder (created); its name is a digest, never user text."""
        digest = _digest(key)
        path = self.root / digest
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._existing().add(digest)
        return path

    def _existing(self) -> set[str]:
        if self._folders is None:
            try:
                self._folders = {p.name for p in self.root.iterdir() if p.is_dir()}
            except FileNotFoundError:
                self._folders = set()
            except OSError as exc:
                _log.warning('cannot list the download folder %s: %r', self.root, exc)
                self._folders = set()
        return self._folders

    def _accepts(self, ctype: str) -> bool:
        return not self.allowed or any(ctype.startswith(prefix) for prefix in self.allowed)

    def check(self, remote: RemoteFile) -> str | None:
        """Why ``remote`` is refused before downloading, as a message for the user, or ``None`` to fetch it.

        An unlabelled file, or one whose name promises a dataset format, is fetched and judged by its content.
        """
        if remote.size > self.max_bytes:
            return _('{filename!r} is {value}; the limit is {value2}.').format(
                filename=remote.filename, value=_mb(remote.size), value2=_mb(self.max_bytes)
            )
        ctype = content_type_of(remote)
        if self._accepts(ctype) or ctype in _UNKNOWN or suffix_type(remote.filename) is not None:
            return None
        return _('I cannot take {filename!r}: files of type {ctype} are not accepted.').format(
            filename=remote.filename, ctype=ctype
        )

    def judge(self, remote: RemoteFile, head: bytes, complete: bool) -> str:
        """The content type of a downloaded file, from its first bytes and name.

        :raises AttachmentError: it is not what its name says, or no kind that is accepted.
        """
        declared = content_type_of(remote)
        if declared.startswith(_MEDIA) and self._accepts(declared):
            return declared
        found = identify(head, remote.filename, complete=complete)
        promised = suffix_type(remote.filename)
        name = remote.filename
        if promised == 'application/zip' and found != promised:
            raise AttachmentError(
                _('{name!r} is not a ZIP file (it does not start like one); please send it again.').format(name=name)
            )
        if promised is not None and found is None:
            raise AttachmentError(
                _('{name!r} is not UTF-8 text; save it as UTF-8 and send it again.').format(name=name)
            )
        if found is None and (declared in _UNKNOWN or declared.startswith(('text/', 'application/json'))):
            raise AttachmentError(
                _('I cannot take {name!r}: it is not a ZIP, JSON lines, JSON, CSV, text, audio or image file.').format(
                    name=name
                )
            )
        text_kinds = promised is not None and found is not None and 'application/zip' not in (promised, found)
        ctype = promised if text_kinds and promised else found or declared  # a .txt holding JSON stays text
        if not self._accepts(ctype):
            raise AttachmentError(
                _('I cannot take {name!r}: files of type {ctype} are not accepted.').format(name=name, ctype=ctype)
            )
        return ctype

    async def fetch(self, key: ConversationKey, remote: RemoteFile) -> Attachment:
        """Download ``remote`` into the conversation's folder and judge what it is.

        :raises AttachmentError: refused, oversize while streaming, not what it claims, or the download failed.
        """
        reason = self.check(remote)
        if reason is not None:
            raise AttachmentError(reason)
        part = self.folder(key) / f'{uuid.uuid4().hex}.part'
        size = 0
        head = b''
        try:
            async with self._get(remote.url) as chunks:
                with part.open('wb') as out:
                    async for chunk in chunks:
                        size += len(chunk)
                        if size > self.max_bytes:
                            raise AttachmentError(
                                _('{filename!r} is larger than {value}.').format(
                                    filename=remote.filename, value=_mb(self.max_bytes)
                                )
                            )
                        if len(head) <= HEAD_BYTES:
                            head += chunk[: HEAD_BYTES + 1 - len(head)]
                        out.write(chunk)
            ctype = self.judge(remote, head[:HEAD_BYTES], complete=len(head) <= HEAD_BYTES)
        except AttachmentError:
            part.unlink(missing_ok=True)
            raise
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            part.unlink(missing_ok=True)
            _log.warning('downloading attachment %r for %s failed: %r', remote.filename, key, exc)
            raise AttachmentError(
                _('I could not download {filename!r}; please send it again.').format(filename=remote.filename)
            ) from exc
        suffix = _SUFFIXES.get(ctype) or mimetypes.guess_extension(ctype) or '.bin'
        path = part.rename(part.with_suffix(suffix))
        return Attachment(
            name=remote.filename, content_type=ctype, size=size, path=path, url=remote.url, duration=remote.duration
        )

    @contextlib.asynccontextmanager
    async def _get(self, url: str) -> AsyncIterator[AsyncIterator[bytes]]:
        if self._session is None or self._session.closed:
            self._session = self.session_factory()
        async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=120)) as response:
            response.raise_for_status()
            yield response.content.iter_chunked(self.chunk_size)

    async def close(self, key: ConversationKey) -> None:
        """Delete the conversation's files."""
        existing = self._existing()
        if not existing:
            return
        digest = _digest(key)
        if digest in existing:
            existing.discard(digest)
            shutil.rmtree(self.root / digest, onerror=_log_removal_error)

    async def aclose(self) -> None:
        """Close the HTTP session and remove every downloaded file."""
        if self._session is not None:
            await self._session.close()
        shutil.rmtree(self.root, onerror=_log_removal_error)
        self._folders = None


def _digest(key: ConversationKey) -> str:
    return hashlib.sha256(str(key).encode()).hexdigest()[:24]


def _log_removal_error(fn: object, path: str, exc_info: tuple[type[BaseException], BaseException, object]) -> None:
    if not isinstance(exc_info[1], FileNotFoundError):
        _log.warning('cannot remove downloaded file %s: %r', path, exc_info[1])
