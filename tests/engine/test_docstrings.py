"""Every public name of ``engine/`` says what it is for: a module, each name in its ``__all__``, and each public
method of a public class has a docstring (an override may rely on the one of the method it overrides)."""

from __future__ import annotations

import importlib
import pkgutil
import types
from collections.abc import Iterator

import engine
from tests.engine.docstrings import undocumented


def _modules() -> Iterator[types.ModuleType]:
    yield engine
    for info in pkgutil.walk_packages(engine.__path__, prefix='engine.'):
        yield importlib.import_module(info.name)


def test_every_public_module_class_function_and_method_of_the_engine_has_a_docstring() -> None:
    missing = [name for module in _modules() for name in undocumented(module)]
    assert missing == []


SAMPLE = """
from engine.app import build_app  # imported: checked where it is defined

__all__ = ['bare', 'documented', 'Bare', 'build_app']


def bare() -> None:
    pass


def hidden() -> None:  # not in __all__
    pass


def documented() -> None:
    \"\"\"Says why.\"\"\"


class Base:
    \"\"\"A base.\"\"\"

    def run(self) -> None:
        \"\"\"What running means.\"\"\"


class Bare(Base):
    def run(self) -> None:  # overrides a documented method: its docstring serves
        pass

    def extra(self) -> None:
        pass

    @property
    def size(self) -> int:
        return 0

    @classmethod
    def make(cls) -> None:
        pass

    def _private(self) -> None:
        pass
"""


def test_the_check_reports_a_module_function_class_method_property_without_docstring() -> None:
    module = types.ModuleType('sample')
    exec(compile(SAMPLE, 'sample.py', 'exec'), module.__dict__)
    assert undocumented(module) == [
        'sample',
        'sample.bare',
        'sample.Bare',
        'sample.Bare.extra',
        'sample.Bare.size',
        'sample.Bare.make',
    ]


def test_every_engine_module_declares_its_public_names() -> None:
    assert [m.__name__ for m in _modules() if not isinstance(getattr(m, '__all__', None), list | tuple)] == []
