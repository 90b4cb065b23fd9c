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


def test_a_scope_holding_nothing_is_renewed_in_place_with_a_new_number() -> None:
    scope = StateScope()
    epoch = scope.epoch
    assert scope.renew()
    assert scope.epoch != epoch


def test_a_scope_holding_anything_is_not_renewed() -> None:
    """Whatever it holds (a timer, a task, a topic, a progress message, a call) still refers to it and must be
    disarmed with it, so the next state entry needs a new scope."""
    for name, value in [
        ('timer', object()),
        ('task', object()),
        ('topic', 'job'),
        ('deadline', 1.0),
        ('progress_id', 'm1'),
        ('progress_flush', object()),
        ('call', 'c0ffee'),
        ('progress_sending', True),
    ]:
        scope = StateScope()
        setattr(scope, name, value)
        epoch = scope.epoch
        assert not scope.renew(), name
        assert scope.epoch == epoch, name
