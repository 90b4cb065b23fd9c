"""Engine test fixtures: ``engine_harness`` builds started apps over test flows and stops them afterwards."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.engine.helpers import Harness, build_harness

__all__ = ['HarnessFactory', 'engine_harness']

HarnessFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def engine_harness(tmp_path: pathlib.Path) -> AsyncIterator[HarnessFactory]:
    """``await engine_harness({'stem': toml}, actions={...}, store=..., ...)``; every app is stopped at the end."""
    built: list[Harness] = []

    async def make(flows: dict[str, str] | None = None, **kw: Any) -> Harness:
        harness = await build_harness(tmp_path, flows, **kw)
        built.append(harness)
        return harness

    yield make
    for harness in reversed(built):
        await harness.stop()
