"""The models plugin: datasets, fine-tuning, testing and chat; gives flows the ``dataset.*`` and ``model.*`` actions.

With an OpenAI key (``[models] provider = "auto"`` or ``"openai"``) training is OpenAI fine-tuning;
without one the same actions train a local scikit-learn model, so flows never change.
"""

from __future__ import annotations

from engine.config import section
from engine.plugins import SetupContext
from engine.tasks import tasks_of
from integrations.models.actions import register_actions
from integrations.models.config import ModelsConfig
from integrations.models.service import ModelsService

__all__ = ['ModelsConfig', 'ModelsService', 'setup']


def setup(ctx: SetupContext) -> None:
    """Structure ``[models]``, register the actions, share the service as ``'models'``, resume jobs on start."""
    config = section(ctx.config, 'models', ModelsConfig)
    service = ModelsService(ctx.config, config, ctx.store, ctx.notifier, tasks=tasks_of(ctx))
    ctx.services['models'] = service
    register_actions(ctx.actions, service)
    ctx.on_start.append(service.start)
    ctx.on_stop.append(service.stop)
