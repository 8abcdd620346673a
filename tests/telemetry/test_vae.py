"""The telemetry VAEs: per-example losses (the ghost engine's batch-of-one semantics), the hurdle
likelihood's gating, sampling, and one short private run through the harness end to end."""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_dir

from dpbench.cli import CONFIG_DIR
from dpbench.engine import GhostEngine
from dpbench.telemetry.vae import HurdleVAE, TabularVAE
from dpbench.telemetry.wide_table import WIDE_LAYOUT, build_wide_table
from dpbench.training.experiment import run_experiment


@pytest.fixture(scope="module")
def rows(small_corpus) -> torch.Tensor:
    return torch.from_numpy(build_wide_table(small_corpus[0]).features[:64])


@pytest.mark.parametrize("model_class", [TabularVAE, HurdleVAE])
def test_ghost_norms_match_per_example_backward(model_class, rows):
    torch.manual_seed(0)
    model = model_class(hidden=(32, 16), latent=4)
    x, y = rows[:6], torch.zeros(6, dtype=torch.long)
    torch.manual_seed(1)
    norms = GhostEngine(model, model.loss).per_sample_gradients(x, y).squared_norms().sum(dim=1)
    torch.manual_seed(1)
    noise = torch.randn(6, 4)  # the latent noise the batched forward drew
    expected = []
    for b in range(6):
        model.zero_grad()
        mu, logvar = model.encoder(x[b:b + 1]).chunk(2, dim=1)
        z = mu + noise[b:b + 1] * torch.exp(0.5 * logvar)
        output = torch.cat([model.decoder(z), mu, logvar, x[b:b + 1]], dim=1)
        model.loss(output, y[b:b + 1]).backward()
        expected.append(sum(p.grad.pow(2).sum() for p in model.parameters()))
    torch.testing.assert_close(norms, torch.stack(expected).double(), rtol=1e-4, atol=1e-6)


def test_hurdle_loss_ignores_values_of_absent_tables(rows):
    model = HurdleVAE(hidden=(32, 16), latent=4)
    absent = rows[(rows[:, WIDE_LAYOUT.bits["network.present"][0]] == 0)][:1]
    changed = absent.clone()
    changed[:, WIDE_LAYOUT.gaussians["network.received_rate"][0]] = 5.0
    decoded = torch.randn(1, model.decoder_outputs)
    assert model.reconstruction_loss(decoded, absent) == model.reconstruction_loss(decoded, changed)


def test_samples_are_valid_wide_rows():
    model = HurdleVAE(hidden=(32, 16), latent=4)
    sample = model.sample(500, torch.Generator().manual_seed(0))
    assert sample.shape == (500, WIDE_LAYOUT.width)
    for _, columns in WIDE_LAYOUT.categories.values():
        assert torch.all(sample[:, columns].sum(dim=1) == 1)
    for name, (column, gate) in WIDE_LAYOUT.bits.items():
        assert set(sample[:, column].unique().tolist()) <= {0.0, 1.0}
        if gate is not None:
            assert torch.all(sample[:, column] <= sample[:, gate]), name
    for column, gate, _ in WIDE_LAYOUT.gaussians.values():
        assert torch.all(sample[sample[:, gate] == 0, column] == 0)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["vae", "vae_hurdle"])
def test_private_run_writes_synthetic_tables_and_utility(model, tmp_path, monkeypatch):
    monkeypatch.setenv("DPBENCH_DATA_ROOT", str(tmp_path / "data"))
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[
            "dataset=telemetry", f"model={model}", "dataset.devices=3000", "model.hidden=[64,32]", "model.latent=8",
            "train.epochs=1", "train.batch_size=256", "train.physical_batch_size=256", "privacy.target_epsilon=4",
            "progress=false", f"paths.results={tmp_path / 'results'}"])
    summary = run_experiment(cfg, tmp_path / "run")
    assert summary["epsilon"] <= 4.0 and summary["final_accuracy"] is None
    utility = summary["utility"]
    assert utility["queries_evaluable"] >= 5 and len(utility["per_query"]) == 11
    assert (tmp_path / "run" / "synthetic" / "tables" / "system_web_cat_usage.parquet").exists()
    row = json.loads((tmp_path / "results" / "results.jsonl").read_text().splitlines()[-1])
    assert row["utility_queries_passed"] == utility["queries_passed"]
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "test_loss" in metrics[0] and "test_accuracy" not in metrics[0]
    ledger = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["state"]["ledger"]
    releases = [r for r in ledger if r["sampling_rate"] == 1.0]
    if model == "vae_hurdle":  # the marginals are released once, before the first step, and spent from the budget
        assert ledger[0] == releases[0] and len(releases) == 1 and releases[0]["mechanism"] == "telemetry_marginals"
        assert summary["statistics_releases"] == [{"name": "telemetry_marginals", "bound": releases[0]["sensitivity"],
                                                   "noise_multiplier": 2.0}]
        assert 0.99 * 4.0 <= summary["epsilon"] and (tmp_path / "run" / "released_marginals.npz").exists()
        assert utility["matched_to_marginals"]
    else:  # the published baseline cannot use them: nothing is released
        assert releases == [] and summary["statistics_releases"] == []
        assert not (tmp_path / "run" / "released_marginals.npz").exists()


def test_value_spreads_are_learnable_from_any_start(rows):
    """The log standard deviations get a gradient wherever the decoder starts (a clamp would stop it
    for every output outside its bounds, which is where an untrained decoder's outputs lie)."""
    model = HurdleVAE(hidden=(32, 16), latent=4)
    present = rows[rows[:, WIDE_LAYOUT.bits["network.present"][0]] == 1][:4]
    for start in (-10.0, 0.0, 10.0):
        decoded = torch.zeros(len(present), model.decoder_outputs)
        decoded[:, model.width:] = start
        decoded.requires_grad_(True)
        model.reconstruction_loss(decoded, present).sum().backward()
        network = [i for i, name in enumerate(WIDE_LAYOUT.gaussians) if name.startswith("network.")]
        assert torch.all(decoded.grad[:, model.width + torch.tensor(network)] != 0), start


@pytest.mark.slow
def test_a_resumed_run_does_not_release_the_marginals_again(tmp_path, monkeypatch, run_killed_after_first_checkpoint,
                                                            tiny_run_overrides):
    monkeypatch.setenv("DPBENCH_DATA_ROOT", str(tmp_path / "data"))
    overrides = tiny_run_overrides(tmp_path, "train.epochs=2")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg, resume = compose("config", overrides=overrides), compose("config", overrides=[*overrides, "resume=true"])
    run_killed_after_first_checkpoint(cfg, tmp_path / "run")
    released = (tmp_path / "run" / "released_marginals.npz").read_bytes()
    summary = run_experiment(resume, tmp_path / "run")
    ledger = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["state"]["ledger"]
    assert [r["mechanism"] for r in ledger].count("telemetry_marginals") == 1
    assert (tmp_path / "run" / "released_marginals.npz").read_bytes() == released
    assert summary["epsilon"] <= 4.0 and summary["utility"]["matched_to_marginals"]


@pytest.mark.slow
def test_a_researcher_form_plugin_is_verified_with_the_release_in_its_ledger(tmp_path, monkeypatch, tiny_run_overrides):
    monkeypatch.setenv("DPBENCH_DATA_ROOT", str(tmp_path / "data"))
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=tiny_run_overrides(tmp_path, "mechanism=example_plugin"))
    summary = run_experiment(cfg, tmp_path / "run")
    ledger = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["state"]["ledger"]
    assert ledger[0]["mechanism"] == "telemetry_marginals" and ledger[0]["noise_source"] == "harness"
    assert all(record["noise_source"] == "claimed" for record in ledger[1:])
    assert summary["contract"] == "researcher" and summary["verdict"] == "VERIFIED"
    assert 0.99 * 4.0 <= summary["epsilon"] <= 4.0  # the release is part of the verified epsilon
