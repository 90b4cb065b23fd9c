# ruff: noqa: F811  (the fixtures imported from test_loop are used as parameters)
"""Where a job's report goes, with either provider, in the real app over the shipped flows.

The conversation that started a job may still wait for it (the report comes inline, see ``test_loop``),
or the user may have started another command meanwhile, or the bot may have restarted in between: the
report still reaches the channel exactly once, mentioning the user, and ``jobs`` shows the same text.
A message typed during the wait is answered after it, never dropped.
"""

from __future__ import annotations

import logging
import pathlib

import pytest

from engine.doubles import Sent

from .test_loop import (  # noqa: F401 - fixtures
    KEY,
    Bot,
    Provider,
    bot_config,
    console_recorder,
    data_root,
    provider,
    since,
    until,
)

__all__: list[str] = []


async def _booted(tmp_path: pathlib.Path, data_root: pathlib.Path, provider: Provider) -> Bot:
    settings = {**provider.settings, 'delivery_grace': 0.3}
    bot = Bot(bot_config(tmp_path, data_root, settings), console_recorder())
    await bot.boot()
    return bot


async def _start_training(bot: Bot) -> str:
    await bot.command('select_dataset', 'reviews/pos')
    await bot.command('select_dataset', 'reviews/neg label=negative add=true')
    await bot.command('train')
    start = await bot.press('start')
    [started] = [s for s in since(bot.adapter, start, 'text') if s.text.startswith('Training started: job')]
    return started.text.split()[3]


def _reports(bot: Bot, job_id: str) -> list[Sent]:
    return [s for s in bot.adapter.sent if s.kind != 'edit' and s.text.startswith(f'Training job {job_id} finished')]


async def test_the_report_is_posted_to_the_channel_when_the_user_started_another_command(
    tmp_path: pathlib.Path, data_root: pathlib.Path, provider: Provider
) -> None:
    bot = await _booted(tmp_path, data_root, provider)
    try:
        job_id = await _start_training(bot)
        start = await bot.command('hi')  # stops waiting; the job goes on
        assert 'posts its result here when it ends' in since(bot.adapter, start)[0].text
        provider.release()
        await until(lambda: _reports(bot, job_id), 'the report posted to the channel')
        await bot.service.jobs.wait(job_id)
        [report] = _reports(bot, job_id)
        assert report.key == KEY
        job = await bot.service.jobs.get(job_id)
        assert job.reported and job.delivered == 'posted'
        assert len(_reports(bot, job_id)) == 1
        start = await bot.command('jobs')  # the same outcome, and where it went
        assert f'{report.text} (posted to its channel)' in since(bot.adapter, start)[-1].text
    finally:
        await bot.shutdown()


async def test_a_report_nobody_waits_for_is_posted_once_after_a_restart(
    tmp_path: pathlib.Path, data_root: pathlib.Path, provider: Provider
) -> None:
    bot = await _booted(tmp_path, data_root, provider)
    try:
        job_id = await _start_training(bot)
        await bot.command('hi')
        await bot.shutdown()
        provider.release()
        await bot.boot()
        await until(lambda: _reports(bot, job_id), 'the report posted after the restart')
        await bot.service.jobs.wait(job_id)
        assert await bot.running.engine.wait_idle(5)
        assert len(_reports(bot, job_id)) == 1
        assert (await bot.service.jobs.get(job_id)).delivered == 'posted'
        await bot.shutdown()
        await bot.boot()  # and never again
        assert await bot.service.jobs.resume() == 0
        assert len(_reports(bot, job_id)) == 1
    finally:
        await bot.shutdown()


async def test_a_message_typed_during_the_wait_is_answered_after_the_report(
    tmp_path: pathlib.Path, data_root: pathlib.Path, provider: Provider
) -> None:
    bot = await _booted(tmp_path, data_root, provider)
    try:
        job_id = await _start_training(bot)
        start = await bot.say('is it done yet?')
        assert 'I will read your message when it is done' in since(bot.adapter, start)[0].text
        provider.release()
        await until(lambda: _reports(bot, job_id), 'the inline report')
        await bot.service.jobs.wait(job_id)
        assert await bot.running.engine.wait_idle(5)
        after = [s.text for s in bot.adapter.sent if s.kind != 'edit']
        report_at = after.index(_reports(bot, job_id)[0].text)
        replies = after[report_at + 1 :]
        assert replies, 'the deferred message was never answered'
        assert (await bot.service.jobs.get(job_id)).delivered == 'inline'
    finally:
        await bot.shutdown()


async def test_a_job_record_missing_its_fields_is_skipped_at_start_and_by_jobs(
    tmp_path: pathlib.Path, data_root: pathlib.Path, provider: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await _booted(tmp_path, data_root, provider)
    try:
        job_id = await _start_training(bot)
        await bot.running.engine.store.put_record('job', 'damaged', {'id': 'damaged', 'status': 'running'})
        await bot.shutdown()
        provider.release()
        with caplog.at_level(logging.ERROR):
            await bot.boot()  # the damaged record does not stop the start, nor the other job's report
        await until(lambda: _reports(bot, job_id), 'the report posted after the restart')
        start = await bot.command('jobs')
        assert job_id in since(bot.adapter, start)[-1].text
        assert "job record 'damaged' cannot be read" in caplog.text
    finally:
        await bot.shutdown()
