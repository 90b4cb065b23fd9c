"""The one gate every file passes before it leaves the bot: sent, attached, archived or listed.

A path is only a request. :class:`FileGate` decides with the file system's own answers: the real
path (symlinks resolved) lies inside an allowed root (the data root), it is a regular file, and
it is not the store, its ``-wal``/``-shm``/``-journal``, the pid file or a configured secret
file; those are compared by device and inode, so a hard link or symlink to them is refused as
well. Long path parts, odd file types and OS errors become a plain :class:`FileRefusedError`
whose message is fit for the user and never names a path outside the root.
"""

from __future__ import annotations

import logging
import os
import pathlib
import re
import stat
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO

import attrs

from engine.config import Config, ConfigError
from engine.errors import UserError
from engine.i18n import _

__all__ = [
    'MAX_NAME_BYTES',
    'MAX_PATH_BYTES',
    'FileGate',
    'FileRefusedError',
    'check_name',
    'file_identity',
    'secret_files',
    'sendable_roots',
]

_log = logging.getLogger(__name__)

MAX_NAME_BYTES = 255
"""Longest path part most file systems accept (ext4, btrfs, tmpfs); longer is refused up front."""

MAX_PATH_BYTES = 4_096
"""Longest whole path Linux takes (``PATH_MAX``)."""

_SECRET_KEY = re.compile(r'(token|key|secret|password|credentials?)_file$', re.IGNORECASE)
_SECRET_ENV = re.compile(r'_(TOKEN|KEY|SECRET|PASSWORD|CREDENTIALS?)_FILE$')
_STORE_SUFFIXES = ('', '-wal', '-shm', '-journal')


class FileRefusedError(UserError):
    """A file may not leave the bot; the message says why in words fit for the user."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message
        """The why without the file's name (for reports that name the file already)."""


def _refused(shown: str, reason: str) -> FileRefusedError:
    return FileRefusedError(_('{name} {reason}').format(name=repr(shown), reason=reason), reason)


def check_name(name: str, what: str | None = None) -> None:
    """Refuse names no file system takes: NUL, a part longer than :data:`MAX_NAME_BYTES` bytes.

    :raises FileRefusedError: with a message that does not repeat the (possibly huge) name.
    """
    what = what or _('path')
    if '\x00' in name:
        raise FileRefusedError(_('the {what} contains a NUL character').format(what=what))
    total = len(name.encode('utf-8', 'surrogatepass'))
    if total > MAX_PATH_BYTES:
        raise FileRefusedError(
            _('the {what} is {size} bytes long; the limit is {limit}').format(
                what=what, size=total, limit=MAX_PATH_BYTES
            )
        )
    for part in re.split(r'[/\\]', name):
        size = len(part.encode('utf-8', 'surrogatepass'))
        if size > MAX_NAME_BYTES:
            raise FileRefusedError(
                _('a part of the {what} is {size} bytes long; the limit is {limit}').format(
                    what=what, size=size, limit=MAX_NAME_BYTES
                )
            )


def sendable_roots(config: Config) -> list[pathlib.Path]:
    """Where flow ``files`` may come from: the data root, then the flow folders (shipped pictures, dialog-script files)."""
    from engine.shipped import flow_folders  # it imports the config, as we do

    try:
        folders = flow_folders(config)
    except ConfigError:  # a missing folder is reported where the flows are loaded; it holds no files
        folders = []
    return [config.resolve(config.bot.data_root), *folders]


def secret_files(config: Config, environ: Mapping[str, str] | None = None) -> list[pathlib.Path]:
    """Every secret file the configuration names: ``*token_file``, ``*api_key_file``... in any
    section, and ``$..._TOKEN_FILE``-style environment variables (how :func:`read_secret` finds them)."""
    env = os.environ if environ is None else environ
    named = [v for v in _secret_values(config.sections) if v]
    # Both readings of a relative name: against bot.toml's folder and against the working folder.
    found = [config.resolve(v) for v in named] + [pathlib.Path(v).expanduser() for v in named]
    found += [pathlib.Path(v).expanduser() for k, v in env.items() if _SECRET_ENV.search(k) and v]
    return found


def _secret_values(table: Mapping[str, Any]) -> Iterator[str]:
    for key, value in table.items():
        if isinstance(value, Mapping):
            yield from _secret_values(value)
        elif isinstance(value, str) and _SECRET_KEY.search(key):
            yield value


def file_identity(path: pathlib.Path) -> tuple[int, int] | None:
    """The device and inode ``path`` names now (links followed), or ``None`` when there is nothing there: what
    tells one file from another however it is linked or renamed."""
    try:
        info = path.stat()
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


@attrs.define
class FileGate:
    """Decides whether a file may leave the bot.

    :param roots: folders whose files may leave (the data root; lint adds the flow folders).
    :param protected: files that never leave, whatever links lead to them (store, secrets, pid file).
    """

    roots: tuple[pathlib.Path, ...]
    protected: tuple[pathlib.Path, ...] = ()

    @classmethod
    def from_config(cls, config: Config, *, extra_roots: Iterable[pathlib.Path] = ()) -> FileGate:
        """The gate of a configured bot: its data root (plus ``extra_roots``); store and secrets protected."""
        root = config.resolve(config.bot.data_root)
        protected: list[pathlib.Path] = list(secret_files(config))
        if (store := config.store_file) is not None:  # none for :memory: and PostgreSQL
            protected += [store.with_name(store.name + suffix) for suffix in _STORE_SUFFIXES]
        protected.append(root / 'flowbot.pid')
        if config.path is not None:
            protected.append(config.path)  # bot.toml may hold a token
        return cls(roots=(root, *extra_roots), protected=tuple(protected))

    def _real_roots(self) -> list[pathlib.Path]:
        roots = []
        for root in self.roots:
            try:
                roots.append(root.resolve())
            except (OSError, RuntimeError):
                continue
        return roots

    def _protected_ids(self) -> set[tuple[int, int]]:
        # Stat each time: the -wal appears and disappears as SQLite works, and its inode can change.
        return {ident for p in self.protected if (ident := file_identity(p)) is not None}

    def inside(self, path: pathlib.Path) -> bool:
        """Whether the real path of ``path`` lies in one of the roots (no file system error raised)."""
        try:
            real = path.resolve()
        except (OSError, RuntimeError, ValueError):
            return False
        return any(real.is_relative_to(root) for root in self._real_roots())

    def check(self, path: pathlib.Path | str, *, name: str | None = None) -> pathlib.Path:
        """The real path of a file that may leave the bot.

        :param path: the file to send, attach, archive or list; relative to the data root unless absolute.
        :param name: how the user called it (shown in messages instead of the full path).
        :raises FileRefusedError: outside the roots, not a regular file, protected, unreadable, bad name.
        """
        shown = name if name is not None else pathlib.PurePath(str(path)).name
        shown = shown if len(shown) <= 80 else shown[:77] + '...'
        check_name(str(path), 'file name')
        path = pathlib.Path(path)
        if not path.is_absolute():  # a relative path is taken from the data root, never the working folder
            path = self.roots[0] / path
        try:
            real = path.resolve(strict=True)
        except FileNotFoundError:
            raise _refused(shown, _('does not exist')) from None
        except (OSError, RuntimeError, ValueError) as exc:
            _log.warning('cannot resolve %r: %r', str(path)[:200], exc)
            raise _refused(shown, _('cannot be opened ({reason})').format(reason=_reason(exc))) from None
        if not any(real.is_relative_to(root) for root in self._real_roots()):
            _log.warning('refused %r: its real path is outside %s', str(path)[:200], self.roots)
            raise _refused(shown, _('is outside the data folder'))
        try:
            info = real.stat()
        except OSError as exc:
            raise _refused(shown, _('cannot be opened ({reason})').format(reason=_reason(exc))) from None
        if not stat.S_ISREG(info.st_mode):
            raise _refused(shown, _('is a folder') if stat.S_ISDIR(info.st_mode) else _('is not a regular file'))
        if (info.st_dev, info.st_ino) in self._protected_ids() or real.name.startswith('.'):
            _log.warning('refused %r: it is the store, a secret or a hidden file', str(path)[:200])
            raise _refused(shown, _('is not shareable'))
        if not os.access(real, os.R_OK):
            raise _refused(shown, _('cannot be read'))
        return real

    def open(self, path: pathlib.Path | str, *, name: str | None = None) -> BinaryIO:
        """Open a file that passed :meth:`check` for reading, refusing it if it changed in between
        (swapped for a symlink, a FIFO or a protected file): what is read is what was checked."""
        real = self.check(path, name=name)
        shown = name if name is not None else real.name
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0))
        except OSError as exc:
            raise _refused(shown, _('cannot be opened ({reason})').format(reason=_reason(exc))) from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) in self._protected_ids():
            os.close(fd)
            raise _refused(shown, _('changed while it was being opened; try again'))
        return os.fdopen(fd, 'rb')

    def protects(self, path: pathlib.Path | str) -> bool:
        """Whether ``path`` is (a link to) the store, a secret or the config: never to be overwritten
        by an export or sent."""
        return file_identity(pathlib.Path(path)) in self._protected_ids()

    def allows(self, path: pathlib.Path | str) -> bool:
        """:meth:`check` as a yes/no, for listings that skip what they may not show."""
        try:
            self.check(path)
        except FileRefusedError:
            return False
        return True

    def walk(self, folder: pathlib.Path) -> Iterator[pathlib.Path]:
        """Every file under ``folder`` that may leave (for archives and listings), never following
        symlinked folders; files the gate refuses are skipped and logged."""

        def error(exc: OSError) -> None:
            _log.warning('skipping %s while listing %s: %s', exc.filename, folder, exc.strerror)

        for dirpath, dirnames, filenames in os.walk(folder, onerror=error):
            here = pathlib.Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if not (here / d).is_symlink() and not d.startswith('.'))
            for filename in sorted(filenames):
                file = here / filename
                try:
                    self.check(file)
                except FileRefusedError as exc:
                    _log.info('not listing %s: %s', file, exc)
                    continue
                yield file


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    if isinstance(exc, RuntimeError):
        return _('a symlink loop')
    return _('an invalid name')
