"""The boundary between a structured mechanism and the un-noised data the kernel hands it.

A structured mechanism sees raw data in exactly two hooks, ``clip_factors`` and ``clip_statistic``
(the per-example norms). What they *return* is safe by construction: the kernel caps every factor at
the clipping bound and clamps every statistic before noising it. What they might *keep* is not: a
hook that stores the batch's largest norm and writes it into the gradient in ``postprocess``, or sets
the next threshold to this batch's raw median, would release un-noised data. So the kernel takes a
fingerprint of everything the mechanism's code can reach before those hooks run and compares it after
they ran; any difference is refused with an error that names what changed. State may change only in
the hooks that receive released values (``observe_statistic`` and ``postprocess``).

What the fingerprint covers (the *reachable state*): the mechanism object and everything reachable
from it (attributes, ``__slots__``, nested containers, tensors and arrays by content, generators by
state, functions by their closure cells and defaults, bound methods and partials), the attributes of
every class in its MRO and of every user class reached, the module globals that its methods (and the
functions they reach) name, and the global random states of torch, ``random`` and NumPy (a raw-data
hook must be deterministic). Modules are compared by identity, not walked: a mechanism that writes
raw data into another library's module state is outside what this check sees (stated in the README's
trust model).
"""

from __future__ import annotations

import functools
import random
import types
from collections import deque
from typing import Any

import numpy as np
import torch

from dpbench.privacy.mechanism import MechanismContractError

RAW_DATA_HOOKS = ("clip_factors", "clip_statistic")
"""The structured hooks that receive un-noised per-example data."""

# Classes from these packages are library code: their class attributes are not mechanism state.
_LIBRARY_PREFIXES = (
    "builtins", "torch", "numpy", "typing", "abc", "collections", "functools", "enum", "dpbench.privacy"
)
_SKIPPED_CLASS_KEYS = {"__dict__", "__weakref__", "__doc__", "__module__", "__qualname__", "__parameters__"}
_ATOMS = (int, float, complex, bool, str, bytes, type(None), type(Ellipsis))


class IsolationError(MechanismContractError):
    """A hook that sees un-noised data changed state that later hooks could read."""


def overrides_raw_data_hook(mechanism: object, base: type) -> bool:
    """Whether ``mechanism`` runs its own code (not ``base``'s) in a hook that sees raw data."""
    return any(getattr(type(mechanism), hook) is not getattr(base, hook) for hook in RAW_DATA_HOOKS)


class StateFingerprint:
    """A comparable record of the state reachable by a mechanism's code (see the module docstring)."""

    def __init__(self, mechanism: object) -> None:
        self.values: dict[str, Any] = {}
        self._seen: dict[int, str] = {}
        self._classes: deque[type] = deque()
        self._functions: deque[tuple[types.FunctionType, str]] = deque()
        self._keep_alive: list[object] = []
        self._visit(mechanism, "self")
        self._classes.extend(c for c in type(mechanism).__mro__ if c is not object)
        self._drain()
        self._random_states()

    def changes(self, other: StateFingerprint) -> list[str]:
        """Paths whose value differs between the two fingerprints (or exists in only one)."""
        changed = [path for path in self.values.keys() ^ other.values.keys()]
        changed += [p for p in self.values.keys() & other.values.keys() if not _same(self.values[p], other.values[p])]
        return sorted(changed)

    # ------------------------------------------------------------------------------------------ walking
    def _drain(self) -> None:
        walked_classes: set[int] = set()
        while self._classes or self._functions:
            while self._classes:
                cls = self._classes.popleft()
                if id(cls) in walked_classes or cls.__module__.startswith(_LIBRARY_PREFIXES):
                    continue
                walked_classes.add(id(cls))
                for key, value in list(vars(cls).items()):
                    if key not in _SKIPPED_CLASS_KEYS:
                        self._visit(value, f"class attribute {cls.__qualname__}.{key}")
            while self._functions:
                function, path = self._functions.popleft()
                namespace = function.__globals__
                module = namespace.get("__name__", "?")
                for name in sorted(_global_names(function.__code__)):
                    if name in namespace:
                        self._visit(namespace[name], f"global {name} of module {module}")

    def _visit(self, obj: object, path: str) -> None:
        if isinstance(obj, _ATOMS):
            self.values[path] = ("float", obj.hex()) if isinstance(obj, float) else (type(obj).__name__, obj)
            return
        if id(obj) in self._seen:
            self.values[path] = ("same object as", self._seen[id(obj)])
            return
        self._seen[id(obj)] = path
        self._keep_alive.append(obj)  # ids stay unique while the fingerprint is built
        if isinstance(obj, torch.Tensor):
            self.values[path] = ("tensor", obj.detach().clone())
        elif isinstance(obj, torch.Generator):
            self.values[path] = ("generator", obj.get_state().clone())
        elif isinstance(obj, np.ndarray):
            self.values[path] = ("ndarray", obj.copy())
        elif isinstance(obj, np.generic):
            self.values[path] = ("numpy scalar", obj.dtype.str, obj.tobytes())
        elif isinstance(obj, types.ModuleType):
            self.values[path] = ("module", obj.__name__)
        elif isinstance(obj, type):
            self.values[path] = ("class", obj.__module__, obj.__qualname__)
            self._classes.append(obj)
        elif isinstance(obj, dict):
            self.values[path] = (type(obj).__name__, len(obj))
            for key, value in list(obj.items()):
                self._visit(value, f"{path}[{key!r}]")
        elif isinstance(obj, (list, tuple, deque)):
            self.values[path] = (type(obj).__name__, len(obj))
            for index, value in enumerate(list(obj)):
                self._visit(value, f"{path}[{index}]")
        elif isinstance(obj, (set, frozenset)):
            self.values[path] = (type(obj).__name__, frozenset(map(repr, obj)))
        elif isinstance(obj, types.FunctionType):
            self._visit_function(obj, path)
        elif isinstance(obj, types.MethodType):
            self.values[path] = ("method",)
            self._visit(obj.__func__, f"{path}.__func__")
            self._visit(obj.__self__, f"{path}.__self__")
        elif isinstance(obj, functools.partial):
            self.values[path] = ("partial",)
            self._visit(obj.func, f"{path}.func")
            self._visit(obj.args, f"{path}.args")
            self._visit(obj.keywords, f"{path}.keywords")
        elif isinstance(obj, (staticmethod, classmethod)):
            self._visit(obj.__func__, path)
        elif isinstance(obj, property):
            self.values[path] = ("property",)
            for part in ("fget", "fset", "fdel"):
                self._visit(getattr(obj, part), f"{path}.{part}")
        else:
            self._visit_object(obj, path)

    def _visit_function(self, function: types.FunctionType, path: str) -> None:
        self.values[path] = ("function", function.__module__, function.__qualname__)
        for name, cell in zip(function.__code__.co_freevars, function.__closure__ or ()):
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                contents = None
            self._visit(contents, f"{path} closure variable {name}")
        self._visit(function.__defaults__, f"{path} defaults")
        self._visit(function.__kwdefaults__, f"{path} keyword defaults")
        if function.__dict__:
            self._visit(dict(function.__dict__), f"{path}.__dict__")
        if not function.__module__ or not function.__module__.startswith(_LIBRARY_PREFIXES):
            self._functions.append((function, path))

    def _visit_object(self, obj: object, path: str) -> None:
        cls = type(obj)
        attributes = getattr(obj, "__dict__", None)
        slots = [s for c in cls.__mro__ for s in getattr(c, "__slots__", ()) if isinstance(s, str)]
        self.values[path] = ("object", cls.__module__, cls.__qualname__)
        if attributes is None and not slots:
            self.values[path] += (id(obj),)  # opaque (e.g. a C object): compared by identity
            return
        self._classes.append(cls)
        for key, value in list((attributes or {}).items()):
            self._visit(value, f"{path}.{key}")
        for slot in slots:
            if slot not in ("__dict__", "__weakref__") and hasattr(obj, slot):
                self._visit(getattr(obj, slot), f"{path}.{slot}")

    def _random_states(self) -> None:
        self.values["torch's global random state"] = ("tensor", torch.get_rng_state())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            states = [("tensor", s) for s in torch.cuda.get_rng_state_all()]
            self.values["torch's CUDA random state"] = ("tensors", states)
        self.values["python's global random state"] = ("random", random.getstate())
        self.values["numpy's global random state"] = ("ndarray", np.random.get_state()[1].copy())


def _global_names(code: types.CodeType) -> set[str]:
    """Every name a code object (and the code objects nested in it) may look up as a global."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _global_names(constant)
    return names


def _same(a: Any, b: Any) -> bool:
    if not (isinstance(a, tuple) and isinstance(b, tuple) and a and b and a[0] == b[0]):
        return False
    if a[0] in ("tensor", "generator"):
        return _same_tensor(a[1], b[1])
    if a[0] == "ndarray":
        return a[1].shape == b[1].shape and a[1].dtype == b[1].dtype and a[1].tobytes() == b[1].tobytes()
    if a[0] == "tensors":
        return len(a[1]) == len(b[1]) and all(map(_same, a[1], b[1]))
    return a == b


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality (NaN equals NaN; -0.0 differs from 0.0)."""
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    if a.is_sparse or b.is_sparse:
        return torch.equal(a.to_dense(), b.to_dense())
    return torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8))


def call_isolated(mechanism: object, hook: str, name: str, step: int, *args: object) -> Any:
    """``getattr(mechanism, hook)(*args)``, refused if it changes any state the mechanism's code can
    reach. The arguments are the caller's own copies: the hook may read them, and a change it makes
    to them is invisible to the kernel."""
    before = StateFingerprint(mechanism)
    result = getattr(mechanism, hook)(*args)
    after = StateFingerprint(mechanism)
    changed = before.changes(after)
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise IsolationError(
            f"mechanism '{name}' at step {step}: {hook} sees un-noised per-example data and changed {shown}. "
            "A structured mechanism may change its state only in observe_statistic (which receives the noised "
            "statistic) and postprocess (which receives the released gradient); keep raw-data hooks free of side "
            "effects and randomness, and ask for a private statistic if the mechanism must adapt to the data"
        )
    return result


def plain_tensor(value: object, hook: str, name: str, step: int) -> torch.Tensor:
    """What a raw-data hook returned, as a plain tensor the mechanism holds no reference to."""
    if type(value) is not torch.Tensor:
        raise MechanismContractError(
            f"mechanism '{name}' at step {step}: {hook} returned {type(value).__name__}; it must return a plain "
            "torch.Tensor (no subclass, which could observe what the kernel computes with it)"
        )
    return value.detach().clone()

