"""Randomness under the verifier's control: probes run deep copies of a plugin under chosen random
streams without touching the random state of the run being verified.

A plugin may draw noise from torch's, numpy's or Python's global generators, or from generators it
owns. Every probe call seeds all three global generators, and the copy it runs gets *fresh*
generators in place of the ones the plugin owns, seeded from the same probe seed. So two calls with
the same seed see common random numbers (their difference is exactly the effect of the data), and
calls with different seeds see independent noise wherever it comes from. Whether a plugin's own
generators were seeded from a constant cannot be seen from one instance; :func:`fresh_instances_agree`
checks it on newly constructed instances.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from dpbench.privacy.mechanism import call_plugin

GENERATOR_TYPES = (torch.Generator, np.random.Generator, np.random.RandomState, random.Random)
MAX_DEPTH = 8


def derive_seed(*parts: int) -> int:
    """A 63-bit seed determined by ``parts`` (e.g. run seed, step, draw), independent of any global state."""
    words = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


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


def call_under_seed(plugin: Any, per_sample_grads: list[torch.Tensor], step: int, epoch: int, seed: int) -> list[torch.Tensor]:
    """``plugin.clip_and_noise`` with every global generator seeded from ``seed`` (call inside
    :func:`isolated_randomness`, on inputs the caller owns: a plugin may modify them in place)."""
    seed_globals(seed)
    output = call_plugin(plugin, type(plugin).__name__, per_sample_grads, step, epoch)
    if not isinstance(output, (list, tuple)):
        return output
    return [torch.as_tensor(o).detach() for o in output]


def fresh_instances_agree(
    factory: Callable[[], Any], per_sample_grads: list[torch.Tensor], step: int, epoch: int, seeds: tuple[int, int]
) -> bool:
    """Whether two freshly constructed instances, each built and called under a different random stream,
    release exactly the same output: their "noise" is then fixed by the code (a constant seed)."""
    outputs = []
    for seed in seeds:
        seed_globals(seed)
        inputs = [g.clone() for g in per_sample_grads]
        outputs.append(call_under_seed(factory(), inputs, step, epoch, derive_seed(seed, 1)))
    return all(torch.equal(a, b) for a, b in zip(*outputs))
