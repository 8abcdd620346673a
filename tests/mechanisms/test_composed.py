"""Composed: every hook but the noise schedule and the post-processing comes from the clipping
component (the private-statistics channel and the clipping rules included; the raw-data hooks only where the
component overrides them), and compositions are built from configs."""

import math
from functools import partial
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from dpbench.engine.per_sample import MaterializedGradients
from dpbench.privacy.calibration import TrainingPlan
from dpbench.privacy.mechanism import Mechanism, class_hook, declared_values
from dpbench.privacy.privatizer import StructuredPrivatizer
from dpbench.training.plugin_loader import prepare_mechanism
from mechanisms.adaptive import AdaptiveClipping
from mechanisms.composed import CLIPPING_HOOKS, RAW_DATA_HOOKS, Composed, ComposedHooks
from mechanisms.fixed import FixedClipping
from mechanisms.momentum import NoisyMomentum
from mechanisms.noise_decay import NoiseDecay
from mechanisms.normalized import AutomaticClipping
from mechanisms.perlayer import PerLayerClipping

CONF = Path(__file__).resolve().parents[2] / "conf" / "mechanism"
SHAPES = [torch.Size([6, 4]), torch.Size([4])]


def test_every_member_of_the_contract_except_noise_and_postprocessing_goes_to_the_clipping_component():
    public = {member for member in vars(Mechanism) if not member.startswith("_")}
    assert set(CLIPPING_HOOKS) == public - {"name", "noise_shape", "postprocess", *RAW_DATA_HOOKS}
    assert {"parameter_groups", "thresholds", "clip_rule", "statistic_rule", "statistic_noise"} <= set(CLIPPING_HOOKS)
    for member in CLIPPING_HOOKS:
        assert vars(Composed)[member] is not vars(Mechanism)[member], member
    for member in RAW_DATA_HOOKS:
        assert member not in vars(Composed) and vars(ComposedHooks)[member] is not vars(Mechanism)[member]


class HalfFactors(FixedClipping):
    """A component with a raw-data hook of its own."""

    def clip_factors(self, group_norms, thresholds, step, epoch):
        return 0.5 * super().clip_factors(group_norms, thresholds, step, epoch)


@pytest.mark.parametrize(
    "component,hooks",
    [(FixedClipping, False), (PerLayerClipping, False), (partial(AdaptiveClipping, count_noise=3.0), False),
     (partial(AutomaticClipping, stability=0.1), False), (HalfFactors, True)],
    ids=["fixed", "perlayer", "adaptive", "normalized", "own-hook"],
)
def test_the_raw_data_hooks_are_delegated_only_where_the_component_overrides_them(component, hooks):
    """A component that names the kernel's rules keeps the kernel's batch-wide clipping (no hook to evaluate per
    example) with the component's rules; one with its own hook has it delegated; the releases are the ones of
    the component alone."""
    composed = Composed(0.5, component)
    assert type(composed) is (ComposedHooks if hooks else Composed)
    declared = declared_values(composed)
    assert (class_hook(composed, declared, "clip_factors") is not vars(Mechanism)["clip_factors"]) is hooks
    alone = component(max_grad_norm=0.5)
    assert (declared.clip_rule, declared.clip_stability, declared.statistic_rule) == (
        alone.clip_rule, alone.clip_stability, alone.statistic_rule)
    kernels = [
        StructuredPrivatizer(m, SHAPES, 1.1, 10.0, 0.01, torch.Generator().manual_seed(0)) for m in (alone, composed)
    ]
    for step in range(3):
        grads = MaterializedGradients([torch.randn(10, *s) for s in SHAPES])
        a, b = (kernel.release([grads], step, 0) for kernel in kernels)
        for x, y in zip(a.gradient, b.gradient):
            assert torch.equal(x, y)


@pytest.mark.parametrize("rescale_step", [False, True])
def test_adaptive_clipping_behaves_the_same_inside_a_composition(rescale_step):
    """The private-statistics channel goes through: same releases, records and threshold updates; and the
    clipping component's own post-processing (the rescaled step) is kept."""
    alone = AdaptiveClipping(0.5, count_noise=3.0, rescale_step=rescale_step)
    composed = Composed(0.5, partial(AdaptiveClipping, count_noise=3.0, rescale_step=rescale_step))
    assert composed.statistic_noise == 3.0
    kernels = [
        StructuredPrivatizer(m, SHAPES, 1.1, 10.0, 0.01, torch.Generator().manual_seed(0)) for m in (alone, composed)
    ]
    for step in range(5):
        grads = MaterializedGradients([torch.randn(10, *s) for s in SHAPES])
        a, b = (kernel.release([grads], step, 0) for kernel in kernels)
        assert a.record.noise_multiplier == b.record.noise_multiplier and a.record.sensitivity == b.record.sensitivity
        for x, y in zip(a.gradient, b.gradient):
            assert torch.equal(x, y)
    assert composed.clipping.clip_norm == alone.clip_norm != 0.5


def test_noise_comes_only_from_its_component_and_postprocessing_after_the_clippings_own():
    decaying_clipper = Composed(1.0, partial(NoiseDecay, epochs=3, end_ratio=0.5))
    assert decaying_clipper.noise_shape(0, 2) == 1.0  # the clipping component's own schedule is not used
    composed = Composed(
        1.0, PerLayerClipping, partial(NoiseDecay, epochs=3, end_ratio=0.5), partial(NoisyMomentum, kind="heavy_ball")
    )
    assert composed.noise_shape(0, 2) == pytest.approx(0.5)
    assert composed.parameter_groups(SHAPES) == [[0], [1]]
    assert composed.thresholds(0, 0) == pytest.approx([1 / math.sqrt(2)] * 2)
    composed.postprocess([torch.ones(s) for s in SHAPES], 0, 0)
    torch.testing.assert_close(composed.postprocess([torch.ones(s) for s in SHAPES], 1, 0)[1], torch.full((4,), 1.9))
    assert composed.name == "perlayer+noise_decay+momentum"
    heavy_ball = partial(NoisyMomentum, kind="heavy_ball")
    rescaled = Composed(1.0, partial(AdaptiveClipping, rescale_step=True), postprocessing=heavy_ball)
    rescaled.clipping.released_norm = 0.5  # as if the step were clipped to C_t = C_0 / 2: the release doubles
    rescaled.postprocess([torch.ones(s) for s in SHAPES], 0, 0)
    torch.testing.assert_close(rescaled.postprocess([torch.ones(s) for s in SHAPES], 1, 0)[1], torch.full((4,), 3.8))


def test_components_must_be_factories():
    with pytest.raises(TypeError, match="_partial_: true"):
        Composed(1.0, FixedClipping(1.0))
    with pytest.raises(TypeError, match="must be a dpbench.privacy.mechanism.Mechanism"):
        Composed(1.0, lambda max_grad_norm: object())


def prepare(name: str, **overrides):
    root = OmegaConf.create(
        {"train": {"max_grad_norm": 0.8, "epochs": 3}, "mechanism": OmegaConf.load(CONF / f"{name}.yaml")}
    )
    for path, value in overrides.items():
        OmegaConf.update(root, path, value)
    config = OmegaConf.to_container(root.mechanism, resolve=True)
    plan = TrainingPlan(dataset_size=1000, expected_batch_size=50, epochs=3)
    return prepare_mechanism(config, plan, 3.0, 1e-5, SHAPES, torch.Generator(), torch.device("cpu"))


def test_the_loader_builds_nested_components_with_the_compositions_max_grad_norm():
    prepared = prepare("perlayer_decay")
    mechanism = prepared.mechanism
    assert prepared.name == "perlayer_decay" and prepared.contract == "structured"
    assert isinstance(mechanism.clipping, PerLayerClipping) and isinstance(mechanism.noise, NoiseDecay)
    assert mechanism.clipping.max_grad_norm == mechanism.noise.max_grad_norm == 0.8
    assert prepared.privatizer.noise_multiplier_at(0, 2) == pytest.approx(0.5 * prepared.noise_multiplier)
    momentum = prepare("fixed_momentum").mechanism
    assert isinstance(momentum.clipping, FixedClipping) and isinstance(momentum.postprocessing, NoisyMomentum)


def test_a_components_own_error_reaches_the_user_unwrapped():
    with pytest.raises(ValueError, match="noise schedule 'warmup' is unknown"):
        prepare("perlayer_decay", **{"mechanism.noise.schedule": "warmup"})
    with pytest.raises(ValueError, match="per-layer split 'bogus' is unknown"):
        prepare("perlayer", **{"mechanism.split": "bogus"})
