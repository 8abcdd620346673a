"""The state a plugin's copies share, put back before every call of a probe (to the snapshot taken before the
step's release) and after the probe (to the state the release left): the data attributes of the plugin's own
classes, the data globals of their modules, and the defaults and closure cells of the functions they define.

A probe calls deep copies of the plugin, so the plugin's instance state is untouched; but every copy shares its
class and its module. A plugin that counts its calls there (a class attribute, a module-level dict) learns
*after* a step that the step was probed (a probed step has more calls than the release) and can stop noising
for the rest of the epoch, whose steps are then probed only at the extra rate. Putting that state back as it was
after the release closes that channel for the state a plugin's own code most naturally keeps, and keeps the
run as it would have been without probing (a module-level cache or generator a probe's calls move would move
the run too). Other channels (other modules, files, time) stay open: docs/verification.md, Limits.

Which state: the classes of ``type(plugin).__mro__`` defined outside the standard library, dpbench and the
numeric libraries, and their modules' globals; the defaults, keyword defaults and closure cells of the
functions those modules and classes define and their attributes (a mutable default ``def _store(d={})`` or
an attribute ``_store.count`` is a module-level value by another name); of those, every attribute that is data (numbers, strings,
containers, tensors, arrays, generators, and objects of the plugin's own classes; not code, and not a
library's objects). A value that holds what the snapshot found is left as it is (a restore that replaced it, or
moved a tensor's version counter, would itself tell the plugin that a probe happened); a changed container,
tensor (its version counter too), array, generator or object is restored in place (so references held
elsewhere see the restored value), other values by reassignment; names added during the probe are removed.
What is left after a probe in state every copy shares is compared by the verifier (``probe-left-a-trace``).

Before each call, too: a plugin that counts a step's calls there can otherwise release its first call
un-noised and make the later ones (the verifier's) look honest; restored before each, every call of a probe is
the step's first. State elsewhere (another library's module, files) is not restored (docs/verification.md).
"""

from __future__ import annotations

import array
import copy
import functools
import random
import types
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from dpbench.privacy.isolation import INTERPRETER_GLOBALS, StateFingerprint, marshalled
from dpbench.privacy.plugin_streams import NOT_PLUGIN_CODE, plugin_owners
from dpbench.privacy.provenance import library_class

CODE_TYPES = (
    types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, types.MethodType, classmethod,
    staticmethod, property, functools.partial, types.MethodDescriptorType, types.WrapperDescriptorType,
    types.GetSetDescriptorType, types.MemberDescriptorType,
)


DATA_TYPES = (
    int, float, complex, bool, str, bytes, tuple, list, dict, set, frozenset, type(None), torch.Tensor, np.ndarray,
    np.generic, torch.Generator, np.random.Generator, np.random.RandomState, random.Random, deque, bytearray,
    array.array,
)
"""Values restored whatever defines them; other objects only where the plugin's own code defines their class
(a library's object, a torch module say, is left alone: rewriting it could cut it off from its users)."""


def _is_data(value: Any) -> bool:
    if isinstance(value, DATA_TYPES):
        return True
    return not isinstance(value, CODE_TYPES) and not library_class(type(value), NOT_PLUGIN_CODE)


# Names the interpreter keeps in a module's or a class's namespace; every other name, a dunder one too
# (``__calls__``: a red team's counter), is the plugin's data.
_MACHINERY = INTERPRETER_GLOBALS | {"__module__", "__qualname__", "__dict__", "__weakref__", "__slots__", "__orig_bases__", "__slotnames__"}


def _data(namespace: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in namespace.items() if k not in _MACHINERY and _is_data(v)}


def _restore_in_place(current: Any, saved: Any) -> bool:
    """Put ``saved``'s value into ``current`` itself; False where that is not possible."""
    if type(current) is not type(saved):
        return False
    if isinstance(current, dict):
        current.clear()
        current.update(saved)
    elif isinstance(current, (list, bytearray, array.array)):
        current[:] = saved
    elif isinstance(current, deque):
        current.clear()
        current.extend(saved)
    elif isinstance(current, set):
        current.clear()
        current.update(saved)
    elif isinstance(current, torch.Tensor):
        if current.shape != saved.shape:
            return False
        with torch.no_grad():
            current.copy_(saved)
    elif isinstance(current, np.ndarray):
        if current.shape != saved.shape:
            return False
        current[...] = saved
    elif isinstance(current, torch.Generator):
        current.set_state(saved.get_state())
    elif isinstance(current, np.random.Generator):
        current.bit_generator.state = saved.bit_generator.state
    elif isinstance(current, np.random.RandomState):
        current.set_state(saved.get_state())
    elif isinstance(current, random.Random):
        current.setstate(saved.getstate())
    elif hasattr(current, "__dict__") and not isinstance(current, CODE_TYPES):
        current.__dict__.clear()
        current.__dict__.update(saved.__dict__)
    else:
        return False
    return True


def _plugin_functions(owners: list[Any]) -> list[types.FunctionType]:
    """The functions the plugin's own modules and classes define (module-level functions, methods, static and
    class methods, properties' accessors), whose defaults and closures are state every copy shares."""
    modules = {id(vars(o)) for o in owners if isinstance(o, types.ModuleType)}
    found: dict[int, types.FunctionType] = {}
    for owner in owners:
        for value in vars(owner).values():
            candidates = [value]
            if isinstance(value, (staticmethod, classmethod)):
                candidates = [value.__func__]
            elif isinstance(value, property):
                candidates = [value.fget, value.fset, value.fdel]
            for fn in candidates:
                if isinstance(fn, types.FunctionType) and id(fn.__globals__) in modules:  # not by the name it carries
                    found[id(fn)] = fn
    return list(found.values())


class _Saved:
    """A deep copy of a value as the snapshot found it, with the value's tensor version counter (a tensor restored
    in place gets it back), and two records of its contents, each computed when first compared (only probed steps
    restore, so the snapshot taken before every release does not pay for them): its ``marshal`` digest (plain
    built-in data) or else its state fingerprint (:class:`~dpbench.privacy.isolation.StateFingerprint`, contents
    only: anything its code could read, walked without running its code)."""

    __slots__ = ("contents", "version", "_digest", "_fingerprint", "_digested")

    def __init__(self, contents: Any, version: int | None) -> None:
        self.contents, self.version = contents, version
        self._digest, self._fingerprint, self._digested = None, None, False

    def unchanged(self, value: Any) -> bool:
        """Whether ``value`` holds what the snapshot found."""
        if not self._digested:
            self._digest, self._digested = marshalled(self.contents), True
        if self._digest is not None:
            return marshalled(value) == self._digest
        if self._fingerprint is None:
            self._fingerprint = _contents(self.contents)
        return not self._fingerprint.changes(_contents(value, copies=False))


def _contents(value: Any, copies: bool = True) -> StateFingerprint:
    return StateFingerprint(value, random_states=False, versions=False, copies=copies, reach=False)


_IMMUTABLE = (int, float, complex, bool, str, bytes, type(None), tuple, frozenset)


def _copy(value: Any) -> tuple[bool, _Saved | None]:
    """``(True, the saved copy)``, or ``(False, None)`` for a value that cannot be copied (left as the calls
    leave it)."""
    try:
        version = value._version if isinstance(value, torch.Tensor) and not value.is_inference() else None
        saved = copy.deepcopy(value)
    except Exception:
        return False, None
    if saved is value and not isinstance(value, _IMMUTABLE):
        return False, None  # an object that copies to itself (a singleton's __deepcopy__): there is no snapshot of it
    return True, _Saved(saved, version)


def _put_back(current: Any, value: Any, saved: _Saved) -> Any:
    """What to bind where the snapshot found ``value`` and ``current`` is now: ``value`` itself when it is
    still there, holding what the snapshot found (most calls change nothing; a value replaced although unchanged
    would tell the plugin that a restore, so a probe, happened: a new identity, a tensor's version counter moved);
    else ``value`` with the snapshot's contents put into it where possible (a tensor with its version counter as
    the snapshot found it), else a fresh copy of the snapshot."""
    if current is value and saved.unchanged(value):
        return value
    fresh = copy.deepcopy(saved.contents)  # the snapshot itself is never handed out: it may be restored again
    if not _restore_in_place(value, fresh):
        return fresh
    if saved.version is not None:
        torch._C._autograd._unsafe_set_version_counter((value,), (saved.version,))
    return value


class SharedSnapshot:
    """The data of the plugin's classes and modules (see the module docstring) and the defaults, keyword
    defaults and closure cells of the functions they define, as they were when taken. :meth:`restore` puts
    them back, as often as needed (each time from a fresh copy of the snapshot)."""

    def __init__(self, plugin: Any) -> None:
        owners = plugin_owners(plugin)
        self._namespaces: list[tuple[Any, set[str], dict[str, tuple[Any, Any]]]] = []
        for owner in owners:
            namespace = _data(vars(owner))
            values = {}
            for name, value in namespace.items():
                ok, saved = _copy(value)
                if ok:
                    values[name] = (value, saved)
            self._namespaces.append((owner, set(namespace), values))
        self._functions: list[tuple[types.FunctionType, Any, Any, list[tuple[Any, Any, Any]], dict[str, Any]]] = []
        for fn in _plugin_functions(owners):
            defaults = fn.__defaults__
            kwdefaults = fn.__kwdefaults__
            saved_defaults = None
            if defaults is not None:
                saved_defaults = [(v, *_copy(v)) if _is_data(v) else (v, False, None) for v in defaults]
            saved_kwdefaults = None
            if kwdefaults is not None:
                saved_kwdefaults = {k: ((v, *_copy(v)) if _is_data(v) else (v, False, None)) for k, v in kwdefaults.items()}
            cells = []
            for cell in fn.__closure__ or ():
                try:
                    value = cell.cell_contents
                except ValueError:  # an empty cell
                    continue
                if _is_data(value):
                    ok, saved = _copy(value)
                    if ok:
                        cells.append((cell, value, saved))
            attributes = {k: (v, *_copy(v)) for k, v in _data(vars(fn)).items()}
            self._functions.append((fn, saved_defaults, saved_kwdefaults, cells, attributes))

    def restore(self) -> None:
        for owner, present, values in self._namespaces:
            for name in set(_data(vars(owner))) - present:
                delattr(owner, name)
            current = vars(owner)
            for name, (value, saved) in values.items():
                setattr(owner, name, _put_back(current.get(name), value, saved))
        for fn, defaults, kwdefaults, cells, attributes in self._functions:
            for name in set(_data(vars(fn))) - set(attributes):
                delattr(fn, name)
            current = vars(fn)
            for name, (value, ok, saved) in attributes.items():
                if ok:
                    setattr(fn, name, _put_back(current.get(name), value, saved))
            # the defaults' tuple and dict are replaced only where an entry changed (a new one each time would
            # itself show that a restore happened)
            if defaults is not None:
                now = fn.__defaults__ or ()
                restored = tuple(
                    _put_back(now[i] if i < len(now) else None, v, saved) if ok else v
                    for i, (v, ok, saved) in enumerate(defaults)
                )
                if len(restored) != len(now) or any(a is not b for a, b in zip(restored, now)):
                    fn.__defaults__ = restored
            if kwdefaults is not None:
                now = fn.__kwdefaults__ or {}
                restored_kw = {
                    k: (_put_back(now.get(k), v, saved) if ok else v) for k, (v, ok, saved) in kwdefaults.items()
                }
                if restored_kw.keys() != now.keys() or any(restored_kw[k] is not now[k] for k in now):
                    fn.__kwdefaults__ = restored_kw
            for cell, value, saved in cells:
                try:
                    current_cell = cell.cell_contents
                except ValueError:  # emptied by a call
                    current_cell = None
                cell.cell_contents = _put_back(current_cell, value, saved)


@contextmanager
def shared_state_restored(plugin: Any) -> Iterator[SharedSnapshot]:
    """Run the block, then put the plugin's shared state (:class:`SharedSnapshot`) back as it was when it
    began; the block gets that snapshot."""
    snapshot = SharedSnapshot(plugin)
    try:
        yield snapshot
    finally:
        snapshot.restore()
