"""From a ``mechanism`` config to a calibrated privatizer, for either mechanism contract.

A config names a class with ``_target_`` (``conf/mechanism/NAME.yaml`` for built-ins, or
``mechanism._target_=my_module.MyMechanism`` for anything importable); its other keys are the
class's hyper-parameters. A :class:`~dpbench.privacy.mechanism.Mechanism` subclass is built with
``hydra.utils.instantiate`` (so nested ``_target_`` components are built too) and run by the kernel;
a class with ``clip_and_noise`` and ``get_effective_sigma`` is a researcher-form plugin.
"""

from __future__ import annotations

from dataclasses import dataclass
from inspect import getattr_static
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from dpbench.privacy.accountant import epsilon
from dpbench.privacy.calibration import NoiseShape, TrainingPlan, calibrate_noise_multiplier
from dpbench.privacy.containment import arm, call_contained, check_integrity
from dpbench.privacy.ledger import PrivacyLedger
from dpbench.privacy.mechanism import (
    Mechanism,
    MechanismContractError,
    build_plugin,
    check_plain_plugin_class,
    claimed_sigma,
    declared_values,
    plain_number,
    structured_call,
)
from dpbench.privacy.privatizer import PluginPrivatizer, StructuredPrivatizer
from dpbench.verification import UNVERIFIED, VERIFIED, PluginVerifier, UnverifiableLedgerError

BUILTIN_CONFIGS = Path(__file__).resolve().parents[2] / "conf" / "mechanism"


class MechanismNotFoundError(ImportError):
    """The configured mechanism class cannot be imported."""


@dataclass
class PreparedMechanism:
    name: str
    contract: str  # "structured" or "researcher"
    noise_multiplier: float
    mechanism: object
    privatizer: StructuredPrivatizer | PluginPrivatizer
    verifier: PluginVerifier | None = None
    accountant: str = "rdp"

    @property
    def mechanism_class(self) -> str:
        """The qualified name of the class that ran."""
        return qualified_name(type(self.mechanism))

    def verdict_detail(self) -> str:
        """The verdict with what it rests on: the kernel's, or how many steps the verifier measured."""
        if self.contract == "structured":
            return f"{VERIFIED} (kernel: every step clipped and noised by the harness)"
        if self.verifier is None:
            return f"{UNVERIFIED} (probing off)"
        return self.verifier.report().describe()

    def verdict(self) -> str:
        """VERIFIED for the kernel (it added the noise itself); the verifier's verdict for a plugin."""
        if self.contract == "structured":
            return VERIFIED
        return self.verifier.report().verdict if self.verifier is not None else UNVERIFIED

    def accountable_ledger(self, ledger: PrivacyLedger) -> PrivacyLedger:
        """The ledger an epsilon may be printed from: the kernel's as recorded; a plugin's with each
        claimed multiplier replaced by the verified one (raises UnverifiableLedgerError on a leak)."""
        return self.verifier.verified_ledger(ledger) if self.verifier is not None else ledger

    def spent_epsilon(self, ledger: PrivacyLedger, delta: float) -> float:
        """Epsilon spent so far on the accountable ledger; infinite if nothing finite can be verified."""
        try:
            return epsilon(self.accountable_ledger(ledger), delta, self.accountant)
        except UnverifiableLedgerError:
            return float("inf")


def prepare_mechanism(
    config: Mapping[str, Any],
    plan: TrainingPlan,
    target_epsilon: float,
    delta: float,
    parameter_shapes: Sequence[torch.Size],
    noise_generator: torch.Generator,
    device: torch.device,
    accountant: str = "rdp",
    verification: Mapping[str, Any] | None = None,
    seed: int = 0,
    calibrate: Callable[[NoiseShape], float] | None = None,
    plugin_key: int | None = None,
) -> PreparedMechanism:
    """Import, construct and calibrate the configured mechanism; a researcher-form plugin is wrapped
    with a :class:`PluginVerifier` configured by ``verification`` (keys of ``conf/config.yaml:verify``),
    and its releases are made under random streams derived from ``plugin_key`` (default: ``seed``; a
    secret for a run with secure noise).
    ``calibrate`` maps the mechanism's noise shape to its base multiplier (a search trial's budget);
    without it the multiplier spends ``target_epsilon`` on ``plan``."""

    def noise_for(shape: NoiseShape) -> float:
        if calibrate is not None:
            return calibrate(shape)
        return calibrate_noise_multiplier(target_epsilon, delta, plan, shape, accountant=accountant)

    arm()  # the process's integrity baseline, before the mechanism's module is imported
    options = dict(config)
    target = options.pop("_target_", None)
    if not target:
        raise MechanismNotFoundError("mechanism config has no _target_; pick one with mechanism=NAME")
    try:
        cls = get_class(target)
    except Exception as error:
        raise MechanismNotFoundError(
            f"cannot import mechanism class '{target}' ({error}); use mechanism=NAME for a built-in "
            "(conf/mechanism/NAME.yaml) or mechanism._target_=module.Class for a class on PYTHONPATH"
        ) from error
    structured = isinstance(cls, type) and issubclass(cls, Mechanism)
    researcher = all(callable(getattr_static(cls, m, None)) for m in ("clip_and_noise", "get_effective_sigma"))
    if not (structured or researcher):
        raise MechanismContractError(
            f"'{target}' is neither a dpbench.privacy.mechanism.Mechanism subclass nor a researcher-form plugin "
            "(a class with clip_and_noise(per_sample_grads, step, epoch) and get_effective_sigma(step, epoch))"
        )
    check_plain_plugin_class(cls)  # before anything reads the class's attributes
    name = display_name(options.pop("name", None), target, cls)
    if structured:
        mechanism = call_contained(name, "__init__", _instantiate, target, options)
        check_integrity(name, "__init__")
        declared = declared_values(mechanism)
        answers: dict[tuple[int, int], float] = {}

        def shape(step: int, epoch: int) -> float:
            # each step's answer read once (the calibration's bisection asks for every step at every try: 4,640
            # steps x 40 tries of contained calls took 5 minutes on the telemetry preset)
            if (step, epoch) not in answers:
                answers[step, epoch] = structured_call(
                    mechanism, declared, "noise_shape", step, step, epoch, convert=plain_number
                )
            return answers[step, epoch]

        noise_multiplier = noise_for(shape)
        privatizer = StructuredPrivatizer(
            mechanism, parameter_shapes, noise_multiplier, plan.expected_batch_size, plan.sampling_rate, noise_generator, device
        )
        privatizer.check_schedule((t, plan.epoch_of(t)) for t in range(plan.total_steps))
        return PreparedMechanism(name, "structured", noise_multiplier, mechanism, privatizer, accountant=accountant)
    max_grad_norm = float(options.pop("max_grad_norm"))
    n_params = sum(int(torch.Size(s).numel()) for s in parameter_shapes)

    def build(noise_multiplier: float) -> object:
        arguments = dict(
            max_grad_norm=max_grad_norm,
            noise_multiplier=float(noise_multiplier),
            n_params=n_params,
            dataset_size=int(plan.dataset_size),
            batch_size=int(plan.expected_batch_size),
            epochs=int(plan.epochs),
            target_epsilon=float(target_epsilon),
            target_delta=float(delta),
            **options,
        )
        return build_plugin(lambda: cls(**arguments), name, arguments)

    noise_multiplier = noise_for(_reported_shape(build(1.0), name))
    plugin = build(noise_multiplier)
    check_integrity(name, "__init__")
    settings = dict(verification or {})
    verifier = PluginVerifier(
        parameter_shapes,
        max_grad_norm,
        int(plan.expected_batch_size),
        probe_rate=float(settings.get("probe_rate", 0.01)),
        steps_per_epoch=plan.steps_per_epoch,
        strict=bool(settings.get("strict", False)),
        draws=int(settings.get("draws", 8)),
        plugin_factory=lambda: build(noise_multiplier),
        mechanism=name,
        max_overhead=settings.get("max_overhead", 0.1),
        channel_draws=int(settings.get("channel_draws", 64)),
        total_steps=plan.total_steps,
    )
    key = seed if plugin_key is None else plugin_key
    privatizer = PluginPrivatizer(
        plugin, name, parameter_shapes, max_grad_norm, plan.sampling_rate, key, device, verifier=verifier
    )
    return PreparedMechanism(name, "researcher", noise_multiplier, plugin, privatizer, verifier, accountant)


def display_name(declared: str | None, target: str, cls: type) -> str:
    """The name results show: the config's ``name``, unless that is a built-in's name and the class run is
    not that built-in's (``mechanism=fixed mechanism._target_=my.Class`` shows ``Class``, not ``fixed``);
    then the class's name, or its qualified name if that too is a built-in's name."""
    if declared is not None and not _claims_builtin(str(declared), target):
        return str(declared)
    return cls.__name__ if not _claims_builtin(cls.__name__, target) else qualified_name(cls)


def _claims_builtin(name: str, target: str) -> bool:
    """``name`` is a built-in mechanism's (``conf/mechanism/NAME.yaml``) and that built-in is not ``target``."""
    builtin = BUILTIN_CONFIGS / f"{name}.yaml"
    return builtin.is_file() and OmegaConf.load(builtin).get("_target_") != target


def qualified_name(cls: type) -> str:
    """``module.Class``: what summary.json and results.jsonl record as ``mechanism_class``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _instantiate(target: str, options: Mapping[str, Any]) -> Mechanism:
    """Build a structured mechanism with Hydra, so that components given as nested ``_target_`` configs
    are built too (see ``mechanisms/composed.py``); a constructor's own error is raised as it is."""
    try:
        return instantiate({"_target_": target, **options}, _convert_="all")
    except InstantiationException as error:
        if isinstance(error.__cause__, Exception):
            raise error.__cause__ from None
        raise


def _reported_shape(probe: object, name: str) -> Callable[[int, int], float]:
    """The noise schedule's shape as a plugin built with noise_multiplier=1 reports it."""
    return lambda step, epoch: claimed_sigma(probe, name, step, epoch)
