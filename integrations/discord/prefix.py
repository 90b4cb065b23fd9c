"""Prefix commands (``!weather "New York" days=3``): lightbulb 3 has none, so messages are read here.

The arguments are typed by the engine's shared parser (:func:`engine.commands.parse_arguments`: shlex
quoting, positional or ``name=value``, the last text option takes the rest of the line), so ``!cmd`` and
``/cmd`` give the same options on every adapter. This module decides which messages are commands and
checks the arguments *before* attachments are downloaded, so a wrong call costs no download.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from engine.api import Attachment
from engine.commands import UsageError, parse_arguments, split_command

from .attachments import RemoteFile, content_type_of
from .commands import CommandSpec

__all__ = ['PrefixCommand', 'UsageError', 'check_arguments', 'find_command', 'typed_options']

_NAME_RX = re.compile(r'^[-_\w]{1,32}$')


@attrs.frozen
class PrefixCommand:
    """A message that is a command: the name as typed, its spec when the command is known, the argument text."""

    name: str
    spec: CommandSpec | None
    args: str

    @property
    def command(self) -> str:
        """The name the engine knows the flow by (aliases resolved)."""
        return self.spec.command if self.spec is not None else self.name


def find_command(content: str, prefix: str, commands: Mapping[str, CommandSpec]) -> PrefixCommand | None:
    """The command ``content`` invokes, ``None`` for a free message.

    Known commands, the interrupts (``!cancel``, ``!back``, ``!help``) and any other ``!word`` are commands
    (the engine answers unknown ones with "did you mean …"); ``!!!`` or ``! hi`` are free messages.
    """
    found = split_command(content.strip(), [prefix]) if prefix else None
    if found is None or not _NAME_RX.match(found[0]):
        return None
    name, args = found
    return PrefixCommand(name=name, spec=commands.get(name), args=args)


def _placeholder(remote: RemoteFile) -> Attachment:
    return Attachment(name=remote.filename, content_type=content_type_of(remote), size=remote.size, url=remote.url)


def check_arguments(command: PrefixCommand, remotes: Sequence[RemoteFile], prefix: str) -> dict[str, Any]:
    """Raise :class:`UsageError` (with the usage line) if the arguments do not fit; nothing is downloaded.

    Returns the typed options, attachment options holding stand-ins: without attachments they are final.
    """
    if command.spec is None:
        return {}
    return parse_arguments(
        command.spec.name, command.spec.trigger, command.args, [_placeholder(r) for r in remotes], prefix=prefix
    )


def typed_options(command: PrefixCommand, attachments: Sequence[Attachment], prefix: str) -> dict[str, Any]:
    """The typed options, attachment options filled with the downloaded files in message order."""
    if command.spec is None:
        return {}
    return parse_arguments(command.spec.name, command.spec.trigger, command.args, attachments, prefix=prefix)
