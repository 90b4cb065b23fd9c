"""Resolve the paths users type so that they can only ever reach files under the data root.

A user-named path is a request, not a trusted value: ``..``, absolute paths, drive letters and
symlinks that lead out of the root are refused before anything is opened.
"""

from __future__ import annotations

import logging
import pathlib
import re

from engine.files import FileRefusedError, check_name
from engine.i18n import _
from engine.states.actions import ActionError

__all__ = ['PathRefusedError', 'inside', 'resolve_inside', 'safe_member_name', 'slug']

_log = logging.getLogger(__name__)
_DRIVE = re.compile(r'^[A-Za-z]:')


class PathRefusedError(ActionError):
    """A user-named path points outside the allowed folder or is malformed."""


def inside(path: pathlib.Path, root: pathlib.Path) -> bool:
    """Whether ``path`` (after resolving symlinks) lies within ``root``."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # symlink loops
        return False


def safe_member_name(name: str) -> str | None:
    """The reason a relative name is unsafe (absolute, ``..``, drive, NUL), or ``None`` when it is fine."""
    if not name or not name.strip():
        return _('empty path')
    if '\x00' in name:
        return _('path contains a NUL character')
    normal = name.replace('\\', '/')
    if normal.startswith('/') or _DRIVE.match(normal):
        return _('absolute paths are not allowed')
    if '..' in normal.split('/'):
        return _("'..' is not allowed")
    return None


def _quoted(name: str) -> str:
    """``name`` in quotes as typed (backslashes not doubled); ``repr`` only when it holds control characters."""
    return f"'{name}'" if name.isprintable() and "'" not in name else repr(name)


def resolve_inside(root: pathlib.Path, name: str, *, what: str | None = None) -> pathlib.Path:
    """Resolve the user-typed ``name`` inside ``root``, refusing anything that leads out of it.

    :param root: the folder the user may reach (the data root or the archive folder).
    :param name: what the user typed, relative to ``root``.
    :param what: how to call the path in messages, translated (``_('dataset folder')``); default ``path``.
    :raises PathRefusedError: with a message fit for the user.
    """
    what = what or _('path')
    try:
        check_name(name, what)
    except FileRefusedError as exc:
        raise PathRefusedError(_('{what} refused: {reason}').format(what=what, reason=exc)) from None
    reason = safe_member_name(name)
    if reason:
        raise PathRefusedError(
            _('{what} {value} refused: {reason}; give a path inside the data folder').format(
                what=what, value=_quoted(name), reason=reason
            )
        )
    candidate = root / name.replace('\\', '/').strip('/')
    if not inside(candidate, root):
        _log.warning('path %r resolves outside %s (symlink) and was refused', name, root)
        raise PathRefusedError(
            _('{what} {value} refused: it leads outside the data folder').format(what=what, value=_quoted(name))
        )
    return candidate.resolve()


def slug(text: str, default: str = 'dataset') -> str:
    """A file-name-safe short name derived from user text (for dataset names)."""
    value = re.sub(r'[^\w.-]+', '_', text).strip('._-')[:60]  # letters of any script: Cyrillic names differ too
    return value or default
