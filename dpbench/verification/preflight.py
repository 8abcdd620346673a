"""Pre-flight check of a plugin in seconds: a fake model, random gradients, every step probed.

No training: a 4-tensor model of 212 parameters, Poisson batches of expected size 32 from 1000
examples, z = 1, C = 1, two epochs of 31 steps. Per-example gradients share a slowly drifting mean
direction (as in training, so the batch's mean clipped gradient is substantial) and have log-normal
norms around C (about half are clipped).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dpbench.engine.per_sample import MaterializedGradients
from dpbench.errors import DpbenchError
from dpbench.privacy.accountant import epsilon
from dpbench.privacy.adapter import as_researcher_plugin
from dpbench.privacy.containment import arm
from dpbench.privacy.ledger import PrivacyLedger, StepRecord
from dpbench.privacy.mechanism import Mechanism, build_plugin, check_plain_plugin_class
from dpbench.privacy.plugin_streams import isolated_randomness, seed_globals
from dpbench.privacy.privatizer import PluginPrivatizer
from dpbench.verification.epsilon import EpsilonCheck, epsilon_check
from dpbench.verification.findings import VerificationReport
from dpbench.verification.verifier import PluginVerifier

FAKE_SHAPES = (torch.Size([16, 8]), torch.Size([16]), torch.Size([4, 16]), torch.Size([4]))


@dataclass(frozen=True)
class FakeRun:
    dataset_size: int = 1000
    batch_size: int = 32
    epochs: int = 2
    noise_multiplier: float = 1.0
    max_grad_norm: float = 1.0
    delta: float = 1e-5
    shapes: tuple[torch.Size, ...] = FAKE_SHAPES

    @property
    def sampling_rate(self) -> float:
        return self.batch_size / self.dataset_size

    @property
    def steps_per_epoch(self) -> int:
        return round(self.dataset_size / self.batch_size)

    def planned_epsilon(self, steps: int) -> float:
        record = StepRecord(0, 0, self.sampling_rate, self.noise_multiplier, self.max_grad_norm, "plan", "claimed")
        return epsilon(PrivacyLedger([record] * steps), self.delta)


def fake_gradients(run: FakeRun, steps: int, seed: int) -> Iterator[list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    sizes = [s.numel() for s in run.shapes]
    mean = torch.randn(sum(sizes), generator=generator)
    for _ in range(steps):
        mean = mean / mean.norm() + 0.1 * torch.randn(sum(sizes), generator=generator) / math.sqrt(sum(sizes))
        mean = mean / mean.norm()
        batch = int((torch.rand(run.dataset_size, generator=generator) < run.sampling_rate).sum())
        spread = torch.randn(batch, sum(sizes), generator=generator)
        direction = 0.8 * mean + 0.6 * spread / spread.norm(dim=1, keepdim=True)
        norms = run.max_grad_norm * torch.exp(0.6 * torch.randn(batch, 1, generator=generator))
        flat = norms * direction / direction.norm(dim=1, keepdim=True)
        yield [part.reshape(batch, *shape) for part, shape in zip(flat.split(sizes, dim=1), run.shapes)]


def load_class(spec: str) -> type:
    """``path/to/file.py:ClassName`` or ``package.module:ClassName``, imported after the process's integrity
    baseline is taken (:func:`dpbench.privacy.containment.arm`)."""
    arm()
    location, sep, name = spec.rpartition(":")
    if not sep or not name:
        raise PluginLoadError(f"'{spec}' is not PATH.py:ClassName or module:ClassName")
    if location.endswith(".py"):
        path = Path(location).resolve()
        if not path.is_file():
            raise PluginLoadError(f"no plugin file {path}: check the path before ':{name}'")
        module_name = f"dpbench_verify_{path.stem}_{abs(hash(str(path)))}"
        spec_ = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec_)
        sys.modules[module_name] = module
        sys.path.insert(0, str(path.parent))
        try:
            _import(lambda: spec_.loader.exec_module(module), str(path))
        finally:
            sys.path.remove(str(path.parent))
    else:
        module = _import(lambda: importlib.import_module(location), location)
    if not hasattr(module, name):
        raise PluginLoadError(f"{location} defines no '{name}': check the class name after ':'")
    return getattr(module, name)


class PluginLoadError(DpbenchError, ImportError):
    """The plugin named on the command line cannot be found or imported."""


def _import(load: Callable[[], Any], location: str) -> Any:
    try:
        return load()
    except Exception as error:
        raise PluginLoadError(
            f"importing {location} raised {type(error).__name__}: {error}; fix the plugin's module (a module "
            "name needs its directory on PYTHONPATH)"
        ) from error


def plugin_factory(cls: type, run: FakeRun, **hyperparameters: Any) -> Callable[[], Any]:
    """A zero-argument constructor of the plugin for ``run``; a structured :class:`Mechanism` is
    adapted with :func:`as_researcher_plugin` (its ``epochs`` filled in if it takes one)."""
    check_plain_plugin_class(cls)
    if isinstance(cls, type) and issubclass(cls, Mechanism):
        if "epochs" in inspect.signature(cls).parameters:
            hyperparameters.setdefault("epochs", run.epochs)
        cls, hyperparameters = as_researcher_plugin(cls, **hyperparameters), {}
    steps = run.epochs * run.steps_per_epoch
    arguments = dict(
        max_grad_norm=run.max_grad_norm, noise_multiplier=run.noise_multiplier, n_params=sum(s.numel() for s in run.shapes),
        dataset_size=run.dataset_size, batch_size=run.batch_size, epochs=run.epochs,
        target_epsilon=run.planned_epsilon(steps), target_delta=run.delta, **hyperparameters,
    )
    return lambda: build_plugin(lambda: cls(**arguments), getattr(cls, "__name__", "plugin"), arguments)


@dataclass
class PreflightResult:
    report: VerificationReport
    epsilon: EpsilonCheck
    seconds: float
    steps: int

    def summary(self) -> str:
        e = self.epsilon
        return "\n".join([
            self.report.summary(),
            (
                f"epsilon claimed: {e.claimed.primary:.4g} (dp_accounting RDP {e.claimed.rdp:.4g}, PLD {e.claimed.pld:.4g}); "
                f"verified: {e.verified.primary:.4g} (RDP {e.verified.rdp:.4g}, PLD {e.verified.pld:.4g}) [{e.basis}]"
            ),
            f"{self.steps} steps in {self.seconds:.1f} s (probing {self.report.probe_seconds:.1f} s)",
        ])


def preflight(
    factory: Callable[[], Any],
    run: FakeRun = FakeRun(),
    seed: int = 0,
    steps: int | None = None,
    probe_rate: float = 1.0,
    draws: int = 16,
    name: str = "plugin",
) -> PreflightResult:
    """Run the plugin on fake gradients, probing (by default) every step, and return the verdict."""
    started = time.perf_counter()
    steps = run.epochs * run.steps_per_epoch if steps is None else steps
    verifier = PluginVerifier(
        run.shapes, run.max_grad_norm, run.batch_size, probe_rate, run.steps_per_epoch,
        draws=draws, plugin_factory=factory, mechanism=name, max_overhead=None, total_steps=steps,
    )
    ledger = PrivacyLedger()
    with isolated_randomness():
        seed_globals(seed)
        plugin = build_plugin(factory, name)
        verifier.watch(plugin)
        privatizer = PluginPrivatizer(  # releases keyed by the seed, as in a seeded run (a verdict that repeats)
            plugin, name, run.shapes, run.max_grad_norm, run.sampling_rate, seed, verifier=verifier
        )
        for step, grads in enumerate(fake_gradients(run, steps, seed)):
            epoch = step // run.steps_per_epoch
            ledger.append(privatizer.release([MaterializedGradients(grads)], step, epoch).record)
    check = epsilon_check(verifier, ledger, run.delta)
    return PreflightResult(verifier.report(), check, time.perf_counter() - started, steps)
