"""The verifier sees raw data a plugin keeps in its state whatever the encoding: a plugin that carries the
raw (unclipped, un-noised) mean gradient to the next step's release is a LEAK when it keeps it as a float
tensor, and must be one when it keeps the same bytes as a uint8 or int16 tensor, ``bytes``, a hex string,
a ``bytearray``, an ``array.array``, a NumPy byte array, a tensor's Python attribute, an object with
``__slots__``, a deque, a function's default or ten containers deep. Keeping the *noised* release in bytes
is post-processing, and stays VERIFIED."""

from __future__ import annotations

import array
from collections import deque

import numpy as np
import pytest
import torch
from plugin_zoo import Base

from dpbench.verification.plugin_state import changed_leaves, snapshot
from dpbench.verification.preflight import FakeRun, plugin_factory, preflight

RUN = FakeRun()


def raw_mean(grads: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.mean(0).reshape(-1) for g in grads]).to(torch.float32)


def as_gradient(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    return [part.reshape(t.shape) for part, t in zip(torch.split(flat, [t.numel() for t in like]), like)]


def to_bytes(flat: torch.Tensor) -> bytes:
    return flat.numpy().tobytes()


def from_bytes(data: bytes) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(bytes(data), dtype=np.float32).copy())


class Slotted:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def carrier(flat: torch.Tensor) -> torch.Tensor:
    holder = torch.zeros(1)
    holder.payload = flat.clone()
    return holder


def remembering(value: torch.Tensor):
    return lambda kept=value: kept


def nested(flat: torch.Tensor, depth: int = 10) -> list:
    kept = flat.clone()
    for _ in range(depth):
        kept = [kept]
    return kept


def unnested(kept: list) -> torch.Tensor:
    while isinstance(kept, list):
        kept = kept[0]
    return kept


# name: (how the plugin keeps the raw mean, how it reads it back, the path the finding names)
ENCODINGS = {
    "uint8 tensor": (lambda f: f.clone().view(torch.uint8), lambda k: k.view(torch.float32), "kept"),
    "int16 tensor": (lambda f: f.clone().view(torch.int16), lambda k: k.view(torch.float32), "kept"),
    "bytes": (to_bytes, from_bytes, "kept"),
    "hex string": (lambda f: to_bytes(f).hex(), lambda k: from_bytes(bytes.fromhex(k)), "kept"),
    "bytearray": (lambda f: bytearray(to_bytes(f)), from_bytes, "kept"),
    "array.array": (lambda f: array.array("f", to_bytes(f)), lambda k: from_bytes(k.tobytes()), "kept"),
    "numpy bytes": (lambda f: np.frombuffer(to_bytes(f), dtype=np.uint8).copy(), lambda k: from_bytes(k.tobytes()), "kept"),
    "tensor attribute": (carrier, lambda k: k.payload, "kept.payload"),
    "slots": (lambda f: Slotted(f.clone()), lambda k: k.value, "kept.value"),
    "deque": (lambda f: deque([f.clone()]), lambda k: k[0], "kept[0]"),
    "function default": (lambda f: remembering(f.clone()), lambda k: k(), "kept defaults[0]"),
    "ten containers deep": (nested, unnested, "kept" + "[0]" * 10),
}


class RawMeanCarried(Base):
    """Releases the honest noised average plus the previous step's raw mean, kept with ``encode``."""

    encode = decode = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.kept = None

    def clip_and_noise(self, grads, step, epoch):
        out = self.release(self.clipped_sum(grads), self.noise_multiplier * self.max_grad_norm)
        if self.kept is not None:
            out = [o + p for o, p in zip(out, as_gradient(type(self).decode(self.kept), out))]
        self.kept = type(self).encode(raw_mean(grads))
        return out


def carrier_class(name: str) -> type:
    encode, decode, _ = ENCODINGS[name]
    return type(f"RawMeanIn{name.title().replace(' ', '').replace('.', '')}", (RawMeanCarried,), {
        "encode": staticmethod(encode), "decode": staticmethod(decode),
    })


@pytest.mark.parametrize("name", ENCODINGS)
def test_raw_data_kept_in_any_encoding_is_a_leak(name):
    cls = carrier_class(name)
    report = preflight(plugin_factory(cls, RUN), RUN, seed=0, steps=2, draws=4, name=cls.__name__).report
    assert report.verdict == "LEAK", report.summary()
    assert any(f.kind == "leak" and f.probe == f"state:{ENCODINGS[name][2]}" for f in report.findings), report.summary()


class NoisedMomentumInBytes(Base):
    """Correct: momentum of the *noised* releases (post-processing), kept as the float32 bytes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.momentum = None

    def clip_and_noise(self, grads, step, epoch):
        released = self.release(self.clipped_sum(grads), self.noise_multiplier * self.max_grad_norm)
        flat = torch.cat([r.reshape(-1) for r in released])
        if self.momentum is not None:
            flat = 0.9 * from_bytes(self.momentum) + flat
        self.momentum = to_bytes(flat)
        return as_gradient(flat, released)


def test_noised_state_kept_in_bytes_is_post_processing():
    report = preflight(plugin_factory(NoisedMomentumInBytes, RUN), RUN, seed=0, steps=2, draws=4, name="bytes").report
    assert report.verdict == "VERIFIED", report.summary()
    assert any("momentum" in path for probe in report.probes for path in probe.post_processing), report.summary()


class Holder:
    def __init__(self, state=None):
        self.state = state


@pytest.mark.parametrize(
    "make",
    [
        lambda k: torch.tensor([2**62 + k]),  # beyond float64's 53 bits: only the exact bytes differ
        lambda k: float("nan") if k else -float("nan"),  # NaN's sign bit
        lambda k: {Holder(k): 0},  # an object as a dict key (its path must not hold its address)
        lambda k: {k, 100},  # a set
        lambda k: 2**80 + k,  # beyond int64
    ],
    ids=["int64 low bits", "nan sign", "dict key", "set", "big int"],
)
def test_leaves_are_compared_by_their_exact_bytes(make):
    holders = [Holder(make(k)) for k in (0, 1, 0)]  # alive together: no address is reused
    state_0, state_1, again = (snapshot(holder) for holder in holders)
    assert changed_leaves(state_0, state_1)
    assert not changed_leaves(state_0, again)
