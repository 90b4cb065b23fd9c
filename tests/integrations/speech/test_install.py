"""The model installer against a loopback HTTP server serving zips the tests build."""

from __future__ import annotations

import hashlib
import http.server
import io
import pathlib
import stat
import threading
import zipfile
from collections.abc import Iterator

import pytest

from engine.config import Config
from integrations.speech.cli import main
from integrations.speech.config import Download, SpeechConfig
from integrations.speech.install import KNOWN_MODELS, ModelInstallError, install_model, model_url


class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header('Content-Type', 'application/zip')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A loopback server; put bytes in the returned dict under a path to serve them."""
    files: dict[str, bytes] = {}
    handler = type('Handler', (_Files,), {'files': files})
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{httpd.server_address[1]}', files
    finally:
        httpd.shutdown()
        httpd.server_close()


def _zip(entries: dict[str, bytes], *, links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


MODEL = {
    'vosk-model-tiny-xx/am/final.mdl': b'acoustic model',
    'vosk-model-tiny-xx/conf/model.conf': b'--sample-frequency=16000\n',
    'vosk-model-tiny-xx/README': b'tiny',
}


def _config(tmp_path: pathlib.Path, base: str, **kw: object) -> SpeechConfig:
    return SpeechConfig(models_dir=tmp_path / 'models', download_base_url=base + '/vosk/models/', **kw)  # type: ignore[arg-type]


def test_model_is_downloaded_verified_and_unpacked(
    tmp_path: pathlib.Path, server: tuple[str, dict[str, bytes]]
) -> None:
    base, files = server
    data = _zip(MODEL)
    files['/vosk/models/vosk-model-tiny-xx.zip'] = data
    seen: list[int] = []

    path = install_model(
        'vosk-model-tiny-xx',
        _config(tmp_path, base),
        sha256=hashlib.sha256(data).hexdigest(),
        progress=lambda done, total: seen.append(done),
    )

    assert path == tmp_path / 'models' / 'vosk-model-tiny-xx'
    assert (path / 'am' / 'final.mdl').read_bytes() == b'acoustic model'
    assert (path / 'conf' / 'model.conf').is_file()
    assert seen[-1] == len(data)
    assert sorted(p.name for p in (tmp_path / 'models').iterdir()) == ['vosk-model-tiny-xx']  # no leftovers


def test_configured_download_and_checksum_are_used(
    tmp_path: pathlib.Path, server: tuple[str, dict[str, bytes]]
) -> None:
    base, files = server
    data = _zip(MODEL)
    files['/mirror/tiny.zip'] = data
    config = _config(
        tmp_path,
        base,
        downloads={'tiny': Download(url=base + '/mirror/tiny.zip', sha256=hashlib.sha256(data).hexdigest().upper())},
    )

    assert install_model('tiny', config).name == 'tiny'
    assert model_url('other', config)[0] == base + '/vosk/models/other.zip'


def test_bad_checksum_is_refused_and_nothing_is_installed(
    tmp_path: pathlib.Path, server: tuple[str, dict[str, bytes]]
) -> None:
    base, files = server
    files['/vosk/models/vosk-model-tiny-xx.zip'] = _zip(MODEL)

    with pytest.raises(ModelInstallError, match='corrupt or not the expected file'):
        install_model('vosk-model-tiny-xx', _config(tmp_path, base), sha256='0' * 64)
    assert list((tmp_path / 'models').iterdir()) == []


@pytest.mark.parametrize(
    'evil',
    [
        {'../escaped.txt': b'x'},
        {'vosk-model-tiny-xx/../../escaped.txt': b'x'},
        {'/tmp/escaped-absolute.txt': b'x'},
    ],
)
def test_path_traversal_in_the_archive_is_refused(
    tmp_path: pathlib.Path, server: tuple[str, dict[str, bytes]], evil: dict[str, bytes]
) -> None:
    base, files = server
    files['/vosk/models/vosk-model-tiny-xx.zip'] = _zip({**MODEL, **evil})

    with pytest.raises(ModelInstallError, match='unsafe'):
        install_model('vosk-model-tiny-xx', _config(tmp_path, base))
    assert not (tmp_path / 'escaped.txt').exists()
    assert not pathlib.Path('/tmp/escaped-absolute.txt').exists()
    assert list((tmp_path / 'models').iterdir()) == []


def test_links_in_the_archive_are_refused(tmp_path: pathlib.Path, server: tuple[str, dict[str, bytes]]) -> None:
    base, files = server
    files['/vosk/models/vosk-model-tiny-xx.zip'] = _zip(MODEL, links={'vosk-model-tiny-xx/am/link': '/etc/passwd'})

    with pytest.raises(ModelInstallError, match='link'):
        install_model('vosk-model-tiny-xx', _config(tmp_path, base))


def test_archive_without_a_model_is_refused(tmp_path: pathlib.Path, server: tuple[str, dict[str, bytes]]) -> None:
    base, files = server
    files['/vosk/models/vosk-model-tiny-xx.zip'] = _zip({'readme.txt': b'hello'})

    with pytest.raises(ModelInstallError, match='does not contain a vosk model'):
        install_model('vosk-model-tiny-xx', _config(tmp_path, base))


def test_download_that_is_not_a_zip_is_refused(tmp_path: pathlib.Path, server: tuple[str, dict[str, bytes]]) -> None:
    base, files = server
    files['/vosk/models/vosk-model-tiny-xx.zip'] = b'<html>not found</html>'

    with pytest.raises(ModelInstallError, match='not a zip'):
        install_model('vosk-model-tiny-xx', _config(tmp_path, base))


def test_missing_model_on_the_server_is_reported(tmp_path: pathlib.Path, server: tuple[str, dict[str, bytes]]) -> None:
    base, _ = server

    with pytest.raises(ModelInstallError, match='HTTP 404'):
        install_model('vosk-model-nope', _config(tmp_path, base))


def test_installed_model_is_kept_unless_forced(tmp_path: pathlib.Path, server: tuple[str, dict[str, bytes]]) -> None:
    base, files = server
    files['/vosk/models/vosk-model-tiny-xx.zip'] = _zip(MODEL)
    config = _config(tmp_path, base)
    install_model('vosk-model-tiny-xx', config)
    files['/vosk/models/vosk-model-tiny-xx.zip'] = _zip({**MODEL, 'vosk-model-tiny-xx/README': b'newer'})

    with pytest.raises(ModelInstallError, match='already installed'):
        install_model('vosk-model-tiny-xx', config)
    path = install_model('vosk-model-tiny-xx', config, force=True)

    assert (path / 'README').read_bytes() == b'newer'


@pytest.mark.parametrize('name', ['../etc', 'a/b', '', '.hidden'])
def test_bad_model_names_are_refused(tmp_path: pathlib.Path, name: str) -> None:
    with pytest.raises(ModelInstallError, match='not a model name'):
        install_model(name, SpeechConfig(models_dir=tmp_path))


def test_non_http_urls_are_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ModelInstallError, match='Only http'):
        install_model('m', SpeechConfig(models_dir=tmp_path), url='file:///etc/passwd')


def test_cli_installs_a_model_and_lists_it(
    tmp_path: pathlib.Path, server: tuple[str, dict[str, bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    base, files = server
    data = _zip(MODEL)
    files['/custom.zip'] = data
    config = Config(sections={'speech': {'models_dir': str(tmp_path / 'models'), 'models': {'xx': 'tiny'}}})

    code = main(
        ['install', 'tiny', '--url', base + '/custom.zip', '--sha256', hashlib.sha256(data).hexdigest()], config
    )
    assert code == 0
    assert main(['models'], config) == 0

    out = capsys.readouterr().out
    assert 'installed tiny in' in out
    assert 'xx     tiny' in out
    assert 'installed ' in out.splitlines()[-1]


def test_cli_reports_a_failed_install(
    tmp_path: pathlib.Path, server: tuple[str, dict[str, bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    base, _ = server
    config = Config(sections={'speech': {'models_dir': str(tmp_path), 'download_base_url': base}})

    assert main(['install', 'missing-model'], config) == 1
    assert 'HTTP 404' in capsys.readouterr().err


def test_flowbot_speech_install_command_installs_from_loopback(
    tmp_path: pathlib.Path, server: tuple[str, dict[str, bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli import main as flowbot

    base, files = server
    files['/vosk/models/vosk-model-tiny-xx.zip'] = _zip(MODEL)
    bot_toml = tmp_path / 'bot.toml'
    bot_toml.write_text(f'[speech]\nmodels_dir = "models"\ndownload_base_url = "{base}/vosk/models/"\n')

    assert flowbot(['-c', str(bot_toml), 'speech', 'install', 'vosk-model-tiny-xx']) == 0
    assert (tmp_path / 'models' / 'vosk-model-tiny-xx' / 'am' / 'final.mdl').is_file()


def test_the_default_models_are_verified_against_their_pinned_checksums(
    tmp_path: pathlib.Path, server: tuple[str, dict[str, bytes]]
) -> None:
    """A file served under the Russian model's name that is not the published zip is refused (a mirror's
    or a man in the middle's), and nothing is installed."""
    base, files = server
    config = _config(tmp_path, base)
    assert model_url('vosk-model-small-ru-0.22', config)[1] == KNOWN_MODELS['vosk-model-small-ru-0.22'].sha256
    assert KNOWN_MODELS['vosk-model-small-ru-0.22'].size == 46_236_750
    files['/vosk/models/vosk-model-small-ru-0.22.zip'] = _zip(
        {'vosk-model-small-ru-0.22/am/final.mdl': b'not the real model'}
    )

    with pytest.raises(ModelInstallError, match='corrupt or not the expected file'):
        install_model('vosk-model-small-ru-0.22', config)
    assert list((tmp_path / 'models').iterdir()) == []


def _corrupt(data: bytes, member: bytes) -> bytes:
    """``data`` with one byte of ``member``'s stored content flipped: the zip still opens, its CRC fails."""
    at = data.index(member)
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def test_without_a_checksum_a_corrupt_zip_is_refused_and_a_whole_one_installed_with_a_warning(
    tmp_path: pathlib.Path, server: tuple[str, dict[str, bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    base, files = server
    config = Config(
        sections={'speech': {'models_dir': str(tmp_path / 'models'), 'download_base_url': base + '/vosk/models/'}}
    )
    data = _zip(MODEL)
    files['/vosk/models/vosk-model-tiny-xx.zip'] = _corrupt(data, b'acoustic model')

    assert main(['install', 'vosk-model-tiny-xx'], config) == 1
    assert 'not a whole zip archive' in capsys.readouterr().err
    assert list((tmp_path / 'models').iterdir()) == []

    files['/vosk/models/vosk-model-tiny-xx.zip'] = data
    assert main(['install', 'vosk-model-tiny-xx'], config) == 0
    err = capsys.readouterr().err
    assert 'warning: No SHA-256 is known for vosk-model-tiny-xx: the checksum could not be verified' in err
    assert hashlib.sha256(data).hexdigest() in err  # to compare and pin


def test_the_install_command_speaks_the_reply_language(
    tmp_path: pathlib.Path, server: tuple[str, dict[str, bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    from engine import i18n

    base, files = server
    files['/vosk/models/vosk-model-tiny-xx.zip'] = _zip(MODEL)
    config = Config(
        sections={'speech': {'models_dir': str(tmp_path / 'models'), 'download_base_url': base + '/vosk/models/'}}
    )
    with i18n.use('ru'):
        assert main(['install', 'vosk-model-tiny-xx'], config) == 0
        assert main(['install', 'vosk-model-tiny-xx'], config) == 1
    out, err = capsys.readouterr()
    assert 'скачиваю vosk-model-tiny-xx из' in out
    assert 'vosk-model-tiny-xx установлена в' in out
    assert 'контрольную сумму проверить не удалось' in err
    assert 'уже установлена' in err
