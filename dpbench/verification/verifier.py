"""The plugin verifier: measures, during a run, the privacy a researcher-form plugin actually gives.

On sampled steps (one step of every epoch, always, drawn uniformly within the epoch, and each other
step with probability ``probe_rate``, decided by hashes of the step and a secret schedule key drawn from
the operating system's entropy, kept in the checkpoint so a resumed run probes the same steps; below
``probe_rate=1`` such an extra probe is dropped, and counted, while probing has cost more than
``max_overhead`` x the training time measured between calls) it probes deep copies of the plugin in its
state before the step, inside a saved-and-restored random state, so the run's randomness is untouched, and
each from the shared state (class, module and function data, :mod:`dpbench.verification.shared_state`) the
release started from; one more call repeats the release, which must come out the same.
The step's release, made by the kernel the same way at every step (:mod:`dpbench.privacy.plugin_streams`),
is the probe's first draw: what is released at a probed step is one of the measured calls, and a plugin
cannot tell a probed step from another when it makes its release (nor predict one: the schedule is secret).

1. ``draws`` calls on the real batch under different random streams (the release and ``draws - 1``
   more): the noise scale per tensor;
2. the shape of the noise those draws show (:mod:`dpbench.verification.noise_shape`): not Gaussian, at
   this probe or pooled over the run's probes, is multiplier 0 (no Gaussian accountant applies);
3. one call per neighbouring batch (see :mod:`dpbench.verification.neighbours`: one example added at a
   secret row, at norms from C/2 to about 4e15 C and on the quietest tensor and coordinate, or one row removed),
   under the first draw's stream: the exact shift, hence the effective multiplier
   (:mod:`dpbench.verification.measurement`); the minimum over neighbours is the gradient's;
4. the copies' state after each call: leaks and separate noised channels
   (:mod:`dpbench.verification.plugin_state`), the latter composed with the gradient's multiplier;
5. once, if a ``plugin_factory`` is given: two fresh instances under different streams; identical
   outputs mean the plugin's noise is fixed by its code (a constant-seeded generator), multiplier 0.

A probe passes when the upper confidence bound of the measured multiplier is at least ``threshold``
x the claim and no state leaks. Verified accounting (:meth:`verified_ledger`) uses, at every step,
the claim if the latest probe at or before that step passed, else min(claim, that probe's measured
multiplier), carried forward until the next probe.
"""

from __future__ import annotations

import math
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import torch

from dpbench.privacy.containment import call_contained
from dpbench.privacy.isolation import StateFingerprint, listed
from dpbench.privacy.ledger import PrivacyLedger, StepRecord
from dpbench.privacy.mechanism import check_plugin_output
from dpbench.privacy.plugin_streams import (
    call_under_seed,
    derive_seed,
    isolated_randomness,
    released_call,
    seed_globals,
)
from dpbench.verification.findings import (
    LEAK,
    Finding,
    PrivacyLeakError,
    PrivacyViolationError,
    ProbeRecord,
    VerificationReport,
    verdict_of,
)
from dpbench.verification.measurement import combined_multiplier, flatten, measure_direction, noise_scale, std_upper
from dpbench.verification.neighbours import NEIGHBOURS_PER_PROBE, QUIETEST_COORDINATE, probe_neighbours, with_example
from dpbench.verification.noise_shape import (
    SHAPE_ALPHA,
    ShapePool,
    ShapeTest,
    atom_test,
    coordinate_kurtosis,
    quietest_coordinate,
    shape_test,
)
from dpbench.verification.plugin_state import (
    Channel,
    changed_leaves,
    deterministic,
    leaf_spread,
    separate_channel,
    snapshot,
)
from dpbench.verification.shared_state import SharedSnapshot, shared_state_restored


def fresh_instances_agree(
    factory: Callable[[], Any], per_sample_grads: list[torch.Tensor], step: int, epoch: int, seeds: tuple[int, int]
) -> bool:
    """Whether two freshly constructed instances, each built and called under a different random stream,
    release exactly the same output: their "noise" is then fixed by the code (a constant seed). The calls
    keep the instances' own generators (a run replaces them at every call, but a plugin whose noise is
    fixed by its code is reported whatever the harness does)."""
    outputs = []
    for seed in seeds:
        seed_globals(seed)
        inputs = [g.clone() for g in per_sample_grads]
        outputs.append(call_under_seed(factory(), inputs, step, epoch, derive_seed(seed, 1)))
    return all(torch.equal(a, b) for a, b in zip(*outputs))


# x_b, the matched example of the state-channel test, sits this fraction inside x_a's clipped contribution.
MATCHED_MARGIN = 1e-3
FRESH_INSTANCE = "fresh-instance"
NOT_GAUSSIAN = "noise-not-gaussian"
NOT_REPRODUCED = "release-not-reproduced"
PROBE_TRACE = "probe-left-a-trace"
# A call from the release's state, batch and stream must give the release again, up to this fraction of each
# tensor's measured noise std (room for non-deterministic reductions on an accelerator, nothing more).
REPRODUCE_TOLERANCE = 1e-3


def release_reproduced(release: list[torch.Tensor], again: list[torch.Tensor], std: Sequence[float]) -> bool:
    """Whether ``again`` (a call from the release's state on its batch under its stream) equals ``release``
    within ``REPRODUCE_TOLERANCE`` x each tensor's noise std."""
    for a, b, s in zip(release, again, std):
        difference = float((a.detach().to("cpu", torch.float64) - b.detach().to("cpu", torch.float64)).abs().max()) if a.numel() else 0.0
        if not difference <= REPRODUCE_TOLERANCE * s:
            return False
    return True


def reachable_state(plugin: Any, copies: bool = True) -> StateFingerprint:
    """The contents of everything the plugin's code can reach (its instance, classes, the globals its functions
    name, closures, defaults, objects it shares with its copies): :class:`~dpbench.privacy.isolation.StateFingerprint`
    without the global random states (every call is seeded) and tensors' version counters (the shared-state
    restore keeps a restored tensor's)."""
    return StateFingerprint(plugin, random_states=False, versions=False, copies=copies)


def _round_down(sigma: float) -> float:
    if not (math.isfinite(sigma) and sigma > 0):
        return 0.0 if sigma <= 0 else sigma
    unit = 10.0 ** (math.floor(math.log10(sigma)) - 1)
    return math.floor(sigma / unit + 1e-9) * unit


class UnverifiableLedgerError(ValueError):
    """No finite epsilon can be verified (a leak, or a step measured without noise)."""


class PluginVerifier:
    """Probe a researcher-form plugin during training; see the module docstring for the method."""

    def __init__(
        self,
        parameter_shapes: Sequence[torch.Size],
        max_grad_norm: float,
        expected_batch_size: float,
        probe_rate: float,
        steps_per_epoch: int,
        strict: bool = False,
        draws: int = 8,
        alpha: float = 1e-5,
        threshold: float = 0.9,
        plugin_factory: Callable[[], Any] | None = None,
        mechanism: str = "plugin",
        max_overhead: float | None = 0.10,
        channel_draws: int = 64,
        total_steps: int | None = None,
    ) -> None:
        if not 0.0 <= probe_rate <= 1.0:
            raise ValueError(f"probe_rate must be in [0, 1] (0 turns probing off), got {probe_rate}")
        if draws < 3:
            raise ValueError(f"draws must be >= 3 to estimate a noise scale, got {draws}")
        if not 0.0 < threshold <= 1.0 or not 0.0 < alpha < 0.5:
            raise ValueError(f"need 0 < threshold <= 1 and 0 < alpha < 0.5, got {threshold}, {alpha}")
        if steps_per_epoch < 1 or not max_grad_norm > 0 or not expected_batch_size > 0:
            raise ValueError("steps_per_epoch, max_grad_norm and expected_batch_size must be positive")
        self.parameter_shapes = [torch.Size(s) for s in parameter_shapes]
        self.max_grad_norm = float(max_grad_norm)
        self.expected_batch_size = float(expected_batch_size)
        self.probe_rate = float(probe_rate)
        # The probe schedule's key: secret (a plugin that could compute the schedule could noise only the
        # probed steps); kept in state_dict so that a resumed run probes the same steps.
        self._schedule_key = secrets.randbits(63)
        self.steps_per_epoch = int(steps_per_epoch)
        self.total_steps = total_steps  # None: every epoch has steps_per_epoch steps; else the last may be short
        self.strict = strict
        self.draws = int(draws)
        self.alpha = float(alpha)
        self.threshold = float(threshold)
        self.plugin_factory = plugin_factory
        self.mechanism = mechanism
        self.max_overhead = max_overhead
        self._training_seconds = 0.0
        self._skipped_for_budget = 0
        self._returned_at: float | None = None
        self._probes: list[ProbeRecord] = []
        self._findings: list[Finding] = []
        self._steps_observed = 0
        self._probe_seconds = 0.0
        self.channel_draws = int(channel_draws)
        # Per state channel: pooled sum of squared shift-normalised deviations and its degrees of freedom.
        self._channel_pool: dict[str, tuple[float, int]] = {}
        self._fixed_noise: bool | None = None  # fresh-instance result, once known
        self._shape_pool = ShapePool()  # the noise-shape statistic over every probe's coordinates
        self._restore = False  # a plugin modified the probe's input tensors in place
        self._epoch_probe_owed = False  # the epoch's step had an empty batch: probe the next step with one
        # The plugin whose shared state is snapshotted before every release (learned from the first
        # probe, or given by watch), the snapshot, and the one every call of the probe in progress starts from.
        self._watched: Any = None
        self._pre_release: SharedSnapshot | None = None
        self._draw_key = 0  # the probe in progress's release seed, from which all its streams derive
        self._call_state: SharedSnapshot | None = None

    # ----------------------------------------------------------------------------------------- schedule
    def epoch_step(self, step: int) -> bool:
        """Whether ``step`` is its epoch's secret step, probed whatever the overhead: one step per epoch, drawn
        uniformly from the epoch's by the schedule key (a fixed step, the first, could be the only one a
        plugin noises: it was, on a run whose extra probes the overhead cap had dropped)."""
        epoch_index, offset = divmod(step, self.steps_per_epoch)
        length = self.steps_per_epoch
        if self.total_steps is not None:
            length = max(1, min(length, self.total_steps - epoch_index * self.steps_per_epoch))
        return offset == random.Random(derive_seed(self._schedule_key, epoch_index, 1)).randrange(length)

    def should_probe(self, step: int, epoch: int) -> bool:
        if self.probe_rate == 0.0:
            return False
        if self.epoch_step(step):
            return True
        return random.Random(derive_seed(self._schedule_key, step)).random() < self.probe_rate

    # ----------------------------------------------------------------------------------------- probing
    def will_probe(self, step: int, epoch: int, batch_size: int) -> bool:
        """Whether this step is probed (called once per step, before its release). One secret step of every
        epoch (:meth:`epoch_step`) is always probed, and with ``probe_rate=1`` every step; otherwise the
        overhead cap drops only the other scheduled probes (counted). An empty batch is not probed; if it
        was its epoch's step, the next step with a batch is probed in its place."""
        now = time.perf_counter()
        if self._returned_at is not None:
            self._training_seconds += now - self._returned_at
        self._returned_at = now
        self._steps_observed += 1
        # The state the release starts from (every call of a probe starts from it too), taken before *every*
        # release, probed or not, and kept until the next: a snapshot taken only before probed releases was a
        # signal to the plugin (its own copy hooks ran, the interpreter's allocated blocks jumped), and a red
        # team's plugins noised only then. Taking it runs the plugin's copy methods: contained.
        self._pre_release = None
        if self._watched is not None:
            name = type(self._watched).__name__
            self._pre_release = call_contained(name, f"a snapshot before step {step}", SharedSnapshot, self._watched)
        if not (self._epoch_probe_owed or self.should_probe(step, epoch)):
            return False
        owed = self._epoch_probe_owed or self.epoch_step(step)
        if batch_size == 0:
            self._epoch_probe_owed = owed
            return False
        self._epoch_probe_owed = False
        if owed or self.probe_rate >= 1.0 or not self._over_budget():
            return True
        self._skipped_for_budget += 1
        return False

    def watch(self, plugin: Any) -> None:
        """Snapshot ``plugin``'s shared state (its classes', modules' and functions' data) before every
        release from now on (the kernel's plugin: :class:`~dpbench.privacy.privatizer.PluginPrivatizer` names
        it when it is built)."""
        self._watched = plugin

    def probe(
        self, plugin: Any, per_sample_grads: list[torch.Tensor], step: int, epoch: int,
        release: tuple[Any, list[torch.Tensor]], seed: int, claim: float,
    ) -> None:
        """Measure ``plugin`` (its state before this step) on ``per_sample_grads`` (a copy of the batch the
        step released from, which the probe may use up), with ``release`` (the copy of the plugin that made
        the release, and its output, made under ``seed``) as the first draw, against ``claim``: the step's
        multiplier as the plugin reported it for the ledger, read before the probe (a plugin asked again
        after the probe's calls could tell a probed step and claim more there than it was measured at).
        Raises a :class:`VerificationError` at a finding in strict mode."""
        started = time.perf_counter()
        if self._watched is None:
            self._watched = plugin
        try:
            # after the probe the run goes on from the state the release left; each of the probe's calls starts
            # from the state the release started from (a plugin that counts its calls in shared state sees
            # every call as the release). The whole probe is contained: copying, restoring and reading the
            # plugin's state runs its own code (copy and pickle methods), which must not reach the kernel's
            # frames or leave anything behind any more than its calls may.
            def probe() -> tuple[ProbeRecord, list[Finding]]:
                with isolated_randomness(), torch.no_grad(), shared_state_restored(plugin) as after_release:
                    self._call_state = self._pre_release if self._pre_release is not None else after_release
                    self._after_release = (after_release, reachable_state(plugin))
                    return self._probe(plugin, per_sample_grads, step, epoch, release, seed, claim)

            record, findings = call_contained(type(plugin).__name__, f"verification at step {step}", probe)
        finally:
            self._pre_release = self._call_state = self._after_release = None
            self._returned_at = time.perf_counter()
        self._probe_seconds += self._returned_at - started
        self._probes.append(record)
        known_leaks = {f.probe for f in self._findings if f.kind == "leak"}
        for finding in findings:
            if finding.kind == "leak" and finding.probe in known_leaks:
                continue
            self._findings.append(finding)
            if self.strict:
                raise (PrivacyLeakError if finding.kind == "leak" else PrivacyViolationError)(finding)

    def _over_budget(self) -> bool:
        """Probing has already cost more than ``max_overhead`` x the training time between calls."""
        return self.max_overhead is not None and bool(self._probes) and self._probe_seconds > self.max_overhead * self._training_seconds

    def _call(self, plugin: Any, inputs: list[torch.Tensor], step: int, epoch: int, seed: int) -> tuple[Any, list[torch.Tensor]]:
        """A fresh copy of ``plugin`` called on ``inputs`` (the probe's own tensors, never the real batch)
        under ``seed``. Inputs a plugin modified in place are restored from the real batch."""
        versions = [t._version for t in inputs]
        if self._call_state is not None:
            self._call_state.restore()
        copy, output = released_call(plugin, inputs, step, epoch, seed)
        check_plugin_output(output, self.parameter_shapes, self.mechanism, step)
        if [t._version for t in inputs] != versions:
            self._restore = True
        return copy, output

    def _probe(
        self, plugin: Any, grads: list[torch.Tensor], step: int, epoch: int,
        release: tuple[Any, list[torch.Tensor]], release_seed: int, claim: float,
    ) -> tuple[ProbeRecord, list[Finding]]:
        # every stream of the probe derives from the release's seed: secret where the run's key is
        # (privacy.secure_noise), so a plugin cannot tell the verifier's calls from the release by their seeds (a
        # fifth red team's noised the release from a stream its author could subtract, the draws honestly)
        self._draw_key = release_seed
        seeds = [release_seed] + [derive_seed(release_seed, k) for k in range(1, self.draws)]
        released_copy, released_output = release
        draws, states = [[o.detach() for o in released_output]], [snapshot(released_copy)]
        inputs = [g.clone() for g in grads]
        for seed in seeds[1:]:
            if self._restore:
                inputs, self._restore = [g.clone() for g in grads], False
            copy, output = self._call(plugin, inputs, step, epoch, seed)
            draws.append(output)
            states.append(snapshot(copy))
        scale, residuals = noise_scale(draws)
        reproduced = True
        if self._pre_release is not None:
            # the release again: same state, batch and stream. What a plugin's output depends on besides those
            # (calls counted in another library's module, a file, the clock) shows here, at one call's cost
            _, again = self._call(plugin, [g.clone() for g in grads], step, epoch, seeds[0])
            reproduced = release_reproduced(draws[0], again, scale.std)
        shapes: dict = self._shape_tests(residuals)
        shapes["atoms"] = atom_test(draws)

        neighbours = probe_neighbours(
            grads, scale.upper(self.alpha), quietest_coordinate(residuals), self.max_grad_norm,
            torch.Generator().manual_seed(derive_seed(release_seed, -1)),
            torch.Generator().manual_seed(derive_seed(self._schedule_key, step, 2)),
        )
        directions, moved, outputs, shifted_states = [], {}, {}, {}
        for neighbour in neighbours:
            name = neighbour.name
            copy, outputs[name] = self._call(plugin, neighbour.batch(grads), step, epoch, seeds[0])
            shifted_states[name] = snapshot(copy)
            shift = [o - b for o, b in zip(outputs[name], draws[0])]
            # the quietest coordinate was chosen among all from these draws: its bound is Bonferroni's
            chosen_among = residuals.shape[1] if name == QUIETEST_COORDINATE else 1
            directions.append(measure_direction(name, shift, scale, residuals, self.alpha, self.alpha / chosen_among))
            for path in changed_leaves(states[0], shifted_states[name]):
                moved.setdefault(path, name)

        leaks = sorted(p for p in moved if deterministic(p, states))
        candidates = sorted(p for p in moved if p not in leaks)
        channels, post_processing = [], []
        if candidates:
            channels, post_processing = self._channels(
                plugin, grads, step, epoch, seeds[0], candidates, states, draws[0], outputs["spread"], shifted_states["spread"]
            )
        if channels:
            channels = self._measure_channels(plugin, grads, step, epoch, channels, states)

        worst = min(directions, key=lambda d: d.sigma)
        parts = [(worst.sigma, worst.upper, worst.probe)] + [(c.multiplier, c.upper, f"state:{c.path}") for c in channels]
        if self.plugin_factory is not None and self._fixed_noise is None:
            if self._call_state is not None:
                self._call_state.restore()
            with isolated_randomness():  # the global generators the plugin can reach stay as the release left them
                self._fixed_noise = fresh_instances_agree(
                    self.plugin_factory, grads, step, epoch, (derive_seed(release_seed, 1 << 20), derive_seed(release_seed, 1 << 21))
                )
        if self._fixed_noise:
            parts.append((0.0, 0.0, FRESH_INSTANCE))
        if not all(test.gaussian for test in shapes.values()):
            parts.append((0.0, 0.0, NOT_GAUSSIAN))
        if not reproduced:
            parts.append((0.0, 0.0, NOT_REPRODUCED))
        self._traces = self._traces_left(plugin)
        if self._traces:
            parts.append((0.0, 0.0, PROBE_TRACE))
        measured = combined_multiplier([p[0] for p in parts])
        upper = combined_multiplier([p[1] for p in parts])
        label = " + ".join(p[2] for p in parts)
        passed = upper >= self.threshold * claim and not leaks
        record = ProbeRecord(
            step, epoch, claim, measured, upper, passed, label,
            tuple(d.to_dict() for d in directions), tuple(c.to_dict() for c in channels),
            tuple(post_processing), tuple(leaks), grads[0].shape[0],
            {kind: test.to_dict() for kind, test in shapes.items()},
        )
        findings = [
            Finding(
                "leak", step, epoch, f"state:{path}", claim, None, None,
                f"identical under {self.draws} random streams but changed by one added example ('{moved[path]}'): "
                "a deterministic function of raw data kept in the plugin's state",
            )
            for path in leaks
        ]
        if upper < self.threshold * claim:
            findings.append(Finding("violation", step, epoch, label, claim, measured, upper, self._explain(label, parts)))
        return record, findings

    def _shape_tests(self, residuals: torch.Tensor) -> dict[str, ShapeTest]:
        """The Gaussianity test of this probe's draws and of the pool of every probe's so far, each at
        ``SHAPE_ALPHA`` (see :mod:`dpbench.verification.noise_shape`)."""
        values = coordinate_kurtosis(residuals)
        self._shape_pool.add(values)
        m = residuals.shape[0] - 1
        return {
            "probe": shape_test(float(values.sum()), values.numel(), m, SHAPE_ALPHA),
            "run": shape_test(self._shape_pool.total, self._shape_pool.coordinates, m, SHAPE_ALPHA),
        }

    def _channels(self, plugin, grads, step, epoch, seed, candidates, states, base_output, output_a, with_a):
        """Sort random, data-dependent state leaves into separate channels and post-processing, with x_a
        the 'spread' example and x_b its clipped contribution (the release shift times the expected
        batch size), just inside the threshold."""
        shift_a = [a - b for a, b in zip(output_a, base_output)]
        matched = [(d * self.expected_batch_size * (1 - MATCHED_MARGIN)).unsqueeze(0) for d in shift_a]
        copy_b, output_b = self._call(plugin, with_example(grads, matched), step, epoch, seed)
        with_b = snapshot(copy_b)
        release_shift = float(flatten(shift_a).norm())
        release_difference = float((flatten(output_a) - flatten(output_b)).norm())
        channels, post_processing = [], []
        for path in candidates:
            channel = separate_channel(path, states, states[0], with_a, with_b, release_shift, release_difference, self.alpha)
            (channels.append(channel) if channel is not None else post_processing.append(path))
        return channels, post_processing

    def _measure_channels(
        self, plugin: Any, grads: list[torch.Tensor], step: int, epoch: int, channels: list[Channel], states: list
    ) -> list[Channel]:
        """Each channel's multiplier from ``channel_draws`` more draws of the state on the real batch, pooled
        with the channel's draws at earlier probes (a scalar state leaf has too few degrees of freedom in
        one probe to resolve a 15% shortfall; the pool assumes the channel's noise is the same at every
        step). The bound used is the tighter of this probe's and the pool's (each at ``alpha``)."""
        extra = [
            snapshot(self._call(plugin, [g.clone() for g in grads], step, epoch, derive_seed(self._draw_key, self.draws + k))[0])
            for k in range(self.channel_draws)
        ]
        measured = []
        for channel in channels:
            spread = leaf_spread(channel.path, states + extra, channel.shift) if 0 < channel.shift < math.inf else None
            if spread is None:
                measured.append(channel)
                continue
            squares, dof = spread
            pooled_squares, pooled_dof = self._channel_pool.get(channel.path, (0.0, 0))
            pooled_squares, pooled_dof = pooled_squares + squares, pooled_dof + dof
            self._channel_pool[channel.path] = (pooled_squares, pooled_dof)
            here, pooled = math.sqrt(squares / dof), math.sqrt(pooled_squares / pooled_dof)
            upper = min(std_upper(here, dof, self.alpha), std_upper(pooled, pooled_dof, self.alpha))
            measured.append(Channel(channel.path, min(here, pooled), upper, channel.shift))
        return measured

    def _traces_left(self, plugin: Any) -> list[str]:
        """What the probe's calls changed in the state the plugin can reach, once its shared state is put back as
        the release left it: the paths (:func:`reachable_state`) that differ from right after the release."""
        if self._after_release is None:
            return []
        shared, before = self._after_release
        shared.restore()
        after = reachable_state(plugin, copies=False)
        return before.changes(after) + [f"{path}, which the check cannot read" for path in after.unreadable]

    def _explain(self, label: str, parts: list[tuple[float, float, str]]) -> str:
        if PROBE_TRACE in label:
            shown = listed(self._traces, 5)
            return ("the verifier's calls left a trace in state the plugin can reach, which a plugin can read to tell a "
                    f"probed step from the others and release differently after it: {shown} changed, where the "
                    "verifier puts back what it can (the data of the plugin's classes, modules and functions) and "
                    "each call runs on a copy. State that every copy shares (an object a __deepcopy__ hands to the "
                    "copies, a closure or default holding a mutable object, a lru_cache) belongs in the plugin's "
                    "instance, where each call changes only its own copy")
        if FRESH_INSTANCE in label:
            return ("two freshly built instances released identical outputs under different random streams: the "
                    "plugin's noise comes from a generator seeded from a constant, so it is no noise at all")
        if NOT_REPRODUCED in label:
            return ("a call from the state the release started from, on its batch and under its random stream, did "
                    "not give the release again: the plugin's output depends on something the probe does not hold "
                    "fixed (state kept outside its classes and modules, the clock, a file, or entropy read in native "
                    "code such as torch.Generator.seed() or torch.seed()), so what was measured is not what was "
                    "released; draw noise from torch's, numpy's or Python's generators (global, or objects the plugin "
                    "holds) or from os.urandom / secrets, which the kernel seeds at every call")
        if NOT_GAUSSIAN in label:
            return ("the noise across random streams is not Gaussian (its per-coordinate kurtosis on the sphere "
                    f"differs from a Gaussian's beyond a false-alarm bound of {SHAPE_ALPHA:g}, or draws of the same "
                    "coordinate are exactly equal far more often than rounding explains: the noise has an atom): a "
                    "Gaussian accountant's epsilon does not hold for it")
        first = parts[0]
        text = (f"noise std along the shift caused by one added '{first[2]}' example is {first[0]:.4g} x the shift "
                "(whitened by the measured per-tensor noise scales)")
        for sigma, _, name in parts[1:]:
            text += f"; composed with the separate noised channel {name} (multiplier {sigma:.4g})"
        return text

    # ----------------------------------------------------------------------------------------- results
    def report(self) -> VerificationReport:
        return VerificationReport(
            verdict_of(self._findings, self._probes),
            list(self._findings),
            list(self._probes),
            self._steps_observed,
            self._probe_seconds,
            {
                "probe_rate": self.probe_rate, "draws": self.draws, "alpha": self.alpha, "threshold": self.threshold,
                "probes_per_step": NEIGHBOURS_PER_PROBE, "shape_alpha": SHAPE_ALPHA, "fresh_instance_check": self.plugin_factory is not None,
                "max_overhead": self.max_overhead, "skipped_for_budget": self._skipped_for_budget,
                "channel_draws": self.channel_draws,
                "training_seconds": self._training_seconds,
            },
        )

    def verified_sigma(self, step: int, claimed: float) -> float:
        """The multiplier verified for ``step``: the claim if the latest probe at or before it passed,
        else min(claim, that probe's measured multiplier rounded down to two significant digits, which
        keeps the number of distinct multipliers, and so the accounting time, small)."""
        latest = None
        for probe in self._probes:
            if probe.step <= step and (latest is None or probe.step >= latest.step):
                latest = probe
        if latest is None or latest.passed:
            return claimed
        return min(claimed, _round_down(latest.measured))

    def verified_ledger(self, claimed: PrivacyLedger) -> PrivacyLedger:
        """The claimed ledger with every step's multiplier replaced by :meth:`verified_sigma`."""
        if self.report().verdict == LEAK:
            raise UnverifiableLedgerError("the plugin leaks raw data through its state; no epsilon can be verified")
        records = []
        for r in claimed:
            sigma = self.verified_sigma(r.step, r.noise_multiplier)
            if not sigma > 0:
                raise UnverifiableLedgerError(
                    f"step {r.step} was measured without noise (or with noise that is not Gaussian); no epsilon can be verified"
                )
            records.append(StepRecord(r.step, r.epoch, r.sampling_rate, sigma, r.sensitivity, r.mechanism, r.noise_source))
        return PrivacyLedger(records)

    def state_dict(self) -> dict:
        return {
            "probes": [asdict(p) for p in self._probes],
            "findings": [asdict(f) for f in self._findings],
            "steps_observed": self._steps_observed,
            "probe_seconds": self._probe_seconds,
            "fixed_noise": self._fixed_noise,
            "training_seconds": self._training_seconds,
            "skipped_for_budget": self._skipped_for_budget,
            "channel_pool": {path: list(pool) for path, pool in self._channel_pool.items()},
            "shape_pool": [self._shape_pool.total, self._shape_pool.coordinates],
            "schedule_key": self._schedule_key,
            "epoch_probe_owed": self._epoch_probe_owed,
        }

    def load_state_dict(self, state: dict) -> None:
        self._probes = [ProbeRecord(**p) for p in state["probes"]]
        self._findings = [Finding(**f) for f in state["findings"]]
        self._steps_observed = state["steps_observed"]
        self._probe_seconds = state["probe_seconds"]
        self._fixed_noise = state["fixed_noise"]
        self._training_seconds = state["training_seconds"]
        self._skipped_for_budget = state["skipped_for_budget"]
        self._channel_pool = {path: (float(s), int(d)) for path, (s, d) in state.get("channel_pool", {}).items()}
        # a checkpoint written before the schedule was secret has no key: the resumed run keeps its own
        self._schedule_key = int(state.get("schedule_key", self._schedule_key))
        self._epoch_probe_owed = bool(state.get("epoch_probe_owed", False))
        total, count = state.get("shape_pool", (0.0, 0))  # absent from checkpoints of before the shape test
        self._shape_pool = ShapePool(float(total), int(count))
