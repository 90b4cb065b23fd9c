"""Find the public names of a module that have no docstring (used by ``test_docstrings``)."""

from __future__ import annotations

import inspect
import types

__all__ = ['undocumented']


def _has_doc(obj: object) -> bool:
    return bool((getattr(obj, '__doc__', None) or '').strip())


def _documented_member(cls: type, name: str) -> bool:
    """The member ``name`` of ``cls``, or the one of a base class it overrides, has a docstring."""
    for klass in cls.__mro__:
        member = klass.__dict__.get(name)
        if isinstance(member, staticmethod | classmethod):
            member = member.__func__
        if isinstance(member, property):
            member = member.fget
        if member is not None and _has_doc(member):
            return True
    return False


def _own_doc(cls: type) -> bool:
    """A class's own docstring: ``inspect.getdoc`` would take a base class's, which does not say what this one is for."""
    return bool((cls.__dict__.get('__doc__') or '').strip())


def undocumented(module: types.ModuleType) -> list[str]:
    """Qualified names, in ``__all__`` order, of the module (without a docstring), its public functions and
    classes, and the public methods and properties a public class defines, that have no docstring.

    A method that overrides a documented one counts as documented: the base's docstring says what it does.

    :param module: a module with ``__all__``; names it imports from elsewhere are checked where they are defined.
    """
    found = [] if _has_doc(module) else [module.__name__]
    for name in getattr(module, '__all__', []):
        obj = getattr(module, name)
        if getattr(obj, '__module__', module.__name__) != module.__name__:
            continue  # re-exported: checked in its own module
        qualified = f'{module.__name__}.{name}'
        if inspect.isclass(obj):
            if not _own_doc(obj):
                found.append(qualified)
            for attr, member in vars(obj).items():
                function = member.__func__ if isinstance(member, staticmethod | classmethod) else member
                is_method = inspect.isfunction(function) or isinstance(function, property)
                if is_method and not attr.startswith('_') and not _documented_member(obj, attr):
                    found.append(f'{qualified}.{attr}')
        elif inspect.isfunction(obj) and not _has_doc(obj):
            found.append(qualified)
    return found
