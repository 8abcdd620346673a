"""The random streams of a researcher-form plugin, under the kernel's control at every call.

A plugin may draw noise from torch's, numpy's or Python's global generators, from generators it owns,
or from generators kept in its classes or modules. Every call of a plugin, the release of every step and
each of the verifier's draws alike, runs a deep copy of it (:func:`copy_with_streams`) whose own
generators are replaced by *fresh* ones, with its classes' and modules' generators reseeded in place
(:func:`reseed_shared_generators`) and every global generator seeded from the call's seed
(:func:`call_under_seed`), inside a saved-and-restored global random state (:func:`isolated_randomness`), with the operating system's
entropy as its code sees it (``os.urandom``, and through it ``secrets``, ``random.SystemRandom`` and numpy's
unseeded generators) drawn from the call's seed too (:func:`entropy_under_seed`). So:

- two calls with the same seed see common random numbers (their difference is exactly the effect of
  the data), and calls with different seeds see independent noise wherever it comes from;
- a step's release is made under :func:`release_seed` of the run's key and the step, the same call
  whether the verifier probes that step or not: the verifier's first draw *is* the release, so a
  plugin cannot tell a probed step from another by its random state, its generators or its inputs
  (a plugin that noised only when it saw the verifier's streams was VERIFIED while releasing 150 of
  180 steps without noise, before every release was made this way);
- the run's own random state never moves with the plugin's draws, and a run's releases are
  reproducible from its key: the run's seed, or with ``privacy.secure_noise=true`` a key drawn from
  the operating system's entropy and never written anywhere.
"""

from __future__ import annotations

import copy
import operator
import os
import random
import sys
import types
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from dpbench.privacy.containment import call_contained
from dpbench.privacy.isolation import library_module
from dpbench.privacy.mechanism import call_plugin
from dpbench.privacy.provenance import defining_modules, in_packages, library_class

GENERATOR_TYPES = (torch.Generator, np.random.Generator, np.random.RandomState, random.Random)
MAX_DEPTH = 8


def derive_seed(*parts: int) -> int:
    """A 63-bit seed determined by ``parts`` (e.g. run key, step, draw), independent of any global state.
    Each part counts with its low 64 bits (a 63-bit secret key keeps all of its entropy)."""
    words = [int(p) >> shift & 0xFFFFFFFF for p in parts for shift in (0, 32)]
    words = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def release_seed(key: int, step: int) -> int:
    """The seed of step ``step``'s release under the run's ``key`` (the verifier's first draw at that step)."""
    return derive_seed(key, step, 0)


NOT_PLUGIN_CODE = ("builtins", "dpbench", "torch", "numpy", "scipy", "typing", "abc", "collections", "enum")
"""Top-level packages whose classes and globals are never a plugin's own."""


def plugin_owners(plugin: Any) -> list[Any]:
    """The plugin's own classes (of its MRO, outside ``NOT_PLUGIN_CODE``, judged by where they are found:
    :mod:`dpbench.privacy.provenance`) and the modules that define them (the one each names, and the ones
    its methods run in), with the modules of the plugin's own code those hold (a helper module: not the standard
    library's, an installed package's or dpbench's): the state every copy of the plugin shares."""
    classes = [c for c in type(plugin).__mro__ if not library_class(c, NOT_PLUGIN_CODE)]
    functions = [f for c in classes for f in vars(c).values() if isinstance(f, types.FunctionType)]
    named = [sys.modules.get(c.__module__) for c in classes]
    modules = {id(m): m for m in named + defining_modules(functions) if m is not None and not _library_module(m)}
    pending = list(modules.values())
    while pending:
        for value in list(vars(pending.pop()).values()):
            if isinstance(value, types.ModuleType) and id(value) not in modules and not library_module(value):
                modules[id(value)] = value
                pending.append(value)
    return classes + list(modules.values())


def _library_module(module: types.ModuleType) -> bool:
    name = vars(module).get("__name__")
    return in_packages(name, NOT_PLUGIN_CODE) and sys.modules.get(name) is module


def reseed_shared_generators(plugin: Any, seed: int) -> None:
    """Reseed, in place, the generators the plugin keeps in its classes or modules (a module-level
    ``torch.Generator``, say) from ``seed``, each from its own name: copies share them, so without this a
    release and the verifier's call under the same seed would not see the same noise."""
    for owner in plugin_owners(plugin):
        label = getattr(owner, "__qualname__", getattr(owner, "__name__", ""))
        for name, value in list(vars(owner).items()):
            if not isinstance(value, GENERATOR_TYPES):
                continue
            own = derive_seed(seed, zlib.crc32(f"{label}.{name}".encode()))
            if isinstance(value, torch.Generator):
                value.manual_seed(own)
            elif isinstance(value, np.random.Generator):
                value.bit_generator.state = type(value.bit_generator)(own).state
            elif isinstance(value, np.random.RandomState):
                value.seed(own % 2**32)
            else:
                value.seed(own)


def released_call(
    plugin: Any, per_sample_grads: list[torch.Tensor], step: int, epoch: int, seed: int
) -> tuple[Any, Any]:
    """(the copy of ``plugin`` that made the call, its output): ``clip_and_noise`` on a copy with fresh
    streams, every global generator seeded from ``seed``, the run's random state restored afterwards,
    without autograd. The only way the kernel and the verifier call a plugin."""
    def release() -> tuple[Any, Any]:
        with isolated_randomness(), torch.no_grad():
            copy = copy_with_streams(plugin, seed)
            reseed_shared_generators(plugin, seed)
            return copy, call_under_seed(copy, per_sample_grads, step, epoch, seed)

    return call_contained(type(plugin).__name__, f"a release at step {step}", release)


@contextmanager
def isolated_randomness() -> Iterator[None]:
    """Restore torch's (CPU and initialised CUDA devices), numpy's and Python's global generators on exit."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def seed_globals(seed: int) -> None:
    # torch.manual_seed also queues lazy seeding of uninitialised accelerators, capturing a stack trace
    # each time; seed only what can be used.
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def walk(obj: Any, path: str = "", depth: int = 0, seen: set[int] | None = None) -> Iterator[tuple[str, Any]]:
    """(attribute path, value) for every leaf reachable from ``obj`` through attributes, dicts, lists and
    tuples: tensors, arrays, numbers and generators. Each object is visited once."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > MAX_DEPTH:
        return
    if isinstance(obj, (torch.Tensor, np.ndarray, bool, int, float, np.number) + GENERATOR_TYPES):
        seen.add(id(obj))
        yield path, obj
        return
    if obj is None or isinstance(obj, (str, bytes, type, torch.dtype, torch.device, torch.Size)) or callable(obj) and not hasattr(obj, "__dict__"):
        return
    seen.add(id(obj))
    if isinstance(obj, dict):
        children = [(f"{path}[{k!r}]", v) for k, v in obj.items()]
    elif isinstance(obj, (list, tuple)):
        children = [(f"{path}[{i}]", v) for i, v in enumerate(obj)]
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        children = [(f"{path}.{k}" if path else k, v) for k, v in vars(obj).items()]
    else:
        return
    for child_path, child in children:
        yield from walk(child, child_path, depth + 1, seen)


def _fresh_generator(generator: Any, seed: int) -> Any:
    if isinstance(generator, torch.Generator):
        return torch.Generator(device=generator.device).manual_seed(seed)
    if isinstance(generator, np.random.Generator):
        return np.random.default_rng(seed)
    if isinstance(generator, np.random.RandomState):
        return np.random.RandomState(seed % 2**32)
    return random.Random(seed)


def copy_with_streams(plugin: Any, seed: int) -> Any:
    """A deep copy of ``plugin`` whose own generators are replaced by fresh ones seeded from ``seed``."""
    memo: dict[int, Any] = {}
    for index, (_, leaf) in enumerate(walk(plugin)):
        if isinstance(leaf, GENERATOR_TYPES):
            memo[id(leaf)] = _fresh_generator(leaf, derive_seed(seed, index))
    return copy.deepcopy(plugin, memo)


ENTROPY_STREAM = 0x05_E7_07_09
"""The part that derives a call's stand-in for the operating system's entropy from the call's seed."""


@contextmanager
def entropy_under_seed(seed: int) -> Iterator[None]:
    """While the block runs, ``os.urandom`` and ``os.getrandom`` (and ``random``'s reference to the first, which ``secrets``,
    ``random.SystemRandom`` and numpy's unseeded ``default_rng()`` / ``SeedSequence()`` read) returns bytes
    of a stream derived from ``seed``. A plugin that draws its noise from the operating system's entropy (as
    a careful implementation might) is then measured like one that draws from a seeded generator: its
    release and the verifier's calls under the same seed see common random numbers. With
    ``privacy.secure_noise=true`` the seed derives from a secret key drawn from the operating system, so the
    stream is as unpredictable to anyone outside the run. Not covered: entropy read in native code
    (``torch.Generator.seed()``, ``torch.seed()``), the clock or files."""
    stream = np.random.default_rng(derive_seed(seed, ENTROPY_STREAM))

    def urandom(size: int) -> bytes:
        size = operator.index(size)
        if size < 0:
            raise ValueError("negative argument not allowed")
        return stream.bytes(size)

    def getrandom(size: int, flags: int = 0) -> bytes:
        return urandom(size)

    saved = os.urandom, random._urandom, getattr(os, "getrandom", None)  # type: ignore[attr-defined]
    os.urandom = random._urandom = urandom  # type: ignore[attr-defined]
    if saved[2] is not None:
        os.getrandom = getrandom
    try:
        yield
    finally:
        os.urandom, random._urandom = saved[:2]  # type: ignore[attr-defined]
        if saved[2] is not None:
            os.getrandom = saved[2]


def call_under_seed(plugin: Any, per_sample_grads: list[torch.Tensor], step: int, epoch: int, seed: int) -> list[torch.Tensor]:
    """``plugin.clip_and_noise`` with every global generator and the operating system's entropy seeded from
    ``seed`` (call inside :func:`isolated_randomness`, on inputs the caller owns: a plugin may modify them
    in place)."""
    seed_globals(seed)
    name = type(plugin).__name__
    def under_seed() -> Any:
        with entropy_under_seed(seed):  # restored before the containment's check
            return call_plugin(plugin, name, per_sample_grads, step, epoch)

    output = call_contained(name, f"clip_and_noise at step {step}", under_seed)
    if not isinstance(output, (list, tuple)):
        return output
    return [torch.as_tensor(o).detach() for o in output]
