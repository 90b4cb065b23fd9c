"""flowbot's engine: flows in TOML, compiled to ``transitions`` machines, run per conversation."""

__all__: list[str] = []
