"""The set of flows the engine serves: active versions, older versions still running, and indexes.

A changed flow becomes a new version; conversations keep the compiled version they started on,
so an edit never changes a dialog under a user's feet.
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Collection, Iterable, Sequence

from engine import patterns
from engine.api import Attachment
from engine.flows import model
from engine.flows.compile import CompiledFlow, compile_flow, version_id
from engine.flows.loader import Diagnostic, FlowError, load_paths, load_text
from engine.flows.validate import validate
from engine.states.actions import ActionRegistry

__all__ = ['FlowLibrary']

_log = logging.getLogger(__name__)


class FlowLibrary:
    """Validated, compiled flows by name and version."""

    def __init__(
        self,
        actions: ActionRegistry,
        permissions: Collection[str],
        *,
        languages: Sequence[str] = (),
        file_roots: Sequence[pathlib.Path] | None = None,
    ) -> None:
        """:param languages: ``[bot] languages``: lint reports a text without a translation for one of them.
        :param file_roots: folders a flow's ``files`` may name (data root, flow folders); ``None``: not checked.
        """
        self.actions = actions
        self.permissions = permissions
        self.languages = tuple(languages)
        self.file_roots = file_roots
        self._compiled: dict[tuple[str, str], CompiledFlow] = {}
        self._active: dict[str, CompiledFlow] = {}
        self._commands: dict[str, CompiledFlow] = {}
        self._message_flows: list[CompiledFlow] = []
        self.generation = 0
        """Bumped on every :meth:`activate`, so caches of the active set know when to rebuild."""

    def check(self, flows: Sequence[model.Flow]) -> list[Diagnostic]:
        """Lint ``flows`` as a set against this library's actions, permission groups, languages and file roots.

        :returns: the problems; empty when the set may be activated.
        """
        return validate(
            flows,
            actions=self.actions,
            permissions=self.permissions,
            languages=self.languages,
            file_roots=self.file_roots,
        )

    def load(self, paths: Iterable[pathlib.Path]) -> list[Diagnostic]:
        """Load flow files; if any is invalid, nothing changes and the diagnostics come back."""
        flows, problems = load_paths(paths)
        problems += self.check(flows) if not problems else []
        if problems:
            return problems
        self.activate(flows)
        return []

    def activate(self, flows: Sequence[model.Flow]) -> None:
        """Make exactly ``flows`` the active set (already validated)."""
        active: dict[str, CompiledFlow] = {}
        for flow in flows:
            key = (flow.name, version_id(flow))
            if key not in self._compiled:
                self._compiled[key] = compile_flow(flow)
            active[flow.name] = self._compiled[key]
        self._active = active
        self.generation += 1
        self._commands = {
            name: compiled
            for compiled in active.values()
            for name in [compiled.flow.trigger.command, *compiled.flow.trigger.aliases]
            if name
        }
        self._message_flows = sorted(
            (c for c in active.values() if c.flow.trigger.message), key=lambda c: -c.flow.trigger.priority
        )

    def restore(self, name: str, version: str, source: str) -> CompiledFlow | None:
        """Compile a stored older version so a restored conversation can finish on it."""
        if (name, version) in self._compiled:
            return self._compiled[(name, version)]
        try:
            flow = load_text(source, f'<stored {name} {version}>')
        except FlowError as exc:
            _log.error('stored flow %s version %s no longer loads: %s', name, version, exc)
            return None
        compiled = compile_flow(flow)
        self._compiled[(name, compiled.version)] = compiled
        return compiled

    def get(self, name: str, version: str | None = None) -> CompiledFlow | None:
        """A flow by name: the active version, or a given one (a conversation finishing on its own version).

        :param version: a version id; ``None``: the active one.
        """
        if version is None:
            return self._active.get(name)
        return self._compiled.get((name, version))

    def active(self) -> list[CompiledFlow]:
        """The flows serving new conversations now."""
        return list(self._active.values())

    def command(self, name: str) -> CompiledFlow | None:
        """The active flow a command (or one of its aliases) starts, or ``None``."""
        return self._commands.get(name)

    def command_names(self) -> list[str]:
        """Every command and alias of the active flows, sorted (help, slash-command registration)."""
        return sorted(self._commands)

    def for_message(self, text: str, attachments: Sequence[Attachment]) -> CompiledFlow | None:
        """The message flow whose filter takes this message (highest priority first)."""
        for compiled in self._message_flows:
            rule = compiled.flow.trigger.filter
            if rule is None:
                return compiled
            if rule.has_attachment is not None and rule.has_attachment != bool(attachments):
                continue
            if rule.content_types and not any(
                a.content_type.startswith(tuple(rule.content_types)) for a in attachments
            ):
                continue
            if rule.pattern and not patterns.search(rule.pattern, text):
                continue
            return compiled
        return None
