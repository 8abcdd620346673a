"""What a private search's law of K costs: the noise every trial gets so that the whole search spends the target.

    python scripts/tuning_cost.py [--preset mnist_scattering] [--epsilon 3] [--delta 1e-5]

For one preset (its batch size and epochs from conf/, its training set less the validation split), the
noise multiplier of an untuned run and, for each law of the number of trials K (mean, shape), the
multiplier of the search's reference trial (:class:`dpbench.privacy.search_budget.SearchBudget`: the trial
and its noised validation score repeated K times, the best released; dp_accounting's RepeatAndSelectDpEvent),
one trial's own epsilon, and how often K exceeds twice its mean (the compute a law may ask for). No training.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

from dpbench.privacy.accountant import epsilon
from dpbench.privacy.calibration import TrainingPlan, calibrate_noise_multiplier, constant_shape, planned_ledger
from dpbench.privacy.search_budget import SearchBudget
from dpbench.privacy.statistics_release import StatisticsRelease
from dpbench.privacy.tuning import TrialCount
from dpbench.training.validation import SCORE_RELEASE

CONF = str(Path(__file__).resolve().parents[1] / "conf")
TRAIN_SIZES = {"digits": 1437, "mnist": 60_000, "fmnist": 60_000, "cifar10": 50_000}
LAWS = [(2, 0.0), (3, 0.0), (6, 0.0), (3, 0.5), (3, 1.0), (6, 1.0), (10, 1.0), (3, math.inf), (6, math.inf)]
SHAPE_NAMES = {0.0: "logarithmic", 1.0: "geometric", math.inf: "Poisson"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="mnist_scattering")
    parser.add_argument("--epsilon", type=float, default=3.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    args = parser.parse_args()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=[f"dataset={args.preset}", "+tune=private"])
    size = TRAIN_SIZES[args.preset.removesuffix("_scattering")]
    held_out = round(size * float(cfg.tune.validation_fraction))
    score = StatisticsRelease(SCORE_RELEASE, bound=1.0, noise_multiplier=float(cfg.tune.score_noise))
    trial = TrainingPlan(size - held_out, float(cfg.train.batch_size), int(cfg.train.epochs), (score,))
    untuned = calibrate_noise_multiplier(args.epsilon, args.delta, TrainingPlan(size, trial.expected_batch_size,
                                                                                trial.epochs))
    rng = np.random.default_rng(0)
    print(f"{args.preset}: N = {size} ({held_out} held out in a search), batch {trial.expected_batch_size:g}, "
          f"{trial.epochs} epochs, total epsilon {args.epsilon:g}, delta {args.delta:g}; untuned run: z = {untuned:.3f}")
    print("| K's law | mean K | z per trial | x untuned | one trial's epsilon | P(K > 2 mean) |")
    print("|---|---|---|---|---|---|")
    for mean, shape in LAWS:
        law = TrialCount(float(mean), shape)
        budget = SearchBudget(args.epsilon, args.delta, law, trial)
        z = budget.reference_multiplier
        alone = epsilon(planned_ledger(trial, z, constant_shape), args.delta)
        tail = np.mean([law.sample(rng) > 2 * mean for _ in range(20_000)])
        name = SHAPE_NAMES.get(shape, f"neg. binomial, shape {shape:g}")
        print(f"| {name} | {mean:g} | {z:.3f} | {z / untuned:.2f} | {alone:.3f} | {tail:.3f} |")


if __name__ == "__main__":
    main()
