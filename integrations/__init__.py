"""Adapters and plugins around the engine: console, Discord, speech, models, built-ins."""

__all__: list[str] = []
