"""``python -m dpbench.search [overrides]``: a private random search whose cost is in the reported epsilon.

    python -m dpbench.search mechanism=adaptive dataset=mnist_scattering dataset.verify_checksums=false
    python -m dpbench.search mechanism=fixed tune.trials_mean=5 hydra/launcher=joblib hydra.launcher.n_jobs=2
    python -m dpbench.search -m mechanism=fixed,adaptive seed=0,1,2     # six searches, one after the other

Draws the secret number of trials K and K configurations from ``conf/search_space/<mechanism>.yaml``
(once: the plan is kept in ``<results>/searches/<overrides>/search.json``, so a killed search
launched again resumes with the same trials), runs the trials as one Hydra multirun through the
configured launcher (basic, joblib, submitit), each calibrated so that the whole search spends
``privacy.target_epsilon``, and selects the trial with the best noised validation score. The result
(``result.json`` beside the plan) names the trial, its test accuracy and the search's epsilon; only
the selected trial may be published, and K never. The selected model's row is appended to
``<results>/results.jsonl`` as a tuned result (:mod:`dpbench.search.tuning_record`), where
``python -m dpbench.report`` shows it with the search's epsilon, tuning included.

Public-proxy tuning (``tune=public tune.tuned_on=DATASET``) runs ``tune.trials`` trials on that public
dataset instead, each one run at the target, then applies the best trial's hyper-parameters to the private
dataset in one ordinary run (``<results>/runs/public_proxy,<overrides>``), whose summary records
``tuned_on``: no tuning cost is charged to the private data. ``tune.final_seeds=[0,1,2]`` runs the choice at
each of those seeds instead (the spread of the reported accuracy), one run per seed, through the same launcher
as the trials (``<results>/runs/public_proxy,<overrides>,final_seed=S``; the search's own seed keeps the name
without the suffix).

    python -m dpbench.search tune=public tune.tuned_on=mnist_scattering dataset=fmnist_scattering
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dpbench.privacy.noise import entropy_seed
from dpbench.privacy.tuning import TrialCount
from dpbench.reporting.run_files import RunFiles, append_result_row
from dpbench.search.plan import TRIAL_GROUP, SearchPlan, draw_plan
from dpbench.search.selection import RESULT_FILE, SearchMismatchError, select_best
from dpbench.search.space import SearchSpaceError, load_space
from dpbench.search.tuning_record import pipeline_id, private_search_row
from dpbench.training.run_directory import directory_name, letter_spelling, public_proxy_run_name
from dpbench.training.run_summary import result_row

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")
LAUNCHER_PREFIXES = ("hydra/launcher=", "hydra.launcher.")
PINNED_TUNE_KEYS = ("tune.reference_batch_size", "tune.reference_epochs")
FINAL_SEEDS = "tune.final_seeds="  # how many private runs apply a public proxy's choice: not part of the search
SEED = re.compile(r"^\+?seed=")
log = logging.getLogger("dpbench.search")


class SearchDirectoryError(RuntimeError):
    """The search directory holds a plan made for other settings."""


EXECUTION_PREFIXES = ("paths.", "progress=", "device=", "resume=", "overwrite=")
TUNE_PRESET = re.compile(r"^\+?tune=(?P<preset>\w+)$")
DATASET = re.compile(r"^\+?dataset=")
PRIVATE, PUBLIC = "private", "public"


def search_name(overrides: list[str], preset: str = PRIVATE) -> str:
    """The search's directory name: its overrides (and a public proxy's preset), less those that change only how
    it runs."""
    named = overrides if preset == PRIVATE else [f"tune={preset}", *overrides]
    defining = sorted(o for o in named if not o.startswith(EXECUTION_PREFIXES))
    return directory_name(",".join(defining).replace("/", "_"))


def split_preset(arguments: list[str]) -> tuple[str, list[str]]:
    """The conf/tune/ preset named by ``tune=NAME`` (private unless given) and the other arguments."""
    presets = [match["preset"] for match in map(TUNE_PRESET.match, arguments) if match]
    if len(presets) > 1 or presets and presets[0] not in (PRIVATE, PUBLIC):
        raise ValueError(f"give at most one of tune=private (the default) or tune=public, got tune={presets}")
    return (presets[0] if presets else PRIVATE), [a for a in arguments if not TUNE_PRESET.match(a)]


PLACEMENT_PREFIXES = ("hydra.sweep.", "hydra.run.", "hydra.searchpath", "hydra.job.chdir", "hydra/sweeper=")


def check_placement(overrides: list[str]) -> None:
    """Refuses overrides that would move the trials' run directories away from the search's directory, where the
    selection reads them (it would find no finished trial)."""
    moved = [o for o in overrides if o.lstrip("+~").startswith(PLACEMENT_PREFIXES)]
    if moved:
        raise ValueError(
            f"{', '.join(moved)}: a search places its trials itself, under "
            "PATHS.RESULTS/searches/<overrides>/runs, and selects among them there; drop the override and set "
            "paths.results=DIR to put the whole search elsewhere"
        )


def compose_base(overrides: list[str], preset: str = PRIVATE) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=[f"+tune={preset}", *overrides])


def proxy_overrides(overrides: list[str], tuned_on: str) -> list[str]:
    """The overrides of a public proxy's trials: the private run's, on the public dataset instead."""
    return [o for o in overrides if not DATASET.match(o)] + [f"dataset={tuned_on}"]


def check_proxy(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """The trials' base config of a public proxy; refused if the public dataset is the private one."""
    if OmegaConf.is_missing(cfg.tune, "tuned_on") or cfg.tune.tuned_on is None:
        raise ValueError("tune=public needs the public dataset to tune on: tune.tuned_on=NAME (a conf/dataset/ name)")
    tuned_on = str(cfg.tune.tuned_on)
    public = compose_base(proxy_overrides(overrides, tuned_on), PUBLIC)
    if public.dataset.name == cfg.dataset.name:
        raise ValueError(
            f"tune.tuned_on={tuned_on} reads the same data ({public.dataset.name}) as the private run: tuning on it "
            "would charge no cost for tuning on private data. Name a public dataset, or run a private search "
            "(drop tune=public)"
        )
    return public


def plan_search(cfg: DictConfig, overrides: list[str], directory: Path, preset: str = PRIVATE) -> SearchPlan:
    """The kept plan, or a new one drawn now (from OS entropy unless ``tune.seed`` is set)."""
    plan = SearchPlan.load(directory)
    if plan is not None:
        if plan.base_overrides != overrides or plan.tune != preset:
            raise SearchDirectoryError(
                f"{directory} holds a search planned for {plan.base_overrides}, not {overrides}; a plan is never "
                "re-drawn (that would void the tuning bound): use another paths.results"
            )
        return plan
    tuned_on = None
    if preset == PUBLIC:
        cfg, tuned_on = check_proxy(cfg, overrides), str(cfg.tune.tuned_on)
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
    law = TrialCount(float(tune.trials_mean), float(tune.trials_shape)) if tuned_on is None else TrialCount(
        float(tune.trials))
    rng = np.random.default_rng(seed)
    plan = draw_plan(
        space, base_values, law, rng, overrides, int(cfg.train.batch_size), int(cfg.train.epochs), tuned_on
    )
    plan.save(directory)
    return plan


def trial_command(plan: SearchPlan, directory: Path, launcher: list[str]) -> list[str]:
    """One Hydra multirun over the trials' config files, through the configured launcher."""
    ids = ",".join(plan.trial_id(i) for i in range(plan.count))
    if plan.tune == PUBLIC:
        base = proxy_overrides(plan.base_overrides, str(plan.tuned_on))
    else:
        base = [*plan.base_overrides, f"tune.reference_batch_size={plan.reference_batch_size}",
                f"tune.reference_epochs={plan.reference_epochs}"]
    return [
        sys.executable, "-m", "dpbench", "-m",
        f"+tune={plan.tune}",
        f"+{TRIAL_GROUP}={ids}",  # after tune: a trial's file sets tune.trial
        f"hydra.searchpath=['file://{directory / 'configs'}']",
        *base,
        f"paths.results='{directory}'",
        "resume=true",
        *launcher,
    ]


def apply_command(plan: SearchPlan, chosen: dict, search: str, seeds: list[int], own_seed: int,
                  launcher: list[str]) -> list[str]:
    """The private runs of a public proxy: one Hydra multirun, through the configured launcher, of the search's
    overrides (the private dataset) and the chosen values at each of ``seeds``, each run in the directory that
    :func:`~dpbench.training.run_directory.public_proxy_run_name` names for the search (``search``) and its seed."""
    base = [o for o in plan.base_overrides if not SEED.match(o)]
    return [
        sys.executable, "-m", "dpbench", "-m", f"+tune={PUBLIC}", *base,
        *(f"{key}={json.dumps(value)}" for key, value in chosen.items()),
        f"seed={','.join(str(seed) for seed in seeds)}",
        f"hydra.sweep.subdir='${{public_proxy_run:{letter_spelling(search)},${{seed}},{own_seed}}}'",
        "resume=true", *launcher,
    ]


def record_private_search(result: dict, plan: SearchPlan, base: DictConfig, directory: Path, results: Path) -> None:
    """Appends the selected model's row, as a tuned result with the search's epsilon and the id of its pipeline
    (``base``, the search's base configuration), to the results table."""
    best = result["released"]
    summary = RunFiles(Path(best["run_dir"])).read_summary()
    searched = result_row(summary) | {"epsilon_search": best["epsilon_search"], "verdict": best["verdict"]}
    row = private_search_row(searched, directory.name, list(best["overrides"]), plan.count,
                             result["trials_finished"], pipeline_id(base))
    append_result_row(results / "results.jsonl", row)


def final_seeds(cfg: DictConfig) -> list[int]:
    """The seeds of a public proxy's private runs: ``tune.final_seeds``, or the search's own seed."""
    seeds = cfg.tune.get("final_seeds")
    if seeds is None:
        return [int(cfg.seed)]
    if isinstance(seeds, int) or not all(isinstance(seed, int) and not isinstance(seed, bool) for seed in seeds):
        raise ValueError(f"tune.final_seeds must be a list of integer seeds, e.g. tune.final_seeds=[0,1,2]; "
                         f"got {seeds}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"tune.final_seeds must name distinct seeds, at least one; got {list(seeds)}")
    return [int(seed) for seed in seeds]


def apply_public_choice(result: dict, plan: SearchPlan, directory: Path, results: Path, seeds: list[int],
                        own_seed: int, launcher: list[str]) -> int:
    """Runs the public proxy's choice on the private data at each of ``seeds`` (``own_seed``: the search's), as
    one multirun through the search's launcher; lists the runs in ``result["applied"]``. A run that already
    finished is read, not run again."""
    chosen = result["released"]["overrides"]
    run_dirs = {seed: results / "runs" / public_proxy_run_name(letter_spelling(directory.name), seed, own_seed)
                for seed in seeds}
    pending = [seed for seed in seeds if not RunFiles(run_dirs[seed]).summary.exists()]
    if pending:
        subprocess.run(apply_command(plan, chosen, directory.name, pending, own_seed, launcher), check=False)
    result["applied"] = []
    failed = 0
    for seed in seeds:
        files = RunFiles(run_dirs[seed])
        if not files.summary.exists():
            log.error("the private run of the chosen hyper-parameters at seed %d failed; see %s", seed, files.dir)
            failed += 1
            continue
        summary = files.read_summary()
        result["applied"].append({key: summary.get(key) for key in (
            "run_dir", "dataset", "seed", "final_accuracy", "epsilon", "tuned_on", "tuning_cost")})
        log.info(
            "applied to %s (seed %s): test accuracy %.2f%% | epsilon %.4g (the run's own; tuning on %s: no cost "
            "charged to %s)", summary["dataset"], summary.get("seed"), 100 * summary["final_accuracy"],
            summary["epsilon"], plan.tuned_on, summary["dataset"],
        )
    accuracies = [100 * run["final_accuracy"] for run in result["applied"]]
    if len(accuracies) > 1:
        log.info("applied at %d seeds: test accuracy %.2f ± %.2f%% (mean ± std)", len(accuracies),
                 float(np.mean(accuracies)), float(np.std(accuracies, ddof=1)))
    return 1 if failed else 0


MULTIRUN_FLAGS = ("-m", "--multirun")


def expand_searches(arguments: list[str]) -> list[list[str]]:
    """``-m`` arguments to one argument list per search: every ``key=a,b,c`` (a comma list that is not a
    bracketed or quoted value) contributes each of its values, in the Cartesian product of all such keys."""
    choices = []
    for argument in arguments:
        key, separator, value = argument.partition("=")
        sweepable = separator and "," in value and not value.startswith(("[", "{", "'", '"'))
        choices.append([f"{key}={v}" for v in value.split(",")] if sweepable else [argument])
    return [list(combination) for combination in itertools.product(*choices)]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)  # opacus configures logging on import
    arguments = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(arguments):
        print(__doc__)
        return 0
    if not set(MULTIRUN_FLAGS) & set(arguments):
        return run_search(arguments)
    searches = expand_searches([a for a in arguments if a not in MULTIRUN_FLAGS])
    failed = []
    for index, search in enumerate(searches, start=1):
        log.info("search %d of %d: %s", index, len(searches), " ".join(search))
        if run_search(search) != 0:
            failed.append(" ".join(search))
    log.info("%d of %d searches finished%s", len(searches) - len(failed), len(searches),
             "; failed: " + " | ".join(failed) if failed else "")
    return 1 if failed else 0


def run_search(arguments: list[str]) -> int:
    """One search: plans it (or reads its kept plan), runs its trials and records the released model."""
    launcher = [a for a in arguments if a.startswith(LAUNCHER_PREFIXES)]
    try:
        preset, arguments = split_preset(arguments)
        applying = [a for a in arguments if a.startswith(FINAL_SEEDS)]
        if applying and preset != PUBLIC:
            raise ValueError(
                "tune.final_seeds is for a public proxy (tune=public): a private search releases its selected "
                "model only; each further run on the private data would cost privacy that the search's epsilon "
                "does not include")
        overrides = [a for a in arguments
                     if a not in launcher and a not in applying and not a.startswith(PINNED_TUNE_KEYS)]
        check_placement(overrides)
        cfg = compose_base(overrides + applying, preset)
        seeds = final_seeds(cfg) if preset == PUBLIC else []
        results = Path(cfg.paths.results)
        directory = results / "searches" / search_name(overrides, preset)
        plan = plan_search(cfg, overrides, directory, preset)
    except (SearchSpaceError, SearchDirectoryError, ValueError, HydraException, OmegaConfBaseException) as error:
        print(f"dpbench.search: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    if plan.count == 0:
        (directory / RESULT_FILE).write_text(json.dumps({"released": None, "reason": "K = 0"}) + "\n")
        log.info("the search drew no trial (a Poisson K of 0): nothing is released")
        return 0
    if plan.tune == PUBLIC:
        log.info("public-proxy search in %s: %d trials on %s", directory, plan.count, plan.tuned_on)
    else:
        log.info("search in %s: %d trials planned (keep this number private)", directory, plan.count)
    subprocess.run(trial_command(plan, directory, launcher), check=False)
    try:
        result = select_best(directory, plan)
    except SearchMismatchError as error:
        print(f"dpbench.search: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    if result["released"] is None:
        (directory / RESULT_FILE).write_text(json.dumps(result, indent=2) + "\n")
        log.error("no trial finished; see the run directories under %s", directory / "runs")
        return 1
    best = result["released"]
    chosen = ", ".join(f"{k}={v}" for k, v in best["overrides"].items())
    if plan.tune == PUBLIC:
        log.info("best trial %s on %s (%s): validation score %.4f", best["trial"], plan.tuned_on, chosen,
                 best["validation_score"])
        status = apply_public_choice(result, plan, directory, results, seeds, int(cfg.seed), launcher)
        (directory / RESULT_FILE).write_text(json.dumps(result, indent=2) + "\n")
        return status
    (directory / RESULT_FILE).write_text(json.dumps(result, indent=2) + "\n")
    record_private_search(result, plan, cfg, directory, results)
    log.info(
        "best trial %s (%s): noised validation score %.4f | test accuracy %.2f%% | epsilon %.4g for the whole "
        "search (tuning included); its row is in %s",
        best["trial"], chosen, best["validation_score"], 100 * best["final_accuracy"], best["epsilon_search"],
        results / "results.jsonl",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
