"""flowbot's engine: flows in TOML, compiled to ``transitions`` machines, run per conversation."""

__all__ = ['__version__']

__version__ = '0.1.0'
"""The one place the version is written; pyproject.toml reads it (``dynamic = ['version']``)."""
