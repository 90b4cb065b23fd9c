"""The dataset flows on Discord: the real hikari bot against the emulator, the shipped flows, the local models.

Files come as Discord sends them: a ``.jsonl`` with no content type at all, a ``.zip`` unlabelled too.
"""

from __future__ import annotations

import asyncio
import io
import json
import pathlib
import shutil
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine.app import App, build_app
from engine.config import BotConfig, Config, PermissionGroup

from .conftest import ADMIN_ROLE, CHANNEL, GUILD, REPO, Running, bot_running
from .emulator import DiscordEmulator, RestCall

ADMIN = 21
FLOWS = ('select_dataset', 'train', 'test', 'hi')
WORDS = {'pos': ['good', 'great', 'fine', 'nice'], 'neg': ['bad', 'awful', 'poor', 'sad']}


def _examples() -> list[tuple[str, str]]:
    return [
        (f'{word} review number {i} {word}', label)
        for label, words in WORDS.items()
        for word in words
        for i in range(3)
    ]


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as archive:
        for n, (text, label) in enumerate(_examples()):
            archive.writestr(f'{label}/{n}.txt', text)
    return buffer.getvalue()


def _jsonl() -> bytes:
    return ''.join(json.dumps({'text': t, 'label': label}) + '\n' for t, label in _examples()).encode()


FILES = {'zip': ('reviews.zip', _zip), 'jsonl': ('reviews.jsonl', _jsonl)}


@pytest.fixture
async def models_app(tmp_path: pathlib.Path) -> AsyncIterator[App]:
    flows = tmp_path / 'flows'
    flows.mkdir()
    for name in FLOWS:
        shutil.copy(REPO / 'flows' / f'{name}.toml', flows)
    data = tmp_path / 'data'
    for label, words in WORDS.items():
        (data / 'reviews' / label).mkdir(parents=True)
        for i, word in enumerate(words):
            (data / 'reviews' / label / f'{i}.txt').write_text(f'{word} text {i}')
    config = Config(
        bot=BotConfig(flows=[flows], store=':memory:', data_root=data, reload=False, progress_interval=0.0),
        permissions={'admins': PermissionGroup(roles=[str(ADMIN_ROLE)])},
        sections={'models': {'provider': 'local'}},
    )
    app = build_app(config, plugins=['integrations.builtin', 'integrations.models'])
    await app.start()
    yield app
    await app.stop()


@pytest.fixture
async def bot(emulator: DiscordEmulator, models_app: App) -> AsyncIterator[Running]:
    async with bot_running(emulator, models_app, defer_after=1.0, edit_interval=0.0) as run:
        yield run


async def _say(emu: DiscordEmulator, content: str, **kw: Any) -> dict[str, Any]:
    return await emu.message_create(
        channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ADMIN, 'ada'), roles=[ADMIN_ROLE], content=content, **kw
    )


def _posts(emu: DiscordEmulator) -> list[RestCall]:
    return emu.calls_to('POST', rf'/channels/{CHANNEL}/messages')


async def _until(emu: DiscordEmulator, text: str, timeout: float = 30.0) -> dict[str, Any]:
    """The channel message whose (possibly edited) content contains ``text``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for message in emu.messages.values():
            if text in (message.get('content') or ''):
                return message
        await asyncio.sleep(0.05)
    raise AssertionError(f'no message with {text!r}; have {[m.get("content") for m in emu.messages.values()]}')


async def _press(emu: DiscordEmulator, message: dict[str, Any], value: str) -> None:
    await emu.button_press(
        f'fb:{ADMIN}:{value}', message=message, user=emu.user(ADMIN, 'ada'), guild_id=GUILD, roles=[ADMIN_ROLE]
    )


@pytest.mark.parametrize('kind', ['zip', 'jsonl'])
async def test_unlabelled_zip_and_jsonl_are_imported_by_select_dataset(bot: Running, kind: str) -> None:
    emu = bot.emulator
    name, make = FILES[kind]
    attachment = emu.add_file(make(), name, None)
    assert 'content_type' not in attachment
    await _say(emu, '!select_dataset', attachments=[attachment])
    result = await _until(emu, 'saved and selected')
    assert 'reviews saved and selected. 24 examples read (neg: 12, pos: 12), no problems.' in result['content']
    # One message: "Reading the uploaded file…", then edited into the result; nothing else was posted.
    (post,) = _posts(emu)
    assert post.content == 'Reading the uploaded file…'
    assert int(result['id']) == int(emu.messages[int(result['id'])]['id'])
    edits = emu.calls_to('PATCH', rf'/channels/{CHANNEL}/messages/{result["id"]}')
    assert edits and 'saved and selected' in edits[-1].json['content']


@pytest.mark.parametrize('kind', ['zip', 'jsonl'])
async def test_unlabelled_zip_and_jsonl_train_and_test_through_slash_and_prefix(bot: Running, kind: str) -> None:
    emu = bot.emulator
    name, make = FILES[kind]
    train_file = emu.add_file(make(), name, None)
    await _say(emu, '!train', attachments=[train_file])
    confirm = await _until(emu, 'Start training?')
    assert (
        'Dataset reviews saved and selected. 24 examples read' in (await _until(emu, 'saved and selected'))['content']
    )
    await _press(emu, confirm, 'start')
    report = await _until(emu, 'finished: model local-', timeout=60)
    # The job's progress message was edited in place while it ran, and finally into the report with its plot.
    edits = emu.calls_to('PATCH', rf'/channels/{CHANNEL}/messages/{report["id"]}')
    assert len(edits) >= 3 and edits[-1].files and edits[-1].content == report['content']
    assert [a['filename'] for a in report['attachments']] == ['training.png']
    posted = [c.content for c in _posts(emu)]
    assert not any('finished' in (text or '') for text in posted)  # the report is no message of its own

    test_file = emu.add_file(make(), f'held-out{pathlib.PurePath(name).suffix}', None)
    sent = await emu.slash_command(
        'test',
        channel_id=CHANNEL,
        guild_id=GUILD,
        user=emu.user(ADMIN, 'ada'),
        roles=[ADMIN_ROLE],
        options=[{'name': 'file', 'type': 11, 'value': test_file['id']}],
        resolved={'attachments': {test_file['id']: test_file}},
    )
    token = sent['token']
    (callback,) = await emu.wait_for_call('POST', rf'/interactions/{sent["id"]}/{token}/callback')
    assert callback.json['data']['content'] == 'Testing the model…'  # the slash answer is the progress message
    (result,) = await emu.wait_for_call(
        'PATCH',
        rf'/webhooks/{emu.application_id}/{token}/messages/@original',
        where=lambda c: 'accuracy' in (c.content or ''),
        timeout=30,
    )
    assert (result.content or '').startswith('Test ')
    assert result.files  # the plot is attached to the same message
    assert emu.calls_to('POST', rf'/webhooks/{emu.application_id}/{token}') == []  # no follow-up message


async def test_train_without_a_dataset_offers_the_data_root_folders_as_buttons(bot: Running) -> None:
    emu = bot.emulator
    await _say(emu, '!train')
    question = await _until(emu, 'No dataset is selected yet.')
    buttons = [(b['label'], b['custom_id']) for row in question['components'] for b in row['components']]
    assert buttons == [
        ('folder reviews', f'fb:{ADMIN}:reviews'),
        ('folder reviews/neg', f'fb:{ADMIN}:reviews/neg'),
        ('folder reviews/pos', f'fb:{ADMIN}:reviews/pos'),
    ]
    await _press(emu, question, 'reviews')  # subfolders are the labels
    confirm = await _until(emu, 'Start training?')
    imported = await _until(emu, 'Dataset reviews selected.')
    assert '8 examples read (neg: 4, pos: 4), no problems.' in imported['content']
    await _press(emu, confirm, 'cancel')
    await _until(emu, 'Training cancelled; nothing was started.')


async def test_train_without_a_dataset_takes_a_file_attached_to_the_answer(bot: Running) -> None:
    emu = bot.emulator
    await _say(emu, '!train')
    await _until(emu, 'No dataset is selected yet.')
    await _say(emu, '', attachments=[emu.add_file(_jsonl(), 'reviews.jsonl', None)])
    await _until(emu, 'Start training?')
    assert 'reviews saved and selected. 24 examples' in (await _until(emu, 'saved and selected'))['content']


async def test_train_without_a_dataset_takes_a_typed_folder(bot: Running) -> None:
    emu = bot.emulator
    await _say(emu, '!train')
    await _until(emu, 'No dataset is selected yet.')
    await _say(emu, 'reviews/pos')
    invalid = await _until(emu, 'cannot be used for training yet')
    assert 'Dataset reviews_pos selected. 4 examples read (positive: 4)' in invalid['content'] or any(
        'reviews_pos selected' in (m.get('content') or '') for m in emu.messages.values()
    )


async def test_a_path_with_backslashes_is_shown_as_typed(bot: Running) -> None:
    emu = bot.emulator
    await _say(emu, r'!select_dataset ..\..\x')
    refused = await _until(emu, 'was not changed')
    # On the wire each backslash is escaped, so Discord's markdown shows ..\..\x (not "....x").
    assert refused['content'] == (
        r"The dataset was not changed: dataset folder '..\\..\\x' refused: '..' is not allowed; "
        'give a path inside the data folder'
    )


async def test_a_command_the_user_may_not_start_is_refused_before_its_files_are_downloaded(bot: Running) -> None:
    emu = bot.emulator
    stranger = emu.user(99, 'eve')
    await emu.message_create(
        channel_id=CHANNEL,
        guild_id=GUILD,
        author=stranger,
        content='!train',
        attachments=[emu.add_file(_jsonl(), 'a.jsonl', None)],
    )
    refusal = await _until(emu, 'only for the "admins" group')
    assert refusal['content'] == 'Sorry, !train is only for the "admins" group.'
    file = emu.add_file(_jsonl(), 'b.jsonl', None)
    sent = await emu.slash_command(
        'test',
        channel_id=CHANNEL,
        guild_id=GUILD,
        user=stranger,
        options=[{'name': 'file', 'type': 11, 'value': file['id']}],
        resolved={'attachments': {file['id']: file}},
    )
    (callback,) = await emu.wait_for_call('POST', rf'/interactions/{sent["id"]}/{sent["token"]}/callback')
    assert callback.json['data']['content'] == 'Sorry, !test is only for the "admins" group.'
    assert emu.downloaded == []
