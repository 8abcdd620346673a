"""Containment of mechanism code: what the kernel refuses while a mechanism's code runs, and checks after.

A mechanism is code running in the kernel's own process, so it could reach past its arguments: walk the
call stack to the kernel's frames (they hold the raw batch, the un-noised sum and whether the step is being
probed) and read or change what it finds there; scan the garbage collector for the same objects; install a
trace, profile or signal function that the kernel's code then calls with its frames; push a torch function
or dispatch mode that sees (and can change) every tensor operation after it, the kernel's noise included; or
replace a function the kernel, torch or an accountant calls. Each of these was shown to end a run
``VERIFIED`` with a broken guarantee before this module existed.

Two defences, both on every call of mechanism code (:func:`contained`):

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
- *checked when it returns* (:class:`ProcessIntegrity`): nothing that makes the kernel's code call foreign
  code was installed (trace and profile functions, signal handlers, ``gc.callbacks``, torch function and
  dispatch modes, torch's global module hooks, logging's handlers and filters), and no name of dpbench,
  torch's top-level and tensor API, the accountants' libraries or the modules that write results was
  replaced or added (their namespaces, the classes they define, and the code and defaults of dpbench's
  functions, all compared by identity with a baseline taken before the mechanism was imported).

"Every call of mechanism code" includes what is easy to miss: a property the kernel reads, a returned
value's ``__float__`` or ``__iter__``, a tensor subclass's ``__torch_function__``, pickling its state for a
checkpoint. :mod:`dpbench.privacy.mechanism` (``declared_values``, ``structured_call``, the ``plain_*``
conversions) reads a structured mechanism's declared values once and converts what its hooks return to
plain values, both inside :func:`contained`, and refuses classes whose attributes would not read as they
are (custom attribute access, a hook that is not a method of the class).

Any finding refuses the run with a :class:`ContainmentError`. What this cannot do is stated as an
assumption in docs/trust_model.md: in-process code that sets out to dismantle these checks themselves (or
runs native code, or acts through finalizers of its own objects) is not contained; a separate process
would be.
"""

from __future__ import annotations

import _thread
import collections
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
from contextlib import contextmanager
from typing import Any, Callable, TypeVar

import torch

from dpbench.errors import DpbenchError

ON_ITS_THREAD = {
    "sys._getframe": "read the call stack (sys._getframe, inspect.currentframe)",
    "sys.settrace": "install a trace function (sys.settrace)",
    "sys.setprofile": "install a profile function (sys.setprofile)",
}
"""Refused on the thread running mechanism code (on another thread they reach only that thread's frames)."""
WHILE_IT_RUNS = {
    "sys._current_frames": "read every thread's call stack (sys._current_frames)",
    "sys.addaudithook": "install an audit hook",
    "gc.get_objects": "scan the interpreter's objects (gc.get_objects)",
    "gc.get_referrers": "find what refers to an object (gc.get_referrers)",
    "gc.get_referents": "follow references the object's attributes do not show (gc.get_referents)",
    "os.fork": "fork the process",
    "os.forkpty": "fork the process",
}
"""Refused on every thread while mechanism code runs (a thread it starts is not running mechanism code)."""
REFUSED_PREFIXES = {"ctypes.": "call native code through ctypes", "sys.monitoring.": "register a monitoring tool"}
_GETFRAME = sys._getframe  # the interpreter's own, taken before any mechanism code could replace sys's


def _frame_readers() -> dict[types.CodeType, tuple[dict[str, Any], str]]:
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
    return {f.__code__: (f.__globals__, name) for f, name in readers.items() if isinstance(f, types.FunctionType)}


FRAME_READERS = _frame_readers()
TRACEBACK_PATH = (traceback, traceback.StackSummary, traceback.FrameSummary, itertools, collections)
"""Where ``extract_stack`` sends the frame it reads (``walk_stack``, ``StackSummary.extract``, ...): their
namespaces must be as dpbench found them for the frame to stay inside."""
_TRACEBACK_BASELINE = [dict(vars(owner)) for owner in TRACEBACK_PATH]

FRAME_ATTRIBUTES = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame"})
FUNCTION_ATTRIBUTES = frozenset({"__code__", "__defaults__", "__kwdefaults__"})
WATCHED_MODULES = (
    "dpbench", "torch", "torch.nn.functional", "torch.linalg", "torch.random", "torch.nn.modules.module",
    "numpy", "numpy.random", "random", "math", "json", "json.encoder", "json.decoder", "logging", "os", "builtins",
    "hashlib", "opacus.accountants", "dp_accounting",
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


class _Context(threading.local):
    depth = 0
    kind = "mechanism"  # whose code the outermost call runs: a mechanism's or a model's
    threads_at_entry: _Threads | None = None  # the threads alive when the outermost call on this thread began


_context = _Context()  # how deep this thread is in mechanism code
_running = 0  # threads in mechanism code
_attempts: list[str] = []  # what the audit hook refused since the outermost call began, on any thread
_hook_installed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """The process's audit hook: a no-op except while mechanism code runs, and for ``id()`` (audited by the
    interpreter, called by every ``copy.deepcopy``: the cheapest test goes first)."""
    if not _running or event == "builtins.id":
        return
    refused = WHILE_IT_RUNS.get(event)
    if refused is None:
        refused = next((what for prefix, what in REFUSED_PREFIXES.items() if event.startswith(prefix)), None)
    if refused is None and _context.depth:
        if event == "sys._getframe" and args and args[0].f_code is _CHECK_CODE and args[0].f_back.f_code is _AUDIT_CODE:
            return  # the check below finding its own frame (no flag that mechanism code could set)
        if event == "sys._getframe" and _a_library_reads_its_callers_name():
            return
        refused = ON_ITS_THREAD.get(event)
        if refused is None and event == "object.__getattr__" and len(args) > 1 and args[1] in FRAME_ATTRIBUTES:
            refused = f"read a call-stack frame ({args[1]})"
        if (refused is None and event == "object.__setattr__" and len(args) > 1 and args[1] in FUNCTION_ATTRIBUTES
                and _watched_name(getattr(args[0], "__module__", None))):
            refused = f"replace the {args[1]} of {getattr(args[0], '__qualname__', 'a function')} (a watched module's)"
    if refused is not None:
        _attempts.append(refused)
        raise ContainmentError(f"{_context.kind} code may not {refused}")


def _a_library_reads_its_callers_name(getframe: Callable[[int], types.FrameType] = sys._getframe) -> bool:
    """``sys._getframe`` was called by one of ``FRAME_READERS``, as the library defines it: its code, run with its
    module's own globals, reaching the interpreter's ``sys._getframe`` through that module's ``sys`` (a reader's
    code under other globals, or a ``sys`` or ``_getframe`` replaced by a wrapper, would hand the frame to the
    mechanism: a sixth red team's cached it in an ``lru_cache`` that way); for ``extract_stack``, the functions
    and classes the frame then goes to unchanged too; and no thread started since the mechanism's call began (it
    could change them between this check and their use). Anything else reading a frame is refused, at import
    time included (a mechanism's lazily imported module is its code). This function's own frame is read with
    the interpreter's ``sys._getframe``, bound when it was defined; the hook lets that read through by the frame
    it returns (this function's, called by the hook): called directly, this returns only a bool."""
    caller = getframe(0).f_back.f_back  # 0: here, 1: the audit hook, 2: the code that called sys._getframe
    expected = FRAME_READERS.get(caller.f_code)
    if expected is None or _context.threads_at_entry is None or _context.threads_at_entry.started_since():
        return False  # (a thread of the mechanism's could change what is checked below before it is used)
    namespace, sys_name = expected
    if caller.f_globals is not namespace or namespace.get(sys_name) is not sys or sys._getframe is not _GETFRAME:
        return False
    if caller.f_code in (traceback.extract_stack.__code__, traceback.format_stack.__code__):
        return all(
            all(vars(owner).get(name) is value for name, value in baseline.items())
            and (owner in (itertools, collections) or vars(owner).keys() == baseline.keys())  # nothing added either
            for owner, baseline in zip(TRACEBACK_PATH, _TRACEBACK_BASELINE)
        )
    return True


_ACTIVE, _LIMBO = threading._active, threading._limbo  # type: ignore[attr-defined]  # threading's registries


class _Threads:
    """The Python threads alive at a moment, to tell whether one started since: their number (every thread
    started through ``_thread`` or ``threading``) and the ``threading.Thread`` objects themselves (held, so
    no new one can take an old one's place). A thread that ends meanwhile lowers the number, so a new
    ``threading.Thread`` is found by identity whatever else ends (the number alone missed one started while
    another thread ended); a thread started through ``_thread`` directly only by the number, so it is missed
    if a thread alive before the call ends during it (mechanism code owns no such thread: each of its threads
    has ended when its call returns)."""

    def __init__(self) -> None:
        self.count = _thread._count()
        self.threads = self._named()

    @staticmethod
    def _named() -> set[threading.Thread]:
        # dict copies are atomic under the GIL; threads of foreign (C) code that Python met are not started here
        return {t for t in (*_ACTIVE.copy().values(), *_LIMBO.copy()) if not isinstance(t, threading._DummyThread)}

    def started_since(self) -> bool:
        return _thread._count() > self.count or not self._named() <= self.threads


_CHECK_CODE, _AUDIT_CODE = _a_library_reads_its_callers_name.__code__, _audit.__code__


def _install_hook() -> None:
    global _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)  # audit hooks cannot be removed: installed once per process
        _hook_installed = True


@contextmanager
def contained(mechanism: str, what: str, kind: str = "mechanism") -> Iterator[None]:
    """Run mechanism code (``what``, e.g. ``clip_and_noise at step 3``) under the audit hook's refusals,
    then check the process's integrity. Nested uses (a mechanism's code calling the kernel, which calls it
    again) check once, at the outermost exit. ``kind="model"``: the code is a model's (its forward pass runs
    on the raw batch, so it is held to the same refusals; ``mechanism`` then names the model). The process's
    integrity is then not checked at its exit (the check costs about 8 ms on the telemetry model, 4% of a
    step): every step makes a contained mechanism call after its noise and before its release is used (a
    structured mechanism's ``postprocess``, a plugin's release call), and each epoch's end is checked before
    anything is written, so a change a model's code made is refused before anything it could affect is out."""
    global _running
    _install_hook()
    outermost = _context.depth == 0
    if outermost:
        _context.kind = kind
        _attempts.clear()
        threads, finalizers = _Threads(), set(weakref.finalize._registry)
        _context.threads_at_entry = threads
        _running += 1
    source_lookup, logging._srcfile = logging._srcfile, None  # logging's caller lookup reads frames
    _context.depth += 1
    try:
        yield
    finally:
        _context.depth -= 1
        logging._srcfile = source_lookup
        if outermost:
            _running -= 1
            attempts = sorted(set(_attempts))
            _attempts.clear()
            if threads.started_since():
                attempts.append("start a thread that outlives its call")
            if set(weakref.finalize._registry) - finalizers:
                attempts.append("register a finalizer (weakref.finalize), which runs after its call")
            if attempts:
                raise ContainmentError(_refusal(mechanism, what, attempts, kind))
            if _baseline is not None and kind != "model":
                _baseline.check(mechanism, what, whole=False)


def call_contained(mechanism: str, what: str, function: Callable[..., T], *args: Any, kind: str = "mechanism") -> T:
    """``function(*args)``, mechanism code (or a model's, with ``kind="model"``), run :func:`contained`."""
    with contained(mechanism, what, kind):
        return function(*args)


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
        self.hooks = _hooks()
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

    def _step_identities(self) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        try:
            values = tuple(map(id, map(operator.getitem, self.step_spaces, self.step_keys)))
        except KeyError:  # a name was deleted
            return None
        return tuple(map(len, self.step_namespaces)), values

    def changes(self, whole: bool = True) -> list[str]:
        """What changed since the baseline, described: everything, or (``whole=False``) what a step uses."""
        if not whole and self._step_identities() == self.step_identities and _hooks() == self.hooks:
            return []
        hooks = _hooks()
        changed = [key for key, value in self.hooks.items() if hooks.get(key) != value]
        changed += [key for key in hooks.keys() - self.hooks.keys()]
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


def _hooks() -> dict[str, object]:
    """Everything through which the kernel's own code would call code that a mechanism installed."""
    handlers = {}
    for number in signal.valid_signals():
        try:
            handlers[f"signal handler {signal.Signals(number).name}"] = signal.getsignal(number)
        except (ValueError, OSError):
            continue
    module_hooks = vars(torch.nn.modules.module)
    global_hooks = {
        f"torch global module hooks {name}": tuple(map(id, value.values()))
        for name, value in module_hooks.items()
        if name.startswith("_global_") and isinstance(value, dict)
    }
    return {
        "trace function (sys.settrace)": sys.gettrace(),
        "profile function (sys.setprofile)": sys.getprofile(),
        "thread trace function (threading.settrace)": threading.gettrace(),
        "thread profile function (threading.setprofile)": threading.getprofile(),
        "garbage-collector callbacks (gc.callbacks)": tuple(map(id, gc.callbacks)),
        "torch function modes": torch._C._len_torch_function_stack(),
        "torch dispatch modes": torch._C._len_torch_dispatch_stack(),
    } | handlers | global_hooks


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


def _watched_name(module_name: object) -> bool:
    """Whether a function of this module is one the kernel's checks watch (or its own module's: any module
    of a watched package, not just the watched modules' own namespaces)."""
    return isinstance(module_name, str) and (
        module_name == __name__ or module_name.split(".")[0] in {name.split(".")[0] for name in WATCHED_MODULES}
    )


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


_baseline: ProcessIntegrity | None = None


def arm() -> None:
    """Take the integrity baseline: call before a mechanism's module is imported (each run does); every
    later :func:`contained` call is checked against it."""
    global _baseline
    _install_hook()
    _baseline = ProcessIntegrity()


def disarm() -> None:
    """Drop the baseline (the audit hook's refusals stay: they need none)."""
    global _baseline
    _baseline = None


def check_integrity(mechanism: str, what: str) -> None:
    """Check the process against the baseline outside a mechanism's call (e.g. before results are written):
    catches what mechanism code left behind that runs later (a thread, a handler, a finalizer)."""
    if _baseline is not None:
        _baseline.check(mechanism, what)
