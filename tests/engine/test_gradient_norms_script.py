"""scripts/gradient_norms.py measures a finished run's per-example gradient norms (checked against autograd one
example at a time) and where the bound of its last step sits among them."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from script_loader import load_script

from dpbench.training.checkpoint import read_checkpoint
from dpbench.training.experiment import run_experiment

CONF = Path(__file__).resolve().parents[2] / "conf"



@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["train.epochs=1", "progress=false", f"paths.results={root}",
                                           "train.max_grad_norm=0.05"])
    run_experiment(cfg, root / "run")
    return root / "run"


def test_norms_are_each_examples_own_gradient_norm(finished_run):
    norms, bound = load_script("gradient_norms").norms_and_bound(finished_run, examples=6)
    cfg = OmegaConf.load(finished_run / "config.yaml")
    data, model = instantiate(cfg.dataset), instantiate(cfg.model)
    model.load_state_dict(read_checkpoint(finished_run / "checkpoint.pt")["model"])
    loss = data.loss(model)
    expected = []
    for i in range(6):
        model.zero_grad()
        loss(model(data.train_features[i:i + 1]), data.train_labels[i:i + 1]).backward()
        expected.append(torch.sqrt(sum(p.grad.double().pow(2).sum() for p in model.parameters())).item())
    np.testing.assert_allclose(norms, expected, rtol=1e-4)
    assert bound == pytest.approx(0.05)


def test_the_summary_says_what_the_bound_clips(finished_run):
    script = load_script("gradient_norms")
    norms, bound = script.norms_and_bound(finished_run, examples=200)
    line = script.describe(norms, bound)
    assert f"clips {np.mean(norms > bound):.1%}" in line and "200 examples" in line
    assert script.describe(np.array([0.0, 1.0, 2.0, 3.0]), 1.5).endswith("S = 1.5 clips 50.0%")
