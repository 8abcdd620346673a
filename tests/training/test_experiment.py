"""End-to-end runs on the embedded digits dataset: outputs, calibration, determinism, bad input."""

import json
import math
import time

import pandas as pd
import pytest
import torch

from dpbench.config_schema import ConfigKeyError, ConfigTargetError
from dpbench.errors import DpbenchError
from dpbench.privacy.calibration import PrivacyConfigError
from dpbench.privacy.mechanism import MechanismContractError
from dpbench.training.checkpoint import CheckpointError
from dpbench.training.experiment import RunDirectoryError, run_experiment
from mechanisms.examples.flat_clip_plugin import FlatClipPlugin


def test_run_writes_metrics_summary_and_results_row(make_config, tmp_path):
    cfg = make_config("train.epochs=3")
    summary = run_experiment(cfg, tmp_path / "run")
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert "train_loss_nonprivate" not in metrics[0]  # un-noised: only with nonprivate_diagnostics=true
    assert {"test_accuracy", "epsilon", "noise_multiplier", "seconds", "samples_per_second"} <= set(metrics[0])
    assert metrics[0]["epsilon"] < metrics[1]["epsilon"] < metrics[2]["epsilon"]
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["epsilon"] == summary["epsilon"] == metrics[-1]["epsilon"]
    # Calibration: exactly the target is spent (within 1% below), as the independent accountant confirms.
    assert 0.99 * 3.0 <= summary["epsilon"] <= 3.0
    assert summary["epsilon_dp_accounting_rdp"] == pytest.approx(summary["epsilon"], rel=0.01)
    assert summary["steps"] == 3 * round(1437 / 256)
    assert summary["contract"] == "structured" and summary["verdict"] == "VERIFIED"
    assert summary["verdict_detail"].startswith("VERIFIED (kernel")
    table = pd.read_json(tmp_path / "results" / "results.jsonl", lines=True)
    assert len(table) == 1 and table.loc[0, "mechanism"] == "fixed"
    assert table.loc[0, "final_accuracy"] == pytest.approx(summary["final_accuracy"], rel=1e-12)


@pytest.mark.slow
def test_same_seed_same_run_other_seed_other_run(make_config, tmp_path):
    first = run_experiment(make_config("seed=5"), tmp_path / "a")
    again = run_experiment(make_config("seed=5"), tmp_path / "b")
    run_experiment(make_config("seed=6"), tmp_path / "c")
    weights = lambda d: torch.load(tmp_path / d / "checkpoint.pt", weights_only=False)["model"]  # noqa: E731
    assert all(torch.equal(weights("a")[k], weights("b")[k]) for k in weights("a"))
    assert first["final_accuracy"] == again["final_accuracy"]
    assert not all(torch.equal(weights("a")[k], weights("c")[k]) for k in weights("a"))


@pytest.mark.slow
def test_kill_and_resume_reproduces_the_uninterrupted_run(make_config, tmp_path, run_killed_after_first_checkpoint):
    schedule = ("train.epochs=3", "train.lr_schedule=cosine", "train.warmup_epochs=1")  # the rate depends on the step
    straight = run_experiment(make_config(*schedule), tmp_path / "straight")
    run_killed_after_first_checkpoint(make_config(*schedule), tmp_path / "killed")
    assert not (tmp_path / "killed" / "summary.json").exists()
    with pytest.raises(RunDirectoryError, match="resume=true"):
        run_experiment(make_config(*schedule), tmp_path / "killed")
    resumed = run_experiment(make_config(*schedule, "resume=true"), tmp_path / "killed")

    load = lambda d: torch.load(tmp_path / d / "checkpoint.pt", weights_only=False)  # noqa: E731
    assert load("killed")["state"]["ledger"] == load("straight")["state"]["ledger"]
    assert resumed["epsilon"] == straight["epsilon"]
    assert resumed["final_accuracy"] == straight["final_accuracy"]
    assert all(torch.equal(load("killed")["model"][k], load("straight")["model"][k]) for k in load("straight")["model"])


def test_resume_with_a_different_config_is_refused(make_config, tmp_path, monkeypatch):
    import dpbench.training.experiment as experiment

    real_save = experiment.save_checkpoint
    monkeypatch.setattr(experiment, "save_checkpoint", lambda *a, **k: (real_save(*a, **k), exit(1)))
    with pytest.raises(SystemExit):
        run_experiment(make_config(), tmp_path / "run")
    monkeypatch.setattr(experiment, "save_checkpoint", real_save)
    with pytest.raises(RunDirectoryError, match=r"config differs .* at train\.lr \(then 0\.1, now 0\.37\)"):
        run_experiment(make_config("resume=true", "train.lr=0.37"), tmp_path / "run")


def test_a_run_resumes_after_its_results_folder_moved(make_config, tmp_path, run_killed_after_first_checkpoint):
    run_killed_after_first_checkpoint(make_config(f"paths.results={tmp_path / 'old'}"), tmp_path / "old" / "run")
    (tmp_path / "old").rename(tmp_path / "new")
    resumed = run_experiment(make_config(f"paths.results={tmp_path / 'new'}", "resume=true"), tmp_path / "new" / "run")
    assert resumed["steps"] == 2 * round(1437 / 256)


@pytest.mark.slow
@pytest.mark.parametrize("kept", [0.0, 0.5], ids=["empty", "truncated"])
def test_a_damaged_checkpoint_is_named_with_the_fix(make_config, tmp_path, run_killed_after_first_checkpoint, kept):
    run_killed_after_first_checkpoint(make_config(), tmp_path / "run")
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    content = checkpoint.read_bytes()
    checkpoint.write_bytes(content[: int(kept * len(content))])
    with pytest.raises(CheckpointError, match="overwrite=true") as caught:
        run_experiment(make_config("resume=true"), tmp_path / "run")
    assert str(checkpoint) in str(caught.value)
    assert run_experiment(make_config("overwrite=true"), tmp_path / "run")["status"] == "finished"


def test_wall_seconds_measure_the_whole_run_and_training_seconds_the_epochs(make_config, tmp_path, monkeypatch):
    import dpbench.engine.choice as choice

    real_check = choice.check_engine
    monkeypatch.setattr(choice, "check_engine", lambda *a: (time.sleep(1.0), real_check(*a)))  # before training
    summary = run_experiment(make_config("train.epochs=1"), tmp_path / "run")
    assert 0 < summary["training_seconds"]
    assert summary["wall_seconds"] >= summary["training_seconds"] + 1.0


def test_finished_run_is_not_redone(make_config, tmp_path):
    first = run_experiment(make_config(), tmp_path / "run")
    (tmp_path / "run" / "checkpoint.pt").unlink()  # a rerun would need it; a skipped one does not
    assert run_experiment(make_config(), tmp_path / "run") == first


def test_researcher_form_example_plugin_is_probed_and_verified(make_config, tmp_path):
    summary = run_experiment(make_config("mechanism=example_plugin", "verify.max_overhead=null"), tmp_path / "run")
    assert summary["contract"] == "researcher"
    assert summary["verdict"] == "VERIFIED"
    assert summary["verification"]["steps_probed"] >= 2  # the first step of each of the 2 epochs at least
    assert summary["epsilon"] == summary["epsilon_claimed"]
    assert 0.99 * 3.0 <= summary["epsilon"] <= 3.0


def test_researcher_form_run_without_probing_is_unverified(make_config, tmp_path):
    summary = run_experiment(make_config("mechanism=example_plugin", "verify.probe_rate=0"), tmp_path / "run")
    assert summary["verdict"] == "UNVERIFIED"


class HalfNoisePlugin(FlatClipPlugin):
    """Adds half the noise it reports: the verifier must catch it and account the measured sigma."""

    def clip_and_noise(self, per_sample_grads, step, epoch):
        batch = per_sample_grads[0].shape[0]
        norms = torch.sqrt(sum(g.reshape(batch, -1).pow(2).sum(dim=1) for g in per_sample_grads))
        scale = torch.clamp(self.max_grad_norm / (norms + 1e-12), max=1.0)
        std = 0.5 * self.noise_multiplier * self.max_grad_norm
        return [
            (torch.einsum("b,b...->...", scale, g) + std * torch.randn(g.shape[1:])) / self.expected_batch_size
            for g in per_sample_grads
        ]


def test_a_plugin_adding_less_noise_than_it_claims_is_a_violation_with_a_higher_epsilon(make_config, tmp_path):
    summary = run_experiment(make_config(target_of(HalfNoisePlugin), "verify.max_overhead=null"), tmp_path / "run")
    assert summary["verdict"] == "VIOLATION"
    assert summary["epsilon_claimed"] <= 3.0 < summary["epsilon"]
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["epsilon"] == pytest.approx(summary["epsilon"], rel=1e-9)


class WrongShapePlugin(FlatClipPlugin):
    def clip_and_noise(self, per_sample_grads, step, epoch):
        return [g.sum(dim=0).flatten() for g in per_sample_grads]


class NaNPlugin(FlatClipPlugin):
    def clip_and_noise(self, per_sample_grads, step, epoch):
        return [torch.full(g.shape[1:], math.nan) for g in per_sample_grads]


class NoSigmaPlugin(FlatClipPlugin):
    def get_effective_sigma(self, step, epoch):
        return None


def target_of(cls: type) -> str:
    return f"mechanism._target_={cls.__module__}.{cls.__qualname__}"


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (["privacy.target_epsilon=0"], PrivacyConfigError, "target epsilon must be"),
        (["privacy.target_epsilon=-2"], PrivacyConfigError, "target epsilon must be"),
        (["privacy.target_delta=0.001"], PrivacyConfigError, "1/N"),
        (["train.batch_size=5000"], PrivacyConfigError, "q must be in"),
        (["mechanism._target_=no_such_module.Mechanism"], ConfigTargetError, "mechanism=NAME .*conf/mechanism/NAME"),
        ([target_of(WrongShapePlugin)], MechanismContractError, "shape"),
        ([target_of(NaNPlugin)], MechanismContractError, "NaN"),
        ([target_of(NoSigmaPlugin)], MechanismContractError, "get_effective_sigma"),
        (["mechanism._target_=torch.nn.Linear"], MechanismContractError, "neither"),
        (["+privacy.epsilon=-1"], ConfigKeyError, r"'privacy\.epsilon' \(did you mean 'privacy\.target_epsilon'\?\)"),
        (["+train.lrr=0.3"], ConfigKeyError, r"'train\.lrr' \(did you mean 'train\.lr'\?\)"),
        (["+model.num_clases=3"], ConfigKeyError, r"did you mean 'model\.num_classes'.*DigitsTanhCNN takes num_classes"),
        (["+mechanism.max_grad_nrom=2"], ConfigKeyError, r"did you mean 'mechanism\.max_grad_norm'"),
        (["model._target_=no_such_module.Model"], ConfigTargetError, "model._target_=no_such_module.Model cannot be"),
        (["train.parameter_ema=1.0"], DpbenchError, r"decay must be in \[0, 1\)"),
    ],
)
def test_bad_input_gets_a_clear_error(make_config, tmp_path, overrides, error, message):
    with pytest.raises(error, match=message):
        run_experiment(make_config(*overrides), tmp_path / "run")


def test_missing_dataset_names_the_root_and_the_fix(make_config, tmp_path):
    with pytest.raises(Exception, match="prepare.sh") as caught:
        run_experiment(make_config("dataset=mnist", f"dataset.root={tmp_path / 'empty'}"), tmp_path / "run")
    assert str(tmp_path / "empty") in str(caught.value)


def test_parameter_ema_changes_evaluation_only(make_config, tmp_path):
    plain = run_experiment(make_config("seed=3"), tmp_path / "plain")
    averaged = run_experiment(make_config("seed=3", "train.parameter_ema=0.9"), tmp_path / "ema")
    load = lambda d: torch.load(tmp_path / d / "checkpoint.pt", weights_only=False)  # noqa: E731
    # Training (ledger, trained weights) is untouched: the average is post-processing.
    assert load("ema")["state"]["ledger"] == load("plain")["state"]["ledger"]
    assert all(torch.equal(load("ema")["model"][k], load("plain")["model"][k]) for k in load("plain")["model"])
    assert averaged["epsilon"] == plain["epsilon"]
    # Evaluation used the averaged parameters, which differ from the trained ones.
    from dpbench.data import load_dataset
    from dpbench.data.splits import accuracy
    from dpbench.models import DigitsTanhCNN

    model = DigitsTanhCNN()
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    average = load("ema")["state"]["parameter_average"]
    assert not all(torch.equal(a, load("ema")["model"][n]) for a, n in zip(average, trainable))
    model.load_state_dict({**load("ema")["model"], **dict(zip(trainable, average))})
    data = load_dataset("digits")
    assert averaged["final_accuracy"] == accuracy(model, data.test_features, data.test_labels, torch.device("cpu"))
