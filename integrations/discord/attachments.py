"""Attachment downloads: size limit, content-type check, streamed into a per-conversation folder.

Files get generated names (the user's file name is only ever display text) in a folder per conversation
key, removed by :meth:`Downloads.close` when the conversation ends.
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
    'image/jpeg': '.jpg',
}


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
    return f'{size / 1024 / 1024:.1f} MB'


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

    def check(self, remote: RemoteFile) -> str | None:
        """Why ``remote`` is refused, as a message for the user, or ``None`` when it is acceptable."""
        ctype = content_type_of(remote)
        if self.allowed and not any(ctype.startswith(prefix) for prefix in self.allowed):
            return f'I cannot take {remote.filename!r}: files of type {ctype} are not accepted.'
        if remote.size > self.max_bytes:
            return f'{remote.filename!r} is {_mb(remote.size)}; the limit is {_mb(self.max_bytes)}.'
        return None

    async def fetch(self, key: ConversationKey, remote: RemoteFile) -> Attachment:
        """Download ``remote`` into the conversation's folder.

        :raises AttachmentError: refused, oversize while streaming, or the download failed.
        """
        reason = self.check(remote)
        if reason is not None:
            raise AttachmentError(reason)
        ctype = content_type_of(remote)
        suffix = _SUFFIXES.get(ctype) or mimetypes.guess_extension(ctype) or '.bin'
        path = self.folder(key) / f'{uuid.uuid4().hex}{suffix}'
        size = 0
        try:
            async with self._get(remote.url) as chunks:
                with path.open('wb') as out:
                    async for chunk in chunks:
                        size += len(chunk)
                        if size > self.max_bytes:
                            raise AttachmentError(f'{remote.filename!r} is larger than {_mb(self.max_bytes)}.')
                        out.write(chunk)
        except AttachmentError:
            path.unlink(missing_ok=True)
            raise
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            path.unlink(missing_ok=True)
            _log.warning('downloading attachment %r for %s failed: %r', remote.filename, key, exc)
            raise AttachmentError(f'I could not download {remote.filename!r}; please send it again.') from exc
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
