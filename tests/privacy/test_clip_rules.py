"""The kernel's own clipping rules (``clip_rule``, ``statistic_rule``): the built-ins that name one get, for the
whole batch at once, exactly what their hook evaluated per example gives; each example's value depends on its
own norms only; what a mechanism declares is checked and read contained."""

import sys

import pytest
import torch
from kernel_steps import SHAPES, batch, run_steps

from dpbench.engine.per_sample import MaterializedGradients
from dpbench.privacy.clip_rules import rule_factors, rule_statistic
from dpbench.privacy.containment import ContainmentError
from dpbench.privacy.mechanism import Mechanism, MechanismContractError, class_hook, declared_values
from dpbench.privacy.privatizer import StructuredPrivatizer
from mechanisms.adaptive import AdaptiveClipping
from mechanisms.normalized import AutomaticClipping


class NormalizedByHook(AutomaticClipping):
    """The same rule through an overriding hook: the kernel evaluates it per example."""

    def clip_factors(self, group_norms, thresholds, step, epoch):
        return super().clip_factors(group_norms, thresholds, step, epoch)


class AdaptiveByHook(AdaptiveClipping):
    def clip_statistic(self, group_norms, thresholds, step, epoch):
        return super().clip_statistic(group_norms, thresholds, step, epoch)


def releases(mechanism: Mechanism, steps: int = 4, size: int = 9) -> list:
    privatizer = StructuredPrivatizer(mechanism, SHAPES, 3.0, 6.0, 0.1, generator=torch.Generator().manual_seed(1))
    return [privatizer.release([MaterializedGradients(batch(step, size))], step, 0) for step in range(steps)]


@pytest.mark.parametrize(
    "by_rule,by_hook,hook",
    [
        (lambda: AutomaticClipping(0.7, stability=0.05), lambda: NormalizedByHook(0.7, stability=0.05), "clip_factors"),
        (lambda: AdaptiveClipping(0.7, count_noise=4.0), lambda: AdaptiveByHook(0.7, count_noise=4.0), "clip_statistic"),
    ],
    ids=["normalized", "adaptive"],
)
def test_a_rule_gives_what_the_same_hook_evaluated_per_example_gives(by_rule, by_hook, hook):
    rule, overridden = by_rule(), by_hook()
    assert class_hook(rule, declared_values(rule), hook) is vars(Mechanism)[hook]  # no mechanism code sees norms
    assert class_hook(overridden, declared_values(overridden), hook) is not vars(Mechanism)[hook]
    for a, b in zip(releases(rule), releases(overridden)):
        assert a.record == b.record
        for x, y in zip(a.gradient, b.gradient):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert getattr(rule, "clip_norm", None) == getattr(overridden, "clip_norm", None)  # same noised statistics


@pytest.mark.parametrize("rule", ["flat", "automatic"])
def test_a_rules_factor_depends_on_its_own_norms_only(rule):
    norms = torch.rand(6, 2, dtype=torch.float64) + 0.1
    thresholds = torch.tensor([0.5, 0.3], dtype=torch.float64)
    factors = rule_factors(rule, 0.01, norms, thresholds)
    moved = norms.clone()
    moved[3] = torch.tensor([1e9, 1e-9])  # one example's norms, far off
    changed = rule_factors(rule, 0.01, moved, thresholds)
    assert torch.equal(torch.cat([factors[:3], factors[4:]]), torch.cat([changed[:3], changed[4:]]))
    assert bool((factors * norms <= thresholds).all())  # both rules bound every contribution by C_g
    statistic = rule_statistic("unclipped", moved, thresholds)
    assert statistic.tolist() == [0.5 if bool((moved[i] <= thresholds).all()) else -0.5 for i in range(6)]


class UnknownRule(Mechanism):
    name = "unknown_rule"
    clip_rule = "per_coordinate"


class NegativeStability(Mechanism):
    name = "negative_stability"
    clip_rule = "automatic"
    clip_stability = -0.5


class UnknownStatistic(Mechanism):
    name = "unknown_statistic"
    statistic_noise = 50.0
    statistic_rule = "median"


class StatisticNoiseWithoutStatistic(Mechanism):
    name = "no_statistic"
    statistic_noise = 50.0


class RuleReadsFrames(Mechanism):
    name = "rule_reads_frames"

    @property
    def clip_rule(self):
        sys._getframe(1)
        return "flat"


@pytest.mark.parametrize(
    "mechanism,error,match",
    [
        (UnknownRule, MechanismContractError, "clip_rule 'per_coordinate' is not one of the kernel's"),
        (NegativeStability, MechanismContractError, "clip_stability must be finite and >= 0"),
        (UnknownStatistic, MechanismContractError, "statistic_rule 'median' is not one of the kernel's"),
        (StatisticNoiseWithoutStatistic, MechanismContractError, "neither a statistic_rule nor clip_statistic"),
        (RuleReadsFrames, ContainmentError, "read the call stack"),
    ],
)
def test_a_declared_rule_is_checked_and_read_contained(mechanism, error, match):
    with pytest.raises(error, match=match):
        run_steps(mechanism(1.0), steps=1)
