"""What a plugin keeps between steps, and whether keeping it costs privacy.

A probe snapshots every leaf of a plugin copy's state after the call: tensors of every dtype (and their
Python attributes and gradients), arrays, numbers, strings, ``bytes``, ``bytearray``, ``memoryview`` and
``array.array`` values, reachable at any depth through attributes, ``__slots__``, dicts (keys too), lists,
tuples, deques, sets, closures and defaults of functions, partials, and what pickle would save of any other
object; generators excluded. Each leaf is compared by its exact bytes, so data kept in any encoding (a float
tensor viewed as ``uint8``, its ``.tobytes()``, a formatted string) is seen changing, and measured by its
values: numbers as themselves, bytes (``uint8``/``int8`` tensors, ``bytes``, strings) read as the float32
they most often encode. The verifier sorts each leaf that one added example changes (same random stream, so
the change is exact):

- identical under every random stream, yet changed by the example: a deterministic function of raw
  data, a **leak** (a clip norm set from raw norms, an EMA or momentum of un-noised gradients);
- random and changed: either post-processing of the release (a momentum of noised gradients) or a
  **separate noised release** (a noised quantile count). Two added examples whose clipped
  contributions are equal, ``x_a`` (huge) and ``x_b`` (``x_a``'s clipped contribution, just inside
  the threshold), move the release alike but differ in raw statistics. A leaf that is a function of
  the release moves alike too (up to the small difference of the two releases, times the leaf's gain
  from the release); a leaf that moves clearly differently reads data through another channel. That
  channel's multiplier is its noise std across random streams over its largest add-one shift, and
  it composes with the gradient's.
"""

from __future__ import annotations

import array
import functools
import math
import re
import struct
import types
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from dpbench.privacy.isolation import instance_dict
from dpbench.privacy.plugin_streams import GENERATOR_TYPES
from dpbench.verification.measurement import SHIFT_TOLERANCE, std_upper

# A leaf is a separate channel if the two matched examples move it this many times more than the
# difference of their releases can explain.
CHANNEL_MARGIN = 10.0

_NUMBERS = (bool, int, float, complex)
_BYTES = (str, bytes, bytearray, memoryview)
_BYTE_DTYPES = (torch.uint8, torch.int8)
_NUMBER_DTYPES = {bool: np.bool_, int: np.int64, float: np.float64, complex: np.complex128}  # bool first
_SCALAR_FORMATS = {bool: ("bool", "?"), int: ("int64", "<q"), float: ("float64", "<d")}
# Values with no state of their own to snapshot (code, types, the plugin's generators).
_SKIPPED = (type, types.ModuleType, types.BuiltinFunctionType, torch.dtype, torch.device, type(None)) + GENERATOR_TYPES
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


@dataclass(frozen=True, eq=False)
class Leaf:
    """One leaf of a plugin's state: ``raw``, its exact bytes and ``kind`` (type and shape), which equality
    compares, and ``values``, the float64 numbers the shift and spread of a channel are measured on."""

    kind: str
    raw: bytes
    values: torch.Tensor


Snapshot = dict[str, Leaf]


def snapshot(plugin: Any) -> Snapshot:
    return {path: leaf for path, value in _walk(plugin) if (leaf := _leaf(value)) is not None}


def _walk(plugin: Any) -> Iterator[tuple[str, Any]]:
    """(path, value) of every leaf reachable from ``plugin`` (see the module docstring), each object once.
    Paths read like code: ``ema[0]``, ``state['count']``, ``carrier.payload``."""
    seen: set[int] = set()
    made: list[Any] = []  # what this walk builds (pickled state) stays alive, so that ids stay unique
    stack: list[tuple[str, Any]] = [("", plugin)]
    while stack:
        path, obj = stack.pop()
        if isinstance(obj, _NUMBERS + _BYTES + (array.array, np.generic)):
            yield path, obj
            continue
        if isinstance(obj, _SKIPPED) or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray) and not obj.dtype.hasobject:
            yield path, obj
            continue
        if isinstance(obj, torch.Tensor):
            yield path, obj
        children = _children(obj, path)
        if children is None:
            made.append(pickled := _pickled(obj))
            children = [(f"{path} pickled", pickled)]
        stack.extend(reversed(children))


def _children(obj: Any, path: str) -> list[tuple[str, Any]] | None:
    """What ``obj`` holds, by path; None for an object without attributes of a type not known here."""
    if isinstance(obj, dict):
        children = []
        for index, (key, value) in enumerate(obj.items()):
            if not isinstance(key, _NUMBERS + _BYTES):
                children.append((f"{path} key {index}", key))
            label = repr(key) if not _ADDRESS.search(repr(key)) else f"<{type(key).__qualname__} key {index}>"
            children.append((f"{path}[{label}]", value))
    elif isinstance(obj, (list, tuple, deque)):
        children = [(f"{path}[{i}]", v) for i, v in enumerate(obj)]
    elif isinstance(obj, np.ndarray):  # of objects
        children = [(f"{path}[{i}]", v) for i, v in enumerate(obj.ravel().tolist())]
    elif isinstance(obj, (set, frozenset)):  # in an order that does not depend on the elements' addresses
        by_value = sorted(obj, key=lambda v: _ADDRESS.sub("", repr(v)))
        children = [(f"{path} element {i}", v) for i, v in enumerate(by_value)]
    elif isinstance(obj, torch.Tensor):
        children = [(f"{path}.grad", obj.grad)] if obj.is_leaf else []
    elif isinstance(obj, types.FunctionType):
        cells = zip(obj.__code__.co_freevars, obj.__closure__ or ())
        children = [(f"{path} closure {name}", _cell_contents(cell)) for name, cell in cells]
        children += [(f"{path} defaults", obj.__defaults__), (f"{path} keyword defaults", obj.__kwdefaults__)]
    elif isinstance(obj, types.MethodType):
        children = [(f"{path}.__self__", obj.__self__)]
    elif isinstance(obj, functools.partial):
        children = [(f"{path}.func", obj.func), (f"{path}.args", obj.args), (f"{path}.keywords", obj.keywords)]
    else:
        children = None
    attributes = instance_dict(obj)
    slots = [s for c in type(obj).__mro__ for s in getattr(c, "__slots__", ()) if isinstance(s, str)]
    if attributes is None and not slots:
        return children
    children = children or []
    children += [(f"{path}.{k}" if path else k, v) for k, v in dict(attributes or {}).items()]
    for slot in dict.fromkeys(slots):
        if slot not in ("__dict__", "__weakref__") and hasattr(obj, slot):
            children.append((f"{path}.{slot}" if path else slot, getattr(obj, slot)))
    return children


def _pickled(obj: Any) -> Any:
    """What pickle would save of an object without attributes (its constructor's arguments and state);
    None if it cannot be pickled."""
    try:
        reduced = obj.__reduce_ex__(4)
    except Exception:  # noqa: BLE001 - not picklable: nothing to read
        return None
    if isinstance(reduced, str):
        return None
    return [*reduced[1:3], *(None if part is None else list(part) for part in reduced[3:5])]


def _cell_contents(cell: types.CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return None


def _leaf(value: Any) -> Leaf | None:
    if isinstance(value, torch.Tensor):
        return _tensor_leaf(value)
    if isinstance(value, (np.ndarray, np.generic)):
        return _array_leaf(np.asarray(value))
    if isinstance(value, array.array):
        return _array_leaf(np.frombuffer(value.tobytes(), dtype=value.typecode))
    if isinstance(value, _BYTES):
        raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(value)
        return Leaf(type(value).__name__, raw, _bytes_values(raw))
    if isinstance(value, int) and not -(2**63) <= value < 2**63:  # beyond int64: exact as text, measured as float
        return Leaf("int", str(value).encode(), torch.tensor([float(value) if abs(value) < 2**1023 else math.inf], dtype=torch.float64))
    if type(value) in _SCALAR_FORMATS:  # the common case, at a fifth of the general one's cost
        kind, layout = _SCALAR_FORMATS[type(value)]
        return Leaf(kind, struct.pack(layout, value), torch.tensor([float(value)], dtype=torch.float64))
    if isinstance(value, _NUMBERS):
        dtype = next(d for number, d in _NUMBER_DTYPES.items() if isinstance(value, number))
        return _array_leaf(np.asarray(value, dtype=dtype))
    return None


def _tensor_leaf(tensor: torch.Tensor) -> Leaf:
    tensor = tensor.detach().to("cpu")
    tensor = (tensor.to_dense() if tensor.layout != torch.strided else tensor).resolve_conj().resolve_neg().contiguous()
    raw = tensor.reshape(-1).view(torch.uint8).numpy().tobytes()
    kind = f"{tensor.dtype} {tuple(tensor.shape)}"
    if tensor.dtype in _BYTE_DTYPES:
        return Leaf(kind, raw, _bytes_values(raw))
    values = torch.view_as_real(tensor) if tensor.is_complex() else tensor
    return Leaf(kind, raw, values.reshape(-1).to(torch.float64))


def _array_leaf(values: np.ndarray) -> Leaf:
    values = np.ascontiguousarray(values)
    raw, kind = values.tobytes(), f"{values.dtype.str} {values.shape}"
    if values.dtype.kind == "c":
        return Leaf(kind, raw, torch.from_numpy(np.stack([values.real, values.imag], -1).astype(np.float64).reshape(-1)))
    if values.dtype.kind in "biuf" and values.dtype.itemsize > 1 or values.dtype.kind == "b":
        return Leaf(kind, raw, torch.from_numpy(values.astype(np.float64).reshape(-1)))
    return Leaf(kind, raw, _bytes_values(raw))


def _bytes_values(raw: bytes) -> torch.Tensor:
    """Bytes read as the numbers they most often encode: float32 where their length allows, else bytes."""
    data = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.zeros(0, dtype=torch.uint8)
    return (data.view(torch.float32) if len(raw) % 4 == 0 else data).to(torch.float64)


def _same(a: Leaf | None, b: Leaf | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.kind == b.kind and a.raw == b.raw


def changed_leaves(base: Snapshot, shifted: Snapshot) -> list[str]:
    return sorted(p for p in base.keys() | shifted.keys() if not _same(base.get(p), shifted.get(p)))


def deterministic(path: str, draws: list[Snapshot]) -> bool:
    return all(_same(draws[0].get(path), d.get(path)) for d in draws[1:])


@dataclass(frozen=True)
class Channel:
    """A state leaf that releases data through its own noise: multiplier = noise std / add-one shift."""

    path: str
    multiplier: float
    upper: float
    shift: float

    def to_dict(self) -> dict:
        return asdict(self)


def _norm(a: Leaf | None, b: Leaf | None) -> float:
    if a is None or b is None or a.values.shape != b.values.shape:
        return math.inf
    return float((a.values - b.values).norm())


def separate_channel(
    path: str,
    draws: list[Snapshot],
    base: Snapshot,
    with_a: Snapshot,
    with_b: Snapshot,
    release_shift_a: float,
    release_difference_ab: float,
    alpha: float,
) -> Channel | None:
    """The leaf's own channel, or None if the matched pair says it only follows the release."""
    shift_a, shift_b = _norm(with_a.get(path), base.get(path)), _norm(with_b.get(path), base.get(path))
    observed = _norm(with_a.get(path), with_b.get(path))
    largest = max(shift_a, shift_b)
    if largest == 0.0:
        return None
    gain = shift_a / release_shift_a if release_shift_a > 0 else math.inf
    if math.isfinite(observed) and observed <= CHANNEL_MARGIN * gain * release_difference_ab + SHIFT_TOLERANCE * largest:
        return None
    spread = leaf_spread(path, draws)
    if not math.isfinite(largest) or spread is None:
        return Channel(path, 0.0, 0.0, largest)
    squares, dof = spread
    std = math.sqrt(squares / dof)
    return Channel(path, std / largest, std_upper(std, dof, alpha) / largest, largest)


def leaf_spread(path: str, draws: list[Snapshot], scale: float = 1.0) -> tuple[float, int] | None:
    """Sum of squared deviations of the leaf / ``scale`` from its mean across draws, and its degrees of
    freedom; None if a draw lacks the leaf or changes its shape."""
    leaves = [d.get(path) for d in draws]
    if any(leaf is None for leaf in leaves):
        return None
    values = [leaf.values for leaf in leaves]
    if any(v.shape != values[0].shape for v in values):
        return None
    stacked = torch.stack(values) / scale
    return float((stacked - stacked.mean(dim=0)).pow(2).sum()), (stacked.shape[0] - 1) * stacked.shape[1]
