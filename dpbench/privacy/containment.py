"""Containment of mechanism code: what the kernel refuses while a mechanism's code runs, and checks after.

A mechanism is code running in the kernel's own process, so it could reach past its arguments: walk the
call stack to the kernel's frames (they hold the raw batch, the un-noised sum and whether the step is being
probed) and read or change what it finds there; scan the garbage collector for the same objects; install a
trace, profile or signal function that the kernel's code then calls with its frames; push a torch function
or dispatch mode that sees (and can change) every tensor operation after it, the kernel's noise included; or
replace a function the kernel, torch or an accountant calls. Each of these was shown to end a run
``VERIFIED`` with a broken guarantee before this module existed.

Two defences, both on every call of mechanism code (:func:`call_contained`):

- *refused while it runs*: an audit hook (:pep:`578`) refuses, on the thread running the mechanism, every
  way Python offers to obtain a frame (``sys._getframe`` and so ``inspect.currentframe``, a traceback's,
  generator's or coroutine's frame) or to replace a watched function's code or defaults, and, on every
  thread while it runs,
  every way to reach other threads' frames or arbitrary objects (``sys._current_frames``,
  ``gc.get_objects``, ``gc.get_referrers``, ``gc.get_referents``) or to run code the kernel cannot see
  (``ctypes``, new audit hooks, ``sys.monitoring``, a fork); a thread it starts must have ended, and it may
  not have registered a ``weakref.finalize``, when its call returns. The attempt is recorded, so a mechanism
  that catches the refusal is refused all the same
  when the call ends.
  ``logging`` inside a mechanism still works (without the caller's line, which it finds with a frame), and
  so do the library functions that read a frame for text or a name (``FRAME_READERS``: ``traceback.format_stack``,
  which ``torch.manual_seed`` calls, ``collections.namedtuple``, ``typing``'s and ``enum``'s module lookups),
  as the library defines them (their own code and globals, reaching the interpreter's ``sys._getframe``, and
  for ``traceback`` the functions the frame goes to unchanged). Importing a module inside a call is allowed;
  its import-time code is the mechanism's code like any other (the mechanism's own module is imported before
  its first call, outside containment).
- *checked when it returns*, still contained (:class:`ProcessIntegrity`): nothing that makes the kernel's
  code call foreign code was installed (trace and profile functions, signal handlers, ``gc.callbacks``, torch
  function and dispatch modes, autograd's saved-tensor hooks, torch's global module hooks, logging's handlers
  and filters, a weak-reference callback on a tensor it was handed, a kernel registered in torch's dispatcher
  for an operator of the noise path, or, checked at each epoch's end, for any operator), each read through
  functions bound when this module was loaded, and no name of dpbench, torch's top-level and tensor API, the
  accountants' libraries or the modules that write results was replaced or added (their namespaces, the
  classes they define, and the code and defaults of dpbench's functions, all compared by identity with a
  baseline taken before the mechanism was imported).

"Every call of mechanism code" includes what is easy to miss: a property the kernel reads, a returned
value's ``__float__`` or ``__iter__``, a tensor subclass's ``__torch_function__``, pickling its state for a
checkpoint. :mod:`dpbench.privacy.mechanism` (``declared_values``, ``structured_call``, the ``plain_*``
conversions) reads a structured mechanism's declared values once and converts what its hooks return to
plain values, both inside :func:`call_contained`, and refuses classes whose attributes would not read as they
are (custom attribute access, a hook that is not a method of the class).

The checks cannot be switched off from inside a call: the audit hook keeps what it decides by (which
threads run mechanism code, what it refused, the census of threads at entry, the baseline) in its own
closure, which only the interpreter holds; it learns that a call starts and ends, and which baseline to
check against, from audit events it accepts only from this module's own functions; and at a call's exit
this module's names and classes and the builtins are compared with what was loaded before anything they
name is trusted (:func:`_make_intact`). Changing the module's names, raising its events or calling its
functions from mechanism code ends nothing (``tests/privacy/test_containment.py``).

Any finding refuses the run with a :class:`ContainmentError`. What this cannot do is stated as an
assumption in docs/trust_model.md: the import-time code of the mechanism's own module runs before any call
and is not contained (it could find the hook through the garbage collector), nor is native code or the
finalizers of its own objects; and a signal handler that mechanism code installs and triggers within one call
is called with the interrupted frame (Python audits neither ``signal.signal`` nor ``signal.raise_signal``;
a handler left installed is refused at the exit). A separate process would contain all of it.
"""

from __future__ import annotations

import _signal
import _thread
import builtins
import collections
import copyreg
import gc
import itertools
import logging
import operator
import signal
import sys
import threading
import traceback
import types
import weakref
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any, Callable, TypeVar

import torch

from dpbench.errors import DpbenchError

ON_ITS_THREAD = MappingProxyType({
    "sys._getframe": "read the call stack (sys._getframe, inspect.currentframe)",
    "sys.settrace": "install a trace function (sys.settrace)",
    "sys.setprofile": "install a profile function (sys.setprofile)",
})
"""Refused on the thread running mechanism code (on another thread they reach only that thread's frames)."""
WHILE_IT_RUNS = MappingProxyType({
    "sys._current_frames": "read every thread's call stack (sys._current_frames)",
    "sys.addaudithook": "install an audit hook",
    "gc.get_objects": "scan the interpreter's objects (gc.get_objects)",
    "gc.get_referrers": "find what refers to an object (gc.get_referrers)",
    "gc.get_referents": "follow references the object's attributes do not show (gc.get_referents)",
    "os.fork": "fork the process",
    "os.forkpty": "fork the process",
})
"""Refused on every thread while mechanism code runs (a thread it starts is not running mechanism code)."""
REFUSED_PREFIXES = (("ctypes.", "call native code through ctypes"), ("sys.monitoring.", "register a monitoring tool"))


def _frame_readers() -> MappingProxyType[types.CodeType, tuple[dict[str, Any], str]]:
    """Library functions that read a frame and return only text or a module's name, each with the globals it
    runs with and the name it calls ``sys`` there: ``collections.namedtuple``, ``typing``'s and
    ``typing_extensions``' caller lookups and ``enum``'s functional API (a module's name, for a type they
    define), and ``traceback.extract_stack`` / ``format_stack`` (the stack as text: file, line and function
    names; ``torch.manual_seed`` records it for lazily seeded accelerators)."""
    import enum
    import typing

    import typing_extensions

    readers = {
        collections.namedtuple: "_sys", typing._caller: "sys", enum.EnumType._create_: "sys",  # type: ignore[attr-defined]
        traceback.extract_stack: "sys", traceback.format_stack: "sys",
        getattr(typing_extensions, "_caller", None): "sys",
        getattr(typing_extensions, "_has_generic_or_protocol_as_origin", None): "sys",
    }
    return MappingProxyType(
        {f.__code__: (f.__globals__, name) for f, name in readers.items() if isinstance(f, types.FunctionType)}
    )


FRAME_READERS = _frame_readers()
TRACEBACK_PATH = (traceback, traceback.StackSummary, traceback.FrameSummary, itertools, collections)
"""Where ``extract_stack`` sends the frame it reads (``walk_stack``, ``StackSummary.extract``, ...): their
namespaces must be as dpbench found them for the frame to stay inside."""
_TRACEBACK_BASELINE = tuple(MappingProxyType(dict(vars(owner))) for owner in TRACEBACK_PATH)

FRAME_ATTRIBUTES = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame"})
FUNCTION_ATTRIBUTES = frozenset({"__code__", "__defaults__", "__kwdefaults__"})
WATCHED_MODULES = (
    "dpbench", "torch", "torch.nn.functional", "torch.linalg", "torch.random", "torch.nn.modules.module",
    "numpy", "numpy.random", "random", "math", "json", "json.encoder", "json.decoder", "logging", "os", "builtins",
    "hashlib", "opacus.accountants", "dp_accounting", "torch._C", "torch._C._nn", "torch._C._linalg",
    "torch._C._special", "torch._C._fft", "torch.functional", "torch.overrides", "torch._tensor",
    "torch.backends.opt_einsum",
)
"""Modules (and their loaded submodules, for the packages dpbench, opacus.accountants and dp_accounting)
whose namespaces, and the classes they define, the kernel, its accountants and its result writers call
through."""
PACKAGES = ("dpbench", "opacus.accountants", "dp_accounting")
CACHES = frozenset({"__slotnames__", "__warningregistry__"})
"""Names the interpreter itself adds: copyreg caches a class's slot names in it when it is pickled, and a
warning records itself in the module that issued it."""
T = TypeVar("T")


class ContainmentError(DpbenchError, RuntimeError):
    """Mechanism code reached past its arguments into the process (see :mod:`dpbench.privacy.containment`)."""


def _refusal(mechanism: str, what: str, findings: list[str], kind: str = "mechanism") -> str:
    return (
        f"{kind} '{mechanism}' ({what}) tried to " + "; and to ".join(findings) + f". A {kind} may use only "
        "the arguments it is given and its own state: the kernel's frames and objects hold un-noised data, and "
        "what runs outside its calls escapes the checks that make its ε meaningful. The run is refused"
    )


class ProcessIntegrity:
    """What must not change while mechanism code can run: the functions that make the kernel call foreign
    code, and the identity of every name in the watched namespaces (a name added, which could shadow a
    builtin or a base class's method, counts as a change; a submodule's name does not).

    After each call of mechanism code everything the kernel's step runs through is checked (the hooks, every
    watched module's namespace, dpbench's classes, torch's tensor classes: under 1 ms, flattened into a few
    C-level passes); the classes of the other watched modules (the accountants', json's, logging's, torch's
    own) and logging's handlers, which only the end of an epoch and of the run use, and dpbench functions'
    code and defaults (whose replacement inside a call the audit hook refuses) are checked there
    (:func:`check_integrity`), before they are used."""

    def __init__(self) -> None:
        self.hooks = _hooks()  # (held: the identities below stay theirs)
        self.hook_identities = _identities_of(self.hooks)
        self.namespaces = [
            (label, namespace, tuple(namespace), _identities(namespace, tuple(namespace)), every_call)
            for label, namespace, every_call in _namespaces()
        ]
        # the step's namespaces flattened, so that the check after every call is a few C-level passes
        step = [(namespace, keys) for _, namespace, keys, _, every_call in self.namespaces if every_call]
        self.step_namespaces = [namespace for namespace, _ in step]
        self.step_spaces = [namespace for namespace, keys in step for _ in keys]
        self.step_keys = [key for _, keys in step for key in keys]
        self.step_identities = self._step_identities()
        self.functions = list(_functions())
        self.function_parts = _function_parts([function for _, function in self.functions])
        self.logging = _logging_identity()
        self.module_names = (__name__, *(name for name, _, _ in _namespaces() if name in _MODULES))
        self.modules = _module_identities(self.module_names)
        self.operators = _operator_names()
        self.kernel_operators = tuple(name for name in KERNEL_OPERATORS if name in self.operators)
        self.operator_tables = _operator_tables(self.operators)
        self.kernel_operator_tables = _operator_tables(self.kernel_operators)

    def _step_identities(self) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        try:
            values = tuple(map(id, map(operator.getitem, self.step_spaces, self.step_keys)))
        except KeyError:  # a name was deleted
            return None
        return tuple(map(len, self.step_namespaces)), values

    def changes(self, whole: bool = True) -> list[str]:
        """What changed since the baseline, described: everything, or (``whole=False``) what a step uses."""
        hooks = _identities_of(_hooks())
        kernel_tables = _operator_tables(self.kernel_operators)
        modules = _module_identities(self.module_names)
        if (not whole and self._step_identities() == self.step_identities and hooks == self.hook_identities
                and kernel_tables == self.kernel_operator_tables and modules == self.modules):
            return []
        changed = [f"sys.modules[{name!r}]" for name, a, b in zip(self.module_names, self.modules, modules) if a != b]
        changed += [key for key, value in self.hook_identities.items() if hooks.get(key) != value]
        changed += [key for key in hooks.keys() - self.hook_identities.keys()]
        for label, namespace, keys, identities, every_call in self.namespaces:
            if not (whole or every_call):
                continue
            if _identities(namespace, keys) != identities:
                now = _identities(namespace, keys)
                changed += [f"{label}.{key}" for key, a, b in zip(keys, identities, now) if a != b]
            if len(namespace) != len(keys):
                added = set(namespace) - set(keys)
                changed += [
                    f"{label}.{key} (added)"
                    for key in added
                    if key not in CACHES and not isinstance(namespace[key], types.ModuleType)
                ]
        now = _function_parts([function for _, function in self.functions]) if whole else self.function_parts
        if now != self.function_parts:
            changed += [
                f"{label} (code or defaults)"
                for index, (label, _) in enumerate(self.functions)
                if any(a[index] != b[index] for a, b in zip(now, self.function_parts))
            ]
        if whole and _logging_identity() != self.logging:
            changed.append("logging's loggers, handlers, filters and formatters")
        operators, before = (self.operators, self.operator_tables) if whole else (self.kernel_operators, self.kernel_operator_tables)
        now = kernel_tables if not whole else _operator_tables(operators)
        changed += [f"torch's kernels for {name}" for name, a, b in zip(operators, before, now) if a != b]
        return changed

    def check(self, mechanism: str, what: str, whole: bool = True) -> None:
        """Refuse the run if anything watched (everything, or what a step uses) changed since the baseline."""
        changed = self.changes(whole)
        if changed:
            raise ContainmentError(
                f"mechanism '{mechanism}' ({what}): the process changed while its code could run: "
                + ", ".join(sorted(changed)[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
                + ". A mechanism may not install hooks, modes or handlers, or replace functions of dpbench, "
                "torch or the accountants, and neither may other code the run executes (a model's forward, say: "
                "the change is seen at the mechanism's next check, not necessarily made by it); the run is refused"
            )


def _hooks(
    gettrace: Callable[[], Any] = sys.gettrace, getprofile: Callable[[], Any] = sys.getprofile,
    threading_namespace: dict[str, Any] = vars(threading), gc_callbacks: list[Any] = gc.callbacks,
    valid_signals: Callable[[], set[int]] = _signal.valid_signals, getsignal: Callable[[int], Any] = _signal.getsignal,
    function_modes: Callable[[], int] = torch._C._len_torch_function_stack,
    dispatch_modes: Callable[[], int] = torch._C._len_torch_dispatch_stack,
    saved_tensor_hooks: Callable[[bool], Any] = torch._C._autograd._top_saved_tensors_default_hooks,
    module_hooks: dict[str, Any] = vars(torch.nn.modules.module),
    signal_names: MappingProxyType[int, str] = MappingProxyType({int(s): s.name for s in signal.Signals}),
) -> dict[str, Any]:
    """Everything through which the kernel's own code would call code that a mechanism installed, each read
    through a function or object bound when this module was loaded (a red team's replaced ``signal.getsignal``
    and ``torch._C._len_torch_dispatch_stack``, and rebound ``gc.callbacks`` to a copy while the collector
    kept calling the original list): the values are compared by identity (:func:`_identities_of`)."""
    handlers = {}
    for number in valid_signals():
        try:
            handlers[f"signal handler {signal_names.get(number, number)}"] = getsignal(number)
        except (ValueError, OSError):
            continue
    global_hooks = {
        f"torch global module hooks {name}": tuple(value.values())
        for name, value in module_hooks.items()
        if type(name) is str and name.startswith("_global_") and type(value) is dict
    }
    return {
        "trace function (sys.settrace)": gettrace(),
        "profile function (sys.setprofile)": getprofile(),
        "thread trace function (threading.settrace)": threading_namespace.get("_trace_hook"),
        "thread profile function (threading.setprofile)": threading_namespace.get("_profile_hook"),
        "garbage-collector callbacks (gc.callbacks)": tuple(gc_callbacks),
        "torch function modes": function_modes(),
        "torch dispatch modes": dispatch_modes(),
        "autograd saved-tensor hooks (torch.autograd.graph.saved_tensors_hooks)": saved_tensor_hooks(False),
    } | handlers | global_hooks


KERNEL_OPERATORS = (
    # the noise: drawn, shaped, converted, added
    "aten::randn", "aten::randn.generator", "aten::normal_", "aten::empty.memory_format", "aten::view",
    "aten::reshape", "aten::_reshape_alias", "aten::lift_fresh", "aten::from_file", "aten::add.Tensor",
    "aten::add_.Tensor", "aten::copy_", "aten::_to_copy", "aten::clone", "aten::detach", "aten::zeros",
    "aten::zeros_like", "aten::empty_like", "aten::full",
    # the clipping: norms, factors, their checks, the weighted sum
    "aten::sqrt", "aten::rsqrt", "aten::pow.Tensor_Scalar", "aten::square", "aten::linalg_vector_norm",
    "aten::mul.Tensor", "aten::mul_.Tensor", "aten::div.Tensor", "aten::div_.Tensor", "aten::reciprocal",
    "aten::sum", "aten::sum.dim_IntList", "aten::minimum", "aten::maximum", "aten::clamp", "aten::clamp_min",
    "aten::clamp_max", "aten::where.self", "aten::le.Scalar", "aten::le.Tensor", "aten::gt.Scalar",
    "aten::all", "aten::any", "aten::isfinite", "aten::stack", "aten::cat", "aten::mm", "aten::bmm",
    "aten::matmul", "aten::addmm", "aten::einsum", "aten::sub.Tensor", "aten::neg",
)
"""The operators the kernel's noise and clipping go through, whose dispatcher tables are compared after every
call (all operators' at the end of each epoch): a kernel registered for one through ``torch._C``'s dispatcher
(no Python name, mode or hook changes) replaced the kernel's noise draw with zeros for a red team, and another
registered ``sqrt`` between two hooks of one step (shrinking every norm) and removed it before the epoch's
end. A kernel registered between two calls for an operator not listed here is seen only if it is still
there at the epoch's end (docs/trust_model.md)."""


_MODULES = sys.modules  # the import system's own dict (rebinding ``sys.modules`` does not replace it)


def _module_identities(names: tuple[str, ...], modules: dict[str, Any] = _MODULES) -> tuple[int, ...]:
    """Which module object each watched name imports as (a copy swapped into ``sys.modules`` would be what the
    kernel's lazy imports get: a red team's weakened the verifier's measurement that way)."""
    return tuple(map(id, map(modules.get, names)))


def _operator_names(names: Callable[[], list[str]] = torch._C._dispatch_get_all_op_names) -> tuple[str, ...]:
    return tuple(names())


def _operator_tables(operators: tuple[str, ...], dump: Callable[[str], str] = torch._C._dispatch_dump,
                     tuple: type = tuple, map: type = map) -> tuple[str, ...]:
    """Each operator's dispatcher table as text: which kernel is registered for each dispatch key, and where."""
    return tuple(map(dump, operators))


def _identities_of(hooks: dict[str, Any]) -> dict[str, Any]:
    """The hooks by identity (a tuple of hooks by its members', a count as itself), so that no object's
    ``__eq__`` is asked."""
    return {
        key: value if type(value) is int else tuple(map(id, value)) if type(value) is tuple else id(value)
        for key, value in hooks.items()
    }


def _logging_identity() -> tuple[int, ...]:
    """Every logger's handlers and filters, and every handler's filters and formatter (what the console and a
    run's log write ε through), by identity."""
    loggers = [logging.root] + [
        logger for logger in list(logging.root.manager.loggerDict.values()) if isinstance(logger, logging.Logger)
    ]
    parts: list[int] = []
    for logger in loggers:
        parts += [id(logger), *map(id, logger.filters), *map(id, logger.handlers)]
        for handler in logger.handlers:
            parts += [id(handler.formatter), *map(id, handler.filters), *map(id, vars(handler).values())]
    return tuple(parts)


def _watched_name(
    module_name: object, own: str = __name__,
    roots: frozenset[str] = frozenset(name.split(".")[0] for name in WATCHED_MODULES),
) -> bool:
    """Whether a function of this module is one the kernel's checks watch (or its own module's: any module
    of a watched package, not just the watched modules' own namespaces)."""
    return type(module_name) is str and (module_name == own or module_name.split(".")[0] in roots)


def _watched(module_name: str) -> bool:
    return module_name != __name__ and (
        module_name in WATCHED_MODULES or any(module_name.startswith(p + ".") for p in PACKAGES)
    )


def _namespaces() -> Iterator[tuple[str, Any, bool]]:
    """(label, live namespace, whether it is checked after every call) of every watched module and class."""
    for module_name, module in list(sys.modules.items()):
        if isinstance(module, types.ModuleType) and _watched(module_name):
            yield module_name, vars(module), True
            own = module_name == "dpbench" or module_name.startswith("dpbench.")
            for name, value in list(vars(module).items()):
                if isinstance(value, type) and value.__module__ == module_name:
                    yield f"{module_name}.{name}", vars(value), own
    for cls in (torch.Tensor, torch._C.TensorBase):  # a name added to Tensor shadows TensorBase's method
        yield f"{cls.__module__}.{cls.__qualname__}", vars(cls), True


def _functions() -> Iterator[tuple[str, types.FunctionType]]:
    """dpbench's functions and methods (their code and defaults can be swapped without a new name)."""
    for module_name, module in list(sys.modules.items()):
        own = module_name.startswith("dpbench") and _watched(module_name)
        if not own or not isinstance(module, types.ModuleType):
            continue
        for name, value in list(vars(module).items()):
            if isinstance(value, types.FunctionType) and value.__module__ == module_name:
                yield f"{module_name}.{name}", value
            elif isinstance(value, type) and value.__module__ == module_name:
                for attribute, member in list(vars(value).items()):
                    if isinstance(member, types.FunctionType):
                        yield f"{module_name}.{name}.{attribute}", member


def _identities(namespace: Any, keys: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(map(id, map(namespace.get, keys)))


FUNCTION_PARTS = tuple(operator.attrgetter(name) for name in ("__code__", "__defaults__", "__kwdefaults__"))


def _function_parts(functions: list[types.FunctionType]) -> tuple[tuple[int, ...], ...]:
    """The identities of the functions' code, defaults and keyword defaults."""
    return tuple(tuple(map(id, map(part, functions))) for part in FUNCTION_PARTS)


_CONTROL = "dpbench.containment."
"""The audit events through which the kernel tells the hook that mechanism code starts and ends, arms and
disarms the baseline and reads it back: the hook accepts one only from this module's own functions (by the
calling frame's code, globals and the interpreter's ``sys.audit`` in its locals), so mechanism code cannot
raise one to end its containment early or replace the baseline."""


def _census(
    count: Callable[[], int] = _thread._count,
    active: dict[int, threading.Thread] = threading._active,  # type: ignore[attr-defined]
    limbo: dict[threading.Thread, threading.Thread] = threading._limbo,  # type: ignore[attr-defined]
    dummy: type = threading._DummyThread,  # type: ignore[attr-defined]
    frozenset: type = frozenset, map: type = map, id: Callable[[Any], int] = id, type: type = type,
) -> tuple[int, tuple[threading.Thread, ...], frozenset[int]]:
    """The Python threads alive now, to tell later whether one started since: their number (every thread
    started through ``_thread`` or ``threading``) and the ``threading.Thread`` objects themselves (held, so
    no new one can take an old one's place, and compared by identity). A thread that ends meanwhile lowers
    the number, so a new ``threading.Thread`` is found by identity whatever else ends (the number alone missed
    one started while another thread ended); a thread started through ``_thread`` directly only by the
    number, so it is missed if a thread alive before the call ends during it (mechanism code owns no such
    thread: each of its threads has ended when its call returns). Nothing here runs code of the objects found
    (a planted "thread" whose ``__hash__`` or ``__eq__`` runs code would otherwise run it inside the hook: a
    red team's did): dict copies, ``id`` and exact type tests only. Threads of foreign (C) code that Python
    met (exactly ``_DummyThread``) are not started by Python code."""
    threads = tuple(t for t in (*active.copy().values(), *limbo.copy()) if type(t) is not dummy)
    return count(), threads, frozenset(map(id, threads))


def _started_since(census: tuple[int, tuple[threading.Thread, ...], frozenset[int]],
                   now: Callable[[], tuple] = _census) -> bool:
    count, _, identities = now()
    return count > census[0] or not identities <= census[2]


def _objects(registry: dict[Any, Any], tuple: type = tuple, frozenset: type = frozenset, map: type = map,
             id: Callable[[Any], int] = id) -> tuple[tuple[Any, ...], frozenset[int]]:
    """A registry's keys, held, and their identities (no key's ``__hash__`` or ``__eq__`` runs)."""
    keys = tuple(registry.copy())
    return keys, frozenset(map(id, keys))


def _plain_keys(*namespaces: dict[Any, Any]) -> bool:
    """Every key is an exact ``str`` (a planted ``str`` subclass would run its ``__eq__`` in a lookup)."""
    return all(type(key) is str for namespace in namespaces for key in namespace)


def _make_hook(
    codes: dict[str, types.CodeType], namespace: dict[str, Any], integrity_class: type,
    get_ident: Callable[[], int] = _thread.get_ident, getframe: Callable[[int], types.FrameType] = sys._getframe,
    audit: Callable[..., None] = sys.audit, census: Callable[[], tuple] = _census,
    started_since: Callable[..., bool] = _started_since, plain_keys: Callable[..., bool] = _plain_keys,
    objects: Callable[..., tuple] = _objects,
    finalizers: dict[Any, Any] = weakref.finalize._registry,  # type: ignore[attr-defined]
    while_it_runs: MappingProxyType[str, str] = WHILE_IT_RUNS, prefixes: tuple[tuple[str, str], ...] = REFUSED_PREFIXES,
    on_its_thread: MappingProxyType[str, str] = ON_ITS_THREAD, frame_readers: MappingProxyType = FRAME_READERS,
    frame_attributes: frozenset[str] = FRAME_ATTRIBUTES, function_attributes: frozenset[str] = FUNCTION_ATTRIBUTES,
    watched_name: Callable[[object], bool] = None,  # type: ignore[assignment]
    traceback_path: tuple[Any, ...] = TRACEBACK_PATH, traceback_baseline: tuple[MappingProxyType, ...] = _TRACEBACK_BASELINE,
    reader_codes: tuple[types.CodeType, ...] = (traceback.extract_stack.__code__, traceback.format_stack.__code__),
    exempt_owners: tuple[Any, ...] = (itertools, collections), sys_module: types.ModuleType = sys,
    error: type[Exception] = ContainmentError, str_type: type = str, function_type: type = types.FunctionType,
    frozenset: type = frozenset, sorted: Callable[..., list] = sorted, set: type = set, vars: Callable = vars,
    len: Callable[[Any], int] = len, all: Callable[..., bool] = all, zip: type = zip, next: Callable = next,
) -> Callable[[str, tuple[Any, ...]], None]:
    """The process's audit hook (:pep:`578`), with everything it decides by held in its closure: which
    threads are in mechanism code and how deep, what was refused, the census at each outermost call's entry,
    the armed baseline. The hook itself is referenced only by the interpreter (audit hooks cannot be listed
    or removed), so mechanism code can neither reach this state nor switch the hook off by changing a
    module's names; the functions and tables it uses are bound here, when it is made."""
    sys_namespace = vars(sys_module)  # (read once: vars() of a module whose class was swapped runs its code)
    traceback_spaces = tuple(
        (vars(owner), baseline, owner in exempt_owners) for owner, baseline in zip(traceback_path, traceback_baseline)
    )
    depth: dict[int, int] = {}  # thread -> how deep it is in mechanism code
    entry: dict[int, tuple[str, tuple, tuple]] = {}  # thread -> (kind, census, finalizers) at its entry
    attempts: list[str] = []  # what was refused since the outermost call began, on any thread
    reading: set[int] = set()  # threads on which the hook is reading its own caller's frame
    armed: list[Any] = [None]  # the integrity baseline

    def caller_frame(ident: int) -> types.FrameType:
        """The frame that raised the event (0: here, 1: the hook's helper, 2: the hook, 3: its caller)."""
        reading.add(ident)
        try:
            return getframe(3)
        finally:
            reading.discard(ident)

    def refuse(what: str, ident: int) -> None:
        attempts.append(what)
        kind = entry[ident][0] if ident in entry else "mechanism"
        raise error(f"{kind} code may not {what}")

    def library_reads(ident: int) -> bool:
        """``sys._getframe`` was called by one of ``FRAME_READERS``, as the library defines it: its code, run
        with its module's own globals, reaching the interpreter's ``sys._getframe`` through that module's
        ``sys`` (a reader's code under other globals, or a ``sys`` or ``_getframe`` replaced by a wrapper,
        would hand the frame to the mechanism: a sixth red team's cached it in an ``lru_cache`` that way); for
        ``extract_stack``, the functions and classes the frame then goes to unchanged too; and no thread
        started since the mechanism's call began (it could change them between this check and their use)."""
        caller = caller_frame(ident)
        expected = frame_readers.get(caller.f_code)
        if expected is None or started_since(entry[ident][1]):
            return False
        library_namespace, sys_name = expected
        if caller.f_globals is not library_namespace or not plain_keys(library_namespace, sys_namespace):
            return False
        if library_namespace.get(sys_name) is not sys_module or sys_namespace.get("_getframe") is not getframe:
            return False
        if caller.f_code in reader_codes:
            return all(
                plain_keys(space)
                and all(space.get(name) is value for name, value in baseline.items())
                and (exempt or space.keys() == baseline.keys())  # nothing added either
                for space, baseline, exempt in traceback_spaces
            )
        return True

    def control(event: str, args: tuple[Any, ...], ident: int) -> None:
        """One of the kernel's own events, accepted only from the function of this module that raises it."""
        name = event[len(_CONTROL):]
        caller = caller_frame(ident)
        if not (name in codes and caller.f_code is codes[name] and caller.f_globals is namespace
                and caller.f_locals.get("audit") is audit):
            refuse("raise dpbench's containment events", ident)
        # Whatever may meet an object of the mechanism's (the census, the finalizers) runs while this thread
        # still counts as in mechanism code: counted before it on entry, uncounted after it on exit.
        if name == "enter":
            level = depth.get(ident, 0)
            depth[ident] = level + 1
            if level == 0:
                if len(depth) == 1:
                    attempts.clear()
                kind = args[0] if type(args[0]) is str_type else "mechanism"
                entry[ident] = (kind, census(), objects(finalizers))
            args[1].extend((armed[0], level == 0))
        elif name == "exit":
            if depth[ident] > 1:
                depth[ident] -= 1
                return
            _, threads, registered = entry[ident]
            found = sorted(set(attempts))
            if started_since(threads):
                found.append("start a thread that outlives its call")
            if not objects(finalizers)[1] <= registered[1]:
                found.append("register a finalizer (weakref.finalize), which runs after its call")
            del depth[ident], entry[ident]
            if not depth:  # (another thread's call in mechanism code keeps the record for its own exit)
                attempts.clear()
            args[0].extend(found)
        else:  # "arm", "disarm", "baseline": the kernel's, outside mechanism code only
            if depth:
                refuse(f"{'read' if name == 'baseline' else name} the kernel's integrity baseline", ident)
            if name == "baseline":
                args[0].append(armed[0])
            else:
                armed[0] = args[0] if name == "arm" and type(args[0]) is integrity_class else None

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "builtins.id" or type(event) is not str_type:
            return  # id() is audited and called by every copy.deepcopy: the cheapest test goes first
        if not depth and not event.startswith(_CONTROL):
            return  # nothing runs mechanism code
        ident = get_ident()
        if ident in reading:
            return  # the hook reading its own caller
        if event.startswith(_CONTROL):
            return control(event, args, ident)
        refused = while_it_runs.get(event)
        if refused is None:
            refused = next((what for prefix, what in prefixes if event.startswith(prefix)), None)
        if refused is None and ident in depth:
            if event == "sys._getframe":
                if library_reads(ident):
                    return
                refused = on_its_thread[event]
            else:
                refused = on_its_thread.get(event)
            attribute = args[1] if len(args) > 1 and type(args[1]) is str_type else None
            if refused is None and event == "object.__getattr__" and attribute in frame_attributes:
                refused = f"read a call-stack frame ({attribute})"
            if (refused is None and event == "object.__setattr__" and attribute in function_attributes
                    and type(args[0]) is function_type and watched_name(args[0])):
                qualname = args[0].__qualname__
                refused = f"replace the {attribute} of {qualname if type(qualname) is str_type else 'a function'} (a watched module's)"
        if refused is not None:
            refuse(refused, ident)

    return hook


def _watched_function(function: types.FunctionType, watched_name: Callable[[object], bool] = _watched_name) -> bool:
    """Whether a function's code is one the kernel's checks watch, by the module it says it is from or the
    module whose globals it runs with (either can be a watched one's: changing one is not enough to pass)."""
    module_names = (function.__module__, function.__globals__.get("__name__"))
    return any(type(name) is str and watched_name(name) for name in module_names)


def _tensors_handed_over(function: Callable[..., Any], args: tuple[Any, ...]) -> list[torch.Tensor]:
    """The tensors the kernel hands to mechanism code: in its arguments, or in the cells of the closure that
    calls it, and in the lists, tuples and dicts there (two levels)."""
    cells = function.__closure__ if type(function) is types.FunctionType else None
    level = [*args, *(cell.cell_contents for cell in cells or () if cell.cell_contents is not None)]
    found: list[torch.Tensor] = []
    for _ in range(3):
        found += [value for value in level if isinstance(value, torch.Tensor)]
        level = [item for value in level if type(value) in (list, tuple) for item in value] + [
            item for value in level if type(value) is dict for item in value.values()
        ]
    return found


def _callbacks_on(tensors: list[torch.Tensor]) -> tuple[tuple[weakref.ref, ...], frozenset[int]]:
    """The weak references with a callback to these tensors or their storages, held, and their identities: a
    callback runs when the kernel drops the tensor, after the call and outside its containment (red teams'
    read the kernel's frames from one on a tensor, then on its storage)."""
    owners = [*tensors, *(t.untyped_storage() for t in tensors)]
    refs = tuple(r for owner in owners for r in weakref.getweakrefs(owner) if r.__callback__ is not None)
    return refs, frozenset(map(id, refs))


def _thread_state(
    included: Callable[[], Any] = torch._C._dispatch_tls_local_include_set,
    excluded: Callable[[], Any] = torch._C._dispatch_tls_local_exclude_set,
    grad: Callable[[], bool] = torch.is_grad_enabled, inference: Callable[[], bool] = torch.is_inference_mode_enabled,
    autocast: Callable[[str], bool] = torch.is_autocast_enabled, str: type = str,
) -> tuple[Any, ...]:
    """Torch's per-thread state that decides how every later operation of the kernel is dispatched: the
    dispatch keys included and excluded (a red team's kept torch's Python dispatcher on, with Python kernels
    zeroing the noise draw), grad and inference mode, autocast."""
    return str(included()), str(excluded()), grad(), inference(), autocast("cpu"), autocast("cuda")


def _run(mechanism: str, what: str, kind: str, function: Callable[..., T], args: tuple[Any, ...],
         audit: Callable[..., None] = sys.audit, intact: Any = None, error: type[Exception] = ContainmentError,
         refusal: Callable[..., str] = _refusal, logs: types.ModuleType = logging,
         handed_over: Callable[..., list] = _tensors_handed_over, callbacks_on: Callable[..., tuple] = _callbacks_on,
         thread_state: Callable[[], tuple] = _thread_state) -> T:
    """``function(*args)`` between the ``enter`` and ``exit`` events, then, still contained (whatever the
    checks meet of the mechanism's runs under the same refusals), no new weak-reference callback on a tensor
    it was handed, this module's integrity and the step's checked at the outermost exit. Every value it uses
    is in its defaults, a tuple set when the module is loaded."""
    state: list[Any] = []  # the baseline and whether this call is the outermost, from the hook
    findings: list[str] = []  # what the hook found when the call ended
    source_lookup, logs._srcfile = logs._srcfile, None  # logging's caller lookup reads frames
    audit("dpbench.containment.enter", kind, state)
    try:
        baseline, outermost = state
        tensors = handed_over(function, args) if outermost else []
        before, torch_state = callbacks_on(tensors), thread_state()
        try:
            return function(*args)
        finally:
            logs._srcfile = source_lookup
            if outermost:
                if not callbacks_on(tensors)[1] <= before[1]:
                    raise error(refusal(mechanism, what, ["attach a weak-reference callback to a tensor it was "
                                                          "handed, which runs after its call"], kind))
                intact(mechanism, what)
                if baseline is not None and kind != "model":
                    baseline.check(mechanism, what, whole=False)
                if thread_state() != torch_state:
                    raise error(refusal(mechanism, what, ["change torch's dispatch keys, grad, inference or "
                                                          "autocast mode for the code after its call"], kind))
    finally:
        audit("dpbench.containment.exit", findings)
        if findings:
            raise error(refusal(mechanism, what, findings, kind))


def call_contained(mechanism: str, what: str, function: Callable[..., T], *args: Any, kind: str = "mechanism") -> T:
    """``function(*args)``, mechanism code (``what``, e.g. ``clip_and_noise at step 3``; or a model's, with
    ``kind="model"``, ``mechanism`` then naming the model), under the audit hook's refusals, then the process's
    integrity checked. Nested calls (a mechanism's code calling the kernel, which calls it again) check once,
    at the outermost exit. A model's calls check only this module's own integrity at their exit, not the
    whole step's (that costs about 8 ms on the telemetry model, 4% of a step): every step makes a contained
    mechanism call after its noise and before its release is used (a structured mechanism's ``postprocess``,
    a plugin's release call), and each epoch's end is checked before anything is written, so a change a
    model's code made is refused before anything it could affect is out. (``_run`` is looked up here: a
    mechanism that rebinds it is refused at the exit of the call in which it did.)"""
    return _run(mechanism, what, kind, function, args)


def arm(audit: Callable[..., None] = sys.audit) -> None:
    """Take the integrity baseline: call before a mechanism's module is imported (each run does); every
    later contained call is checked against it. Refused while mechanism code runs."""
    audit("dpbench.containment.arm", ProcessIntegrity())


def disarm(audit: Callable[..., None] = sys.audit) -> None:
    """Drop the baseline (the audit hook's refusals stay: they need none)."""
    audit("dpbench.containment.disarm", None)


def check_integrity(mechanism: str, what: str, audit: Callable[..., None] = sys.audit) -> None:
    """Check the whole process against the baseline outside a mechanism's call (e.g. before results are
    written): catches what mechanism code left behind that runs later (a thread, a handler, a finalizer). The
    check runs contained, like mechanism code: whatever of the mechanism's it meets (an object planted in a
    namespace it reads) runs under the same refusals. Refused while mechanism code runs."""
    holder: list[Any] = []
    audit("dpbench.containment.baseline", holder)
    if holder[0] is not None:
        call_contained(mechanism, what, _whole_check, holder[0], mechanism, what, logging._srcfile)


def _whole_check(baseline: ProcessIntegrity, mechanism: str, what: str, source_file: Any) -> None:
    """``baseline.check`` of everything, with logging's caller lookup (which a contained call switches off)
    as it is outside one."""
    inside, logging._srcfile = logging._srcfile, source_file
    try:
        baseline.check(mechanism, what)
    finally:
        logging._srcfile = inside


def _intact(
    mechanism: str, what: str, snapshot: tuple[tuple[Any, tuple[str, ...], tuple[int, ...], bool], ...] = (),
    error: type[Exception] = ContainmentError, id: Callable[[Any], int] = id, map: type = map, tuple: type = tuple,
    len: Callable[[Any], int] = len,
) -> None:
    """Refuse the run unless this module's names and classes and the builtins are as loaded (compared by
    identity, with builtins bound here): run at a call's exit before the baseline's own methods and this
    module's functions are trusted. Everything it uses is in its defaults (set when the module is loaded; a
    tuple, whose replacement inside a call the audit hook refuses)."""
    for space, keys, identities, closed in snapshot:
        if (closed and len(space) != len(keys)) or tuple(map(id, map(space.get, keys))) != identities:
            raise error(
                f"'{mechanism}' ({what}): the kernel's containment module or the builtins were changed while "
                f"mechanism code could run ({_changed_names(space, keys, identities)}); the run is refused"
            )


def _changed_names(space: Any, keys: tuple[str, ...], identities: tuple[int, ...]) -> str:
    """What :func:`_intact` found changed in one namespace, named (only read once the run is refused)."""
    changed = [str(key) for key, before in zip(keys, identities) if id(space.get(key)) != before]
    changed += [f"{key} (added)" for key in set(space) - set(keys) if key != "_"]
    return f"{', '.join(sorted(changed)[:5])} in {space.get('__name__', 'a class')}"


sys.addaudithook(_make_hook(
    MappingProxyType({
        "enter": _run.__code__, "exit": _run.__code__, "arm": arm.__code__, "disarm": disarm.__code__,
        "baseline": check_integrity.__code__,
    }),
    globals(), ProcessIntegrity, watched_name=_watched_function,
))
copyreg._slotnames(ProcessIntegrity), copyreg._slotnames(ContainmentError)  # type: ignore[attr-defined]
globals().setdefault("__warningregistry__", {})  # (names the interpreter adds when pickling or warning: added now)
_intact.__defaults__ = (  # set last, so that the snapshot holds every name of the module
    tuple(
        (space, keys, tuple(map(id, map(space.get, keys))), closed)
        for space, keys, closed in (
            (globals(), tuple(globals()), True),
            # a name added to builtins shadows nothing here; `_` is the interactive prompt's last value
            (vars(builtins), tuple(key for key in vars(builtins) if key != "_"), False),
            *((vars(value), tuple(vars(value)), True) for value in list(globals().values())
              if isinstance(value, type) and value.__module__ == __name__),
        )
    ),
    ContainmentError, id, map, tuple, len,
)
_run.__defaults__ = (
    sys.audit, _intact, ContainmentError, _refusal, logging, _tensors_handed_over, _callbacks_on, _thread_state,
)
check_integrity.__defaults__ = (sys.audit,)
