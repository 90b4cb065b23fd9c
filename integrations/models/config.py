"""The ``[models]`` section of ``bot.toml``: which provider trains, how it is reached, and the limits.

Every limit exists so that one user's file cannot exhaust disk, memory or an OpenAI budget.
"""

from __future__ import annotations

import attrs

from engine.i18n import _, ngettext

__all__ = ['WORKER_TASKS', 'Limits', 'ModelsConfig']


@attrs.define(kw_only=True)
class Limits:
    """Bounds on what users may send or ask for; each violation gets a message naming the limit."""

    max_upload_bytes: int = 20 * 1024 * 1024
    """Largest uploaded dataset file (ZIP, JSONL, CSV) or test file."""
    max_uncompressed_bytes: int = 100 * 1024 * 1024
    """Sum of the uncompressed sizes of a ZIP's members (zip-bomb guard)."""
    max_compression_ratio: float = 200.0
    """Largest uncompressed/compressed ratio of one ZIP member (zip-bomb guard)."""
    max_files: int = 20_000
    """Most ``.txt`` files read from a folder or ZIP."""
    max_examples: int = 100_000
    max_text_chars: int = 20_000
    """Longest single example text."""
    max_archive_bytes: int = 500 * 1024 * 1024
    """Largest total size of a folder zipped by ``dataset.archive``."""
    max_getfile_bytes: int = 10 * 1024 * 1024
    """Largest file ``dataset.getfile`` sends (Discord's attachment limit)."""
    max_test_examples: int = 5_000
    max_predict_chars: int = 4_000
    """Longest text for ``model.predict`` and ``model.chat``."""
    max_tokens_per_example: int = 65_536
    """OpenAI's per-example training limit; longer examples are truncated by OpenAI, so we refuse them."""
    min_openai_examples: int = 10
    """OpenAI refuses fine-tuning files with fewer examples."""
    recommended_openai_examples: int = 50
    """OpenAI recommends 50-100 examples at least; fewer trains, with a warning in the estimate."""
    max_labels: int = 1_000
    """Most distinct labels in one dataset or test file; examples with more are reported, not kept."""
    max_report_chars: int = 1_500
    """Longer reports are sent as a file instead of a message."""


def _provider(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in ('auto', 'openai', 'local'):
        raise ValueError(_("provider must be 'auto', 'openai' or 'local', not {value}").format(value=repr(value)))


WORKER_TASKS = ('speech.recognize', 'speech.synthesize', 'dataset.import', 'model.test')
"""The task kinds that can run in ``flowbot worker`` processes (besides watching training jobs)."""


def _worker_tasks(_instance: object, _attribute: object, value: list[str]) -> None:
    unknown = sorted(set(value) - set(WORKER_TASKS))
    if unknown:
        raise ValueError(
            ngettext(
                '[models] worker_tasks: unknown task kind {unknown}; known: {known}',
                '[models] worker_tasks: unknown task kinds {unknown}; known: {known}',
                len(unknown),
            ).format(unknown=unknown, known=list(WORKER_TASKS))
        )


@attrs.define(kw_only=True)
class ModelsConfig:
    """Structured from ``[models]``; the defaults run fully offline on the local provider."""

    provider: str = attrs.field(default='auto', validator=_provider)
    """``auto`` uses OpenAI when a key is configured, else the local scikit-learn model."""
    api_key: str | None = None
    api_key_file: str | None = None
    """Read when ``OPENAI_API_KEY`` is not set; the key is never logged."""
    base_url: str | None = None
    """An OpenAI-compatible endpoint, e.g. ``http://127.0.0.1:8000/v1``."""
    base_model: str = 'gpt-4o-mini-2024-07-18'
    chat_model: str | None = None
    """Model for chat when no fine-tuned model is active; defaults to ``base_model``."""
    system_instruction: str = 'Classify the message. Answer with its label only.'
    suffix: str = 'flowbot'
    n_epochs: int | None = None
    """``None`` picks epochs like OpenAI's default (about 3 passes, more for tiny datasets)."""
    price_per_million_tokens: float = 3.0
    """Training price of ``base_model`` in USD, for the estimate only."""
    history_turns: int = attrs.field(default=10, validator=attrs.validators.ge(0))
    poll_interval: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    max_poll_interval: float = attrs.field(default=300.0, validator=attrs.validators.gt(0))
    local_poll_interval: float = attrs.field(default=0.25, validator=attrs.validators.gt(0))
    timeout: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    max_retries: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    switch_on_success: bool = True
    """Make a freshly trained model the current one for chat, predict and test."""
    delivery_grace: float = attrs.field(default=10.0, validator=attrs.validators.ge(0))
    """Seconds a finished job waits for its conversation to reach its ``wait`` before it posts the
    outcome to the channel instead (the user started another command meanwhile)."""
    workers: bool = False
    """Watch training jobs in ``flowbot worker`` processes (needs a PostgreSQL store, see docs/deploy.md);
    ``false`` watches them in the bot process."""
    worker_heartbeat: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    """Seconds between a worker's heartbeats."""
    worker_stalled_after: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    """Seconds without a heartbeat after which a worker counts as dead and its tasks go to another."""
    task_timeout: float = attrs.field(default=600.0, validator=attrs.validators.gt(0))
    """With ``workers``: seconds a task of ``worker_tasks`` may wait for a worker to take it; then the user
    is told it was dropped, their flow goes on its ``on_error`` edge, and no worker runs it later. After
    60 s without a worker the waiting user sees so in the step's progress message."""
    worker_tasks: list[str] = attrs.field(factory=lambda: list(WORKER_TASKS), validator=_worker_tasks)
    """With ``workers``: the task kinds (:mod:`engine.tasks`) run in workers too; the others run in the bot
    process. Known kinds: :data:`WORKER_TASKS`."""
    delete_files: bool = True
    """Delete the uploaded training files from OpenAI when their job ends (any way)."""
    archive_dir: str = 'archive'
    """Where ``dataset.archive`` writes, relative to the data root (or absolute)."""
    split_seed: int = 0
    limits: Limits = attrs.field(factory=Limits)
