"""Where the flows come from: the configured folders, a bot folder's own ``flows/``, or the shipped ones.

The shipped flows live in the checkout's top-level ``flows/`` (with their dialog scripts in
``flows/tests/``); a wheel carries that folder as the package data ``engine/shipped_flows``
(``pyproject.toml`` maps it there), so an installed bot needs no checkout.
"""

from __future__ import annotations

import logging
import pathlib

from engine.config import Config, ConfigError
from engine.i18n import _

__all__ = ['flow_folders', 'shipped_flows']

_log = logging.getLogger(__name__)

_HERE = pathlib.Path(__file__).resolve().parent


def shipped_flows() -> pathlib.Path:
    """The folder of the flows shipped with flowbot.

    In an installed wheel it is the package data ``engine/shipped_flows``; in a checkout (an
    editable install, or ``PYTHONPATH``), where that folder does not exist, it is the checkout's ``flows/``.

    :raises ConfigError: neither exists (an installation without its package data).
    """
    for folder in (_HERE / 'shipped_flows', _HERE.parent / 'flows'):
        if folder.is_dir() and any(folder.glob('*.toml')):
            return folder
    raise ConfigError(
        _(
            'the shipped flows are missing from this installation ({path}); '
            'reinstall flowbot, or set [bot] flows to a folder of flows'
        ).format(path=_HERE / 'shipped_flows')
    )


def flow_folders(config: Config) -> list[pathlib.Path]:
    """The flow folders (or files) the bot serves, absolute.

    ``[bot] flows`` when set (every entry must exist: a typo never starts the bot on other flows);
    else ``flows/`` beside ``bot.toml`` (or in the working folder without one) when it exists;
    else the shipped flows.

    :raises ConfigError: a configured entry does not exist.
    """
    if config.bot.flows is not None:
        folders = [config.resolve(p) for p in config.bot.flows]
        missing = [str(p) for p in folders if not p.exists()]
        if missing:
            where = config.path or _('the configuration')
            raise ConfigError(
                _(
                    '[bot] flows in {file}: no such folder or file: {paths} '
                    '(create it, correct the path, or remove "flows" to serve the shipped flows)'
                ).format(file=where, paths=', '.join(missing))
            )
        return folders
    local = config.resolve('flows')
    if local.is_dir():
        return [local]
    folder = shipped_flows()
    _log.info('no [bot] flows and no flows/ folder in %s: serving the shipped flows from %s', config.base, folder)
    return [folder]
