"""The state modules depend one way: kinds <- handlers <- steps <- runtime, never back (no import cycle)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _loaded_by(module: str) -> set[str]:
    """The engine modules importing ``module`` alone loads, in a fresh interpreter."""
    code = f'import sys, {module}; print(*(m for m in sys.modules if m.startswith("engine")))'
    out = subprocess.run([sys.executable, '-c', code], check=True, capture_output=True, text=True).stdout
    return set(out.split())


@pytest.mark.parametrize(
    ('module', 'not_loaded'),
    [
        ('engine.states.kinds', {'engine.states.handlers', 'engine.states.steps', 'engine.runtime'}),
        ('engine.states.handlers', {'engine.states.steps', 'engine.runtime', 'engine.interrupts'}),
        ('engine.states.steps', {'engine.runtime', 'engine.interrupts'}),
        ('engine.interrupts', {'engine.runtime', 'engine.states.steps'}),
        ('engine.messages', {'engine.runtime', 'engine.states.kinds'}),
    ],
)
def test_a_state_module_does_not_import_the_modules_that_use_it(module: str, not_loaded: set[str]) -> None:
    assert _loaded_by(module) & not_loaded == set()
