"""One private step: per-sample gradients in, a released (noised, averaged) gradient and its ledger
record out. This is where the two mechanism contracts meet the kernel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence

import torch

from dpbench.engine.per_sample import PerSampleGradients
from dpbench.privacy.clipping import STATISTIC_BOUND, check_groups, clip_chunk, clipping_plan
from dpbench.privacy.ledger import StepRecord
from dpbench.privacy.mechanism import (
    Mechanism,
    MechanismContractError,
    ResearcherMechanism,
    check_plugin_output,
    claimed_sigma,
    declared_values,
    plain_groups,
    plain_number,
    plain_tensors,
    positive_number,
    structured_call,
)
from dpbench.privacy.noise import (
    NoiseSource,
    add_gaussian_noise,
    combined_noise_multiplier,
    gradient_noise_multiplier,
)
from dpbench.privacy.plugin_streams import release_seed, released_call


@dataclass
class Release:
    """A private gradient, the record of how it was privatised, and (non-private) loss diagnostics."""

    gradient: list[torch.Tensor]
    record: StepRecord
    loss_sum: float
    batch_size: int


class StructuredPrivatizer:
    """Runs a structured :class:`Mechanism`: the kernel clips (enforcing the bound), sums, adds
    N(0, (z_g * S)^2) with S the clipping plan's sensitivity, divides by the *expected* batch size
    and only then hands the gradient to the mechanism's post-processing.

    Without a private statistic z_g is the step's multiplier z_t. With one, the statistic's sum gets
    N(0, statistic_noise^2) and z_g is raised so that gradient and statistic together are worth z_t
    (see :mod:`dpbench.privacy.noise`); the ledger records the joint multiplier."""

    def __init__(
        self,
        mechanism: Mechanism,
        parameter_shapes: Sequence[torch.Size],
        noise_multiplier: float,
        expected_batch_size: float,
        sampling_rate: float,
        generator: NoiseSource = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.mechanism = mechanism
        self.declared = declared_values(mechanism)
        self.parameter_shapes = [torch.Size(s) for s in parameter_shapes]
        groups = structured_call(
            mechanism, self.declared, "parameter_groups", 0, list(self.parameter_shapes), convert=plain_groups
        )
        self.groups = check_groups(groups, len(self.parameter_shapes))
        self.noise_multiplier = noise_multiplier
        self.expected_batch_size = expected_batch_size
        self.sampling_rate = sampling_rate
        self.generator = generator
        self.device = torch.device(device)
        self._planned_shapes: dict[tuple[int, int], float] = {}
        self._split(self.noise_multiplier_at(0, 0))  # refuse an impossible split before training starts

    def check_schedule(self, steps: Iterable[tuple[int, int]]) -> None:
        """Fix, before training, the noise shape of every planned step (the one the noise was calibrated
        with), and refuse a schedule whose split is impossible at any of them."""
        for step, epoch in steps:
            self._split(self.noise_multiplier_at(step, epoch))

    def _split(self, total: float) -> tuple[float, float | None]:
        """(gradient multiplier, statistic multiplier or None) for a step worth ``total``."""
        if self.declared.statistic_noise is None:
            return total, None
        statistic_multiplier = self.declared.statistic_noise / STATISTIC_BOUND
        return gradient_noise_multiplier(total, statistic_multiplier), statistic_multiplier

    def noise_multiplier_at(self, step: int, epoch: int) -> float:
        """z_t = z * s(t). The shape s is data-independent by contract, and enforced to be: the first
        value seen for a (step, epoch) (before training, by :meth:`check_schedule`) is the only one accepted, so
        a schedule that later follows released values (an adaptively chosen noise level, which standard
        composition does not cover) or raw data is refused."""
        shape = positive_number(
            structured_call(self.mechanism, self.declared, "noise_shape", step, step, epoch, convert=plain_number),
            self.declared.name, step, "noise_shape",
            "the data-independent factor of the noise multiplier at that step",
        )
        planned = self._planned_shapes.setdefault((step, epoch), shape)
        if shape != planned:
            raise MechanismContractError(
                f"mechanism '{self.declared.name}' at step {step}: noise_shape returned {shape:.6g}, but "
                f"{planned:.6g} when the noise was calibrated; the noise schedule must be a fixed function of "
                "(step, epoch), independent of the data and of anything released during training"
            )
        return self.noise_multiplier * shape

    def release(self, chunks: Iterable[PerSampleGradients], step: int, epoch: int) -> Release:
        plan = clipping_plan(self.mechanism, self.groups, step, epoch, self.declared)
        total = [torch.zeros(s, device=self.device) for s in self.parameter_shapes]
        statistic, loss_sum, batch_size = 0.0, 0.0, 0
        for chunk in chunks:
            clipped = clip_chunk(chunk, self.mechanism, plan, step, epoch)
            total = [t + c.to(t.dtype) for t, c in zip(total, clipped.gradient_sum)]
            statistic += clipped.statistic_sum
            loss_sum += float(chunk.losses.sum())
            batch_size += chunk.batch_size
            del chunk, clipped  # free this chunk's activations before the engine computes the next one
        z_gradient, z_statistic = self._split(self.noise_multiplier_at(step, epoch))
        noised = add_gaussian_noise(total, z_gradient * plan.sensitivity, self.generator)
        average = [t / self.expected_batch_size for t in noised]
        z = z_gradient
        if z_statistic is not None:
            noised_statistic = add_gaussian_noise(
                [torch.tensor(statistic, device=self.device)], self.declared.statistic_noise, self.generator
            )[0]
            observed = float(noised_statistic) / self.expected_batch_size
            structured_call(self.mechanism, self.declared, "observe_statistic", step, observed, step, epoch)
            z = combined_noise_multiplier(z_gradient, z_statistic)
        del total, noised, statistic  # only released values are alive when the mechanism's code runs again
        released = structured_call(self.mechanism, self.declared, "postprocess", step, average, step, epoch,
                                   convert=plain_tensors)
        gradient = check_plugin_output(released, self.parameter_shapes, self.declared.name, step)
        record = StepRecord(step, epoch, self.sampling_rate, z, plan.sensitivity, self.declared.name, "harness")
        return Release(gradient, record, loss_sum, batch_size)


class PluginProbe(Protocol):
    """What the kernel needs of a verifier: whether it probes a step (decided before the release, by a
    schedule the plugin cannot know), and the probe itself, made after the release from the plugin's
    state before it, with the release as the probe's first draw."""

    def watch(self, plugin: ResearcherMechanism) -> None: ...

    def will_probe(self, step: int, epoch: int, batch_size: int) -> bool: ...

    def probe(
        self, plugin: ResearcherMechanism, per_sample_grads: list[torch.Tensor], step: int, epoch: int,
        release: tuple[ResearcherMechanism, list[torch.Tensor]], seed: int, claim: float,
    ) -> None: ...


class PluginPrivatizer:
    """Runs a researcher-form plugin: it gets the whole logical batch's per-sample gradients
    (materialised by contract), its output is validated, and its *claimed* multiplier is recorded.

    Every release is made the same way, probed step or not (:func:`released_call`): a deep copy of the
    plugin with fresh random streams, every global generator seeded from :func:`release_seed` of ``key``
    and the step, on the batch's tensors; the plugin then adopts the copy's state. At a probed step the
    verifier then measures the plugin (its state before the step) on a copy of the batch taken before the
    release, the release being its first draw. So the plugin cannot tell a probed step from another, and
    what is released at a probed step is exactly what was measured."""

    def __init__(
        self,
        plugin: ResearcherMechanism,
        name: str,
        parameter_shapes: Sequence[torch.Size],
        max_grad_norm: float,
        sampling_rate: float,
        key: int,
        device: torch.device | str = "cpu",
        verifier: PluginProbe | None = None,
    ) -> None:
        self.plugin = plugin
        self.verifier = verifier
        if verifier is not None:
            verifier.watch(plugin)  # its shared state is snapshotted before every release
        self.name = name
        self.parameter_shapes = [torch.Size(s) for s in parameter_shapes]
        self.max_grad_norm = max_grad_norm
        self.sampling_rate = sampling_rate
        self.key = int(key)
        self.device = torch.device(device)

    def release(self, chunks: Iterable[PerSampleGradients], step: int, epoch: int) -> Release:
        per_sample, loss_sum, batch_size = self._materialized_batch(chunks)
        probed = self.verifier is not None and self.verifier.will_probe(step, epoch, batch_size)
        # the same work before every release, probed or not (a copy of the batch for the probe, the verifier's
        # snapshot): work done only before probed releases told the plugin which releases were measured
        pristine = [g.detach().clone() for g in per_sample] if self.verifier is not None else None
        seed = release_seed(self.key, step)
        releasing, output = released_call(self.plugin, [g.detach() for g in per_sample], step, epoch, seed)
        del per_sample
        gradient = check_plugin_output(output, self.parameter_shapes, self.name, step)
        sigma = claimed_sigma(releasing, self.name, step, epoch)  # read once, before any probe: one claim per step
        if probed:
            self.verifier.probe(self.plugin, pristine, step, epoch, (releasing, gradient), seed, sigma)
        del pristine
        adopt_state(self.plugin, releasing)
        record = StepRecord(step, epoch, self.sampling_rate, sigma, self.max_grad_norm, self.name, "claimed")
        return Release(gradient, record, loss_sum, batch_size)

    def _materialized_batch(self, chunks: Iterable[PerSampleGradients]) -> tuple[list[torch.Tensor], float, int]:
        """The logical batch's per-sample gradients, one ``[B, *shape]`` tensor per parameter.

        Each chunk is materialised and then dropped, so its records (activations, output gradients)
        are freed before the engine computes the next; a single chunk's tensors are handed over as they
        are (no copy: at the telemetry VAE's size a copy is 10 GB of memory traffic per step), and several
        chunks are joined one parameter at a time, freeing each parameter's chunks once joined."""
        parts: list[list[torch.Tensor]] = []
        loss_sum, batch_size = 0.0, 0
        for chunk in chunks:
            parts.append(chunk.materialize())
            loss_sum += float(chunk.losses.sum())
            batch_size += chunk.batch_size
            del chunk
        if len(parts) == 1:
            return parts[0], loss_sum, batch_size
        if not parts:
            return [torch.zeros((0, *shape), device=self.device) for shape in self.parameter_shapes], 0.0, 0
        by_parameter = [list(tensors) for tensors in zip(*parts)]
        del parts
        joined = []
        for index in range(len(by_parameter)):
            joined.append(torch.cat(by_parameter[index]))
            by_parameter[index] = []  # this parameter's chunks are freed before the next is joined
        return joined, loss_sum, batch_size


def adopt_state(plugin: object, source: object) -> None:
    """Make ``plugin`` continue from ``source``'s state (a copy of it that made the release), keeping
    its identity (the run's checkpoint holds ``plugin``)."""
    if hasattr(plugin, "__dict__"):
        plugin.__dict__.clear()
        plugin.__dict__.update(source.__dict__)
    for cls in type(plugin).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            if isinstance(slot, str) and slot not in ("__dict__", "__weakref__") and hasattr(source, slot):
                setattr(plugin, slot, getattr(source, slot))
