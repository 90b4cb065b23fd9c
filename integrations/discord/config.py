"""The ``[discord]`` section of ``bot.toml``: how to reach Discord and what to accept from users.

The token is read with :func:`engine.config.read_secret` (``DISCORD_TOKEN``, ``DISCORD_TOKEN_FILE``,
``token_file``, ``token``) and never logged: :class:`DiscordConfig` hides it from ``repr``.
"""

from __future__ import annotations

import os
from typing import Literal

import attrs

from engine.config import Config, ConfigError, read_secret, section
from engine.i18n import _
from engine.store import Shards

__all__ = ['DEFAULT_CONTENT_TYPES', 'DiscordConfig', 'load_discord_config']

DEFAULT_CONTENT_TYPES: list[str] = [
    'audio/',
    'video/',
    'image/',
    'text/',
    'application/ogg',
    'application/pdf',
    'application/json',
    'application/x-ndjson',
    'application/zip',
]
"""Attachment content types accepted unless the config says otherwise: every format a shipped flow asks for
(ZIP of .txt files, JSON lines, JSON, CSV, text; audio for voice messages; images and PDF to pass on). They
are matched against what a file *is* (:mod:`engine.filetypes`), not only what Discord labels it."""


@attrs.define(kw_only=True)
class DiscordConfig:
    """Settings of the Discord adapter; every field has a sensible default except the token."""

    token: str | None = attrs.field(default=None, repr=False)
    token_file: str | None = None
    prefix: str = '!'
    """Prefix of text commands (``!hi``)."""
    guild_ids: list[int] = attrs.field(factory=list)
    """Sync slash commands to these guilds (instant); empty means global commands."""
    shard_ids: list[int] | None = None
    shard_count: int | None = None
    rest_url: str | None = None
    """Discord REST base such as ``https://discord.com/api/v10``; set it to run behind a REST proxy."""
    reuse_connections: bool = True
    """Keep REST connections open between calls (hikari closes each by default): at 500 commands/s
    this took the reply p99 from 17 ms to 3 ms in ``benchmarks/discord.py``."""
    max_attachment_bytes: int = 25 * 1024 * 1024
    allowed_content_types: list[str] = attrs.field(factory=lambda: list(DEFAULT_CONTENT_TYPES))
    """Attachment content-type prefixes that are accepted (judged by content after download for anything
    that is not audio, video or an image); others are refused with a message."""
    dm_policy: Literal['allow', 'deny'] = 'allow'
    """``deny`` ignores direct messages altogether; per-flow rules (``trigger.dm``) are the engine's."""
    voice_idle_timeout: float = 300.0
    """Seconds of silence before the bot leaves a voice channel."""
    listen_grammar: list[str] = attrs.field(factory=list)
    """Words or phrases listening in a voice channel recognises (a vosk grammar); empty: free speech."""
    listen_end_gap: float = 0.3
    """Seconds a speaker stops sending audio after which their utterance is over."""
    listen_record_dir: str | None = None
    """Keep each utterance heard in voice channels as a WAV file here; default: no audio is stored."""
    defer_after: float = 2.0
    """Seconds a slash command may run before its interaction is deferred (Discord allows 3)."""
    edit_interval: float = 1.0
    """Least seconds between two edits of the same progress message."""
    max_message_chars: int = 2000
    file_threshold_chars: int = 8000
    """Replies longer than this are sent as a text file instead of many messages."""
    download_dir: str | None = None
    """Parent of the per-conversation attachment folders; default: the system temporary folder."""

    def __attrs_post_init__(self) -> None:
        if self.shard_count is not None and self.shard_count < 1:
            raise ValueError(_('shard_count must be at least 1'))
        if self.shard_ids is not None and self.shard_count is None:
            raise ValueError(_('shard_ids needs shard_count'))
        if self.shard_count is not None:
            self.shards()  # shard ids outside the count, or none at all
        if not 1 <= self.max_message_chars <= 2000:  # 0 would split a reply for ever; Discord refuses more
            raise ValueError(_('max_message_chars must be between 1 and 2000 (Discord refuses longer messages)'))
        if self.max_attachment_bytes <= 0:
            raise ValueError(_('max_attachment_bytes must be positive'))
        if not 0 <= self.defer_after < 3:
            raise ValueError(_('defer_after must be between 0 and 3 seconds (Discord drops later answers)'))

    def shards(self) -> Shards | None:
        """The shards this process runs (``None``: hikari's default, every shard Discord recommends).

        The process owns the conversations of their guilds; see ``docs/deploy.md``.
        """
        if self.shard_count is None:
            return None
        ids = self.shard_ids if self.shard_ids is not None else range(self.shard_count)
        return Shards(tuple(ids), self.shard_count)

    def resolved_token(self) -> str:
        """The bot token from the environment, the token file or the config; a clear error when absent."""
        token = read_secret(self.token, self.token_file, 'DISCORD_TOKEN')
        if not token:
            raise ConfigError(_('no Discord token: set DISCORD_TOKEN, DISCORD_TOKEN_FILE or [discord] token_file'))
        return token


def load_discord_config(config: Config) -> DiscordConfig:
    """Structure ``[discord]``; errors name the bad key or say which rule a value breaks.

    ``FLOWBOT_SHARD_IDS`` (``"0,1"``) and ``FLOWBOT_SHARD_COUNT`` override ``shard_ids`` and ``shard_count``,
    so one ``bot.toml`` serves every process of a deployment (a systemd template, a compose file).
    """
    raw = dict(config.sections.get('discord', {}))
    for name, env in (('shard_ids', 'FLOWBOT_SHARD_IDS'), ('shard_count', 'FLOWBOT_SHARD_COUNT')):
        value = os.environ.get(env, '').strip()
        if value:
            try:
                raw[name] = [int(v) for v in value.split(',')] if name == 'shard_ids' else int(value)
            except ValueError:
                raise ConfigError(
                    _('{env}={value}: expected {what}').format(
                        env=env,
                        value=repr(value),
                        what=_('numbers separated by commas') if name == 'shard_ids' else _('a number'),
                    )
                ) from None
    if raw:
        config.sections['discord'] = raw
    try:
        return section(config, 'discord', DiscordConfig)
    except ConfigError as exc:
        rule = _broken_rule(exc.__cause__)
        if rule is None:
            raise
        raise ConfigError(_('[discord] in {path}: {rule}').format(path=config.path or 'config', rule=rule)) from exc


def _broken_rule(exc: BaseException | None) -> str | None:
    """The message of a ``ValueError`` from :meth:`DiscordConfig.__attrs_post_init__` inside cattrs' groups."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _broken_rule(inner)) is not None:
                return found
        return None
    return str(exc) if type(exc) is ValueError else None
