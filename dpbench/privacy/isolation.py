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
from it (attributes, ``__slots__``, nested containers with their keys and set elements, tensors by
their whole storage, layout, version and Python attributes, NumPy arrays by content (object arrays
element by element), ``bytearray``, ``array.array`` and ``memoryview`` by their bytes, generators of
torch, NumPy and ``random`` by state, functions by their closure cells and defaults, bound methods and
partials, any other object without attributes, and the C state of an object of a C type (an ``io.StringIO``'s
buffer), by what ``pickle`` would save of it), the attributes of every class in its MRO and of every user class
reached, every global of the modules its functions run in (not only the names their code holds: a name can be
computed, ``globals()[...]``), and of the modules of its own code those hold, and the global random states of
torch, ``random`` and NumPy (a raw-data hook must be deterministic). An object whose state the fingerprint
cannot read (not picklable, or whose own class decides what its pickle shows, and not a known immutable type:
a Python generator, an ``io.StringIO``) is refused before the hook runs. Library modules (the standard library,
installed packages, dpbench) are compared by identity, not walked, and files and the logging registry by
identity: a mechanism that writes raw data into another library's module state is outside what this check sees
(stated in the README's trust model).
"""

from __future__ import annotations

import array
import functools
import io
import logging
import marshal
import random
import re
import sys
import sysconfig
import threading
import types
import weakref
from collections import defaultdict, deque
from typing import Any, Callable

import numpy as np
import torch

from dpbench.privacy.mechanism import MechanismContractError
from dpbench.privacy.provenance import in_packages, library_class, library_function

RAW_DATA_HOOKS = ("clip_factors", "clip_statistic")
"""The structured hooks that receive un-noised per-example data."""

# Classes from these packages are library code: their class attributes are not mechanism state (a class is
# judged by where it is found, not by the module it names: :mod:`dpbench.privacy.provenance`).
_LIBRARY_PREFIXES = (
    "builtins", "torch", "numpy", "typing", "abc", "collections", "functools", "enum", "dpbench.privacy"
)
# ``_abc_impl`` holds the caches of an abstract base class, which every isinstance check may fill; copyreg caches
# ``__slotnames__`` on a class the first time one of its objects is copied.
_SKIPPED_CLASS_KEYS = {"__dict__", "__weakref__", "__doc__", "__module__", "__qualname__", "__parameters__", "_abc_impl", "__slotnames__"}
_ATOMS = (int, float, complex, bool, str, bytes, type(None), type(Ellipsis))
# Objects without attributes whose value cannot change: compared by equality.
_IMMUTABLE = (
    torch.dtype, torch.device, torch.layout, torch.memory_format, np.dtype, np.ufunc, range, slice, re.Pattern, types.CodeType,
    types.GenericAlias, types.UnionType, type(NotImplemented), types.MethodDescriptorType, types.WrapperDescriptorType,
    types.ClassMethodDescriptorType, types.GetSetDescriptorType, types.MemberDescriptorType,
)
_LOCKS = (type(threading.Lock()), type(threading.RLock()))
# Process-wide objects of libraries, recorded by identity: files (outside the check, like any file) and the
# logging registry (a logger reaches every logger of the process, which any library may add to at any time).
_PROCESS_STATE = (io.IOBase, logging.Logger, logging.Manager, logging.PlaceHolder, logging.Handler)
_MEMORY_FILES = (io.StringIO, io.BytesIO)  # buffers in the process's memory: state, read (or refused) as any
# Globals the interpreter keeps for a module (the rest, dunder names too, are the module's data).
INTERPRETER_GLOBALS = frozenset({
    "__builtins__", "__loader__", "__spec__", "__warningregistry__", "__doc__", "__name__", "__package__",
    "__file__", "__cached__", "__path__", "__annotations__",
})
_INSTALLED = tuple({sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")})
# Containers of these exact types with at least _MARSHAL_FROM entries are compared by their marshal bytes when
# they hold plain data only (a change is then named by the container's path; smaller ones are walked, so a change
# is named down to its entry).
_PLAIN_DATA = (dict, list, tuple)
_MARSHAL_FROM = 32
MARSHAL_VERSION = 2
"""The marshal format compared: from version 3 on, an object's bytes depend on its reference count and a
string's on whether it is interned, so equal contents could read as changed (and a plugin could steer that)."""


def marshalled(obj: object) -> bytes | None:
    """``obj``'s ``marshal`` bytes, or None. Marshal writes only the interpreter's own types (no subclass, no
    object of another class) and runs none of their code, so equal bytes are equal contents (a set inside is
    written in its iteration order: the same set rebuilt in another order reads as changed, never the reverse). A
    pickle would not do: an object's ``__reduce__`` decides what its pickle shows (a sixth red team's left out a
    call counter)."""
    try:
        return marshal.dumps(obj, MARSHAL_VERSION)
    except (ValueError, TypeError):
        return None
_PLAIN_CONTAINERS = {dict, list, tuple, deque, set, frozenset}  # no attributes to visit
_DICT_VIEWS = (type({}.keys()), type({}.values()), type({}.items()))


class IsolationError(MechanismContractError):
    """A hook that sees un-noised data changed state that later hooks could read."""


def overrides_raw_data_hook(mechanism: object, base: type) -> bool:
    """Whether ``mechanism`` runs its own code (not ``base``'s) in a hook that sees raw data."""
    return any(getattr(type(mechanism), hook) is not getattr(base, hook) for hook in RAW_DATA_HOOKS)


class StateFingerprint:
    """A comparable record of the state reachable by a mechanism's code (see the module docstring)."""

    def __init__(
        self, mechanism: object, *, random_states: bool = True, versions: bool = True, copies: bool = True,
        reach: bool = True,
    ) -> None:
        """``random_states``: include the global random states; ``versions``: include each tensor's version
        counter (both are state a raw-data hook must not move; a comparison of *contents* leaves them out);
        ``copies=False``: hold tensors' storages as they are instead of copies, for a fingerprint compared at
        once and then dropped (the state must not change in between); ``reach=False``: the object's own contents
        only, not the classes and module globals its code can reach (a value compared with a copy of itself)."""
        self.values: dict[str, Any] = {}
        self._versions, self._copies, self._reach = versions, copies, reach
        self._seen: dict[int, str] = {}
        self._classes: deque[type] = deque()
        self._functions: deque[tuple[types.FunctionType, str]] = deque()
        self._keep_alive: list[object] = []
        self._namespaces: set[int] = set()
        self.unreadable: list[str] = []
        """Paths (with their type) of reachable objects whose state cannot be read: see :func:`call_isolated`."""
        self._visit(mechanism, "self")
        self._classes.extend(c for c in type(mechanism).__mro__ if c is not object)
        self._drain()
        if random_states:
            self._random_states()

    def changes(self, other: StateFingerprint) -> list[str]:
        """Paths whose value differs between the two fingerprints (or exists in only one)."""
        changed = [path for path in self.values.keys() ^ other.values.keys()]
        changed += [p for p in self.values.keys() & other.values.keys() if not _same(self.values[p], other.values[p])]
        return sorted(changed)

    # ------------------------------------------------------------------------------------------ walking
    def _drain(self) -> None:
        if not self._reach:
            self._classes.clear()
            self._functions.clear()
            return
        walked_classes: set[int] = set()
        while self._classes or self._functions:
            while self._classes:
                cls = self._classes.popleft()
                if id(cls) in walked_classes or _library_class(cls):
                    continue
                walked_classes.add(id(cls))
                for key, value in list(vars(cls).items()):
                    if key not in _SKIPPED_CLASS_KEYS:
                        self._visit(value, f"class attribute {cls.__qualname__}.{key}")
            while self._functions:
                function, path = self._functions.popleft()
                self._visit_namespace(function.__globals__)

    def _visit_namespace(self, namespace: dict[str, Any]) -> None:
        """Every global of a module of the mechanism's own code, once: a function can reach any of them by a
        computed name (``globals()[...]``, ``vars(sys.modules[__name__])``), not only the names its code holds."""
        if id(namespace) in self._namespaces:
            return
        self._namespaces.add(id(namespace))
        self._keep_alive.append(namespace)
        module = namespace.get("__name__", "?")
        for name, value in sorted(namespace.items(), key=lambda item: str(item[0])):
            if name not in INTERPRETER_GLOBALS:
                self._visit(value, f"global {name} of module {module}")

    def _visit(self, obj: object, path: str) -> None:
        if isinstance(obj, _ATOMS):
            self.values[path] = ("float", obj.hex()) if isinstance(obj, float) else (type(obj).__name__, obj)
            return
        if id(obj) in self._seen:
            self.values[path] = ("same object as", self._seen[id(obj)])
            return
        self._seen[id(obj)] = path
        self._keep_alive.append(obj)  # ids stay unique while the fingerprint is built
        if type(obj) in _PLAIN_DATA and len(obj) >= _MARSHAL_FROM and (digest := marshalled(obj)) is not None:
            self.values[path] = ("plain data", digest)  # a model's layout tables: one C call, not a walk
        elif isinstance(obj, torch.nn.parameter.UninitializedTensorMixin):  # a lazy module's, before its first forward
            self.values[path] = ("uninitialized", type(obj).__name__)
        elif isinstance(obj, torch.Tensor):
            self.values[path] = _tensor_state(obj, self._versions, self._copies)
            if obj.is_leaf and obj.grad is not None:
                self._visit(obj.grad, f"{path}.grad")
            self._visit_attributes(obj, path)
        elif isinstance(obj, dict):
            self.values[path] = (type(obj).__name__, len(obj))
            for index, (key, value) in enumerate(list(obj.items())):
                if not isinstance(key, _ATOMS):
                    self._visit(key, f"{path} key {index}")
                self._visit(value, f"{path}[{key!r}]")
            if isinstance(obj, defaultdict):
                self._visit(obj.default_factory, f"{path}.default_factory")
            if type(obj) not in _PLAIN_CONTAINERS:
                self._visit_attributes(obj, path)
        elif isinstance(obj, (list, tuple, deque)):
            self.values[path] = (type(obj).__name__, len(obj))
            for index, value in enumerate(list(obj)):
                self._visit(value, f"{path}[{index}]")
            if type(obj) not in _PLAIN_CONTAINERS:
                self._visit_attributes(obj, path)
        elif isinstance(obj, (set, frozenset)):
            self.values[path] = (type(obj).__name__, frozenset(map(repr, obj)))
            for index, element in enumerate(list(obj)):
                if not isinstance(element, _ATOMS):
                    self._visit(element, f"{path} element {index}")
            if type(obj) not in _PLAIN_CONTAINERS:
                self._visit_attributes(obj, path)
        elif isinstance(obj, types.FunctionType):
            self._visit_function(obj, path)
        elif isinstance(obj, torch.Generator):
            self.values[path] = ("generator", obj.get_state().clone())
        elif isinstance(obj, random.Random):
            self.values[path] = ("python generator", obj.getstate())
            self._visit_attributes(obj, path)
        elif isinstance(obj, (np.random.Generator, np.random.RandomState, np.random.BitGenerator)):
            self.values[path] = ("numpy generator", type(obj).__qualname__)
            self._visit(_numpy_generator_state(obj), f"{path} state")
        elif isinstance(obj, np.ndarray):
            self._visit_array(obj, path)
        elif isinstance(obj, np.generic):
            self.values[path] = ("numpy scalar", obj.dtype.str, obj.tobytes())
        elif isinstance(obj, bytearray):
            self.values[path] = ("bytearray", bytes(obj))
        elif isinstance(obj, array.array):
            self.values[path] = ("array", obj.typecode, obj.tobytes())
        elif isinstance(obj, memoryview):
            self._visit_memoryview(obj, path)
        elif isinstance(obj, types.ModuleType):
            self.values[path] = ("module", obj.__name__)
            if self._reach and not library_module(obj):
                self._visit_namespace(vars(obj))
        elif isinstance(obj, type):
            self.values[path] = ("class", obj.__module__, obj.__qualname__)
            self._classes.append(obj)
        elif isinstance(obj, (types.MethodType, types.BuiltinMethodType, types.MethodWrapperType)):
            self.values[path] = ("method", getattr(obj, "__qualname__", type(obj).__name__))
            self._visit(getattr(obj, "__func__", None), f"{path}.__func__")
            self._visit(obj.__self__, f"{path}.__self__")
        elif isinstance(obj, functools.partial):
            self.values[path] = ("partial",)
            self._visit(obj.func, f"{path}.func")
            self._visit(obj.args, f"{path}.args")
            self._visit(obj.keywords, f"{path}.keywords")
            self._visit_attributes(obj, path)
        elif isinstance(obj, (staticmethod, classmethod)):
            self._visit(obj.__func__, path)
        elif isinstance(obj, property):
            self.values[path] = ("property",)
            for part in ("fget", "fset", "fdel"):
                self._visit(getattr(obj, part), f"{path}.{part}")
        elif isinstance(obj, _IMMUTABLE):
            self.values[path] = ("immutable", obj)
        elif isinstance(obj, _LOCKS):
            self.values[path] = ("lock", repr(obj).split(" at 0x")[0])
        elif isinstance(obj, _DICT_VIEWS):  # what the view shows (its dict may be out of reach otherwise)
            self.values[path] = (type(obj).__name__,)
            self._visit(list(obj), f"{path} contents")
        elif isinstance(obj, types.MappingProxyType):
            self.values[path] = ("mappingproxy",)
            self._visit(dict(obj), f"{path} contents")
        elif isinstance(obj, types.CellType):
            self.values[path] = ("cell",)
            self._visit(_cell_contents(obj), f"{path} contents")
        else:
            self._visit_object(obj, path)

    def _visit_function(self, function: types.FunctionType, path: str) -> None:
        self.values[path] = ("function", function.__module__, function.__qualname__)
        if _loaded_library_function(function):
            return  # its defaults and closure are its library's state, like the library's module globals
        for name, cell in zip(function.__code__.co_freevars, function.__closure__ or ()):
            self._visit(_cell_contents(cell), f"{path} closure variable {name}")
        self._visit(function.__defaults__, f"{path} defaults")
        self._visit(function.__kwdefaults__, f"{path} keyword defaults")
        if function.__dict__:
            self._visit(dict(function.__dict__), f"{path}.__dict__")
        if not _library_function(function):
            self._functions.append((function, path))

    def _visit_object(self, obj: object, path: str) -> None:
        cls = type(obj)
        self.values[path] = ("object", cls.__module__, cls.__qualname__)
        if isinstance(obj, _PROCESS_STATE) and not isinstance(obj, _MEMORY_FILES):  # a file, the logging registry
            self.values[path] += (id(obj),)
            return
        if isinstance(obj, functools._lru_cache_wrapper):  # its cache is state: a new entry is a miss
            info = obj.cache_info()
            self.values[path] += (info.misses, info.currsize)
        # an object of a C type keeps state beside its attributes (an io.StringIO's buffer, a count's value):
        # read through pickle, or unreadable
        if not self._visit_attributes(obj, path) or _keeps_c_state(cls):
            self._visit_pickled(obj, path)

    def _visit_attributes(self, obj: object, path: str) -> bool:
        """Visit ``obj``'s ``__dict__`` and ``__slots__`` (and its class); whether it has either."""
        cls = type(obj)
        attributes = instance_dict(obj)
        slots = [s for c in cls.__mro__ for s in getattr(c, "__slots__", ()) if isinstance(s, str)]
        if attributes is None and not slots:
            return False
        self._classes.append(cls)
        for key, value in list((attributes or {}).items()):
            self._visit(value, f"{path}.{key}")
        for slot in slots:
            if slot not in ("__dict__", "__weakref__") and hasattr(obj, slot):
                self._visit(getattr(obj, slot), f"{path}.{slot}")
        return True

    def _visit_pickled(self, obj: object, path: str) -> None:
        """An object without attributes (a C object): its state is what pickle would save of it; one that
        pickle cannot save is recorded as unreadable."""
        if isinstance(obj, weakref.ref):
            self._visit(obj(), f"{path}()")
            return
        try:
            if _pickle_said_by_own_class(type(obj)):
                raise TypeError("its own class decides what its pickle shows")
            reduced = obj.__reduce_ex__(4)
        except Exception:  # noqa: BLE001 - any failure means the state cannot be read
            self.unreadable.append(f"{path} ({type(obj).__module__}.{type(obj).__qualname__})")
            self.values[path] += (id(obj),)
            return
        if isinstance(reduced, str):  # a named global: compared by its name
            self.values[path] += (reduced,)
            return
        items = [None if part is None else list(part) for part in reduced[3:5]]
        self._visit([*reduced[1:3], *items], f"{path} pickled")

    def _visit_array(self, obj: np.ndarray, path: str) -> None:
        if obj.dtype.hasobject:  # the elements are references: compare what they refer to
            self.values[path] = ("object array", obj.shape, str(obj.dtype))
            self._visit(obj.tolist(), f"{path} elements")
        else:
            self.values[path] = ("ndarray", obj.copy(), obj.strides, obj.flags.writeable)
        if obj.base is not None:  # the buffer beyond the view (or the bytearray it wraps)
            self._visit(obj.base, f"{path}.base")
        self._visit_attributes(obj, path)

    def _visit_memoryview(self, obj: memoryview, path: str) -> None:
        try:
            self.values[path] = ("memoryview", obj.format, obj.shape, obj.readonly, obj.tobytes())
        except ValueError:  # released
            self.values[path] = ("memoryview", "released")
            return
        self._visit(obj.obj, f"{path}.obj")

    def _random_states(self) -> None:
        self.values["torch's global random state"] = ("tensor", torch.get_rng_state())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            states = [("tensor", s) for s in torch.cuda.get_rng_state_all()]
            self.values["torch's CUDA random state"] = ("tensors", states)
        self.values["python's global random state"] = ("random", random.getstate())
        self.values["numpy's global random state"] = ("ndarray", np.random.get_state()[1].copy())


_HEAP_TYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made by a class statement (or type()), not a built-in type
_PICKLE_METHODS = ("__reduce_ex__", "__reduce__", "__getstate__")


def _keeps_c_state(cls: type) -> bool:
    """Whether objects of ``cls`` keep state in C beside their attributes: its first built-in base is not
    ``object``."""
    return next(c for c in cls.__mro__ if not c.__flags__ & _HEAP_TYPE) is not object


def _library_class(cls: type) -> bool:
    """A class of the libraries whose state is not walked: one of ``_LIBRARY_PREFIXES`` or of a library module
    (:func:`library_module`), found there under its qualified name."""
    if library_class(cls, _LIBRARY_PREFIXES):
        return True
    name = type.__getattribute__(cls, "__dict__").get("__module__")
    module = sys.modules.get(name) if isinstance(name, str) else None
    return isinstance(module, types.ModuleType) and library_module(module) and library_class(cls, (name,))


def _library_function(function: types.FunctionType) -> bool:
    """A function that runs with the globals of a library module (:func:`library_module`), as loaded."""
    if library_function(function, _LIBRARY_PREFIXES):
        return True
    name = function.__globals__.get("__name__")
    module = sys.modules.get(name) if isinstance(name, str) else None
    return isinstance(module, types.ModuleType) and vars(module) is function.__globals__ and library_module(module)


def _loaded_library_function(function: types.FunctionType) -> bool:
    """A module-level function of a library module, the very one its module holds under its name (not a
    function made from a library's code with other defaults or cells)."""
    return _library_function(function) and function.__globals__.get(function.__name__) is function


def library_module(module: types.ModuleType) -> bool:
    """A module of the standard library, an installed package or dpbench (not walked: its state is the
    library's), judged by the module's own name as loaded and where its file lies."""
    name = vars(module).get("__name__")
    if not isinstance(name, str) or sys.modules.get(name) is not module:
        return False
    if name.split(".")[0] in sys.stdlib_module_names or in_packages(name, _LIBRARY_PREFIXES + ("dpbench",)):
        return True
    origin = getattr(vars(module).get("__spec__"), "origin", None) or vars(module).get("__file__") or ""
    return isinstance(origin, str) and origin.startswith(_INSTALLED)


def _pickle_said_by_own_class(cls: type) -> bool:
    """Whether a class of ``cls``'s MRO that is not library code defines how its objects pickle: an object of
    such a class without attributes (a subclass of a C type with ``__slots__ = ()``) could show pickle any state
    it likes and hide the C state it keeps, a call counter say."""
    return any(
        c.__flags__ & _HEAP_TYPE and not library_class(c, _LIBRARY_PREFIXES) and any(m in vars(c) for m in _PICKLE_METHODS)
        for c in cls.__mro__
    )


def _tensor_state(tensor: torch.Tensor, with_version: bool = True, copy: bool = True) -> tuple:
    """A tensor's whole state: for a dense tensor the bytes of its entire storage (data beyond the view
    too) with shape, strides and offset; its dtype, device, ``requires_grad`` and version counter (which
    every in-place operation moves, even one that leaves the values as they were). A tensor whose storage
    cannot be read (one kept from inside a ``torch.func`` transform the hook ran, say) is a new object,
    unequal to any state before."""
    try:
        data = tensor.detach()
        data.untyped_storage()
    except RuntimeError:
        return ("tensor without a readable storage", object())
    version = None if data.is_inference() or not with_version else data._version
    meta = (data.dtype, data.device, tensor.requires_grad, version)
    if data.layout != torch.strided or data.is_meta:
        return ("tensor", data.to_dense().clone() if data.is_sparse else data.clone(), *meta)
    storage = torch.empty(0, dtype=torch.uint8, device=data.device).set_(data.untyped_storage())
    storage = storage.clone() if copy else storage
    return ("tensor", storage, tuple(data.shape), data.stride(), data.storage_offset(), *meta)


def _cell_contents(cell: types.CellType) -> object:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return None


def _numpy_generator_state(generator: object) -> object:
    if isinstance(generator, np.random.Generator):
        return generator.bit_generator.state
    if isinstance(generator, np.random.RandomState):
        return generator.get_state(legacy=False)
    return generator.state


def _same(a: Any, b: Any) -> bool:
    if not (isinstance(a, tuple) and isinstance(b, tuple) and a and b and a[0] == b[0]):
        return False
    if a[0] in ("tensor", "generator"):
        return same_tensor(a[1], b[1]) and a[2:] == b[2:]
    if a[0] == "ndarray":
        same_content = a[1].shape == b[1].shape and a[1].dtype == b[1].dtype and a[1].tobytes() == b[1].tobytes()
        return same_content and a[2:] == b[2:]
    if a[0] == "tensors":
        return len(a[1]) == len(b[1]) and all(map(_same, a[1], b[1]))
    return a == b


def same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality (NaN equals NaN; -0.0 differs from 0.0)."""
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    if a.is_sparse or b.is_sparse:
        return torch.equal(a.to_dense(), b.to_dense())
    return torch.equal(_as_words(a), _as_words(b))


def _as_words(t: torch.Tensor) -> torch.Tensor:
    """``t``'s bytes as the widest integers that tile them (8 at a time compare about 8 times faster)."""
    raw = t.contiguous().reshape(-1).view(torch.uint8)
    return raw.view(torch.int64) if raw.numel() % 8 == 0 and raw.data_ptr() % 8 == 0 else raw


def listed(paths: list[str], limit: int, separator: str = ", ") -> str:
    """The first ``limit`` of ``paths``, and how many more, for a message."""
    return separator.join(paths[:limit]) + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def instance_dict(obj: object) -> dict | None:
    """``obj``'s attributes as the interpreter stores them, whatever its class says ``__dict__`` is (a class
    attribute or property named ``__dict__`` could show anything); None for an object without them."""
    for klass in type(obj).__mro__:
        descriptor = vars(klass).get("__dict__")
        if type(descriptor) is types.GetSetDescriptorType:
            return descriptor.__get__(obj)
    return None


def call_isolated(mechanism: object, hook: str, name: str, step: int, call: Callable[[], Any]) -> Any:
    """``call()`` (which runs ``mechanism``'s ``hook`` on the caller's own copies of its arguments: the hook
    may read them, and a change it makes to them is invisible to the kernel), refused if it changes any
    state the mechanism's code can reach."""
    before = StateFingerprint(mechanism)
    if before.unreadable:
        shown = listed(before.unreadable, 5)
        raise IsolationError(
            f"mechanism '{name}' at step {step}: {hook} sees un-noised per-example data, and the isolation check "
            f"cannot read the state of {shown}, so it could not tell whether the hook changed it. Keep the "
            "mechanism's state in values the check compares (numbers, strings, bytes, containers, tensors, arrays, "
            "generators, objects with attributes), or move this object out of the mechanism's reach"
        )
    result = call()
    try:
        after = StateFingerprint(mechanism)
    except RuntimeError as error:  # e.g. a tensor kept from inside a torch.func transform the hook ran
        raise IsolationError(
            f"mechanism '{name}' at step {step}: {hook} sees un-noised per-example data and left state the isolation "
            f"check cannot read ({str(error)[:120]}); keep raw-data hooks free of side effects"
        ) from error
    changed = before.changes(after)
    if changed:
        shown = listed(changed, 5)
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

