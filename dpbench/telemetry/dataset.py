"""``dataset=telemetry``: the wide table of a corpus of reporting tables, as a dpbench dataset.

The corpus is a user's real tables (``path=DIR``) or, by default, a simulated corpus of ``devices``
devices, written once under ``root/telemetry/`` and reused. Each device is one example (so
example-level DP is device-level DP); a fixed share is held out to measure the model's test loss.
Labels are zeros: the models are generative and read their target from the row itself.

For a model that can be matched to marginals (the hurdle VAE), the run first releases the one-way
marginals of the training rows with DP (:mod:`dpbench.telemetry.marginals`; the release's cost is part
of the calibrated budget and of the ledger) and keeps them in the run directory. After training,
:meth:`TelemetrySplits.utility` samples as many synthetic devices as the corpus has, matched to
those marginals, decodes them into reporting tables in the run directory and scores the benchmark
queries against the same queries on the input corpus (:mod:`dpbench.telemetry.synthesis`);
:func:`synthesize_run` does the same later from a run directory's configuration, checkpointed model
and released marginals.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dpbench.privacy.example_split import held_out
from dpbench.privacy.ledger import StepRecord
from dpbench.privacy.statistics_release import StatisticsRelease
from dpbench.reporting.run_files import RunFiles
from dpbench.telemetry.corpus import open_corpus
from dpbench.telemetry.marginals import (
    RELEASED_FILE,
    Marginals,
    load_released,
    marginals_release,
    release_marginals,
    save_released,
)
from dpbench.telemetry.schema import DEVICE_TABLE
from dpbench.telemetry.simulator import simulated_corpus
from dpbench.telemetry.synthesis import synthesize_and_score
from dpbench.telemetry.wide_table import build_wide_table
from dpbench.training.checkpoint import load_released_model
from dpbench.workload import LossFunction, Workload, WorkloadError, mean_test_loss

log = logging.getLogger("dpbench")


@dataclass(frozen=True)
class TelemetrySplits(Workload):
    """Wide rows of a telemetry corpus (one per device; labels are placeholders the generative models ignore),
    with where the corpus lives (the utility reference). Loss: the model's own (a VAE's negative ELBO);
    evaluation: its mean on the test devices."""

    tables_dir: Path = Path()
    n_devices: int = 0
    marginals_noise_multiplier: float | None = None

    def loss(self, model: torch.nn.Module) -> LossFunction:
        if not callable(getattr(model, "loss", None)):
            raise WorkloadError(f"dataset=telemetry trains a generative model that defines its own loss; "
                                f"{type(model).__name__} does not: use model=vae_hurdle or model=vae")
        return model.loss

    def evaluate(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        return {"test_loss": mean_test_loss(model, model.loss, self.test_features, self.test_labels, device)}

    def statistics_releases(self, model: torch.nn.Module) -> tuple[StatisticsRelease, ...]:
        """What this run releases before training: the marginals, for a model that is matched to them."""
        if self.marginals_noise_multiplier is None or not hasattr(model, "match_marginals"):
            return ()
        return (marginals_release(self.marginals_noise_multiplier),)

    def release_statistics(self, model: torch.nn.Module, run_dir: Path, generator: torch.Generator) -> list[StepRecord]:
        """Release the marginals of the training rows into ``run_dir`` (see :meth:`statistics_releases`);
        returns the ledger records of what was released."""
        records = []
        for release in self.statistics_releases(model):
            noisy_sum = release_marginals(self.train_features, release, generator)
            save_released(Path(run_dir) / RELEASED_FILE, noisy_sum, self.train_size, release)
            log.info("released the marginals of %d training rows (noise multiplier %.3g, bound %.3g)",
                     self.train_size, release.noise_multiplier, release.bound)
            records.append(release.record())
        return records

    def utility(self, model: torch.nn.Module, run_dir: Path, seed: int) -> dict:
        """Synthesize ``n_devices`` devices into ``run_dir/synthetic/`` and score the queries."""
        marginals = _released_marginals(Path(run_dir), bool(self.statistics_releases(model)))
        utility = synthesize_and_score(model, self.n_devices, self.tables_dir, Path(run_dir) / "synthetic", seed,
                                       marginals)
        log.info("synthetic data: %s (%.0f s)", utility["headline"], utility["seconds"])
        return utility


def _released_marginals(run_dir: Path, expected: bool) -> Marginals | None:
    path = run_dir / RELEASED_FILE
    if expected and not path.exists():
        raise FileNotFoundError(f"{path} is missing: this run released the training rows' marginals before "
                                "training and synthesis is matched to them; start the run again (overwrite=true)")
    return load_released(path) if expected else None


def corpus_dir(path: str | None, devices: int, simulation_seed: int, root: str, world: int | None = None) -> Path:
    """The directory of input tables: ``path`` if given, else the (cached) simulated corpus of ``world``
    (None: the calibrated world; an int K: world K of the family, :mod:`.world_family`)."""
    if path is not None:
        return Path(path).expanduser()
    return simulated_corpus(devices, simulation_seed, root, world)


def load_telemetry(path: str | None = None, devices: int = 20_000, simulation_seed: int = 0,
                   root: str = "data_root", test_fraction: float = 0.05, split_seed: int = 0,
                   marginals_noise_multiplier: float | None = None, world: int | None = None) -> TelemetrySplits:
    """The wide table of the tables in ``path``, or of ``devices`` simulated devices cached under ``root``;
    ``marginals_noise_multiplier``: release the training rows' marginals at that noise for synthesis
    to be matched to (None: synthesis uses the model alone)."""
    tables_dir = corpus_dir(path, devices, simulation_seed, root, world)
    wide = build_wide_table(tables_dir)
    n = len(wide.guids)
    # each device's side by a hash of its own guid: one device added to or removed from the corpus moves no
    # other between training and test (a permutation of range(n) moved most of them)
    test = held_out((str(guid) for guid in wide.guids), test_fraction, split_seed)
    if not 0 < int(test.sum()) < n:
        raise ValueError(f"dataset.test_fraction={test_fraction} held out {int(test.sum())} of {n} devices: the "
                         "test split needs at least one device and leaves at least one for training")
    features = torch.from_numpy(wide.features)
    train = ~test
    zeros = torch.zeros(n, dtype=torch.int64)
    return TelemetrySplits(
        name="telemetry", train_features=features[train], train_labels=zeros[train],
        test_features=features[test], test_labels=zeros[test], tables_dir=tables_dir, n_devices=n,
        marginals_noise_multiplier=marginals_noise_multiplier,
    )


def synthesize_run(run_dir: Path | str, out_dir: Path | str | None = None, seed: int | None = None,
                   released: Path | str | None = None) -> dict:
    """Sample from a telemetry run's checkpointed model (its parameter EMA when the run kept one), matched
    to the run's released marginals if it released them (or to those saved in ``released``), decode into
    ``out_dir/tables`` (default ``run_dir/synthetic``), score against the run's input corpus.

    As many devices as the corpus has are sampled, with the run's seed unless ``seed`` is given. Only
    what the run released (model, marginals) is read, so this is post-processing: it spends no privacy.
    """
    files = RunFiles(Path(run_dir))
    for needed in (files.config, files.checkpoint):
        if not needed.exists():
            raise FileNotFoundError(f"{needed} does not exist: pass the directory of a telemetry run "
                                    "(it holds config.yaml and checkpoint.pt)")
    cfg = OmegaConf.load(files.config)
    if cfg.dataset.get("_target_") != f"{__name__}.load_telemetry":
        raise ValueError(f"{files.dir} is a run on dataset {cfg.dataset.get('_target_')}, not telemetry")
    tables_dir = corpus_dir(cfg.dataset.path, cfg.dataset.devices, cfg.dataset.simulation_seed, cfg.dataset.root,
                            cfg.dataset.get("world"))
    model = instantiate(cfg.model)
    epoch, averaged = load_released_model(files.checkpoint, model)
    n_devices = open_corpus(tables_dir, [DEVICE_TABLE])[DEVICE_TABLE].num_rows
    released = Path(released) if released is not None else files.dir / RELEASED_FILE
    marginals = load_released(released) if released.exists() else None
    utility = synthesize_and_score(model, n_devices, tables_dir, Path(out_dir or files.dir / "synthetic"),
                                   cfg.seed if seed is None else seed, marginals)
    return utility | {"epoch": epoch, "parameter_ema": averaged}
