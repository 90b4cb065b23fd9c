"""The state scope: what a waiting conversation keeps of it across a restart."""

from __future__ import annotations

from engine.states.scope import PERSISTED, StateScope


def test_every_persisted_field_that_is_set_is_stored_and_restored() -> None:
    scope = StateScope()
    assert scope.persisted() == {}
    scope.topic, scope.progress_id, scope.call = 'train:1', 'm7', 'c0ffee'
    stored = scope.persisted()
    assert set(stored) == set(PERSISTED)
    again = StateScope()
    again.restore(dict(stored))
    assert (again.topic, again.progress_id, again.call) == ('train:1', 'm7', 'c0ffee')
