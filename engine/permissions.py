"""Who may start which flow: the ``dm`` switch of a trigger and the ``permission`` group of a flow.

One function decides, so the engine (when a conversation starts) and the adapters (before they
download a command's attachments, see :meth:`engine.runtime.Engine.may_start`) give the same answer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from engine.api import User
from engine.config import Config
from engine.flows import model

__all__ = ['refusal']

_log = logging.getLogger(__name__)


def refusal(
    flow: model.Flow, user: User, *, is_dm: bool, config: Config, grants_all: bool
) -> tuple[str, Mapping[str, Any]] | None:
    """Why ``user`` may not start ``flow`` here: a message table entry and its values, or ``None``.

    :param is_dm: the command came in a direct message.
    :param grants_all: the adapter grants every permission (the console: whoever runs it owns the bot).
    """
    name = flow.trigger.command or flow.name
    if is_dm and not flow.trigger.dm:
        return 'no_dm', {'name': name}
    group = flow.permission
    if group is None or grants_all:
        return None
    members = config.permissions.get(group)
    if members and (user.id in members.users or user.roles & set(members.roles)):
        return None
    _log.info('denied %s to user %s (not in group %s)', flow.name, user.id, group)
    return 'denied', {'name': name, 'group': group}
