"""Suite-wide rules: in CI (``CI=true``) a skipped test is a failure, since CI installs every tool; each test starts in English."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest

from tests.postgres import PostgresServer, find_bindir


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if os.environ.get('CI') == 'true' and report.skipped and not hasattr(report, 'wasxfail'):
        report.outcome = 'failed'
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f'skipped in CI, where every tool the tests need is installed: {reason}'


@pytest.fixture(scope='session')
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole run (skipped, so failed in CI, when none is installed)."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip('PostgreSQL is not installed (Debian package postgresql)')
    server = PostgresServer(bindir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def postgres_dsn(postgres_server: PostgresServer) -> str:
    """The URL of a fresh database on the session's server."""
    return await postgres_server.new_database()


@pytest.fixture(autouse=True)
def _english_outside_an_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with English as the language outside any event; an engine built with
    ``bot.language = "ru"`` in one test (it sets the process default) must not make the next one Russian.
    The terminal names no language either (``flowbot`` commands would follow it), whatever the machine's is."""
    from engine import i18n

    for name in ('LANGUAGE', 'LC_ALL', 'LC_MESSAGES'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('LANG', 'C.UTF-8')
    i18n.set_default('en')
    yield
    i18n.set_default('en')


@pytest.fixture(autouse=True)
def _collector_as_python_sets_it() -> Iterator[None]:
    """A test that runs ``flowbot run`` in this process tunes the collector for serving
    (:func:`engine.app.tune_collector`); the next test gets Python's thresholds and nothing frozen back."""
    thresholds = gc.get_threshold()
    yield
    if gc.get_threshold() != thresholds:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
