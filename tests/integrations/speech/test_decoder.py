"""Tuned vosk decoder settings (``[speech.decoder]``) through a derived model folder, never the installed one."""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Iterator

import pytest

from engine.config import Config, ConfigError, section
from integrations.speech.audio import decode_audio, encode_voice_message
from integrations.speech.config import DecoderConfig, SpeechConfig
from integrations.speech.decoder import DerivedModels, parse_model_conf, rewrite_model_conf
from integrations.speech.service import build_recognizer
from integrations.speech.stt import RecognitionError, VoskModelCache, VoskRecognizer
from tests.integrations.speech.helpers import ko_model_dir, speak_ko

MODEL_CONF = """--min-active=200
--max-active=3000
--beam=10.0 # wide
--lattice-beam=2.0
--frame-subsampling-factor=3
--endpoint.rule2.min-trailing-silence=0.5
"""

TUNED = {'--beam': '8.0', '--max-active': '1500'}


def _fake_model(root: pathlib.Path, conf: str | None = MODEL_CONF) -> pathlib.Path:
    """A folder shaped like a vosk model (am, graph, ivector, conf), small enough to hash and compare."""
    model = root / 'vosk-model-xx'
    for name, data in {
        'am/final.mdl': b'acoustic',
        'graph/HCLr.fst': b'graph',
        'graph/phones/word_boundary.int': b'1 nonword\n',
        'ivector/final.ie': b'ivector',
        'conf/mfcc.conf': b'--use-energy=false\n',
        'README': b'readme',
    }.items():
        (model / name).parent.mkdir(parents=True, exist_ok=True)
        (model / name).write_bytes(data)
    if conf is not None:
        (model / 'conf' / 'model.conf').write_text(conf)
    return model


def _snapshot(folder: pathlib.Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob('*') if p.is_file()
    }


def test_tuned_folder_is_built_once_and_reused_after_a_restart(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _fake_model(tmp_path / 'models')
    root = tmp_path / 'derived'

    first = DerivedModels(root, TUNED).folder_for(model)
    built = (first / 'conf' / 'model.conf').stat()
    again = DerivedModels(root, TUNED)  # a new process: finds the folder on disk
    monkeypatch.setattr(DerivedModels, '_build', lambda *a: pytest.fail('rebuilt an existing tuned folder'))

    assert again.folder_for(model) == first
    assert again.folder_for(model) == first
    assert (first / 'conf' / 'model.conf').stat().st_mtime_ns == built.st_mtime_ns
    assert [p.name for p in root.iterdir()] == [first.name]  # no staging folders left behind
    assert first.name.startswith('vosk-model-xx-')


def test_overrides_replace_the_models_settings_in_the_tuned_conf(tmp_path: pathlib.Path) -> None:
    model = _fake_model(tmp_path / 'models')

    folder = DerivedModels(tmp_path / 'derived', {**TUNED, '--min-active': '100'}).folder_for(model)
    text = (folder / 'conf' / 'model.conf').read_text()

    assert parse_model_conf(text) == {
        '--min-active': '100',
        '--max-active': '1500',
        '--beam': '8.0',
        '--lattice-beam': '2.0',
        '--frame-subsampling-factor': '3',
        '--endpoint.rule2.min-trailing-silence': '0.5',
    }
    assert text.count('--beam=') == 1
    assert str(model / 'conf' / 'model.conf') in text.splitlines()[0]  # says where it comes from


def test_options_the_model_does_not_set_are_appended() -> None:
    text = rewrite_model_conf('--beam=13.0\n--beam=12.0\n', {'--beam': '8.0', '--lattice-beam': '1.5'})

    assert text == '--beam=8.0\n--lattice-beam=1.5\n'


def test_installed_model_is_left_untouched_and_linked_not_copied(tmp_path: pathlib.Path) -> None:
    model = _fake_model(tmp_path / 'models')
    before = _snapshot(model)

    folder = DerivedModels(tmp_path / 'derived', TUNED).folder_for(model)

    assert _snapshot(model) == before
    for name in ('am', 'graph', 'ivector', 'README', 'conf/mfcc.conf'):
        assert (folder / name).is_symlink(), name
        assert (folder / name).resolve() == (model / name).resolve()
    assert not (folder / 'conf').is_symlink()
    assert not (folder / 'conf' / 'model.conf').is_symlink()
    assert (folder / 'graph' / 'phones' / 'word_boundary.int').read_bytes() == b'1 nonword\n'


def test_other_settings_or_a_changed_model_get_their_own_folder(tmp_path: pathlib.Path) -> None:
    model = _fake_model(tmp_path / 'models')
    root = tmp_path / 'derived'
    tuned = DerivedModels(root, TUNED).folder_for(model)

    faster = DerivedModels(root, {'--beam': '7.0'}).folder_for(model)
    (model / 'conf' / 'model.conf').write_text(MODEL_CONF.replace('3000', '7000'))  # model reinstalled
    reinstalled = DerivedModels(root, TUNED).folder_for(model)

    assert len({tuned, faster, reinstalled}) == 3
    assert parse_model_conf((faster / 'conf' / 'model.conf').read_text())['--max-active'] == '3000'
    assert parse_model_conf((reinstalled / 'conf' / 'model.conf').read_text())['--max-active'] == '1500'


@pytest.mark.parametrize(
    ('decoder', 'message'),
    [
        ({'beam': -1}, r'\[speech.decoder\] beam must be a positive number, not -1'),
        ({'beam': 0}, r'beam must be a positive number, not 0'),
        ({'lattice_beam': float('inf')}, r'lattice_beam must be a positive number, not inf'),
        ({'max_active': 1500.5}, r'max_active must be a whole number of at least 2, not 1500.5'),
        ({'max_active': 1}, r'max_active must be a whole number of at least 2, not 1'),
        ({'min_active': 500, 'max_active': 100}, r'min_active \(500\) must not be above max_active \(100\)'),
        ({'beam': 'fast'}, r'\[speech\] decoder\.beam: expected a number, not a string'),
        ({'bream': 8.0}, r'unknown key bream \(did you mean "beam"\?\)'),
    ],
)
def test_bad_decoder_values_are_refused_with_a_clear_message(decoder: dict[str, object], message: str) -> None:
    config = Config(sections={'speech': {'decoder': decoder}})

    with pytest.raises(ConfigError, match=message):
        section(config, 'speech', SpeechConfig).resolved(config)


def test_decoder_table_in_bot_toml_builds_a_tuning_recognizer(tmp_path: pathlib.Path) -> None:
    config = Config(
        sections={'speech': {'decoder': {'beam': 8, 'max_active': 1500, 'lattice_beam': 1.5}}},
        path=tmp_path / 'bot.toml',
    )
    speech = section(config, 'speech', SpeechConfig).resolved(config)

    recognizer = build_recognizer(speech)

    assert isinstance(recognizer, VoskRecognizer)
    assert recognizer.derived is not None
    assert recognizer.derived.root == tmp_path / 'data' / 'speech' / 'derived'
    assert recognizer.derived.overrides == {'--beam': '8.0', '--max-active': '1500', '--lattice-beam': '1.5'}


def test_without_a_decoder_table_the_models_own_settings_are_used() -> None:
    recognizer = build_recognizer(SpeechConfig())

    assert isinstance(recognizer, VoskRecognizer)
    assert recognizer.derived is None
    assert DecoderConfig().overrides() == {}


async def test_max_active_below_the_models_min_active_is_refused(tmp_path: pathlib.Path) -> None:
    model = _fake_model(tmp_path / 'models')
    derived = DerivedModels(tmp_path / 'derived', DecoderConfig(max_active=100).overrides())
    recognizer = VoskRecognizer(model.parent, {'xx': model.name}, cache=VoskModelCache(), derived=derived)

    with pytest.raises(RecognitionError, match=r'misconfigured.*max_active \(100\).*min_active \(200, from the model'):
        await recognizer.recognize(b'\0\0' * 1600, 16000, 'xx')
    assert not (tmp_path / 'derived').exists()


def test_model_without_a_model_conf_keeps_its_own_settings(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = _fake_model(tmp_path / 'models', conf=None)

    with caplog.at_level(logging.WARNING, logger='integrations.speech.decoder'):
        folder = DerivedModels(tmp_path / 'derived', TUNED).folder_for(model)

    assert folder == model.resolve()
    assert 'cannot be tuned' in caplog.text


def test_unwritable_derived_folder_falls_back_to_the_model_and_logs_it(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = _fake_model(tmp_path / 'models')
    blocked = tmp_path / 'derived'
    blocked.write_text('a file where the folder should be')

    with caplog.at_level(logging.ERROR, logger='integrations.speech.decoder'):
        folder = DerivedModels(blocked, TUNED).folder_for(model)

    assert folder == model.resolve()
    assert 'cannot build the tuned model folder' in caplog.text


GRAMMAR = ['일곱', '여덟', '하나', '둘', '셋', '안녕하세요', '감사합니다']


@pytest.fixture(scope='module')
def tuned_korean(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[VoskRecognizer, pathlib.Path]]:
    """The real Korean model behind the benchmark's tuned settings; loaded once for the module."""
    model = ko_model_dir()
    root = tmp_path_factory.mktemp('derived')
    overrides = DecoderConfig(beam=8.0, max_active=1500).overrides()
    recognizer = VoskRecognizer(
        model.parent, {'ko': model.name}, cache=VoskModelCache(), derived=DerivedModels(root, overrides)
    )
    recognizer.load('ko')
    yield recognizer, model


@pytest.mark.parametrize('word', ['일곱', '여덟', '감사합니다'])
async def test_korean_words_are_recognised_exactly_with_the_tuned_decoder(
    tmp_path: pathlib.Path, tuned_korean: tuple[VoskRecognizer, pathlib.Path], word: str
) -> None:
    recognizer, model = tuned_korean
    conf_before = (model / 'conf' / 'model.conf').read_bytes()
    wav = speak_ko(word, tmp_path / 'spoken.wav')
    audio = decode_audio(encode_voice_message(wav, tmp_path / 'voice-message.ogg').path)

    result = await recognizer.recognize(audio.pcm, audio.sample_rate, 'ko-KR', grammar=GRAMMAR)

    assert result.text == word
    assert result.confidence is not None and 0.5 < result.confidence <= 1.0
    [loaded] = recognizer.cache.loaded()  # vosk loaded the linked folder, not the installed one
    assert recognizer.derived is not None and loaded.parent == recognizer.derived.root
    assert os.path.islink(loaded / 'graph')
    assert parse_model_conf((loaded / 'conf' / 'model.conf').read_text())['--beam'] == '8.0'
    assert (model / 'conf' / 'model.conf').read_bytes() == conf_before


def test_flowbot_refuses_to_start_speech_with_a_bad_decoder_table(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli import main as flowbot

    bot_toml = tmp_path / 'bot.toml'
    bot_toml.write_text('[speech.decoder]\nbeam = -8.0\nmax_active = 1500\n')

    assert flowbot(['-c', str(bot_toml), 'speech', 'models']) == 2
    err = capsys.readouterr().err
    assert f'[speech.decoder] beam must be a positive number, not -8.0 (in {bot_toml})' in err
