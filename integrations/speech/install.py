"""Installing vosk models: download a zip, check its SHA-256, unpack it safely into the models folder.

Models are only ever downloaded by an operator (``flowbot speech install MODEL``), never by a flow.
The zip is unpacked into a staging folder first and moved into place only when complete, so a
failed install never leaves a half model that vosk would try to load. Every file's CRC-32 is checked
while unpacking, so a truncated or corrupt zip is refused even for a model whose SHA-256 is not known.
"""

from __future__ import annotations

import hashlib
import logging
import pathlib
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from typing import NamedTuple

from engine.errors import FlowbotError
from engine.i18n import _, format_number
from integrations.speech.config import SpeechConfig

__all__ = ['KNOWN_MODELS', 'KnownModel', 'ModelInstallError', 'install_model', 'model_url']

_log = logging.getLogger(__name__)

_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]*$')
_CHUNK = 1 << 20


class ModelInstallError(FlowbotError):
    """The model could not be installed; the message says why and what to do."""


class KnownModel(NamedTuple):
    """A model archive whose checksum is pinned here, so ``flowbot speech install NAME`` verifies it."""

    sha256: str
    size: int
    """Bytes of the zip."""
    source: str
    """Where the checksum was published for exactly this file (it could not be computed here: no network)."""


_METAVOICETYPE = 'github.com/Metater/MetaVoiceType docs/MODELS.md, "SHA-256 computed from the official archive"'

KNOWN_MODELS: dict[str, KnownModel] = {
    'vosk-model-small-ru-0.22': KnownModel(
        '961d5ff98a17f4aa6de69864d0aa71fa5bac682301d2b5d17a3f24c5c99a46d4',
        46_236_750,
        _METAVOICETYPE + '; the same value and size in other public installers of this zip',
    ),
    'vosk-model-small-en-us-0.15': KnownModel(
        '30f26242c4eb449f948e42cb302dd7a686cb29a3423a8367f99ff41780942498',
        41_205_931,
        _METAVOICETYPE + '; the same value and size in other public installers of this zip',
    ),
}
"""The default models of ``[speech.models]`` (ru, en) from alphacephei.com; ``[speech.downloads]`` overrides."""


def model_url(name: str, config: SpeechConfig) -> tuple[str, str | None]:
    """The URL and expected SHA-256 for ``name``: ``[speech.downloads]`` first, else the base URL and
    the pinned checksum of :data:`KNOWN_MODELS` (``None`` for a model not listed there)."""
    if name in config.downloads:
        dl = config.downloads[name]
        return dl.url, dl.sha256
    known = KNOWN_MODELS.get(name)
    url = urllib.parse.urljoin(config.download_base_url.rstrip('/') + '/', f'{name}.zip')
    return url, known.sha256 if known else None


def install_model(
    name: str,
    config: SpeechConfig,
    *,
    url: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    timeout: float = 60.0,
    max_unpacked_bytes: int = 16 * 1024**3,
    progress: Callable[[int, int | None], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> pathlib.Path:
    """Download model ``name`` and unpack it to ``<models_dir>/<name>``; return that folder.

    :param url: overrides the configured URL.
    :param sha256: expected checksum (hex); overrides the configured one. Without any, the computed
        checksum is logged so it can be pinned in ``[speech.downloads]``.
    :param force: replace an installed model of the same name.
    :param max_unpacked_bytes: refuse archives that would unpack to more (zip bombs).
    :param progress: called with (bytes downloaded, total or ``None``) as the download goes.
    :param notice: told (a sentence for the operator) when no checksum is known, so the download
        could only be checked as a whole zip, with the checksum it had to pin.
    :raises ModelInstallError: bad name, download failure, checksum mismatch, unsafe or invalid archive.
    """
    if not _NAME.match(name):
        raise ModelInstallError(
            _('{name} is not a model name (letters, digits, ".", "_", "-").').format(name=repr(name))
        )
    configured_url, configured_sha = model_url(name, config)
    url = url or configured_url
    expected = (sha256 or configured_sha or '').strip().lower() or None
    if expected is not None and not re.fullmatch(r'[0-9a-f]{64}', expected):
        raise ModelInstallError(
            _('{value} is not a SHA-256 checksum (64 hex digits).').format(value=repr(sha256 or configured_sha))
        )
    if urllib.parse.urlsplit(url).scheme not in ('http', 'https'):
        raise ModelInstallError(_('Only http(s) downloads are supported, not {url}.').format(url=repr(url)))

    models_dir = config.models_path
    target = models_dir / name
    if target.exists() and not force:
        raise ModelInstallError(
            _('{name} is already installed in {path}; use --force to replace it.').format(name=name, path=target)
        )
    models_dir.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix=f'.{name}.', dir=models_dir) as tmp:
        archive = pathlib.Path(tmp) / 'model.zip'
        digest = _download(url, archive, timeout=timeout, progress=progress)
        if expected is None:
            _log.warning('%s: no checksum configured; downloaded sha256 is %s', name, digest)
            if notice is not None:
                notice(
                    _(
                        'No SHA-256 is known for {name}: the checksum could not be verified, only that the zip is '
                        "whole (every file's CRC). Its sha256 is {digest}; compare it with a trusted source and pin "
                        'it in [speech.downloads].'
                    ).format(name=name, digest=digest)
                )
        elif digest != expected:
            _log.error('%s: checksum mismatch from %s: expected %s, got %s', name, url, expected, digest)
            raise ModelInstallError(
                _(
                    'The download of {name} is corrupt or not the expected file (sha256 {digest}, expected {expected}).'
                ).format(name=name, digest=digest, expected=expected)
            )
        staging = pathlib.Path(tmp) / 'unpacked'
        staging.mkdir()
        _safe_unpack(archive, staging, max_unpacked_bytes)
        root = _model_root(staging)
        if not ((root / 'conf').is_dir() or (root / 'am').is_dir()):
            raise ModelInstallError(
                _('The archive from {url} does not contain a vosk model (no conf/ or am/ folder).').format(url=url)
            )
        if target.exists():
            old = pathlib.Path(tmp) / 'previous'
            target.rename(old)
        root.rename(target)
    _log.info('installed speech model %s from %s into %s', name, url, target)
    return target


def _download(
    url: str, dest: pathlib.Path, *, timeout: float, progress: Callable[[int, int | None], None] | None
) -> str:
    sha = hashlib.sha256()
    request = urllib.request.Request(url, headers={'User-Agent': 'flowbot-speech-installer'})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, dest.open('wb') as out:
            total_header = response.headers.get('Content-Length')
            total = int(total_header) if total_header and total_header.isdigit() else None
            done = 0
            while chunk := response.read(_CHUNK):
                sha.update(chunk)
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except urllib.error.HTTPError as exc:
        _log.error('model download %s failed: HTTP %s', url, exc.code)
        raise ModelInstallError(
            _('The download from {url} failed: HTTP {code} {reason}.').format(url=url, code=exc.code, reason=exc.reason)
        ) from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, 'reason', exc)
        _log.error('model download %s failed: %s', url, reason)
        raise ModelInstallError(_('The download from {url} failed: {reason}.').format(url=url, reason=reason)) from exc
    if total is not None and done != total:
        raise ModelInstallError(
            _('The download from {url} stopped early ({done} of {total} bytes).').format(
                url=url, done=format_number(done), total=format_number(total)
            )
        )
    return sha.hexdigest()


def _safe_unpack(archive: pathlib.Path, dest: pathlib.Path, max_bytes: int) -> None:
    """Extract ``archive`` into ``dest``, refusing absolute paths, ``..``, links and oversize content."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            total = sum(m.file_size for m in members)
            if total > max_bytes:
                raise ModelInstallError(
                    _('The archive would unpack to {total} bytes, over the {limit} allowed.').format(
                        total=format_number(total), limit=format_number(max_bytes)
                    )
                )
            root = dest.resolve()
            for member in members:
                name = member.filename.replace('\\', '/')
                parts = pathlib.PurePosixPath(name).parts
                if name.startswith('/') or re.match(r'^[A-Za-z]:', name) or '..' in parts:
                    _log.error('refusing zip member %r from %s', member.filename, archive)
                    raise ModelInstallError(
                        _('The archive is unsafe: it has a file outside its folder ({name}).').format(name=repr(name))
                    )
                if stat.S_ISLNK(member.external_attr >> 16):
                    raise ModelInstallError(
                        _('The archive is unsafe: it contains a link ({name}).').format(name=repr(name))
                    )
                target = (root / name).resolve()
                if not target.is_relative_to(root):
                    raise ModelInstallError(
                        _('The archive is unsafe: it has a file outside its folder ({name}).').format(name=repr(name))
                    )
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, target.open('wb') as out:
                    shutil.copyfileobj(src, out, _CHUNK)
    except zipfile.BadZipFile as exc:  # not a zip, cut short, or a file whose CRC-32 does not match
        _log.error('%s is not a whole zip archive: %s', archive, exc)
        raise ModelInstallError(_('The download is not a whole zip archive ({error}).').format(error=exc)) from exc


def _model_root(staging: pathlib.Path) -> pathlib.Path:
    """The archive's single top folder (as alphacephei packs models), or the staging folder itself."""
    entries = [p for p in staging.iterdir() if not p.name.startswith('__MACOSX')]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return staging
