"""Bounded shutdown: every wait on the way out has a deadline, so a stop signal ends the process promptly.

A component that hangs on close (a gateway that never answers the close handshake, a task that swallows
its cancellation, a busy thread) is cut short with a warning naming it; the next steps still run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

__all__ = ['STEP_TIMEOUT', 'close_within', 'wait_within']

_log = logging.getLogger(__name__)

STEP_TIMEOUT = 10.0
"""Seconds one shutdown step may take (closing the Discord gateway, the store, ...)."""


async def wait_within(task: asyncio.Future[Any], what: str, timeout: float | None = None) -> bool:
    """Wait at most ``timeout`` for ``task`` to finish; if it does not, cancel it, log and go on without it.

    Unlike ``asyncio.wait_for`` this never waits for the cancellation to be honoured: a task that swallows
    it cannot hold the shutdown. Errors of the task are logged, not raised.

    :param what: names the step in the log.
    :param timeout: seconds; default :data:`STEP_TIMEOUT` (read at call time, so tests can shorten it).
    :return: whether it finished in time without error.
    """
    timeout = STEP_TIMEOUT if timeout is None else timeout
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        _log.warning('shutdown: %s did not finish within %gs; cut short', what, timeout)
        return False
    if task.cancelled():
        return True
    error = task.exception()
    if error is not None:
        _log.error('shutdown: %s failed', what, exc_info=error)
        return False
    return True


async def close_within(closing: Awaitable[Any], what: str, timeout: float | None = None) -> bool:
    """Run one close step (a coroutine) as a task, bounded by :func:`wait_within`."""
    return await wait_within(asyncio.ensure_future(closing), what, timeout)
