"""What states do at run time, in one-way layers.

:mod:`~engine.states.kinds` (the behaviours: prompt, answer, run an action) ←
:mod:`~engine.states.handlers` (one class per state kind) ← :mod:`~engine.states.steps`
(moving a conversation through states). They see the engine only through
:mod:`~engine.states.port`; :mod:`~engine.states.scope` owns what a state entry armed, and
:mod:`~engine.states.actions` the action registry.
"""

__all__: list[str] = []
