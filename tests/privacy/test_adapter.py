"""A structured mechanism as a researcher-form plugin, and the hand-written example plugin."""

import pytest
import torch

from dpbench.privacy.adapter import as_researcher_plugin
from dpbench.privacy.mechanism import ResearcherMechanism
from mechanisms.examples.flat_clip_plugin import FlatClipPlugin
from mechanisms.fixed import FixedClipping

ARGS = dict(
    max_grad_norm=0.5, noise_multiplier=1.3, n_params=33, dataset_size=1000, batch_size=10.0,
    epochs=1, target_epsilon=3.0, target_delta=1e-5,
)


def grads(seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(12, 5, 6, generator=generator), torch.randn(12, 3, generator=generator)]


def test_adapted_builtin_satisfies_the_researcher_contract():
    plugin = as_researcher_plugin(FixedClipping)(**ARGS)
    assert isinstance(plugin, ResearcherMechanism)
    out = plugin.clip_and_noise(grads(), step=0, epoch=0)
    assert [o.shape for o in out] == [torch.Size([5, 6]), torch.Size([3])]
    assert plugin.get_effective_sigma(0, 0) == pytest.approx(1.3)


def test_hand_written_example_and_adapted_builtin_release_the_same_gradient():
    adapted = as_researcher_plugin(FixedClipping)(**ARGS)
    example = FlatClipPlugin(**ARGS)
    torch.manual_seed(7)
    from_adapter = adapted.clip_and_noise(grads(), 0, 0)
    torch.manual_seed(7)
    from_example = example.clip_and_noise(grads(), 0, 0)
    for a, b in zip(from_adapter, from_example):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert adapted.get_effective_sigma(3, 1) == example.get_effective_sigma(3, 1)


def test_adapter_noise_comes_from_the_global_generator():
    plugin = as_researcher_plugin(FixedClipping)(**ARGS)
    first, second = plugin.clip_and_noise(grads(), 0, 0), plugin.clip_and_noise(grads(), 1, 0)
    assert not torch.equal(first[0], second[0])
