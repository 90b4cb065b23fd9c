"""Model providers: one interface (:class:`~integrations.models.providers.base.ModelProvider`), two implementations."""

from __future__ import annotations

__all__: list[str] = []
