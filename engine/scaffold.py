"""``flowbot init [FOLDER]``: a bot folder of its own, made from the shipped flows.

The folder gets a commented ``bot.toml``, a copy of the shipped flows and their dialog scripts to
edit, an empty ``data/`` and a ``.gitignore``. Nothing that exists is replaced without ``force``,
and a failed write takes back what this run created, so a folder is never left half made.
"""

from __future__ import annotations

import logging
import pathlib
import shlex
import shutil

import attrs

from engine import i18n
from engine.errors import FlowbotError
from engine.i18n import _
from engine.shipped import shipped_flows

__all__ = ['BOT_TOML', 'GITIGNORE', 'InitError', 'InitResult', 'init_folder', 'next_steps']

_log = logging.getLogger(__name__)

BOT_TOML = """\
# flowbot settings for this bot folder. Every key has a default; relative paths are relative to
# this file's folder. `flowbot chat` and `flowbot run` read ./bot.toml (or -c FILE, or $FLOWBOT_CONFIG).

[bot]
name = "flowbot"
language = "en"                  # reply language when Discord gives none (the console's); "ru" for Russian
languages = ["en", "ru"]         # `flowbot lint` reports a flow text missing one of these translations
flows = ["flows"]                # folders of flow files; edits are picked up while the bot runs
data_root = "data"               # datasets, models, archives, files the console keeps
store = "data/flowbot.sqlite3"   # conversations, feedback, corrections, jobs (":memory:" keeps nothing)
# instruction_file = "HELP.md"   # markdown added to the !instruction help

# Who may run the admin commands (!select_dataset, !train, !test, !archive, !getfile, !jobs):
# Discord user ids and role ids, as strings.
[permissions.admins]
users = []
roles = []

[discord]
# The bot token: $DISCORD_TOKEN, or a file named by $DISCORD_TOKEN_FILE or token_file below.
# Keep it out of this file. Without a token, `flowbot run` starts the console chat.
# token_file = "/run/secrets/discord"
prefix = "!"
# guild_ids = [123456789012345678]   # register slash commands in these servers at once (empty: globally)
# Listening in voice channels (!listen, !join listen=yes): what members say is answered like a message.
# listen_grammar = ["yes", "no"]     # restrict recognition to these phrases (default: free speech)
# listen_record_dir = "data/heard"   # keep each heard utterance as a WAV (default: no audio is stored)

[models]
# OpenAI when a key is set ($OPENAI_API_KEY, $OPENAI_API_KEY_FILE or api_key_file below),
# else a local scikit-learn model trained on this machine.
provider = "auto"                # auto | openai | local
# api_key_file = "/run/secrets/openai"

[speech]
# Voice messages are recognised with vosk, one model per language, installed with
# `flowbot speech install vosk-model-small-en-us-0.15` (Russian: vosk-model-small-ru-0.22).
# Speech follows the reply language when [speech.models] has a model for it, else this one.
language = "en"
"""

GITIGNORE = """\
# flowbot: the store, datasets, models and console files are data, not sources.
/data/
*.sqlite3*
__pycache__/
"""


_SPEECH_MODELS = {'en': 'vosk-model-small-en-us-0.15', 'ru': 'vosk-model-small-ru-0.22'}
"""The speech model ``next_steps`` suggests, by the language of the terminal (docs/speech.md)."""


class InitError(FlowbotError):
    """The folder cannot be made; the message names the paths and what to do."""


@attrs.frozen
class InitResult:
    """What ``flowbot init`` made, for the next steps it prints."""

    folder: pathlib.Path
    flows: int
    """How many flow files were copied."""


def _plan(folder: pathlib.Path) -> tuple[dict[pathlib.Path, bytes | pathlib.Path], list[pathlib.Path]]:
    """The files to write (relative path → text or a shipped file to copy) and the folders to make."""
    source = shipped_flows()
    files: dict[pathlib.Path, bytes | pathlib.Path] = {
        pathlib.Path('bot.toml'): BOT_TOML.encode(),
        pathlib.Path('.gitignore'): GITIGNORE.encode(),
    }
    folders = [pathlib.Path('data'), pathlib.Path('flows')]
    for path in sorted(source.rglob('*')):
        rel = pathlib.Path('flows') / path.relative_to(source)
        if '__pycache__' in rel.parts:
            continue
        if path.is_dir():
            folders.append(rel)
        elif path.is_file():
            files[rel] = path
    return files, folders


def _in_the_way(
    folder: pathlib.Path, files: list[pathlib.Path], folders: list[pathlib.Path]
) -> tuple[list[str], list[str]]:
    """What exists where this run writes: ``(replaceable, blocking)``.

    Replaceable: files (links too, even dangling ones) where a file goes, and files where a folder goes.
    Blocking: folders where a file goes, which even ``--force`` does not remove, and links to folders
    where files go (``flows -> /etc``): writing through them would write outside the bot folder.
    """
    replaceable, blocking = [], []
    for rel in folders:
        path = folder / rel
        if path.is_symlink() and path.is_dir() and rel != pathlib.Path('data'):  # data/ gets no files from init
            blocking.append(
                _('{path}/ (a link to another folder: files are never written through links)').format(path=rel)
            )
        elif (path.exists() or path.is_symlink()) and not path.is_dir():
            replaceable.append(_('{path} (a file where the folder {path}/ goes)').format(path=rel))
    for rel in files:
        path = folder / rel
        if path.is_dir() and not path.is_symlink():
            blocking.append(_('{path}/ (a folder where the file {path} goes)').format(path=rel))
        elif path.exists() or path.is_symlink():
            replaceable.append(str(rel))
    return replaceable, blocking


def _listed(items: list[str]) -> str:
    return ''.join(f'\n  {item}' for item in items)


def _first_existing(folder: pathlib.Path) -> pathlib.Path:
    return next(p for p in [folder, *folder.parents] if p.exists() or p.is_symlink())


def init_folder(folder: pathlib.Path, *, force: bool = False) -> InitResult:
    """Make ``folder`` a bot folder (creating it and its parents if needed).

    :param force: replace existing files (links are replaced, never written through); folders in
        the way of a file are never removed.
    :raises InitError: something is in the way (without ``force``), or a write failed; in both
        cases nothing this run created is left behind.
    """
    try:
        existing = _first_existing(folder)
    except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL, no permission to look
        error = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise InitError(_('{path}: cannot read: {error}').format(path=folder, error=error)) from None
    if not existing.is_dir():
        if existing == folder:
            raise InitError(_('{folder} is a file, not a folder; nothing was written').format(folder=folder))
        raise InitError(
            _('{path}, on the way to {folder}, is a file, not a folder; nothing was written').format(
                path=existing, folder=folder
            )
        )
    files, folders = _plan(folder)
    replaceable, blocking = _in_the_way(folder, list(files), folders)
    if blocking:
        raise InitError(
            _('{folder} has folders in the way; nothing was written (move them away):').format(folder=folder)
            + _listed(blocking)
        )
    if replaceable and not force:
        raise InitError(
            _(
                '{folder} already has these files; nothing was written '
                '(rerun with --force to replace them, or choose another FOLDER):'
            ).format(folder=folder)
            + _listed(replaceable)
        )
    created: list[pathlib.Path] = []
    try:
        for parent in reversed([folder, *folder.parents]):
            if not parent.exists():
                parent.mkdir()
                created.append(parent)
        for rel in folders:
            path = folder / rel
            if (path.exists() or path.is_symlink()) and not path.is_dir():
                path.unlink()  # only with force: a file or link where a folder goes
            if not path.is_dir():
                path.mkdir()
                created.append(path)
        for rel, content in files.items():
            path = folder / rel
            existed = path.exists() or path.is_symlink()
            if existed:
                path.unlink()  # replaced, never written through: a symlink or a hard link shares it with another file
            if isinstance(content, pathlib.Path):
                shutil.copyfile(content, path)
            else:
                path.write_bytes(content)
            if not existed:
                created.append(path)
    except OSError as exc:
        _undo(created)
        raise InitError(
            _('cannot write {path}: {error}; what this run created was removed').format(
                path=exc.filename or folder, error=exc.strerror or exc
            )
        ) from exc
    return InitResult(
        folder=folder,
        flows=sum(1 for rel in files if rel.parent == pathlib.Path('flows') and rel.suffix == '.toml'),
    )


def _undo(created: list[pathlib.Path]) -> None:
    for path in reversed(created):
        try:
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()
        except OSError:
            _log.warning('could not remove %s after a failed flowbot init', path, exc_info=True)


def next_steps(result: InitResult) -> str:
    """What was made and what to do next, for people."""
    folder = result.folder
    cd = f'cd {shlex.quote(str(folder))}' if folder.resolve() != pathlib.Path.cwd().resolve() else None
    speech_model = _SPEECH_MODELS.get(i18n.current(), _SPEECH_MODELS['en'])
    flows = i18n.ngettext('{count} flow to edit', '{count} flows to edit', result.flows).format(count=result.flows)
    lines = [
        _('A bot folder is ready in {folder}:').format(folder=folder.resolve()),
        '  bot.toml       ' + _('the settings, commented'),
        '  flows/         ' + _('{flows}; flows/tests/ holds their dialog scripts').format(flows=flows),
        '  data/          ' + _('the store, datasets and models (kept out of git by .gitignore)'),
        '',
        _('Next:'),
        *([f'  {cd}'] if cd else []),
        '  flowbot chat                        ' + _('talk to the bot in this terminal: try !hi and !instruction'),
        '  flowbot test                        ' + _('run the dialog scripts after editing a flow'),
        '  export DISCORD_TOKEN=...            ' + _('then `flowbot run` serves Discord (or set [discord] token_file)'),
        '  export OPENAI_API_KEY=...           ' + _('train and chat with OpenAI models (without it: a local model)'),
        f'  flowbot speech install {speech_model}',
        '                                      ' + _('a speech model, to answer voice messages in your language'),
    ]
    lang = i18n.current()
    if lang != 'en' and lang in i18n.available():
        step = f'  language = "{lang}" ([bot])'
        lines.insert(lines.index(_('Next:')) + 1, step.ljust(38) + _('in bot.toml: the bot answers in this language'))
    return '\n'.join(lines)
