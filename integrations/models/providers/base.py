"""The one interface training, testing and chat go through, so flows do not care who trains.

A provider turns examples into a trained model through a :class:`Job` whose lifecycle
(``starting`` → ``queued``/``running`` → ``succeeded``/``failed``/``cancelled``) the job manager polls.
"""

from __future__ import annotations

import abc
import pathlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs

from engine.i18n import N_, _
from engine.states.actions import ActionError
from integrations.models.datasets import Example, Issue

__all__ = [
    'TERMINAL',
    'Estimate',
    'Job',
    'ModelProvider',
    'ProviderError',
    'Save',
    'TrainResult',
    'Turn',
    'Update',
    'status_text',
]

TERMINAL = frozenset({'succeeded', 'failed', 'cancelled'})

_STATUS = {
    'starting': N_('starting'),
    'queued': N_('queued'),
    'validating_files': N_('validating files'),
    'running': N_('running'),
    'succeeded': N_('succeeded'),
    'failed': N_('failed'),
    'cancelled': N_('cancelled'),
}
"""Job states as users read them (providers' own names otherwise)."""


def status_text(status: str) -> str:
    """A job state in the reply language."""
    return _(_STATUS[status]) if status in _STATUS else status


Save = Callable[[], Awaitable[None]]
"""Persist the job being started (its recorded intents) durably."""


class ProviderError(ActionError):
    """A provider call failed; ``fatal`` says retrying cannot help (the job is gone, the request is wrong)."""

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


@attrs.define(kw_only=True)
class Job:
    """A training job as stored (record kind ``job``): everything needed to resume it after a restart."""

    id: str
    provider: str
    who: str
    """The :class:`~engine.api.ConversationKey` (as text) that started it."""
    dataset: str
    place: dict[str, Any] = attrs.field(factory=dict)
    """Where the outcome goes: ``adapter``, ``channel``, ``thread`` (``None``: the channel itself),
    ``user``, ``user_name`` and ``progress`` (the id of the progress message to edit, once known)."""
    call: str = ''
    """The call that started it (:attr:`~engine.states.actions.ActionContext.call_id`): a re-run of that
    call after a restart adopts this job instead of starting another."""
    status: str = 'starting'
    reported: bool = False
    """Set once the outcome has reached its place, so it is reported once."""
    delivered: str = ''
    """How: ``inline`` (a waiting conversation), ``posted`` (to the channel) or ``shown`` (the start failed
    and the user saw the error at once)."""
    holdout: str | None = None
    """The examples held out from this job's training (data-root relative): ``test`` uses these."""
    created: float = attrs.field(factory=time.time)
    finished: float | None = None
    remote_id: str | None = None
    model_id: str | None = None
    progress: str = ''
    error: str | None = None
    metrics: dict[str, float] = attrs.field(factory=dict)
    plot: str | None = None
    examples: int = 0
    validation_examples: int = 0
    last_event: str | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)

    @property
    def topic(self) -> str:
        return f'job:{self.id}'


@attrs.frozen
class Update:
    """What one poll learned."""

    status: str
    progress: str = ''
    events: Sequence[str] = ()
    error: str | None = None
    last_event: str | None = None


@attrs.frozen
class Estimate:
    examples: int
    tokens: int
    """Tokens of one pass over the data."""
    epochs: int
    cost: float
    """Approximate price in USD (0 for the local provider)."""


@attrs.frozen
class TrainResult:
    model_id: str
    metrics: dict[str, float]
    """The final values (last step) of each metric."""
    plot: pathlib.Path | None = None


@attrs.frozen
class Turn:
    """One exchange of a chat history."""

    user: str
    assistant: str


class ModelProvider(abc.ABC):
    """Trains, tests and chats; implementations translate their failures into :class:`ProviderError`."""

    name: str = 'provider'
    poll_interval: float = 1.0
    """How often the job manager polls a running job (seconds)."""
    in_process: bool = False
    """Training runs in the process that started it (the local provider's thread): its job is watched
    there, never handed to a ``flowbot worker``."""

    @abc.abstractmethod
    def check(self, examples: Sequence[Example]) -> list[Issue]:
        """Problems that would make training fail (too few examples, wrong format, too long)."""

    @abc.abstractmethod
    async def estimate(self, examples: Sequence[Example]) -> Estimate:
        """Tokens and price of training on ``examples``."""

    @abc.abstractmethod
    async def start(self, job: Job, train: Sequence[Example], valid: Sequence[Example], save: Save) -> Job:
        """Start training and return ``job`` with its remote id and status set; returns without waiting.

        Called again after a crash or a transient failure with the same ``job``: it must go on from
        what ``job`` records, calling ``save`` (which returns once the job is durable) before every
        step whose effect cannot be undone or repeated, so nothing is created twice.
        """

    @abc.abstractmethod
    async def poll(self, job: Job) -> Update:
        """The job's current status and the progress text since the last poll."""

    @abc.abstractmethod
    async def cancel(self, job: Job) -> None:
        """Ask for the job to stop; the next poll reports ``cancelled``."""

    @abc.abstractmethod
    async def result(self, job: Job, folder: pathlib.Path) -> TrainResult:
        """The trained model id, final metrics and a plot written into ``folder``."""

    @abc.abstractmethod
    async def predict(self, model: str | None, texts: Sequence[str]) -> list[str]:
        """The label of each text according to ``model`` (``None``: the provider's default)."""

    @abc.abstractmethod
    async def chat(self, model: str | None, history: Sequence[Turn], text: str) -> str:
        """A reply to ``text`` given the earlier turns."""

    async def cleanup(self, job: Job) -> None:  # noqa: B027 - optional hook
        """After the job ended (any way): remove what it left behind (uploaded files); idempotent."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
