"""The parameter EMA (``train.parameter_ema``) is the bias-corrected average of the trained iterates."""

import pytest
import torch

from dpbench.training.loop import update_average


def averaged(iterates: list[list[torch.Tensor]], decay: float, start: list[torch.Tensor]) -> list[torch.Tensor]:
    average = [t.clone() for t in start]
    for count, parameters in enumerate(iterates, start=1):
        update_average(average, parameters, decay, count)
    return average


@pytest.mark.parametrize("decay", [0.5, 0.9, 0.999])
def test_average_is_the_normalised_geometric_mean_of_the_iterates(decay):
    generator = torch.Generator().manual_seed(0)
    iterates = [[torch.randn(3, 4, generator=generator), torch.randn(4, generator=generator)] for _ in range(30)]
    weights = torch.tensor([decay ** (len(iterates) - i) for i in range(1, len(iterates) + 1)], dtype=torch.float64)
    weights /= weights.sum()
    start = [torch.full((3, 4), 1e3), torch.full((4,), -1e3)]
    for k, got in enumerate(averaged(iterates, decay, start)):
        expected = sum(w * p[k].double() for w, p in zip(weights, iterates))
        torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


def test_initialisation_carries_no_weight_even_when_the_horizon_exceeds_the_run():
    # 20 steps at decay 0.999 (a horizon of 1000 steps): an uncorrected EMA started at the initialisation would
    # keep 0.999**20 = 98% of it; the corrected one is the (nearly uniform) mean of the 20 iterates.
    iterates = [[torch.full((2,), float(step))] for step in range(1, 21)]
    (average,) = averaged(iterates, 0.999, [torch.full((2,), -100.0)])
    assert average.tolist() == pytest.approx([10.5, 10.5], abs=0.05)


def test_decay_zero_is_the_last_iterate():
    iterates = [[torch.full((2,), float(step))] for step in range(5)]
    (average,) = averaged(iterates, 0.0, [torch.zeros(2)])
    assert average.tolist() == [4.0, 4.0]
