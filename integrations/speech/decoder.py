"""Tuned vosk decoder settings without touching the installed model.

Vosk reads its decoder settings (beam, max-active, ...) only from ``<model>/conf/model.conf`` and has
no API to override them. Editing that file would change a folder the bot does not own (a pip package,
a shared install) and be undone by ``flowbot speech install --force``, so :class:`DerivedModels` builds
a small folder next to the data instead: every entry of the model is a symbolic link to the original
(no copy of the hundreds of MB of graphs) except ``conf/model.conf``, which is a rewritten copy with
the overrides. The folder's name carries a hash of everything it was made from, so it is built once
and reused across restarts, and a changed model or changed settings get a fresh one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import re
import shutil
import tempfile
import threading
from collections.abc import Mapping

from engine.errors import FlowbotError
from engine.i18n import _

__all__ = ['KALDI_DEFAULTS', 'DecoderSettingsError', 'DerivedModels', 'parse_model_conf', 'rewrite_model_conf']

_log = logging.getLogger(__name__)

_FORMAT = 1
"""Bumped when the derived layout changes, so old folders are not reused."""

KALDI_DEFAULTS = {'--beam': '16.0', '--max-active': '2147483647', '--min-active': '200', '--lattice-beam': '10.0'}
"""Kaldi's own defaults, in force when a model's ``model.conf`` does not set the option."""

_OPTION = re.compile(r'^(--[A-Za-z0-9._-]+)(?:=(.*))?$')


class DecoderSettingsError(FlowbotError, ValueError):
    """The decoder settings cannot be used with this model; the message says which and why."""


def parse_model_conf(text: str) -> dict[str, str]:
    """Options of a Kaldi config file (``--name=value`` lines, ``#`` comments) as name -> value."""
    options: dict[str, str] = {}
    for line in text.splitlines():
        match = _OPTION.match(line.split('#', 1)[0].strip())
        if match:
            options[match.group(1)] = (match.group(2) or 'true').strip()
    return options


def rewrite_model_conf(text: str, overrides: Mapping[str, str], *, source: str = '') -> str:
    """``text`` with each overridden option's line replaced in place; options it lacks are appended.

    :param overrides: Kaldi option (``--beam``) -> value as text.
    :param source: named in a comment at the top, so a reader knows where the copy comes from.
    """
    lines = [f'# written by flowbot from {source} with [speech.decoder] overrides'] if source else []
    seen: set[str] = set()
    for line in text.splitlines():
        match = _OPTION.match(line.split('#', 1)[0].strip())
        name = match.group(1) if match else None
        if name is not None and name in overrides:
            if name not in seen:  # a repeated option: the last one won in Kaldi, now ours does
                lines.append(f'{name}={overrides[name]}')
            seen.add(name)
            continue
        lines.append(line)
    lines.extend(f'{name}={value}' for name, value in overrides.items() if name not in seen)
    return '\n'.join(lines) + '\n'


class DerivedModels:
    """Model folders with tuned decoder settings, built under ``root`` once and remembered.

    Thread-safe; :meth:`folder_for` blocks (file system), so call it from a worker thread.
    """

    def __init__(self, root: pathlib.Path, overrides: Mapping[str, str]) -> None:
        """
        :param root: where derived folders go, e.g. ``<data_root>/speech/derived``.
        :param overrides: Kaldi option -> value, e.g. ``{'--beam': '8.0', '--max-active': '1500'}``.
        """
        self.root = root
        self.overrides = dict(overrides)
        self._folders: dict[pathlib.Path, pathlib.Path] = {}
        self._lock = threading.Lock()

    def folder_for(self, original: pathlib.Path) -> pathlib.Path:
        """The tuned folder for the model in ``original``, built on first use.

        A model without ``conf/model.conf`` (the old layout, whose settings vosk fixes in code) and
        a folder that cannot be built (read-only data root, no symbolic links) are logged and the
        original is used with its own settings: recognition still works, only slower.

        :raises DecoderSettingsError: the overrides contradict the model's own settings.
        """
        original = original.resolve()
        with self._lock:
            known = self._folders.get(original)
            if known is not None:
                return known
            folder = self._derive(original)
            self._folders[original] = folder
            return folder

    def _derive(self, original: pathlib.Path) -> pathlib.Path:
        conf = original / 'conf' / 'model.conf'
        try:
            text = conf.read_text(encoding='utf-8')
        except FileNotFoundError:
            _log.warning(
                'model %s has no conf/model.conf, so its decoder cannot be tuned; using its own settings', original
            )
            return original
        except (OSError, UnicodeDecodeError) as exc:
            _log.error('cannot read %s (%s); using the model with its own decoder settings', conf, exc)
            return original
        self._check(original, parse_model_conf(text))
        target = self.root / f'{original.name}-{self._digest(original, text)}'
        if (target / 'conf' / 'model.conf').is_file():
            _log.debug('reusing tuned model folder %s', target)
            return target
        try:
            self._build(original, text, target)
        except OSError as exc:
            _log.error(
                'cannot build the tuned model folder %s for %s (%s); using the model with its own decoder settings',
                target,
                original,
                exc,
            )
            return original
        return target

    def _check(self, original: pathlib.Path, model: Mapping[str, str]) -> None:
        """Refuse what Kaldi would abort on: it asserts ``max_active > 1`` and ``min_active <= max_active``."""
        merged = {**KALDI_DEFAULTS, **model, **self.overrides}
        try:
            min_active, max_active = int(merged['--min-active']), int(merged['--max-active'])
        except ValueError as exc:
            raise DecoderSettingsError(
                _('the decoder settings of {model} are not numbers: {error}').format(model=original, error=exc)
            ) from exc
        if max_active < 2 or min_active > max_active:
            raise DecoderSettingsError(
                (
                    _(
                        '[speech.decoder] max_active ({max_active}) must be at least 2 and not below min_active '
                        '({min_active}); raise max_active or set min_active lower'
                    )
                    if '--min-active' in self.overrides
                    else _(
                        '[speech.decoder] max_active ({max_active}) must be at least 2 and not below min_active '
                        '({min_active}, from the model {model}); raise max_active or set min_active lower'
                    )
                ).format(max_active=max_active, min_active=min_active, model=original.name)
            )

    def _digest(self, original: pathlib.Path, conf_text: str) -> str:
        """Hash of what the folder is made from: the model's place, listing and conf, and the overrides."""
        listing = sorted(p.name for p in original.iterdir())
        conf_listing = sorted(p.name for p in (original / 'conf').iterdir())
        key = {
            'format': _FORMAT,
            'model': str(original),
            'listing': listing,
            'conf_listing': conf_listing,
            'conf': conf_text,
            'overrides': sorted(self.overrides.items()),
        }
        return hashlib.sha256(json.dumps(key, ensure_ascii=False).encode()).hexdigest()[:16]

    def _build(self, original: pathlib.Path, conf_text: str, target: pathlib.Path) -> None:
        """Links and the rewritten conf in a staging folder, renamed into place only when complete."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = pathlib.Path(tempfile.mkdtemp(prefix=f'.{original.name}.', dir=self.root))
        try:
            for entry in original.iterdir():
                if entry.name != 'conf':
                    (staging / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
            (staging / 'conf').mkdir()
            for entry in (original / 'conf').iterdir():
                if entry.name != 'model.conf':
                    (staging / 'conf' / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
            (staging / 'conf' / 'model.conf').write_text(
                rewrite_model_conf(conf_text, self.overrides, source=str(original / 'conf' / 'model.conf')),
                encoding='utf-8',
            )
            (staging / 'flowbot-derived.json').write_text(
                json.dumps({'model': str(original), 'overrides': self.overrides}, indent=2) + '\n', encoding='utf-8'
            )
            try:
                os.rename(staging, target)
            except OSError:
                if not (target / 'conf' / 'model.conf').is_file():
                    raise
                _log.debug('tuned model folder %s was built by another process meanwhile', target)
                return
        finally:
            if staging.exists():
                try:
                    shutil.rmtree(staging)  # removes the links, never what they point to
                except OSError as exc:
                    _log.warning('cannot remove the staging folder %s: %s', staging, exc)
        _log.info('built tuned model folder %s for %s with %s', target, original, self.overrides)
