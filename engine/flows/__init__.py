"""Flow files: the model, loading, validation and compilation."""

__all__: list[str] = []
