"""Attacks on the process around a mechanism: its code tries to reach past its arguments (the kernel's frames,
the garbage collector, threads, hooks and modes that the kernel's own code would call, replaced functions),
and the kernel refuses each one (dpbench/privacy/containment.py).

The first three are a red team's attacks that ended ``VERIFIED`` before containment: a structured
``postprocess`` that read the kernel's un-noised sum from its caller's frame (a release with no noise at all);
a ``clip_factors`` that multiplied the kernel's group-membership matrix in its caller's frame by 10 (every
example's contribution 10x the bound the ledger records); a researcher-form plugin that read, from the
kernel's frame, whether the step was being probed (150 of 180 releases without noise)."""

import builtins
import contextlib
import functools
import gc
import logging
import signal
import sys
import threading
import types
import weakref
from types import MappingProxyType

import pytest
import torch
from kernel_steps import SHAPES, batch, run_steps
from torch.utils._python_dispatch import TorchDispatchMode

import dpbench.privacy.noise as kernel_noise
from dpbench.engine.per_sample import MaterializedGradients
from dpbench.privacy import containment
from dpbench.privacy.containment import ContainmentError, arm, call_contained, check_integrity
from dpbench.privacy.isolation import IsolationError
from dpbench.privacy.mechanism import Mechanism, MechanismContractError, build_plugin
from dpbench.privacy.privatizer import PluginPrivatizer, StructuredPrivatizer
from mechanisms.examples.flat_clip_plugin import FlatClipPlugin


def plugin_releases(plugin_class: type, steps: int = 2) -> list:
    plugin = build_plugin(lambda: plugin_class(1.0, 10.0, 8, 100, 6, 1, 3.0, 1e-5), plugin_class.__name__)
    privatizer = PluginPrivatizer(plugin, plugin_class.__name__, SHAPES, 1.0, 0.06, key=7)
    return [privatizer.release([MaterializedGradients(batch(step))], step, 0) for step in range(steps)]


# ------------------------------------------------------------------------ the red team's three attacks
class ReadsTheRawSumFromTheKernelsFrame(Mechanism):
    name = "reads_raw_sum"

    def postprocess(self, gradient, step, epoch):
        kernel = sys._getframe(1).f_locals
        return [t / kernel["self"].expected_batch_size for t in kernel["total"]]


class InflatesTheKernelsMembership(Mechanism):
    name = "inflates_membership"

    def clip_factors(self, group_norms, thresholds, step, epoch):
        frame = sys._getframe(1)
        while frame is not None and "membership" not in frame.f_locals:
            frame = frame.f_back
        if frame is not None:
            frame.f_locals["membership"].mul_(10)
        return super().clip_factors(group_norms, thresholds, step, epoch)


class NoiseOnlyWhenTheKernelProbes(FlatClipPlugin):
    def clip_and_noise(self, per_sample_grads, step, epoch):
        frame, probed = sys._getframe(1), False
        while frame is not None:
            probed = probed or bool(frame.f_locals.get("probed"))
            frame = frame.f_back
        released = super().clip_and_noise(per_sample_grads, step, epoch)
        return released if probed else [r * 0 for r in released]


@pytest.mark.parametrize("mechanism", [ReadsTheRawSumFromTheKernelsFrame, InflatesTheKernelsMembership])
def test_a_structured_mechanism_that_walks_into_the_kernels_frames_is_refused(mechanism):
    with pytest.raises(ContainmentError, match="read the call stack"):
        run_steps(mechanism(1.0))


def test_a_plugin_that_looks_for_the_probe_in_the_kernels_frames_is_refused():
    with pytest.raises(ContainmentError, match=r"NoiseOnlyWhenTheKernelProbes.*read the call stack"):
        plugin_releases(NoiseOnlyWhenTheKernelProbes)


# ------------------------------------------------------------------------ other ways to a frame or an object
def frame_from_a_traceback():
    try:
        raise RuntimeError
    except RuntimeError as error:
        return error.__traceback__.tb_frame


def frame_from_a_generator():
    def generator():
        yield

    return generator().gi_frame


def run_in_a_thread(function):
    """``function()`` on another thread, which is not running mechanism code itself; its errors swallowed."""
    thread = threading.Thread(target=lambda: suppress_all(function))
    thread.start()
    thread.join()


def suppress_all(function):
    try:
        function()
    except Exception:
        pass


REACHES = {
    "a traceback's frame": frame_from_a_traceback,
    "a generator's frame": frame_from_a_generator,
    "every thread's frames": sys._current_frames,
    "the objects gc tracks": gc.get_objects,
    "what refers to a tensor": lambda: gc.get_referrers(torch.zeros(1)),
    "a thread that outlives the call": lambda: threading.Thread(target=threading.Event().wait, args=(0.5,)).start(),
    "a thread that reads the kernel's frames": lambda: run_in_a_thread(sys._current_frames),
    "native memory through ctypes": lambda: __import__("ctypes").addressof(__import__("ctypes").c_int(1)),
    "an audit hook of its own": lambda: sys.addaudithook(lambda event, args: None),
    "a fork": lambda: __import__("os").fork(),  # refused before it forks
    "a trace function": lambda: sys.settrace(None),
    "a profile function": lambda: sys.setprofile(None),
    "another function's code": lambda: setattr(kernel_noise.add_gaussian_noise, "__code__", (lambda: 0).__code__),
}


@pytest.mark.parametrize("reach", REACHES.values(), ids=REACHES.keys())
def test_every_route_to_the_kernels_frames_and_objects_is_refused_in_a_hook(reach):
    class Reaches(Mechanism):
        name = "reaches"

        def postprocess(self, gradient, step, epoch):
            reach()
            return gradient

    with pytest.raises(ContainmentError, match="reaches"):
        run_steps(Reaches(1.0), steps=1)
    assert kernel_noise.add_gaussian_noise.__code__.co_name == "add_gaussian_noise"


def test_a_refusal_the_mechanism_catches_still_refuses_the_run():
    class SwallowsTheRefusal(Mechanism):
        name = "swallows"

        def clip_factors(self, group_norms, thresholds, step, epoch):
            try:
                sys._getframe(1)
            except Exception:
                pass
            return super().clip_factors(group_norms, thresholds, step, epoch)

    with pytest.raises(ContainmentError, match=r"swallows' \(clip_factors at step 0\) tried to read the call stack"):
        run_steps(SwallowsTheRefusal(1.0), steps=1)


class ReadsFramesWhenPickled:
    """State whose pickling (at every epoch's checkpoint) runs code that walks into the caller's frames."""

    def __reduce__(self):
        sys._getframe(1)
        return (ReadsFramesWhenPickled, ())


def test_a_mechanism_whose_state_reads_frames_when_checkpointed_is_refused():
    from dpbench.training.checkpoint import _object_state

    mechanism = Mechanism(1.0)
    mechanism.payload = ReadsFramesWhenPickled()
    with pytest.raises(ContainmentError, match=r"Mechanism' \(checkpointing its state\) tried to read the call stack"):
        _object_state(mechanism)


# ------------------------------------------------------------------------ what must not change around the kernel
class ZeroesEveryRandomDraw(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        return result.zero_() if "normal" in str(func) or "randn" in str(func) else result


def push_a_dispatch_mode():
    mode = ZeroesEveryRandomDraw()
    mode.__enter__()
    return mode


def test_a_torch_mode_that_would_zero_the_kernels_noise_is_refused():
    """Pushed in ``__init__``, the mode sees every tensor operation after it: the kernel's noise draw included."""
    arm()
    modes = []
    try:
        with pytest.raises(ContainmentError, match="torch dispatch modes"):
            call_contained("zeroes_noise", "__init__", lambda: modes.append(push_a_dispatch_mode()))
    finally:
        for mode in modes:
            mode.__exit__(None, None, None)


def test_a_replaced_kernel_function_is_refused(monkeypatch):
    arm()
    with pytest.raises(ContainmentError, match=r"dpbench.privacy.noise.add_gaussian_noise"):
        call_contained("patches", "clip_factors at step 0", monkeypatch.setattr, kernel_noise, "add_gaussian_noise",
                       lambda tensors, std, source: tensors)


def test_a_replaced_torch_function_is_refused(monkeypatch):
    arm()
    with pytest.raises(ContainmentError, match=r"torch.randn"):
        call_contained("patches", "__init__", monkeypatch.setattr, torch, "randn", lambda *a, **k: torch.zeros(a[0]))


def test_a_name_added_to_a_kernel_module_is_refused(monkeypatch):
    """A module global named like a builtin shadows it for the module's own code."""
    arm()
    with pytest.raises(ContainmentError, match=r"dpbench.privacy.noise.max \(added\)"):
        call_contained("shadows", "__init__", lambda: monkeypatch.setattr(kernel_noise, "max", min, raising=False))


def test_a_signal_handler_installed_is_refused():
    """A handler runs between any two of the kernel's bytecodes, with the kernel's frame as argument."""
    arm()
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        with pytest.raises(ContainmentError, match="signal handler SIGUSR1"):
            call_contained("handler", "__init__", signal.signal, signal.SIGUSR1, lambda number, frame: None)
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_a_change_made_outside_any_call_is_found_at_the_next(monkeypatch):
    """At import time, say: the baseline is taken before the mechanism's module is imported."""
    arm()
    monkeypatch.setattr(torch.Tensor, "normal_", lambda self, *a, **k: self.zero_())
    with pytest.raises(ContainmentError, match=r"torch.Tensor.normal_"):
        call_contained("m", "thresholds at step 0", lambda: [1.0])


# ------------------------------------------------------------------------ what honest mechanisms still do
def test_logging_and_local_exceptions_work_inside_a_hook(caplog):
    class Logs(Mechanism):
        name = "logs"

        def postprocess(self, gradient, step, epoch):
            try:
                raise ValueError("handled")
            except ValueError:
                logging.getLogger("my_mechanism").warning("step %d released", step)
            return gradient

    with caplog.at_level(logging.WARNING, logger="my_mechanism"):
        arm()
        run_steps(Logs(1.0), steps=2)
    assert [r.getMessage() for r in caplog.records] == ["step 0 released", "step 1 released"]


def test_seeding_torch_inside_a_hook_works():
    """``torch.manual_seed`` records the stack as text (for lazily seeded accelerators): no frame leaves it."""
    class Seeds(Mechanism):
        name = "seeds"

        def postprocess(self, gradient, step, epoch):
            torch.manual_seed(step)
            return gradient

    run_steps(Seeds(1.0), steps=2)


def test_a_module_imported_inside_a_hook_may_define_named_tuples_and_enums(tmp_path, monkeypatch):
    (tmp_path / "helper_with_types.py").write_text(
        "import collections, enum, typing\n"
        "Pair = collections.namedtuple('Pair', 'a b')\n"
        "class Colour(enum.Enum):\n    RED = 1\n"
        "class Point(typing.NamedTuple):\n    x: int\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    class ImportsLazily(Mechanism):
        name = "imports_lazily"

        def postprocess(self, gradient, step, epoch):
            import helper_with_types

            assert helper_with_types.Colour.RED.value == 1
            return gradient

    run_steps(ImportsLazily(1.0), steps=1)


def test_a_hook_may_make_named_tuples_type_variables_and_new_annotations():
    """The library functions that read their caller's frame for a module name, a bool or the stack as text
    (``FRAME_READERS``) work inside mechanism code; a composed mechanism's config subscripted a new annotation
    through Hydra, and was refused when no earlier test had done it first. A frame itself stays refused."""
    import collections
    import enum
    import typing

    class Fresh:
        pass

    def make() -> tuple:
        return (collections.namedtuple("Pair", "a b"), typing.TypeVar("T_fresh"),
                typing.Optional[typing.Union[Fresh, slice]], enum.Enum("Colour", "RED GREEN"))

    pair, variable, annotation, colour = call_contained("types", "__init__", make)
    assert pair._fields == ("a", "b") and variable.__name__ == "T_fresh" and Fresh in typing.get_args(annotation)
    assert colour.RED.value == 1
    with pytest.raises(ContainmentError, match="read the call stack"):
        call_contained("types", "__init__", lambda: sys._getframe(1))


def _cached_getframe():
    import functools

    return functools.lru_cache(maxsize=None)(sys._getframe)  # a C wrapper: no Python frame of its own


def _through_a_cache(function, *key):
    """``function``'s code run under globals whose ``sys._getframe`` is an ``lru_cache`` around the real one (the
    topmost Python frame when the real one runs is then the library's code), then the frame read back from the
    cache, where no audit event sees it: a sixth red team's way past a check of the calling code alone."""
    import types

    grab = _cached_getframe()
    namespace = {**function.__globals__, "sys": types.SimpleNamespace(_getframe=grab)}
    types.FunctionType(function.__code__, namespace, function.__name__, function.__defaults__)()
    return grab(*key)


def _with_replaced(owner, name: str, value, steal):
    """``traceback.extract_stack()`` with ``owner.name`` replaced by ``value``, then ``steal()``."""
    import traceback

    saved = vars(owner)[name]
    setattr(owner, name, value)
    try:
        traceback.extract_stack()
        return steal()
    finally:
        setattr(owner, name, saved)


def _stealing_walk(frame):
    _STOLEN.append(frame)
    return iter(())


_STOLEN: list = []


def _with_a_method_added_to_stack_summary():
    import traceback

    traceback.StackSummary.append = lambda self, item: list.append(self, item)
    try:
        return traceback.extract_stack()
    finally:
        del traceback.StackSummary.append


def _with_a_thread_alive():
    import traceback

    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        return traceback.extract_stack()
    finally:
        release.set()
        thread.join()


def _replaced_getframe(owner_of_sys):
    import types

    grab = _cached_getframe()
    if owner_of_sys is sys:
        return _with_replaced(sys, "_getframe", grab, grab)
    return _with_replaced(owner_of_sys, "sys", types.SimpleNamespace(_getframe=grab), grab)


@pytest.mark.parametrize(
    "reach",
    [
        lambda: _through_a_cache(__import__("typing")._caller, 2),
        lambda: _through_a_cache(__import__("traceback").extract_stack),
        lambda: _through_a_cache(__import__("traceback").format_stack),
        lambda: _with_replaced(__import__("traceback"), "walk_stack", _stealing_walk, lambda: _STOLEN[0]),
        lambda: _replaced_getframe(__import__("traceback")),
        lambda: _replaced_getframe(sys),
        _with_a_method_added_to_stack_summary,
        _with_a_thread_alive,
    ],
    ids=["typing-caller-code", "extract-stack-code", "format-stack-code", "walk-stack-replaced", "traceback-sys-replaced",
         "getframe-replaced", "stack-summary-method-added", "thread-alive"],
)
def test_a_library_frame_reader_cannot_be_made_to_hand_the_mechanism_a_frame(reach):
    with pytest.raises(ContainmentError, match="read the call stack"):
        call_contained("launders", "postprocess at step 0", reach)
    assert not _STOLEN


@pytest.mark.parametrize("then", ["reads frames through a library", "returns"])
def test_a_thread_started_while_another_ends_is_still_found(then):
    """The number of threads alone missed a mechanism's thread started while a thread alive before the call
    ended (the number stays the same): CI saw the library-reader case pass by chance that way."""
    import traceback

    ends, keeps = threading.Event(), threading.Event()
    ending = threading.Thread(target=ends.wait)
    ending.start()

    def starts_one_while_another_ends():
        threading.Thread(target=keeps.wait).start()
        ends.set()
        ending.join()
        if then == "reads frames through a library":
            return traceback.extract_stack()

    try:
        with pytest.raises(ContainmentError, match="read the call stack" if then != "returns" else "outlives"):
            call_contained("starts-a-thread", "postprocess at step 0", starts_one_while_another_ends)
    finally:
        keeps.set()




def test_a_module_imported_inside_a_hook_cannot_read_frames_at_its_top_level(tmp_path, monkeypatch):
    """Import-time code of a module the mechanism imports lazily is the mechanism's code: all frame reads were
    allowed while any module was being imported, and its top level could walk to the kernel's frames."""
    (tmp_path / "helper_reading_frames.py").write_text("import sys\nFRAME = sys._getframe(1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    class ImportsAFrameReader(Mechanism):
        name = "imports_a_frame_reader"

        def postprocess(self, gradient, step, epoch):
            import helper_reading_frames  # noqa: F401

            return gradient

    with pytest.raises(ContainmentError, match="read the call stack"):
        run_steps(ImportsAFrameReader(1.0), steps=1)
    sys.modules.pop("helper_reading_frames", None)


def test_outside_mechanism_code_nothing_is_refused():
    assert sys._getframe(0).f_code.co_name == "test_outside_mechanism_code_nothing_is_refused"
    assert isinstance(gc.get_referrers(SHAPES), list)


# ------------------------------------------------------------------------ the checks' own state
def _every_name_of_containment_emptied():
    """Mechanism code that sets out to switch the checks off through the module that implements them."""
    saved = dict(vars(containment))
    for name, value in saved.items():
        if isinstance(value, (dict, MappingProxyType)):
            setattr(containment, name, {})
        elif isinstance(value, (frozenset, tuple, list)) and not name.startswith("__"):
            setattr(containment, name, type(value)())
        elif callable(value) and not isinstance(value, type) and not name.startswith("__"):
            setattr(containment, name, lambda *args, **kwargs: False)
        elif isinstance(value, (int, bool)) or value is None:
            setattr(containment, name, 0)
    try:
        return sys._getframe(1)
    finally:
        vars(containment).update(saved)


def _a_run_made_from_the_kernels_code():
    """A function with the kernel's own ``_run`` code and globals, whose ``audit`` raises the exit event where the
    kernel's raises the entry: ends the containment it is called in, if the hook took the event."""
    forged = types.FunctionType(containment._run.__code__, vars(containment), "_run",
                                (functools.partial(sys.audit, "dpbench.containment.exit", []),) + containment._run.__defaults__[1:])
    forged("forger", "a call", "mechanism", lambda: None, ())
    return sys._getframe(1)


def _a_refusal_wiped_by_a_call_on_another_thread():
    """A refusal caught, then a contained call of its own on another thread (whose start and end used to clear
    the record of what was refused)."""
    with contextlib.suppress(ContainmentError):
        gc.get_objects()
    thread = threading.Thread(target=suppress_all, args=(lambda: call_contained("wipes", "a call", lambda: None),))
    thread.start()
    thread.join()


DISMANTLES = {
    "a refusal wiped by a call on another thread": _a_refusal_wiped_by_a_call_on_another_thread,
    "every name of the containment module emptied": _every_name_of_containment_emptied,
    "the exit event raised by the mechanism": lambda: (sys.audit("dpbench.containment.exit", []), sys._getframe(1)),
    "the baseline dropped": lambda: (containment.disarm(), sys._getframe(1)),
    "the kernel's run function forged": _a_run_made_from_the_kernels_code,
    "the exit check's snapshot emptied": lambda: setattr(
        containment._intact, "__defaults__", ((),) + containment._intact.__defaults__[1:]
    ),
}


@pytest.mark.parametrize("dismantle", DISMANTLES.values(), ids=DISMANTLES.keys())
def test_the_checks_cannot_be_switched_off_from_inside_a_call(dismantle):
    """The hook keeps what it decides by in its own closure and takes the kernel's events only from the
    kernel's functions: changing the module's names, raising its events or calling its functions from
    mechanism code does not end the containment (before, ``containment._running = 0`` did)."""
    with pytest.raises(ContainmentError):
        call_contained("dismantles", "postprocess at step 0", dismantle)
    assert sys._getframe(0).f_code.co_name.startswith("test_")  # outside a call, frames are read as ever


_PLANTED: dict = {"planted": False, "stolen": []}


class _PlantedThread(threading.Thread):
    """A "thread" planted in ``threading._active`` whose hash is the main thread's and whose ``__eq__`` reads
    frames once planted: the census used to compare it after the call's end, inside the hook, with nothing
    contained."""

    def __hash__(self):
        return hash(threading.main_thread())

    def __eq__(self, other):
        if _PLANTED["planted"]:
            with contextlib.suppress(Exception):
                _PLANTED["stolen"].append(sys._getframe(1))
        return True


def test_an_object_planted_where_the_hook_looks_never_runs_uncontained():
    planted = _PlantedThread()

    def plants():
        threading._active[-12345] = planted
        _PLANTED["planted"] = True

    arm()
    try:
        with pytest.raises(ContainmentError, match="outlives its call"):
            call_contained("plants", "postprocess at step 0", plants)
    finally:
        threading._active.pop(-12345, None)
        _PLANTED["planted"] = False
    assert not _PLANTED["stolen"]
    with pytest.raises(ContainmentError, match="scan the interpreter"):  # the hook still refuses
        call_contained("later", "postprocess at step 1", gc.get_objects)


def test_mechanism_code_cannot_read_or_drop_the_baseline():
    arm()
    for route in (lambda: check_integrity("x", "y"), containment.disarm, containment.arm):
        with pytest.raises(ContainmentError, match="integrity baseline"):
            call_contained("steals", "postprocess at step 0", route)


def _a_dispatcher_kernel_for_the_noise():
    library = torch._C._dispatch_library("IMPL", "aten", "", "nowhere.py", 1)
    library.impl("randn.generator", "CPU", lambda size, **kwargs: torch.zeros(size), False)
    _KEPT.append(library)


_KEPT: list = []


def _a_saved_tensor_hook():
    torch._C._autograd._push_saved_tensors_default_hooks(lambda t: t, lambda t: t)
    _KEPT.append(torch._C._autograd._pop_saved_tensors_default_hooks)


def _a_gc_callback_behind_a_copy():
    original = gc.callbacks
    original.append(lambda phase, info: None)
    gc.callbacks = list(original[:-1])
    _KEPT.append(lambda: (original.pop(), setattr(gc, "callbacks", original)))


def _a_signal_handler_behind_a_replaced_getsignal():
    getsignal = signal.getsignal
    previous = signal.signal(signal.SIGUSR2, lambda number, frame: None)
    signal.getsignal = lambda number: previous if number == signal.SIGUSR2 else getsignal(number)
    _KEPT.append(lambda: (signal.signal(signal.SIGUSR2, previous), setattr(signal, "getsignal", getsignal)))


def _a_dispatch_mode_behind_a_replaced_counter():
    length = torch._C._len_torch_dispatch_stack
    mode = ZeroesEveryRandomDraw()
    mode.__enter__()
    torch._C._len_torch_dispatch_stack = lambda: length() - 1
    _KEPT.append(lambda: (setattr(torch._C, "_len_torch_dispatch_stack", length), mode.__exit__(None, None, None)))


LEFT_BEHIND = {
    "a dispatcher kernel for the noise draw": _a_dispatcher_kernel_for_the_noise,
    "a saved-tensor hook": _a_saved_tensor_hook,
    "a gc callback behind a copy of gc.callbacks": _a_gc_callback_behind_a_copy,
    "a signal handler behind a replaced signal.getsignal": _a_signal_handler_behind_a_replaced_getsignal,
    "a dispatch mode behind a replaced mode counter": _a_dispatch_mode_behind_a_replaced_counter,
}


@pytest.mark.parametrize("leave", LEFT_BEHIND.values(), ids=LEFT_BEHIND.keys())
def test_what_the_kernel_would_call_later_is_seen_however_it_is_hidden(leave):
    """A third containment red team's hook points: left installed by a call, each ran the mechanism's code in
    the kernel's later steps, outside any call; the exit check read them through names it could replace."""
    arm()
    try:
        with pytest.raises(ContainmentError, match="the process changed"):
            call_contained("leaves", "postprocess at step 0", leave)
    finally:
        while _KEPT:
            undo = _KEPT.pop()
            if callable(undo):
                undo()  # (a dispatcher kernel ends with its library object, dropped here)


def _the_python_dispatcher_kept_on():
    _KEPT.append(torch._C._EnablePythonDispatcher())


def _a_dispatcher_kernel_for_sqrt():
    library = torch._C._dispatch_library("IMPL", "aten", "", "nowhere.py", 1)
    library.impl("sqrt", "CPU", lambda x: x, False)
    _KEPT.append(library)


def _torch_functional_torch_function_replaced():
    import torch.functional as functional

    original = functional.has_torch_function
    functional.has_torch_function = lambda *args: False
    _KEPT.append(lambda: setattr(functional, "has_torch_function", original))


def _a_dpbench_module_swapped_in_sys_modules():
    name = "dpbench.verification.noise_shape"
    original = sys.modules[name]
    sys.modules[name] = types.ModuleType(name)
    _KEPT.append(lambda: sys.modules.__setitem__(name, original))


SECOND_ROUND = {
    "the python dispatcher kept on": (_the_python_dispatcher_kept_on, "dispatch keys"),
    "a dispatcher kernel for sqrt": (_a_dispatcher_kernel_for_sqrt, "kernels for aten::sqrt"),
    "torch.functional's has_torch_function replaced": (_torch_functional_torch_function_replaced, "torch.functional"),
    "a dpbench module swapped in sys.modules": (_a_dpbench_module_swapped_in_sys_modules, "sys.modules"),
}


@pytest.mark.parametrize("route", SECOND_ROUND.values(), ids=SECOND_ROUND.keys())
def test_torch_state_the_kernels_later_operations_go_through_is_compared(route):
    """A fourth containment red team's routes: each changed what the kernel's operations after the call ran
    (a Python or C++ kernel zeroing the noise or shrinking norms, a lazily imported module's stand-in)."""
    leave, message = route
    arm()
    try:
        with pytest.raises(ContainmentError, match=message):
            call_contained("leaves", "postprocess at step 0", leave)
    finally:
        while _KEPT:
            undo = _KEPT.pop()
            if callable(undo):
                undo()
            elif hasattr(undo, "__exit__"):
                undo.__exit__(None, None, None)


def test_a_weak_reference_callback_on_a_handed_tensors_storage_is_refused():
    kept = []

    def attaches(per_sample_grads):
        kept.append(weakref.ref(per_sample_grads[0].untyped_storage(), lambda ref: None))

    with pytest.raises(ContainmentError, match="weak-reference callback"):
        call_contained("attaches", "clip_and_noise at step 0", attaches, [torch.ones(2, 3)])


def test_a_weak_reference_callback_on_a_tensor_it_was_handed_is_refused():
    """The callback would run when the kernel drops the tensor, after the call (a red team's read the kernel's
    frames from there)."""
    kept = []

    def attaches(per_sample_grads):
        kept.append(weakref.ref(per_sample_grads[0], lambda ref: None))
        return [g.sum(0) for g in per_sample_grads]

    with pytest.raises(ContainmentError, match="weak-reference callback"):
        call_contained("attaches", "clip_and_noise at step 0", attaches, [torch.ones(2, 3)])


def test_the_interactive_prompts_last_value_is_not_a_change():
    """``builtins._`` is rebound by the interpreter's prompt after every expression a notebook or REPL shows."""
    had, before = hasattr(builtins, "_"), getattr(builtins, "_", None)
    builtins._ = object()
    try:
        assert call_contained("prompt", "postprocess at step 0", lambda: 1) == 1
    finally:
        if had:
            builtins._ = before
        else:
            del builtins._


def test_a_kernel_functions_code_cannot_be_replaced_after_renaming_its_module():
    """The hook tells a watched function by the module it says it is from and the module whose globals it
    runs with: changing ``__module__`` first does not make its code replaceable."""
    function = kernel_noise.add_gaussian_noise
    module, code = function.__module__, function.__code__

    def renames_then_replaces():
        function.__module__ = "not_watched"
        function.__code__ = (lambda tensors, std, source: tensors).__code__

    try:
        with pytest.raises(ContainmentError, match="replace the __code__"):
            call_contained("renames", "postprocess at step 0", renames_then_replaces)
    finally:
        function.__module__ = module
        if function.__code__ is not code:
            function.__code__ = code
    assert function.__code__ is code


@pytest.mark.parametrize("name", ["_run", "ProcessIntegrity", "tuple"])
def test_a_name_of_the_containment_module_or_builtins_left_replaced_is_refused(name):
    """The checks made at a call's exit run through the module's own names and builtins: one left replaced
    (here by itself, wrapped) refuses the run before any of them is trusted."""
    owner = builtins if name == "tuple" else containment
    original = getattr(owner, name)

    def replaces():
        setattr(owner, name, type(name, (original,), {}) if isinstance(original, type) and name != "tuple"
                else (lambda *args, **kwargs: original(*args, **kwargs)))

    try:
        with pytest.raises(ContainmentError, match="containment module"):
            call_contained("replaces", "postprocess at step 0", replaces)
    finally:
        setattr(owner, name, original)


# ------------------------------------------------------------------------ a second red team's routes
class HookSetOnTheInstance(Mechanism):
    name = "instance_hook"

    def __init__(self, max_grad_norm):
        super().__init__(max_grad_norm)
        self.leak = []
        self.clip_factors = lambda norms, thresholds, step, epoch: (self.leak.append(float(norms.max())), 1 / norms)[1]


class NameReadsFrames(Mechanism):
    @property
    def name(self):
        sys._getframe(1)
        return "name_reads_frames"


class ShapeReadsFramesWhenConverted(Mechanism):
    name = "shape_reads_frames"

    def noise_shape(self, step, epoch):
        class Shape(float):
            def __float__(self):
                sys._getframe(1)
                return 1.0

        return Shape(1.0)


class ThresholdReadsFramesWhenConverted(Mechanism):
    """The base class's ``thresholds`` returns ``max_grad_norm``, which its own ``__init__`` set to a float of its
    own: the kernel's conversion ran that ``__float__`` uncontained (found in session 21), where the frames
    above hold the batch."""

    name = "threshold_reads_frames"

    def __init__(self, max_grad_norm):
        super().__init__(max_grad_norm)

        class Threshold(float):
            def __float__(self):
                sys._getframe(1)
                return 1.0

        self.max_grad_norm = Threshold(max_grad_norm)


class GroupsChangeOnTheSecondPass(Mechanism):
    name = "groups_change"

    def parameter_groups(self, parameter_shapes):
        class Groups(list):
            passes = 0

            def __iter__(self):
                type(self).passes += 1
                return iter([[0, 1]] if type(self).passes == 1 else [[0, 1]] * 16)

        return Groups()


class Spy(torch.Tensor):
    pass


class ReleasesASubclass(Mechanism):
    name = "releases_a_subclass"

    def postprocess(self, gradient, step, epoch):
        return [g.as_subclass(Spy) for g in gradient]


class HidesItsDict:
    __dict__ = property(lambda self: {})


class StashBehindAFakeDict(Mechanism):
    name = "stash_behind_a_fake_dict"

    def __init__(self, max_grad_norm):
        super().__init__(max_grad_norm)
        self.box = HidesItsDict()

    def clip_factors(self, group_norms, thresholds, step, epoch):
        self.box.raw = group_norms.clone()
        return super().clip_factors(group_norms, thresholds, step, epoch)


class FinalizerOnTheKernelsArgument(Mechanism):
    """A finalizer runs when its object is collected: after the call, outside every check."""

    name = "finalizer"
    stash: list = []

    def postprocess(self, gradient, step, epoch):
        import weakref

        weakref.finalize(gradient[0], type(self).stash.append, step)
        return gradient


def test_a_hook_set_on_the_instance_is_refused():
    with pytest.raises(MechanismContractError, match="clip_factors must be a method of its class"):
        run_steps(HookSetOnTheInstance(1.0), steps=1)


@pytest.mark.parametrize("mechanism", [NameReadsFrames, ShapeReadsFramesWhenConverted, ThresholdReadsFramesWhenConverted])
def test_what_the_kernel_reads_from_a_mechanism_is_read_contained(mechanism):
    """A property or a returned value's ``__float__`` is the mechanism's code too."""
    with pytest.raises(ContainmentError, match="read the call stack"):
        run_steps(mechanism(1.0), steps=1)


def test_groups_are_checked_as_they_are_used():
    privatizer = StructuredPrivatizer(GroupsChangeOnTheSecondPass(1.0), SHAPES, 10.0, 6.0, 0.1)
    assert privatizer.groups == ((0, 1),)
    assert privatizer.release([MaterializedGradients(batch(0))], 0, 0).record.sensitivity == 1.0


def test_a_released_tensor_subclass_is_refused():
    with pytest.raises(MechanismContractError, match="plain torch.Tensor"):
        run_steps(ReleasesASubclass(1.0), steps=1)


def test_a_mechanism_class_with_custom_attribute_access_is_refused():
    class ShowsNoState(Mechanism):
        name = "shows_no_state"
        __dict__ = property(lambda self: {})

    with pytest.raises(MechanismContractError, match=r"ShowsNoState.__dict__"):
        run_steps(ShowsNoState(1.0), steps=1)


def test_state_behind_a_fake_dict_is_seen():
    with pytest.raises(IsolationError, match=r"changed self.box"):
        run_steps(StashBehindAFakeDict(1.0), steps=1)


def test_a_finalizer_that_would_run_after_the_check_is_refused():
    with pytest.raises(ContainmentError, match="register a finalizer"):
        run_steps(FinalizerOnTheKernelsArgument(1.0), steps=1)


def test_a_logging_filter_that_would_rewrite_epsilon_is_refused():
    arm()
    handler = logging.StreamHandler()
    logging.getLogger("dpbench").addHandler(handler)
    arm()
    try:
        call_contained("rewrites", "__init__", handler.addFilter, lambda record: True)
        with pytest.raises(ContainmentError, match="logging's loggers, handlers, filters"):
            check_integrity("rewrites", "the end of epoch 1")  # before the epoch's line is logged
    finally:
        logging.getLogger("dpbench").removeHandler(handler)


def test_the_json_encoder_and_new_names_in_torch_are_watched(monkeypatch):
    import json

    arm()
    call_contained("rewrites", "__init__", monkeypatch.setattr, json.JSONEncoder, "iterencode", lambda *a: iter(()))
    with pytest.raises(ContainmentError, match=r"json.encoder.JSONEncoder.iterencode"):
        check_integrity("rewrites", "the end of epoch 1")  # before anything writes results
    monkeypatch.undo()
    arm()
    with pytest.raises(ContainmentError, match=r"torch._stash \(added\)"):
        call_contained("stashes", "clip_factors", lambda: monkeypatch.setattr(torch, "_stash", [], raising=False))


# ------------------------------------------------------------------------ a third red team's routes
class ZeroesEveryoneIfOneIsLarge(Mechanism):
    """Every factor x norm <= C holds, but one example's norm decides everyone's factor."""

    name = "cross_example"

    def clip_factors(self, group_norms, thresholds, step, epoch):
        factors = torch.clamp(thresholds / group_norms, max=1.0)
        return factors * 0 if bool((group_norms > 50 * thresholds).any()) else factors


class StatisticOfTheWholeBatch(Mechanism):
    name = "cross_statistic"
    statistic_noise = 10.0

    def clip_statistic(self, group_norms, thresholds, step, epoch):
        large = (group_norms > 50 * thresholds).any()
        return torch.full((group_norms.shape[0],), 0.5 if bool(large) else -0.5)


def contribution_of_one_large_example(mechanism: Mechanism) -> float:
    """How far one example of norm 100 C moves the un-noised clipped sum (C = 1)."""
    from dpbench.privacy.clipping import check_groups, clip_chunk, clipping_plan

    groups = check_groups([[0, 1]], 2)
    plan = clipping_plan(mechanism, groups, 0, 0)
    base = batch(0)
    large = [torch.cat([g, torch.full((1, *g.shape[1:]), 100.0 / (g[0].numel() + 2) ** 0.5)]) for g in base]
    sums = [clip_chunk(MaterializedGradients(b), mechanism, plan, 0, 0).gradient_sum for b in (base, large)]
    return float(torch.cat([(a - b).flatten() for a, b in zip(*sums)]).norm())


def test_an_examples_factor_depends_on_its_own_norms_only():
    """The red team's version moved the sum by 248 C with C recorded; per example, one example moves it by C."""
    assert contribution_of_one_large_example(ZeroesEveryoneIfOneIsLarge(1.0)) <= 1.0 + 1e-6


def test_an_examples_statistic_depends_on_its_own_norms_only():
    from dpbench.privacy.clipping import check_groups, clip_chunk, clipping_plan

    mechanism = StatisticOfTheWholeBatch(1.0)
    plan = clipping_plan(mechanism, check_groups([[0, 1]], 2), 0, 0)
    base = batch(0)
    large = [torch.cat([g, torch.full((1, *g.shape[1:]), 100.0)]) for g in base]
    statistics = [clip_chunk(MaterializedGradients(b), mechanism, plan, 0, 0).statistic_sum for b in (base, large)]
    assert abs(statistics[1] - statistics[0]) <= 0.5  # STATISTIC_BOUND: the one example's own value


# ------------------------------------------------------------------------ a fourth red team's routes
def everyone(group_norms: torch.Tensor) -> torch.Tensor:
    """What a hook could read of the other examples' norms from its own argument: unwrapped from a vmap
    batch, then the whole storage behind the tensor."""
    while torch._C._functorch.is_batchedtensor(group_norms):
        group_norms = torch._C._functorch.get_unwrapped(group_norms)
    storage = group_norms.untyped_storage()
    return torch.empty(0, dtype=group_norms.dtype).set_(storage, 0, (storage.nbytes() // group_norms.element_size(),))


class ReadsTheOthersThroughItsArgument(Mechanism):
    """Zero an example's factor when any example of the batch (read through the argument) has a large norm."""

    name = "reads_the_others"

    def clip_factors(self, group_norms, thresholds, step, epoch):
        factors = torch.clamp(thresholds / group_norms, max=1.0)
        return factors * 0 if bool((everyone(group_norms) > 50 * thresholds.max()).any()) else factors


class StatisticReadsTheOthers(Mechanism):
    name = "statistic_reads_the_others"
    statistic_noise = 10.0

    def clip_statistic(self, group_norms, thresholds, step, epoch):
        large = bool((everyone(group_norms) > 50 * thresholds.max()).any())
        return torch.full((group_norms.shape[0],), 0.5 if large else -0.5)


def test_a_hook_cannot_read_the_other_examples_through_its_argument():
    """A row that was a view of the whole norm matrix, or a vmap batch a hook can unwrap, let one example's
    norm decide every factor (the red team's: the sum moved 64 C with C recorded) and every statistic (129x
    its bound). Each call now gets a copy of its own row."""
    from dpbench.privacy.clipping import check_groups, clip_chunk, clipping_plan

    assert contribution_of_one_large_example(ReadsTheOthersThroughItsArgument(1.0)) <= 1.0 + 1e-6
    mechanism = StatisticReadsTheOthers(1.0)
    plan = clipping_plan(mechanism, check_groups([[0, 1]], 2), 0, 0)
    base = batch(0)
    large = [torch.cat([g, torch.full((1, *g.shape[1:]), 100.0)]) for g in base]
    statistics = [clip_chunk(MaterializedGradients(b), mechanism, plan, 0, 0).statistic_sum for b in (base, large)]
    assert abs(statistics[1] - statistics[0]) <= 0.5


class NamedByItsOwnCode(type):
    """A metaclass whose ``__name__`` runs the class's code wherever the kernel names the class."""

    @property
    def __name__(cls):
        return "reads-frames-here"


def test_a_plugin_class_whose_attribute_access_runs_its_code_is_refused():
    import abc

    from dpbench.privacy.mechanism import MechanismContractError, check_plain_plugin_class
    from mechanisms.examples.flat_clip_plugin import FlatClipPlugin

    sneaky = NamedByItsOwnCode("Sneaky", (FlatClipPlugin,), {})
    hooked = type("Hooked", (FlatClipPlugin,), {"__getattr__": lambda self, name: 0})
    for cls in (sneaky, hooked):
        with pytest.raises(MechanismContractError, match="plain class"):
            check_plain_plugin_class(cls)
    check_plain_plugin_class(FlatClipPlugin)
    check_plain_plugin_class(type("Abstract", (FlatClipPlugin, abc.ABC), {}))  # abc.ABC is fine


# ------------------------------------------------------------------------ a fifth red team's routes
STASH_MODULE = '''
import torch
from dpbench.privacy.mechanism import Mechanism

SEEN = {}

class {name}(Mechanism):
    {claim}
    name = "stash"

    def clip_factors(self, group_norms, thresholds, step, epoch):
        SEEN["largest"] = max(SEEN.get("largest", 0.0), float(group_norms.max()))
        return torch.clamp(thresholds / group_norms, max=1.0)
'''


@pytest.mark.parametrize("module_name,claim", [
    ("torchdp_stash", ""),  # a module whose name starts like a library's
    ("claims_a_library", '__module__ = "torch.nn"'),  # a class that names a library's module as its own
])
def test_state_kept_by_a_module_or_class_that_looks_like_a_librarys_is_still_state(tmp_path, module_name, claim):
    """The isolation check skipped modules whose names started with a library's (``torchdp``) and classes
    claiming a library's module: a fifth red team's hook carried raw norms between examples and steps there
    (VERIFIED, one example's raw norm released exactly). Now only code found in a library is a library's."""
    import importlib.util
    import sys

    from dpbench.privacy.isolation import IsolationError

    path = tmp_path / f"{module_name}.py"
    path.write_text(STASH_MODULE.replace("{name}", "Stash").replace("{claim}", claim))
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
        with pytest.raises(IsolationError, match="SEEN"):
            run_steps(module.Stash(1.0))
    finally:
        del sys.modules[module_name]
