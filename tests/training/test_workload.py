"""The workload interface: a new workload is a few lines, the experiment calls only the interface, and what a
workload releases before training must be what it declared (noise calibration accounted for exactly that)."""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf, open_dict
from torch import nn

from dpbench.privacy.ledger import StepRecord
from dpbench.privacy.statistics_release import StatisticsRelease
from dpbench.training.experiment import run_experiment
from dpbench.workload import LossFunction, Workload, WorkloadError, mean_test_loss

WEIGHTS = torch.tensor([1.0, -2.0, 0.5, 0.0])


@dataclass(frozen=True)
class ToyRegression(Workload):
    """Least squares on y = x . w: mean squared error, test MSE, and a utility that writes the learned weights."""

    def loss(self, model: nn.Module) -> LossFunction:
        return lambda output, target: F.mse_loss(output[:, 0], target)

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        return {"test_mse": mean_test_loss(model, self.loss(model), self.test_features, self.test_labels, device)}

    def utility(self, model: nn.Module, run_dir: Path, seed: int) -> dict:
        learned = model.weight.detach()[0].cpu()
        torch.save(learned, Path(run_dir) / "weights.pt")
        return {"weight_error": float((learned - WEIGHTS).norm())}


def toy_regression(rows: int = 2000, seed: int = 0) -> ToyRegression:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 4, generator=generator)
    y = x @ WEIGHTS + 0.05 * torch.randn(rows, generator=generator)
    return ToyRegression("toy_regression", x[200:], y[200:], x[:200], y[:200])


@dataclass(frozen=True)
class UndeclaredRelease(ToyRegression):
    """Declares one statistics release and makes another, with less noise than calibration accounted for."""

    def statistics_releases(self, model: nn.Module) -> tuple[StatisticsRelease, ...]:
        return (StatisticsRelease("feature_sums", bound=1.0, noise_multiplier=4.0),)

    def release_statistics(self, model: nn.Module, run_dir: Path, generator: torch.Generator) -> list[StepRecord]:
        return [StatisticsRelease("feature_sums", bound=1.0, noise_multiplier=0.5).record()]


def undeclared_release() -> UndeclaredRelease:
    toy = toy_regression()
    return UndeclaredRelease(toy.name, toy.train_features, toy.train_labels, toy.test_features, toy.test_labels)


def not_a_workload() -> dict:
    return {"train": torch.zeros(3, 4)}


def with_dataset(cfg, target: str, *overrides: str):
    """``cfg`` with its dataset replaced by ``target`` (a function of this module) and a linear model."""
    with open_dict(cfg):
        cfg.dataset = OmegaConf.create({"_target_": f"{__name__}.{target}"})
        cfg.model = OmegaConf.create({"_target_": "torch.nn.Linear", "in_features": 4, "out_features": 1})
        cfg.train.lr = 0.5
        cfg.train.batch_size = 200
    for override in overrides:
        key, value = override.split("=")
        OmegaConf.update(cfg, key, OmegaConf.create({"v": value}).v, force_add=True)
    return cfg


def test_a_toy_workload_trains_privately_through_the_interface(make_config, tmp_path):
    summary = run_experiment(with_dataset(make_config("train.epochs=5"), "toy_regression"), tmp_path / "run")
    assert 0.99 * 3.0 <= summary["epsilon"] <= 3.0 and summary["verdict"] == "VERIFIED"
    assert summary["final_accuracy"] is None  # not a classifier: its own metrics instead
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 5 and '"test_mse"' in metrics[-1]
    # It learned: the weights moved most of the way from the initialisation towards the truth.
    assert summary["utility"]["weight_error"] < 0.3 * float(WEIGHTS.norm())
    assert torch.load(tmp_path / "run" / "weights.pt").shape == (4,)
    row = json.loads((tmp_path / "results" / "results.jsonl").read_text().splitlines()[-1])
    assert row["utility_weight_error"] == summary["utility"]["weight_error"]


def test_a_release_other_than_the_declared_one_is_refused(make_config, tmp_path):
    with pytest.raises(RuntimeError, match="declared the releases \\['feature_sums'\\]"):
        run_experiment(with_dataset(make_config(), "undeclared_release"), tmp_path / "run")


def test_a_dataset_target_that_is_not_a_workload_is_refused(make_config, tmp_path):
    with pytest.raises(WorkloadError, match="not a dpbench Workload.*docs/workloads.md"):
        run_experiment(with_dataset(make_config(), "not_a_workload"), tmp_path / "run")


def test_an_audit_needs_a_classification_workload(make_config, tmp_path):
    with pytest.raises(WorkloadError, match="audit need a classification workload"):
        run_experiment(with_dataset(make_config("audit.enabled=true"), "toy_regression"), tmp_path / "run")
