"""The ``flow.graph`` action: a picture of an active flow, for the ``flow`` command.

Admins ask the bot itself what a dialog looks like; the picture is drawn from the running
version (after hot reloads too). PNG through Graphviz when ``dot`` is installed, else the Mermaid
text as a ``.mmd`` file. Pictures are cached by flow version under ``DATA_ROOT/graphs``, outside
the conversation's temporary folder, so the console can show a path that still exists afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from typing import Any

from engine.flows.compile import version_id
from engine.flows.graph import GraphvizMissingError, render_file
from engine.flows.loader import did_you_mean
from engine.i18n import _
from engine.plugins import SetupContext
from engine.states.actions import ActionContext, ActionError

__all__ = ['setup']

_log = logging.getLogger(__name__)

MAX_NAME_CHARS = 100


def setup(ctx: SetupContext) -> None:
    folder = ctx.config.resolve(ctx.config.bot.data_root) / 'graphs'

    async def flow_graph(action: ActionContext, *, name: str) -> dict[str, Any]:
        """Draw an active flow: ``path`` of a PNG (Graphviz) or of Mermaid text, and its ``format``."""
        if not isinstance(name, str) or not name.strip():
            raise ActionError(_('Which flow? Give its name, e.g. flow feedback.'))
        name = name.strip()
        if len(name) > MAX_NAME_CHARS:
            raise ActionError(_('That flow name is too long ({length} characters).').format(length=len(name)))
        flows = {f.name: f for f in ctx.catalog()}
        flow = flows.get(name) or next(
            (f for f in flows.values() if name in (f.trigger.command, *f.trigger.aliases)), None
        )
        if flow is None:
            raise ActionError(
                _('There is no flow named "{name}"{hint}.').format(name=name, hint=did_you_mean(name, flows))
            )
        stem = re.sub(r'[^A-Za-z0-9_-]', '_', f'{flow.name}-{version_id(flow)}')
        use_dot = shutil.which('dot') is not None
        path = folder / f'{stem}.{"png" if use_dot else "mmd"}'
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(path.suffix + '.part' + path.suffix)
            try:
                await asyncio.to_thread(render_file, flow, partial)
                partial.replace(path)
            except GraphvizMissingError:  # dot vanished between the check and the call
                path = await asyncio.to_thread(render_file, flow, folder / f'{stem}.mmd')
            except (OSError, RuntimeError) as exc:
                _log.error('drawing flow %s into %s failed: %s', flow.name, path, exc)
                raise ActionError(
                    _('The picture of flow {flow} could not be drawn (logged).').format(flow=flow.name)
                ) from exc
        return {
            'path': str(path),
            'format': 'png' if path.suffix == '.png' else 'mermaid',
            'name': flow.name,
            'version': flow.version,
        }

    ctx.actions.add('flow.graph', flow_graph)
