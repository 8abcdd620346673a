"""``python -m dpbench.search [overrides]``: a private random search whose cost is in the reported epsilon.

    python -m dpbench.search mechanism=adaptive dataset=mnist_scattering dataset.verify_checksums=false
    python -m dpbench.search mechanism=fixed tune.trials_mean=5 hydra/launcher=joblib hydra.launcher.n_jobs=2

Draws the secret number of trials K and K configurations from ``conf/search_space/<mechanism>.yaml``
(once: the plan is kept in ``<results>/searches/<overrides>/search.json``, so a killed search
launched again resumes with the same trials), runs the trials as one Hydra multirun through the
configured launcher (basic, joblib, submitit), each calibrated so that the whole search spends
``privacy.target_epsilon``, and selects the trial with the best noised validation score. The result
(``result.json`` beside the plan) names the trial, its test accuracy and the search's epsilon; only
the selected trial may be published, and K never.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from dpbench.privacy.noise import entropy_seed
from dpbench.privacy.tuning import TrialCount
from dpbench.search.plan import TRIAL_GROUP, SearchPlan, draw_plan
from dpbench.search.selection import RESULT_FILE, select_best
from dpbench.search.space import SearchSpaceError, load_space

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")
LAUNCHER_PREFIXES = ("hydra/launcher=", "hydra.launcher.")
PINNED_TUNE_KEYS = ("tune.reference_batch_size", "tune.reference_epochs")
log = logging.getLogger("dpbench.search")


class SearchDirectoryError(RuntimeError):
    """The search directory holds a plan made for other settings."""


EXECUTION_PREFIXES = ("paths.", "progress=", "device=", "resume=", "overwrite=")


def search_name(overrides: list[str]) -> str:
    """The search's directory name: its overrides, less those that change only how it runs."""
    defining = sorted(o for o in overrides if not o.startswith(EXECUTION_PREFIXES))
    return ",".join(defining).replace("/", "_") or "default"


def compose_base(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=["+tune=private", *overrides])


def plan_search(cfg: DictConfig, overrides: list[str], directory: Path) -> SearchPlan:
    """The kept plan, or a new one drawn now (from OS entropy unless ``tune.seed`` is set)."""
    plan = SearchPlan.load(directory)
    if plan is not None:
        if plan.base_overrides != overrides:
            raise SearchDirectoryError(
                f"{directory} holds a search planned for {plan.base_overrides}, not {overrides}; a plan is never "
                "re-drawn (that would void the tuning bound): use another paths.results"
            )
        return plan
    tune = cfg.tune
    space = load_space(str(tune.space))
    fixed_by_hand = sorted({o.split("=", 1)[0].lstrip("+~") for o in overrides} & {d.key for d in space.dimensions})
    if fixed_by_hand:
        raise SearchSpaceError(
            f"{', '.join(fixed_by_hand)} {'is' if len(fixed_by_hand) == 1 else 'are'} searched by the '{space.name}' space; "
            "drop the override, or write a search space without it (tune.space=NAME)"
        )
    base_values = {d.key: OmegaConf.select(cfg, d.key) for d in space.dimensions}
    seed = entropy_seed() if tune.seed is None else int(tune.seed)
    law = TrialCount(float(tune.trials_mean), float(tune.trials_shape))
    rng = np.random.default_rng(seed)
    plan = draw_plan(space, base_values, law, rng, overrides, int(cfg.train.batch_size), int(cfg.train.epochs))
    plan.save(directory)
    return plan


def trial_command(plan: SearchPlan, directory: Path, launcher: list[str]) -> list[str]:
    """One Hydra multirun over the trials' config files, through the configured launcher."""
    ids = ",".join(plan.trial_id(i) for i in range(plan.count))
    return [
        sys.executable, "-m", "dpbench", "-m",
        "+tune=private",
        f"+{TRIAL_GROUP}={ids}",  # after tune: a trial's file sets tune.trial
        f"hydra.searchpath=['file://{directory / 'configs'}']",
        *plan.base_overrides,
        f"tune.reference_batch_size={plan.reference_batch_size}",
        f"tune.reference_epochs={plan.reference_epochs}",
        f"paths.results='{directory}'",
        "resume=true",
        *launcher,
    ]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    arguments = list(sys.argv[1:] if argv is None else argv)
    launcher = [a for a in arguments if a.startswith(LAUNCHER_PREFIXES)]
    overrides = [a for a in arguments if a not in launcher and not a.startswith(PINNED_TUNE_KEYS)]
    try:
        cfg = compose_base(overrides)
        directory = Path(cfg.paths.results) / "searches" / search_name(overrides)
        plan = plan_search(cfg, overrides, directory)
    except (SearchSpaceError, SearchDirectoryError, ValueError) as error:
        print(f"dpbench.search: {error}", file=sys.stderr)
        return 1
    if plan.count == 0:
        (directory / RESULT_FILE).write_text(json.dumps({"released": None, "reason": "K = 0"}) + "\n")
        log.info("the search drew no trial (a Poisson K of 0): nothing is released")
        return 0
    log.info("search in %s: %d trials planned (keep this number private)", directory, plan.count)
    subprocess.run(trial_command(plan, directory, launcher), check=False)
    result = select_best(directory, plan)
    (directory / RESULT_FILE).write_text(json.dumps(result, indent=2) + "\n")
    if result["released"] is None:
        log.error("no trial finished; see the run directories under %s", directory / "runs")
        return 1
    best = result["released"]
    log.info(
        "best trial %s (%s): noised validation score %.4f | test accuracy %.2f%% | epsilon %.4g for the whole "
        "search (tuning included)",
        best["trial"], ", ".join(f"{k}={v}" for k, v in best["overrides"].items()), best["validation_score"],
        100 * best["final_accuracy"], best["epsilon_search"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
