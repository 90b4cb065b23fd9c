"""A terminal channel for the engine: how maintainers try flows and the token-less main job.

Input: ``!command args`` or ``/command args``, ``:attach PATH [text]`` to send a file (quote a PATH
with spaces; a text that is a command, ``:attach data.zip !train``, sends the file with it), a number to press one of the offered choices, ``:quit`` (or end of input) to leave,
anything else is a message.
Output: ``bot [id]: text``; the id is what ``!correct`` refers to. A file the bot made for one
conversation (a spoken reply) is copied to ``<data_root>/console/``, so its printed path still opens
after the conversation's temporary folder is gone.
"""

from __future__ import annotations

import asyncio
import getpass
import itertools
import logging
import mimetypes
import pathlib
import shutil
import sys
from collections.abc import Sequence
from typing import TextIO

from engine import i18n
from engine.api import Adapter, Attachment, ChoicePress, Command, ConversationKey, Event, Message, Option, User
from engine.commands import UsageError, split_command
from engine.i18n import _
from engine.messages import interrupt_words
from engine.runtime import Engine
from engine.states import kinds
from engine.states.handlers import question

__all__ = ['ConsoleAdapter', 'run_console']

_log = logging.getLogger(__name__)

MAX_LINE = 20_000
"""Longest input line accepted; longer lines are refused, not truncated."""


class ConsoleAdapter(Adapter):
    """Prints the bot's side of the conversation to a text stream."""

    name = 'console'
    grants_all_permissions = True

    def __init__(
        self,
        out: TextIO = sys.stdout,
        *,
        engine: Engine | None = None,
        temporary_root: pathlib.Path | None = None,
        keep_dir: pathlib.Path | None = None,
    ) -> None:
        """:param engine: types a command's arguments (:meth:`Engine.options`); without one, read lines only
            (commands get no options).
        :param temporary_root: the engine's conversation folders, deleted when a conversation ends.
        :param keep_dir: where files sent from those folders are copied, so the printed path still opens.
        """
        self.out = out
        self.engine = engine
        self.temporary_root = temporary_root
        self.keep_dir = keep_dir
        self._ids = itertools.count(1)
        self._sent: dict[str, str] = {}
        self.offered: dict[ConversationKey, list[Option]] = {}

    def _print(self, text: str) -> str:
        message_id = f'c{next(self._ids)}'
        self._sent[message_id] = text
        self.out.write(f'bot [{message_id}]: {text}\n')
        self.out.flush()
        return message_id

    async def send_text(self, key: ConversationKey, text: str) -> str:
        self.offered.pop(key, None)
        return self._print(text)

    async def send_file(
        self, key: ConversationKey, path: pathlib.Path, *, text: str | None = None, voice_message: bool = False
    ) -> str:
        kind = _('voice message') if voice_message else _('file')
        return self._print(f'{text + " " if text else ""}[{kind}: {self._kept(path)}]')

    def _kept(self, path: pathlib.Path) -> pathlib.Path:
        """A lasting copy of a file from a conversation folder (a synthesised reply); others as they are."""
        if self.temporary_root is None or self.keep_dir is None or not path.is_relative_to(self.temporary_root):
            return path
        try:
            self.keep_dir.mkdir(parents=True, exist_ok=True)
            target = self.keep_dir / path.name
            for n in itertools.count(2):
                if not target.exists():
                    break
                target = self.keep_dir / f'{path.stem}-{n}{path.suffix}'
            shutil.copyfile(path, target)
        except OSError as exc:
            _log.error('could not keep a copy of %s in %s: %s', path, self.keep_dir, exc)
            return path
        return target

    async def ask(self, key: ConversationKey, text: str, options: Sequence[Option]) -> str:
        self.offered[key] = list(options)
        buttons = '  '.join(f'[{i}] {o.label}' for i, o in enumerate(options, start=1))
        return self._print(f'{text}\n    {buttons}')

    async def edit_text(self, key: ConversationKey, message_id: str, text: str) -> None:
        self._sent[message_id] = text
        self.out.write(f'bot [{message_id}, edited]: {text}\n')
        self.out.flush()

    async def fetch_text(self, key: ConversationKey, message_id: str) -> str | None:
        return self._sent.get(message_id)

    def parse(self, line: str, key: ConversationKey, user: User) -> Event | str | None:
        """Turn one input line into an event, an error text, or ``None`` for nothing to do."""
        line = line.rstrip('\r\n')
        if len(line) > MAX_LINE:
            return _('That line is too long ({count} characters, at most {limit}).').format(
                count=len(line), limit=MAX_LINE
            )
        if not line.strip():
            return None
        if line.startswith(':attach'):
            rest = line.partition(' ')[2]
            rest = rest.strip()
            if rest[:1] in ('"', "'"):  # a quoted path may hold spaces
                end = rest.find(rest[0], 1)
                if end < 0:
                    return _("The path's quote is not closed. Usage: :attach PATH [text]")
                path_text, text = rest[1:end], rest[end + 1 :].strip()
            else:
                path_text, _sep, text = rest.partition(' ')
            try:  # ~unknown-user and names over the system's limits cannot even be looked at: not found
                path = pathlib.Path(path_text).expanduser()
                is_dir, is_file = path.is_dir(), path.is_file()
            except (OSError, RuntimeError) as exc:
                _log.info(':attach %r cannot be looked at: %s', path_text[:200], exc)
                is_dir = is_file = False
            if path_text and is_dir:
                return _('{path_text} is a folder; attach a file. Usage: :attach PATH [text]').format(
                    path_text=path_text
                )
            if not path_text or not is_file:
                return _('No such file: {value}. Usage: :attach PATH [text]').format(
                    value=path_text or _('(none given)')
                )
            content_type = mimetypes.guess_type(path.name)[0] or 'application/octet-stream'
            attachment = Attachment(name=path.name, content_type=content_type, size=path.stat().st_size, path=path)
            command = split_command(text, (self.prefix, '/'))
            if command is not None:  # `:attach data.zip !train`: the file goes with the command
                return self._command(key, user, *command, (attachment,))
            return Message(key=key, user=user, text=text, attachments=(attachment,))
        command = split_command(line, (self.prefix, '/'))
        if command is not None:
            return self._command(key, user, *command)
        offered = self.offered.get(key)
        if offered and line.strip().isdigit() and 1 <= int(line.strip()) <= len(offered):
            return ChoicePress(key=key, user=user, value=offered[int(line.strip()) - 1].value)
        return Message(key=key, user=user, text=line)

    def _command(
        self, key: ConversationKey, user: User, name: str, text: str, attachments: Sequence[Attachment] = ()
    ) -> Command | None:
        """The command ``name`` with its arguments typed by the engine; a usage error is the bot's answer
        (printed like any reply) and no command is sent."""
        try:
            options = self.engine.options(name, text, key, attachments) if self.engine is not None else {}
        except UsageError as exc:
            self._print(str(exc))
            return None
        return Command(key=key, user=user, name=name, options=options, attachments=attachments)


async def _remind(engine: Engine, key: ConversationKey, out: TextIO) -> None:
    """A dialog left open (end of input, a restart) is shown again: a fresh terminal has no history,
    and the next line would otherwise answer a question the user cannot see."""
    conv = engine.conversation(key)
    if conv is None:
        return
    spec = question(conv.spec)
    words = interrupt_words(i18n.current())
    if spec is not None:
        out.write(
            _('(the {name} dialog is still open: answer it, or type {cancel})').format(name=conv.compiled.name, **words)
            + '\n'
        )
        out.flush()
        try:
            await kinds.prompt(engine, conv, spec)
        except Exception:
            _log.exception('the open question of %s could not be shown again', conv.compiled.name)
    else:
        out.write(
            _('(the {name} dialog is still running; type {cancel} to stop it)').format(name=conv.compiled.name, **words)
            + '\n'
        )
        out.flush()


async def run_console(engine: Engine, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> None:
    """Read lines until ``:quit`` or end of input, dispatching each to the engine in order."""
    adapter = ConsoleAdapter(
        out, engine=engine, temporary_root=engine.workroot, keep_dir=engine.workroot.parent / 'console'
    )
    engine.add_adapter(adapter)
    user_name = getpass.getuser()
    key = ConversationKey('console', 'local', user_name)
    user = User(id=user_name, name=user_name)
    loop = asyncio.get_running_loop()
    out.write(
        _('flowbot console: {prefix}instruction lists the commands, :quit leaves.').format(prefix=adapter.prefix) + '\n'
    )
    out.flush()
    await _remind(engine, key, out)
    while True:
        line = await loop.run_in_executor(None, stdin.readline)
        if not line or line.strip() == ':quit':
            break
        event = adapter.parse(line, key, user)
        if isinstance(event, str):
            out.write(f'! {event}\n')
            out.flush()
        elif event is not None:
            await engine.dispatch(event)
    if not await engine.wait_idle(timeout=60.0):
        _log.warning('leaving with work still running')
