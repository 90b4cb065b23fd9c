"""The actions flows call (``dataset.*`` and ``model.*``): argument coercion and nothing else.

Flow arguments arrive as templated strings, so booleans and numbers are parsed here with a clear
message; every result is a JSON-serialisable dict with a ``text`` fit to show the user.
"""

from __future__ import annotations

import asyncio
from typing import Any

import attrs

from engine.commands import parse_bool
from engine.i18n import _, format_number, ngettext
from engine.states.actions import ActionContext, ActionError, ActionRegistry
from integrations.models.datasets import text_folders
from integrations.models.service import ModelsService

__all__ = ['register_actions']


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ('', 'none'):  # an empty template means not given
        return False
    flag = parse_bool(text)
    if flag is None:
        raise ActionError(_('{name} must be true or false, not {value!r}').format(name=name, value=value))
    return flag


def _optional(value: Any) -> str | None:
    """Empty templates render as '' or 'None': both mean not given."""
    if value is None:
        return None
    text = str(value).strip()
    return None if text in ('', 'None', 'null') else text


def _required(value: Any, name: str) -> str:
    text = _optional(value)
    if text is None:
        raise ActionError(_('{name} is required').format(name=name))
    return text


def register_actions(actions: ActionRegistry, service: ModelsService) -> None:
    """Register every ``dataset.*`` and ``model.*`` action over ``service``."""

    async def dataset_select(
        ctx: ActionContext, *, path: str, label: str = 'positive', add: Any = False
    ) -> dict[str, Any]:
        """Make every .txt in a data-root folder an example with LABEL; it becomes the current dataset."""
        return await service.select(
            _required(path, 'path'),
            _optional(label) or 'positive',
            add=_flag(add, 'add'),
            call=ctx.call_id,
            report=ctx.report,
        )

    async def dataset_upload(ctx: ActionContext, *, label: str | None = None, add: Any = False) -> dict[str, Any]:
        """Import the attached ZIP of .txt files, JSONL or CSV as a dataset, with a validation report."""
        return await service.upload(
            ctx.attachments, _optional(label), add=_flag(add, 'add'), call=ctx.call_id, report=ctx.report
        )

    async def dataset_choices(ctx: ActionContext) -> dict[str, Any]:
        """The datasets one can train on: saved datasets, then data-root folders of .txt files (as choices)."""
        saved = [r['name'] for r in await service.store.list_records('dataset')]
        folders = await asyncio.to_thread(text_folders, service.root, limit=max(0, 24 - len(saved[-12:])))
        choices = [{'value': f'dataset:{name}', 'label': _('dataset {name}').format(name=name)} for name in saved[-12:]]
        choices += [{'value': folder, 'label': _('folder {name}').format(name=folder)} for folder in folders]
        return {'choices': choices, 'count': len(choices)}

    async def dataset_use(ctx: ActionContext, *, name: str, label: str = 'positive') -> dict[str, Any]:
        """Make a saved dataset (``dataset:NAME``) current, or select a data-root folder (as dataset.select)."""
        given = _required(name, 'name')
        if given.startswith('dataset:'):
            info = await service.datasets.get(given.removeprefix('dataset:'))
            await service.store.put_record('current', 'dataset', {'name': info.name})
            return {
                **attrs.asdict(info),
                'text': ngettext(
                    'Dataset {name} selected ({count} example).',
                    'Dataset {name} selected ({count} examples).',
                    info.count,
                ).format(name=info.name, count=format_number(info.count)),
            }
        return await service.select(given, _optional(label) or 'positive', call=ctx.call_id, report=ctx.report)

    async def dataset_summary(ctx: ActionContext, *, dataset: str | None = None) -> dict[str, Any]:
        """Examples per label, duplicates, empty texts and lengths of a dataset (default: current)."""
        return await service.summary(_optional(dataset))

    async def dataset_archive(ctx: ActionContext, *, path: str) -> dict[str, Any]:
        """Zip a data-root folder into the archive folder as YYYY-MM-DD_NAME.zip."""
        return await service.archive(_required(path, 'path'))

    async def dataset_getfile(ctx: ActionContext, *, name: str) -> dict[str, Any]:
        """A file from the data root or the archive folder, to send."""
        return await service.getfile(_required(name, 'name'))

    async def dataset_add_misclassified(ctx: ActionContext, *, test: str | None = None) -> dict[str, Any]:
        """Add a test's misclassified examples, with their true labels, to the current dataset."""
        return await service.add_misclassified(_optional(test))

    async def model_estimate(
        ctx: ActionContext, *, dataset: str | None = None, validation_split: Any = 0.0
    ) -> dict[str, Any]:
        """Validate a dataset for the active provider and estimate tokens and cost of training its billed part."""
        return await service.estimate(_optional(dataset), _optional(validation_split) or 0)

    async def model_train(
        ctx: ActionContext, *, dataset: str | None = None, validation_split: Any = 0.0
    ) -> dict[str, Any]:
        """Start training; returns {'job': id} at once, the result comes on topic job:<id>."""
        place = {
            'adapter': ctx.key.adapter,
            'channel': ctx.key.channel,
            'thread': None,  # a thread is a channel of its own on Discord, so channel names it
            'user': ctx.key.user,
            'user_name': ctx.user.name,
            'guild': ctx.user.guild,  # decides which bot process (shard) watches and reports the job
            'progress': None,
        }
        return await service.train(
            str(ctx.key), _optional(dataset), _optional(validation_split) or 0, place=place, call=ctx.call_id
        )

    async def model_jobs(ctx: ActionContext) -> dict[str, Any]:
        """All training jobs with their status."""
        return await service.list_jobs()

    async def model_cancel(ctx: ActionContext, *, job: str) -> dict[str, Any]:
        """Cancel a running training job."""
        return await service.cancel(_required(job, 'job'))

    async def model_test(ctx: ActionContext, *, data: str | None = None) -> dict[str, Any]:
        """Score the current model on attached JSON test data, a data-root file or the held-out split."""
        await ctx.report(_('testing the model...'))
        return await service.test(_optional(data), ctx.attachments, call=ctx.call_id, report=ctx.report)

    async def model_predict(ctx: ActionContext, *, text: str) -> dict[str, Any]:
        """The current model's label for TEXT."""
        return await service.predict(text)

    async def model_chat(ctx: ActionContext, *, text: str, reset: Any = False) -> dict[str, Any]:
        """Reply to TEXT with the current model, remembering a bounded history per conversation."""
        return await service.chat(str(ctx.key), text, reset=_flag(reset, 'reset'))

    for name, fn in (
        ('dataset.select', dataset_select),
        ('dataset.upload', dataset_upload),
        ('dataset.summary', dataset_summary),
        ('dataset.choices', dataset_choices),
        ('dataset.use', dataset_use),
        ('dataset.archive', dataset_archive),
        ('dataset.getfile', dataset_getfile),
        ('dataset.add_misclassified', dataset_add_misclassified),
        ('model.estimate', model_estimate),
        ('model.train', model_train),
        ('model.jobs', model_jobs),
        ('model.cancel', model_cancel),
        ('model.test', model_test),
        ('model.predict', model_predict),
        ('model.chat', model_chat),
    ):
        actions.add(name, fn)
