"""Where a class or a function comes from, judged by the objects themselves, not by the names they carry.

The kernel treats library code (torch, numpy, the standard library, dpbench) differently from a mechanism's
own: a library class's attributes are not mechanism state, a library function's globals are not walked. A
mechanism's class can *say* it is library code (``__module__ = "torch.nn"``, a module named ``torchdp``, a
module that renames itself): a fourth red team's did, and kept un-noised data where no check looked. Here a
class is a library's only if its module is inside one of the packages (a whole dotted component, not a name
prefix) *and* that module, as loaded, holds this very class under its qualified name; a function only if the
module of that name, as loaded, is the one whose globals the function runs with."""

from __future__ import annotations

import sys
import types


def in_packages(module_name: object, packages: tuple[str, ...]) -> bool:
    """``module_name`` is one of ``packages`` or a submodule of one."""
    return isinstance(module_name, str) and any(module_name == p or module_name.startswith(p + ".") for p in packages)


def library_class(cls: type, packages: tuple[str, ...]) -> bool:
    """``cls`` is defined by a module of ``packages`` and found there under its qualified name."""
    namespace = type.__getattribute__(cls, "__dict__")
    module_name = namespace.get("__module__", type.__getattribute__(cls, "__module__"))
    if not in_packages(module_name, packages):
        return False
    found: object = sys.modules.get(module_name)
    for part in str(type.__getattribute__(cls, "__qualname__")).split("."):
        if isinstance(found, types.ModuleType):
            found = vars(found).get(part)
        elif isinstance(found, type):
            found = type.__getattribute__(found, "__dict__").get(part)
        else:
            return False
    return found is cls


def library_function(function: types.FunctionType, packages: tuple[str, ...]) -> bool:
    """``function`` runs with the globals of a loaded module of ``packages``."""
    module_name = function.__globals__.get("__name__")
    module = sys.modules.get(module_name) if in_packages(module_name, packages) else None
    return module is not None and vars(module) is function.__globals__


def defining_modules(functions: list[types.FunctionType]) -> list[types.ModuleType]:
    """The loaded modules whose globals ``functions`` run with (whatever names they carry)."""
    found: dict[int, types.ModuleType] = {}
    unnamed = {}  # globals of modules not loaded under the name they carry (found by a scan of every module)
    for function in functions:
        name = function.__globals__.get("__name__")
        named = sys.modules.get(name) if isinstance(name, str) else None
        if isinstance(named, types.ModuleType) and vars(named) is function.__globals__:
            found[id(named)] = named
        else:
            unnamed[id(function.__globals__)] = function.__globals__
    if unnamed:
        for module in list(sys.modules.values()):
            if isinstance(module, types.ModuleType) and id(vars(module)) in unnamed:
                found[id(module)] = module
    return list(found.values())
