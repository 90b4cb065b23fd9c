"""Bot configuration: ``bot.toml`` plus environment variables, structured with cattrs.

The engine owns ``[bot]`` and ``[permissions]``; every other table belongs to an integration,
which structures its own section with :func:`section` so the core never grows with them.
"""

from __future__ import annotations

import difflib
import math
import os
import pathlib
import re
import tomllib
import typing
from typing import Any, TypeVar

import attrs
import cattrs
import cattrs.v
from cattrs.gen import make_dict_structure_fn

from engine.errors import FlowbotError
from engine.i18n import N_, _, ngettext

__all__ = [
    'BotConfig',
    'Config',
    'ConfigError',
    'PermissionGroup',
    'format_exception',
    'load_config',
    'looks_like_secret',
    'read_secret',
    'redact',
    'section',
]

T = TypeVar('T')

_converter = cattrs.Converter(forbid_extra_keys=True)

_SECRET = re.compile(
    r'\b(?:sk-[A-Za-z0-9_-]{8,}|[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{10,}|(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{32,})'
)


def looks_like_secret(value: str) -> bool:
    """Whether ``value`` holds something shaped like an API key or a bot token (never echo it)."""
    return bool(_SECRET.search(value))


def redact(text: str) -> str:
    """``text`` with anything shaped like a key or token replaced by ``[hidden]``."""
    return _SECRET.sub('[hidden]', text)


def _kind(value: Any) -> str:
    """What a TOML value is, in words (never the value itself: it may be a secret)."""
    if isinstance(value, bool):
        return _('true/false')
    if isinstance(value, int | float):
        return _('a number')
    if isinstance(value, str):
        return _('a string')
    if isinstance(value, list):
        return _('a list')
    if isinstance(value, dict):
        return _('a table')
    return type(value).__name__


def _strict(kind: type | tuple[type, ...], expected: str, convert: Any = None) -> Any:
    """A structure hook that takes exactly TOML's ``kind`` (no ``"no"`` → true, no ``1`` → text)."""

    def hook(value: Any, _type: Any) -> Any:
        if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind):
            raise ValueError(_('expected {expected}, not {actual}').format(expected=_(expected), actual=_kind(value)))
        return convert(value) if convert else value

    return hook


def _not_nan(value: float) -> float:
    """TOML's ``nan`` is a float, but no setting means it: every comparison with it is false (a rate limit
    that never holds, a timer that fires at once), so it is refused like a wrong type."""
    if math.isnan(value):
        raise ValueError(_('expected {expected}, not {actual}').format(expected=_('a number'), actual='nan'))
    return float(value)


def _origin(type_: Any) -> Any:
    return typing.get_origin(type_)


def _strict_list(value: Any, type_: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(_('expected a list (e.g. ["a", "b"]), not {actual}').format(actual=_kind(value)))
    (item,) = typing.get_args(type_) or (Any,)
    items = []
    for i, entry in enumerate(value):
        try:
            items.append(_converter.structure(entry, item))
        except ValueError as exc:
            raise ValueError(_('item {number}: {error}').format(number=i + 1, error=exc)) from None
    return items


def _strict_dict(type_: Any) -> Any:
    """cattrs' own mapping hook (it names the bad key), refusing anything but a table first."""
    inner = _converter.gen_structure_mapping(type_)

    def hook(value: Any, t: Any) -> dict[Any, Any]:
        if not isinstance(value, dict):
            raise ValueError(_('expected a table, not {actual}').format(actual=_kind(value)))
        result: dict[Any, Any] = inner(value, t)
        return result

    return hook


def _strict_attrs(cls: Any) -> Any:
    """cattrs' hook for a settings class (unknown keys refused), refusing anything but a table first."""
    inner = make_dict_structure_fn(cls, _converter, _cattrs_forbid_extra_keys=True)

    def hook(value: Any, t: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError(_('expected a table, not {actual}').format(actual=_kind(value)))
        return inner(value, t)

    return hook


_converter.register_structure_hook_factory(attrs.has, _strict_attrs)
_converter.register_structure_hook(str, _strict(str, N_('a string')))
_converter.register_structure_hook(bool, _strict(bool, N_('true or false')))
_converter.register_structure_hook(int, _strict(int, N_('a whole number')))
_converter.register_structure_hook(float, _strict((int, float), N_('a number'), _not_nan))
_converter.register_structure_hook(pathlib.Path, _strict(str, N_('a path (a string)'), pathlib.Path))
_converter.register_structure_hook_func(lambda t: _origin(t) is list, _strict_list)
_converter.register_structure_hook_factory(lambda t: _origin(t) is dict, _strict_dict)


class ConfigError(FlowbotError):
    """The configuration cannot be used; the message says where and why."""


@attrs.define(kw_only=True)
class PermissionGroup:
    """Who belongs to a named permission group: Discord user ids and role ids (as strings)."""

    users: list[str] = attrs.field(factory=list)
    roles: list[str] = attrs.field(factory=list)


@attrs.define(kw_only=True)
class BotConfig:
    """``[bot]``: what the engine itself reads; the plugins read their own sections (:attr:`Config.sections`)."""

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
    progress_interval: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    """Seconds between two edits of one progress message (Discord rate-limits edits)."""
    help_command: str = 'instruction'
    """The command ``help`` runs when no question is open."""
    reload: bool = True
    """Watch the flows folders and hot-reload changed flows."""
    maintainers_channel: str | None = None
    """``adapter:channel`` that receives rejected flow edits."""


@attrs.define(kw_only=True)
class Config:
    """``bot.toml``, checked: ``[bot]``, ``[permissions.*]`` and the plugins' sections, with where it came from."""

    bot: BotConfig = attrs.field(factory=BotConfig)
    permissions: dict[str, PermissionGroup] = attrs.field(factory=lambda: {'admins': PermissionGroup()})
    sections: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    """Every other top-level table, for the integrations."""
    path: pathlib.Path | None = None
    """Where it was loaded from; relative paths are relative to its folder."""
    source: str = ''
    """The text of the file, for file:line in messages."""
    read_sections: set[str] = attrs.field(factory=lambda: {'discord'})
    """Sections some integration has read (``[discord]`` is read by ``flowbot run`` itself)."""

    @property
    def base(self) -> pathlib.Path:
        """The folder relative paths start from: ``bot.toml``'s, or the working folder without one."""
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
        raise ConfigError(_located(exc, config.path, config.source, name)) from None


def format_exception(exc: BaseException, type_: Any) -> str:
    """cattrs' message for one bad value, in the current language, but keeping the text of ``ValueError`` s
    our hooks and attrs validators raise for people (cattrs would say only "invalid value")."""
    if isinstance(exc, ValueError) and not isinstance(exc, cattrs.BaseValidationError) and str(exc):
        return str(exc)
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        known = [f.name for f in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        names = ', '.join(key + _did_you_mean(key, known) for key in sorted(exc.extra_fields))
        return ngettext('unknown key {names}', 'unknown keys {names}', len(exc.extra_fields)).format(names=names)
    text = cattrs.v.format_exception(exc, type_)
    text = text.replace('required field missing', _('missing required key'))
    wrong = _('wrong type: expected {type}')
    return re.sub(r'invalid value for type, expected (\w+)', lambda m: wrong.format(type=m.group(1)), text)


def _did_you_mean(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return _(' (did you mean "{word}"?)').format(word=close[0]) if close else ''


def _describe(exc: BaseException) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return redact('; '.join(cattrs.transform_error(exc, format_exception=format_exception)))
    return redact(str(exc))


def _located(exc: BaseException, file: pathlib.Path | None, text: str, section: str | None = None) -> str:
    """Each problem as ``file:line: [section] key: message``; values shaped like secrets are hidden."""
    from engine.flows.loader import LineIndex  # the flow loader's TOML line finder; imported late (it imports us)

    if not isinstance(exc, cattrs.BaseValidationError):
        return f'{file or "config"}: {redact(str(exc))}'
    index = LineIndex(text)
    lines = []
    for message in cattrs.transform_error(exc, path='$', format_exception=format_exception):
        what, _sep, where = message.partition(' @ $')
        keys = [k.strip('[]\'"') for k in re.split(r'\.|(?=\[)', where) if k.strip('[]\'"')]
        toml_path = [section, *keys] if section else keys
        line = index.line(toml_path) if text else None
        place = f'{file or "config"}:{line}' if line else f'{file or "config"}'
        key = ' '.join(part for part in (f'[{section}]' if section else '', '.'.join(keys)) if part)
        lines.append(f'{place}: {key + ": " if key else ""}{redact(what)}')
    return '; '.join(lines)


def read_secret(value: str | None, file: str | pathlib.Path | None, env: str) -> str | None:
    """A secret from the environment, else a file, else the config value; never logged."""
    if os.environ.get(env):
        return os.environ[env].strip()
    file = os.environ.get(f'{env}_FILE') or file
    if file:
        hidden = looks_like_secret(str(file)) or len(str(file)) > 200
        shown = _('the file named') if hidden else str(file)
        try:
            return _secret_text(pathlib.Path(file).expanduser()).strip() or None
        except (OSError, ValueError) as exc:
            if isinstance(exc, _UnusableSecret):
                reason = str(exc)
            else:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _('not a usable file name')
            hint = (
                _(' (it looks like the secret itself: put the secret in a file and name that file)') if hidden else ''
            )
            raise ConfigError(
                _('cannot read {env} file {file}: {reason}{hint}').format(env=env, file=shown, reason=reason, hint=hint)
            ) from None
    return value or None


MAX_SECRET_BYTES = 64 * 1024
"""Most read from a secret file: a token or key is far shorter, ``/dev/zero`` is endless."""


class _UnusableSecret(ValueError):
    """A secret file whose content cannot be a secret; the message says why (never what it holds)."""


def _secret_text(path: pathlib.Path) -> str:
    """The text of a secret file, read to at most :data:`MAX_SECRET_BYTES` (a pipe such as
    ``<(pass show token)`` works too)."""
    with path.open('rb') as fh:
        data = fh.read(MAX_SECRET_BYTES + 1)
    if len(data) > MAX_SECRET_BYTES:
        raise _UnusableSecret(_('more than {limit} bytes: too long for a key or token').format(limit=MAX_SECRET_BYTES))
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError as exc:
        raise _UnusableSecret(_('not UTF-8 text (byte {offset})').format(offset=exc.start)) from None


def load_config(path: pathlib.Path | str | None = None) -> Config:
    """Load ``bot.toml`` (``FLOWBOT_CONFIG`` or ``./bot.toml``).

    A missing ``./bot.toml`` means all defaults; a file named by ``path`` or ``FLOWBOT_CONFIG`` must exist,
    so a typo in its name never starts the bot on defaults.
    """
    named = _('the -c option') if path else 'FLOWBOT_CONFIG' if os.environ.get('FLOWBOT_CONFIG') else None
    path = pathlib.Path(path or os.environ.get('FLOWBOT_CONFIG') or 'bot.toml')
    if named and not path.is_file():
        raise ConfigError(_('no configuration file at {path} (named by {named})').format(path=path, named=named))
    raw: dict[str, Any] = {}
    text = ''
    if path.exists():
        try:
            text = path.read_text(encoding='utf-8')
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f'{path}: {redact(str(exc))}') from None
        except RecursionError:
            raise ConfigError(
                _('{path}: cannot read: {error}').format(path=path, error=_('TOML nested too deeply to read'))
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(_('{path}: cannot read: {error}').format(path=path, error=exc)) from None
    core = {k: raw.pop(k) for k in ('bot', 'permissions') if k in raw}
    for key in ('sections', 'path', 'source', 'read_sections'):  # Config's own fields, not tables of the file
        if key in core:
            raise ConfigError(_('{path}: unknown section [{key}]').format(path=path, key=key))
    try:
        config = _converter.structure(core, Config)
    except Exception as exc:
        raise ConfigError(_located(exc, path, text)) from None
    config.sections = raw
    config.source = text
    config.path = path.resolve() if path.exists() else None
    if os.environ.get('FLOWBOT_DATA'):
        config.bot.data_root = pathlib.Path(os.environ['FLOWBOT_DATA'])
    if os.environ.get('FLOWBOT_STORE'):
        config.bot.store = os.environ['FLOWBOT_STORE']
    return config
