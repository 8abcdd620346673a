"""The state a plugin's copies share, put back after a probe: the data attributes of the plugin's own classes
and the data globals of their modules.

A probe calls deep copies of the plugin, so the plugin's instance state is untouched; but every copy shares its
class and its module. A plugin that counts its calls there (a class attribute, a module-level dict) learns
*after* a step that the step was probed (a probed step has more calls than the release) and can stop noising
for the rest of the epoch, whose steps are then probed only at the extra rate. Putting that state back as it was
after the release closes that channel for the state a plugin's own code most naturally keeps, and keeps the
run as it would have been without probing (a module-level cache or generator a probe's calls move would move
the run too). Other channels (other modules, files, time) stay open: docs/verification.md, Limits.

Which state: the classes of ``type(plugin).__mro__`` defined outside the standard library, dpbench and the
numeric libraries, and their modules' globals; of those, every attribute that is data (numbers, strings,
containers, tensors, arrays, generators, and objects of the plugin's own classes; not code, and not a
library's objects). Containers, tensors, arrays, generators and objects are restored in
place (so references held elsewhere see the restored value), other values by reassignment; names added during
the probe are removed.
"""

from __future__ import annotations

import copy
import functools
import random
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from dpbench.privacy.plugin_streams import NOT_PLUGIN_CODE, plugin_owners

CODE_TYPES = (
    types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, types.MethodType, classmethod,
    staticmethod, property, functools.partial, types.MethodDescriptorType, types.WrapperDescriptorType,
    types.GetSetDescriptorType, types.MemberDescriptorType,
)


DATA_TYPES = (
    int, float, complex, bool, str, bytes, tuple, list, dict, set, frozenset, type(None), torch.Tensor, np.ndarray,
    np.generic, torch.Generator, np.random.Generator, np.random.RandomState, random.Random,
)
"""Values restored whatever defines them; other objects only where the plugin's own code defines their class
(a library's object, a torch module say, is left alone: rewriting it could cut it off from its users)."""


def _is_data(value: Any) -> bool:
    if isinstance(value, DATA_TYPES):
        return True
    return not isinstance(value, CODE_TYPES) and type(value).__module__.split(".")[0] not in NOT_PLUGIN_CODE


def _data(namespace: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in namespace.items() if not k.startswith("__") and _is_data(v)}


def _restore_in_place(current: Any, saved: Any) -> bool:
    """Put ``saved``'s value into ``current`` itself; False where that is not possible."""
    if type(current) is not type(saved):
        return False
    if isinstance(current, dict):
        current.clear()
        current.update(saved)
    elif isinstance(current, list):
        current[:] = saved
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


@contextmanager
def shared_state_restored(plugin: Any) -> Iterator[None]:
    """Run the block, then put the plugin's classes' and modules' data back as they were when it began."""
    saved: list[tuple[Any, set[str], dict[str, Any], dict[str, Any]]] = []
    for owner in plugin_owners(plugin):
        namespace = _data(vars(owner))
        values, copies = {}, {}
        for name, value in namespace.items():
            try:
                copies[name] = copy.deepcopy(value)
            except Exception:  # a value that cannot be copied is left as the probe leaves it
                continue
            values[name] = value
        saved.append((owner, set(namespace), values, copies))
    try:
        yield
    finally:
        for owner, present, values, copies in saved:
            for name in set(_data(vars(owner))) - present:
                delattr(owner, name)
            for name, value in values.items():
                restored = _restore_in_place(value, copies[name])  # the original object, as it was
                setattr(owner, name, value if restored else copies[name])
