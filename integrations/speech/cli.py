"""``flowbot speech ...``: operator commands for speech models.

``main(argv, config)`` takes the arguments after ``speech``::

    flowbot speech install vosk-model-small-ru-0.22 [--url URL] [--sha256 HEX] [--force]
    flowbot speech models        # configured languages, their models and whether they are installed
"""

from __future__ import annotations

import argparse
import logging
import sys

from engine.config import Config, ConfigError, section
from engine.i18n import _
from integrations.speech.config import SpeechConfig
from integrations.speech.install import ModelInstallError, install_model, model_url

__all__ = ['install_command', 'main']

_log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='flowbot speech', description=_('Manage speech recognition models.'))
    sub = parser.add_subparsers(dest='command', required=True)
    install = sub.add_parser('install', help=_('download and unpack a vosk model into [speech] models_dir'))
    install.add_argument('model', help=_('model name, e.g. vosk-model-small-ru-0.22'))
    install.add_argument('--url', help=_('download URL (default: [speech.downloads] or the alphacephei folder)'))
    install.add_argument('--sha256', help=_('expected SHA-256 of the zip'))
    install.add_argument('--force', action='store_true', help=_('replace an installed model'))
    sub.add_parser('models', help=_('list configured models and whether they are installed'))
    return parser


def main(argv: list[str], config: Config) -> int:
    """Run a speech command; return the process exit code (messages go to stdout/stderr)."""
    args = _parser().parse_args(argv)
    if args.command == 'install':
        return install_command(config, args.model, url=args.url, sha256=args.sha256, force=args.force)
    try:
        speech = section(config, 'speech', SpeechConfig).resolved(config)
    except ConfigError as exc:
        print(_('error: {error}').format(error=exc), file=sys.stderr)
        return 2
    for lang, name in sorted(speech.models.items()):
        path = speech.models_path / name
        state = _('installed') if (path / 'conf').is_dir() or (path / 'am').is_dir() else _('not installed')
        print(f'{lang:6} {name:40} {state:12} {path}')
    return 0


def install_command(
    config: Config, model: str, *, url: str | None = None, sha256: str | None = None, force: bool = False
) -> int:
    """``flowbot speech install MODEL``: download with progress on stdout; return the exit code."""
    try:
        speech = section(config, 'speech', SpeechConfig).resolved(config)
    except ConfigError as exc:
        print(_('error: {error}').format(error=exc), file=sys.stderr)
        return 2
    print(
        _('downloading {model} from {url} ...').format(model=model, url=url or model_url(model, speech)[0]), flush=True
    )
    last = [-1]

    def progress(done: int, total: int | None) -> None:
        if total:
            pct = done * 100 // total
            if pct // 10 != last[0]:
                last[0] = pct // 10
                print('  ' + _('{percent}% of {size} MB').format(percent=pct, size=round(total / 1048576)), flush=True)

    try:
        path = install_model(
            model,
            speech,
            url=url,
            sha256=sha256,
            force=force,
            progress=progress,
            notice=lambda text: print(_('warning: {text}').format(text=text), file=sys.stderr),
        )
    except ModelInstallError as exc:
        print(_('error: {error}').format(error=exc), file=sys.stderr)
        return 1
    print(_('installed {model} in {path}').format(model=model, path=path))
    if model not in speech.models.values():
        print(_('to use it, add to bot.toml:') + f'\n  [speech.models]\n  LANGUAGE = "{model}"')
    return 0
