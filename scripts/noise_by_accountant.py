"""How much noise each accountant's calibration needs at the same target, for every dataset preset.

    python scripts/noise_by_accountant.py [--epsilon 3] [--delta 1e-5]

For each preset (its batch size and epochs from conf/, its training-set size from the data), the noise
multiplier calibrated to spend exactly the target under RDP (the default), dp_accounting's PLD and
Opacus's PRV, and the saving of PLD over RDP. No training: the accuracy a smaller multiplier buys needs
runs (``python -m dpbench dataset=... privacy.accountant=pld``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hydra import compose, initialize_config_dir

from dpbench.privacy.calibration import TrainingPlan, calibrate_noise_multiplier

CONF = str(Path(__file__).resolve().parents[1] / "conf")
# Training-set sizes of the datasets (a ScatterNet dataset has its source's examples).
TRAIN_SIZES = {"digits": 1437, "mnist": 60_000, "fmnist": 60_000, "cifar10": 50_000}
PRESETS = ["digits", "mnist", "fmnist", "cifar10", "mnist_scattering", "fmnist_scattering", "cifar10_scattering"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epsilon", type=float, default=3.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    args = parser.parse_args()
    print(f"| preset | N | batch | epochs | z RDP | z PLD | z PRV | PLD saves (eps={args.epsilon:g}) |")
    print("|---|---|---|---|---|---|---|---|")
    for preset in PRESETS:
        with initialize_config_dir(config_dir=CONF, version_base="1.3"):
            cfg = compose("config", overrides=[f"dataset={preset}"])
        size = TRAIN_SIZES[preset.removesuffix("_scattering")]
        plan = TrainingPlan(size, float(cfg.train.batch_size), int(cfg.train.epochs))
        z = {a: calibrate_noise_multiplier(args.epsilon, args.delta, plan, accountant=a) for a in ("rdp", "pld", "prv")}
        print(
            f"| {preset} | {size} | {plan.expected_batch_size:g} | {plan.epochs} | {z['rdp']:.4f} | {z['pld']:.4f} | "
            f"{z['prv']:.4f} | {1 - z['pld'] / z['rdp']:.1%} |"
        )


if __name__ == "__main__":
    main()
