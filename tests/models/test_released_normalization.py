"""Input normalisation by released training-set statistics (Tramèr & Boneh's data normalisation): the
workload releases each example's per-channel mean and mean square through the kernel, so one example moves
each released sum by at most its bound whatever its features; the releases are in the ledger and in the
calibration; the model cannot run on statistics that were never released; a resumed run keeps them."""

import json
import math

import pytest
import torch
from torch import nn

from dpbench.data.splits import DatasetSplits
from dpbench.models import ScatterLinear
from dpbench.models.released_normalization import (
    MEAN,
    SQUARE,
    ReleasedNormalization,
    StatisticsNotReleasedError,
    channel_statistics,
)
from dpbench.privacy.calibration import TrainingPlan, calibrate_noise_multiplier
from dpbench.training.experiment import run_experiment
from dpbench.workload import WorkloadError

CHANNELS = 4
DIGITS = ("model=scatter_linear", "model.channels=1", "model.height=8", "model.width=8", "model.groups=1")


def splits(train: torch.Tensor) -> DatasetSplits:
    labels = torch.zeros(train.shape[0], dtype=torch.int64)
    return DatasetSplits("toy", train, labels, train[:2].clone(), labels[:2].clone(), num_classes=2)


def released_mean_sum(data: DatasetSplits, seed: int = 0) -> torch.Tensor:
    model = ReleasedNormalization(CHANNELS, noise_multiplier=2.0)
    data.release_statistics(model, run_dir=None, generator=torch.Generator().manual_seed(seed))
    return model.mean.double() * data.train_size  # the module keeps sum / count: back to the released sum


def test_one_example_moves_each_released_sum_by_at_most_its_bound_whatever_its_features():
    torch.manual_seed(0)
    rows = 0.05 * torch.randn(64, CHANNELS, 3, 3)
    bounds = ReleasedNormalization(CHANNELS).bounds
    for outlier in (1e6 * torch.ones(1, CHANNELS, 3, 3), -3e3 * torch.rand(1, CHANNELS, 3, 3)):
        # same noise draw on both neighbours: the difference is the outlier's clipped contribution alone
        base = ReleasedNormalization(CHANNELS, noise_multiplier=2.0)
        neighbour = ReleasedNormalization(CHANNELS, noise_multiplier=2.0)
        splits(rows).release_statistics(base, None, torch.Generator().manual_seed(7))
        splits(torch.cat([rows, outlier])).release_statistics(neighbour, None, torch.Generator().manual_seed(7))
        mean_shift = neighbour.mean * 65 - base.mean * 64
        assert float(mean_shift.norm()) <= bounds[MEAN] * (1 + 1e-5)
        assert float(mean_shift.norm()) == pytest.approx(bounds[MEAN], rel=1e-4)  # clipped to the bound, not less


def test_the_released_statistics_are_the_data_s_plus_noise_of_the_declared_scale():
    torch.manual_seed(1)
    rows = 0.02 * torch.randn(4000, CHANNELS, 2, 2) + torch.tensor([0.01, 0.02, 0.03, 0.04]).view(1, -1, 1, 1)
    exact = {name: value.sum(0).double() for name, value in channel_statistics(rows).items()}
    module = ReleasedNormalization(CHANNELS, noise_multiplier=2.0)
    draws = torch.stack([released_mean_sum(splits(rows), seed) - exact[MEAN] for seed in range(300)])
    expected_std = 2.0 * module.bounds[MEAN]
    assert float(draws.std()) == pytest.approx(expected_std, rel=0.1)  # N(0, (σ·bound)²) per coordinate
    assert float(draws.mean().abs()) < 4 * expected_std / math.sqrt(draws.numel())


def test_the_statistics_set_mean_and_variance_and_a_negative_noised_variance_is_floored():
    module = ReleasedNormalization(2)
    module.set_statistics({MEAN: torch.tensor([2.0, 4.0]), SQUARE: torch.tensor([8.0, 3.0])}, count=2)
    assert module.mean.tolist() == [1.0, 2.0] and module.variance.tolist() == [3.0, 0.0]  # 1.5 - 4 < 0: floored
    out = module(torch.tensor([[[4.0], [2.0]]]))
    assert out.flatten().tolist() == pytest.approx([3.0 / math.sqrt(3.0 + 1e-5), 0.0])


def test_the_module_refuses_to_run_before_a_release():
    with pytest.raises(StatisticsNotReleasedError, match="released by the workload before training"):
        ReleasedNormalization(3)(torch.zeros(2, 3, 4, 4))


def test_the_workload_releases_for_one_input_normalisation_only():
    data = splits(torch.zeros(8, CHANNELS, 2, 2))
    assert data.statistics_releases(nn.Linear(2, 2)) == ()
    assert [r.name for r in data.statistics_releases(nn.Sequential(ReleasedNormalization(CHANNELS)))] == [
        "0.mean", "0.square"]
    with pytest.raises(WorkloadError, match="has 2 ReleasedNormalization modules"):
        data.statistics_releases(nn.Sequential(ReleasedNormalization(CHANNELS), ReleasedNormalization(CHANNELS)))
    with pytest.raises(WorkloadError, match="normalises 3 channels but toy's inputs have 4"):
        data.statistics_releases(nn.Sequential(ReleasedNormalization(3)))
    with pytest.raises(ValueError, match="model.normalization must be one of group, data"):
        ScatterLinear(4, 2, 2, groups=2, normalization="batch")


def test_a_run_with_released_normalisation_accounts_the_release_and_resumes_with_it(
        make_config, tmp_path, run_killed_after_first_checkpoint):
    cfg = make_config(*DIGITS, "model.normalization=data")
    summary = run_experiment(cfg, tmp_path / "run")
    releases = summary["statistics_releases"]
    assert [r["name"] for r in releases] == ["normalize.mean", "normalize.square"]
    assert {r["noise_multiplier"] for r in releases} == {8.0}
    assert summary["verdict"] == "VERIFIED" and 0.99 * 3 <= summary["epsilon"] <= 3
    plain = run_experiment(make_config(*DIGITS), tmp_path / "plain")
    # calibration left room for the two releases: a little more noise on the steps than without them
    assert summary["noise_multiplier"] > plain["noise_multiplier"]
    plan = TrainingPlan(1437, float(cfg.train.batch_size), int(cfg.train.epochs))
    assert plain["noise_multiplier"] == pytest.approx(calibrate_noise_multiplier(3.0, 1e-5, plan), rel=1e-6)
    # killed after its first epoch and resumed: the statistics come back with the checkpoint, not a new release
    resuming = make_config(*DIGITS, "model.normalization=data", "resume=true")
    run_killed_after_first_checkpoint(resuming, tmp_path / "resumed")
    resumed = run_experiment(resuming, tmp_path / "resumed")
    assert resumed["final_accuracy"] == summary["final_accuracy"] and resumed["epsilon"] == summary["epsilon"]
    metrics = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == cfg.train.epochs
