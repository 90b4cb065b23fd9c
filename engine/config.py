"""Bot configuration: ``bot.toml`` plus environment variables, structured with cattrs.

The engine owns ``[bot]`` and ``[permissions]``; every other table belongs to an integration,
which structures its own section with :func:`section` so the core never grows with them.
"""

from __future__ import annotations

import difflib
import os
import pathlib
import tomllib
from typing import Any, TypeVar

import attrs
import cattrs
import cattrs.v

__all__ = [
    'BotConfig',
    'Config',
    'ConfigError',
    'PermissionGroup',
    'format_exception',
    'load_config',
    'read_secret',
    'section',
]

T = TypeVar('T')

_converter = cattrs.Converter(forbid_extra_keys=True)
_converter.register_structure_hook(pathlib.Path, lambda v, _: pathlib.Path(v))


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


@attrs.define(kw_only=True)
class PermissionGroup:
    """Who belongs to a named permission group: Discord user ids and role ids (as strings)."""

    users: list[str] = attrs.field(factory=list)
    roles: list[str] = attrs.field(factory=list)


@attrs.define(kw_only=True)
class BotConfig:
    name: str = 'flowbot'
    language: str = 'en'
    """The reply language when neither the user nor the server gives one (and the console's)."""
    languages: list[str] = attrs.field(factory=list)
    """Languages every flow text must have (``flowbot lint``: ``missing-translation``); empty: not checked."""
    flows: list[pathlib.Path] | None = None
    """Folders (or files) of flows. Unset: ``flows/`` beside ``bot.toml`` if there is one, else the
    flows shipped with the package (:func:`engine.shipped.flow_folders`)."""
    data_root: pathlib.Path = pathlib.Path('data')
    store: str = 'data/flowbot.sqlite3'
    """SQLite file, ``:memory:``, or a ``postgresql://`` URL (several bot processes share it)."""
    instruction_file: pathlib.Path | None = None
    """Optional markdown appended to the ``instruction`` flow's help."""
    plugins: list[str] = attrs.field(
        factory=lambda: ['integrations.builtin', 'integrations.models', 'integrations.speech']
    )
    progress_interval: float = 1.0
    """Seconds between two edits of one progress message (Discord rate-limits edits)."""
    help_command: str = 'instruction'
    """The command ``help`` runs when no question is open."""
    reload: bool = True
    """Watch the flows folders and hot-reload changed flows."""
    maintainers_channel: str | None = None
    """``adapter:channel`` that receives rejected flow edits."""


@attrs.define(kw_only=True)
class Config:
    bot: BotConfig = attrs.field(factory=BotConfig)
    permissions: dict[str, PermissionGroup] = attrs.field(factory=lambda: {'admins': PermissionGroup()})
    sections: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    """Every other top-level table, for the integrations."""
    path: pathlib.Path | None = None
    read_sections: set[str] = attrs.field(factory=lambda: {'discord'})
    """Sections some integration has read (``[discord]`` is read by ``flowbot run`` itself)."""
    """Where it was loaded from; relative paths are relative to its folder."""

    @property
    def base(self) -> pathlib.Path:
        return self.path.parent if self.path else pathlib.Path.cwd()

    @property
    def store_file(self) -> pathlib.Path | None:
        """The SQLite file of the store, absolute; ``None`` for ``:memory:`` and PostgreSQL."""
        spec = self.bot.store
        if spec == ':memory:' or spec.startswith(('postgresql://', 'postgres://')):
            return None
        return self.resolve(spec)

    @property
    def store_spec(self) -> str:
        """What :func:`engine.store.open_store` takes: the URL, ``:memory:``, or the resolved file."""
        file = self.store_file
        return self.bot.store if file is None else str(file)

    def resolve(self, path: pathlib.Path | str) -> pathlib.Path:
        """Make a configured path absolute against the config file's folder."""
        p = pathlib.Path(path).expanduser()
        return p if p.is_absolute() else self.base / p


def section(config: Config, name: str, cls: type[T]) -> T:
    """Structure the ``[name]`` table into ``cls``, with a message naming the bad key."""
    config.read_sections.add(name)
    try:
        return _converter.structure(config.sections.get(name, {}), cls)
    except Exception as exc:  # cattrs raises ExceptionGroups with the path in their notes
        raise ConfigError(f'[{name}] in {config.path or "config"}: {_describe(exc)}') from exc


def format_exception(exc: BaseException, type_: Any) -> str:
    """cattrs' message for one bad value, but keeping the text of ``ValueError`` s our hooks and
    attrs validators raise for people (cattrs would say only "invalid value")."""
    if isinstance(exc, ValueError) and not isinstance(exc, cattrs.BaseValidationError) and str(exc):
        return str(exc)
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        known = [f.name for f in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        names = ', '.join(key + _did_you_mean(key, known) for key in sorted(exc.extra_fields))
        return f'unknown key{"s" if len(exc.extra_fields) > 1 else ""} {names}'
    return cattrs.v.format_exception(exc, type_)


def _did_you_mean(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ''


def _describe(exc: BaseException) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return '; '.join(cattrs.transform_error(exc, format_exception=format_exception))
    return str(exc)


def read_secret(value: str | None, file: str | pathlib.Path | None, env: str) -> str | None:
    """A secret from the environment, else a file, else the config value; never logged."""
    if os.environ.get(env):
        return os.environ[env].strip()
    file = os.environ.get(f'{env}_FILE') or file
    if file:
        try:
            return pathlib.Path(file).expanduser().read_text(encoding='utf-8').strip() or None
        except OSError as exc:
            raise ConfigError(f'cannot read {env} file {file}: {exc.strerror}') from exc
    return value or None


def load_config(path: pathlib.Path | str | None = None) -> Config:
    """Load ``bot.toml`` (``FLOWBOT_CONFIG`` or ``./bot.toml``).

    A missing ``./bot.toml`` means all defaults; a file named by ``path`` or ``FLOWBOT_CONFIG`` must exist,
    so a typo in its name never starts the bot on defaults.
    """
    named = 'the -c option' if path else 'FLOWBOT_CONFIG' if os.environ.get('FLOWBOT_CONFIG') else None
    path = pathlib.Path(path or os.environ.get('FLOWBOT_CONFIG') or 'bot.toml')
    if named and not path.is_file():
        raise ConfigError(f'no configuration file at {path} (named by {named})')
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding='utf-8'))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f'{path}: {exc}') from exc
    core = {k: raw.pop(k) for k in ('bot', 'permissions') if k in raw}
    try:
        config = _converter.structure(core, Config)
    except Exception as exc:
        raise ConfigError(f'{path}: {_describe(exc)}') from exc
    config.sections = raw
    config.path = path.resolve() if path.exists() else None
    if os.environ.get('FLOWBOT_DATA'):
        config.bot.data_root = pathlib.Path(os.environ['FLOWBOT_DATA'])
    if os.environ.get('FLOWBOT_STORE'):
        config.bot.store = os.environ['FLOWBOT_STORE']
    return config
