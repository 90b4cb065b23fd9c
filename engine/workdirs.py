"""Per-conversation work folders under ``<data_root>/tmp``: made on first use, removed when it ends."""

from __future__ import annotations

import logging
import pathlib
import re
import shutil

from engine.api import ConversationKey

__all__ = ['WorkFolders', 'folder_name']

_log = logging.getLogger(__name__)

_UNSAFE = re.compile(r'[\W_]')
"""Characters that are not ``str.isalnum()`` (checked over every code point)."""


def folder_name(key: ConversationKey) -> str:
    """The folder name of a conversation: its key with every non-alphanumeric character as ``_``."""
    return _UNSAFE.sub('_', f'{key.adapter}_{key.channel}_{key.user}')


class WorkFolders:
    """The work folders of the conversations, one per key, under :attr:`root`.

    :param root: the folder holding them (created with the first one).
    """

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self._names: set[str] | None = None
        """Names of the folders in ``root`` (listed once, then tracked), so ending a conversation
        that never had one, as most do, costs no file system call."""

    def path(self, key: ConversationKey) -> pathlib.Path:
        """The conversation's folder, created if needed."""
        name = folder_name(key)
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        self._existing().add(name)
        return path

    def remove(self, key: ConversationKey) -> None:
        """Delete the conversation's folder if it has one (no name is made when there are no folders: most
        conversations end without one)."""
        names = self._existing()
        if not names:
            return
        name = folder_name(key)
        if name in names:
            names.discard(name)
            shutil.rmtree(self.root / name, ignore_errors=True)

    def _existing(self) -> set[str]:
        if self._names is None:
            try:
                self._names = {p.name for p in self.root.iterdir() if p.is_dir()}
            except FileNotFoundError:
                self._names = set()
            except OSError as exc:
                _log.warning('cannot list the conversation folders in %s: %r', self.root, exc)
                self._names = set()
        return self._names
