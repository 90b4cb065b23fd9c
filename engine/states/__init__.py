"""State kinds (what each state does) and the action registry."""

__all__: list[str] = []
