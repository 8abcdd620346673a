"""How a result was tuned, as ``summary.json`` and the results table record it, so the report can tell a tuned
result from an untuned one and never mix them.

- ``untuned``: a run at the hyper-parameters it was given (no ``tuning`` entry in its record).
- ``private search``: the model a private search released (:mod:`dpbench.search.__main__`). Its row in the
  results table is the selected trial's, with ``epsilon`` the whole search's, tuning included, and the trial's
  own ε kept as ``epsilon_trial``. ``trials_run`` (K) is the operator's: publishing it voids the tuning bound,
  so the report shows K's law unless asked for the operator's view.
- ``public proxy``: a run on the private data at hyper-parameters chosen by a search on a public dataset
  (``tuned_on``). The search read no private data, so no tuning cost is charged to the private data: the run's
  ε is its own. K is public.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dpbench.reporting.configuration import PER_SEARCH_KEYS, config_id, defining, flatten

UNTUNED = "untuned"
PRIVATE_SEARCH = "private search"
PUBLIC_PROXY = "public proxy"

PUBLIC_PROXY_COST = "none charged to the private data: the hyper-parameters were chosen on the public dataset {}"


def pipeline_id(base: DictConfig) -> str:
    """The id of a search's *pipeline*: its base configuration (dataset, model, preset, mechanism, search space, law
    of K, validation split; what the trials are drawn around) without the seed and what identifies one search.
    Independent searches of one pipeline (other seeds, other draws of K and of the trials) are replications of it:
    the report averages their released models as the pipeline's expected result."""
    flat = defining(flatten(OmegaConf.to_container(base, resolve=True)))
    return config_id({key: value for key, value in flat.items() if key not in PER_SEARCH_KEYS})


def private_search_row(trial_row: Mapping[str, Any], search_id: str, searched: list[str], trials_run: int,
                       trials_finished: int, pipeline: str | None = None) -> dict[str, Any]:
    """The results-table row of a private search's released model: the selected trial's row, with every ε of the
    trial renamed ``..._trial`` and ``epsilon`` the search's ε (tuning included; None if the trial left the
    search's reference curve, i.e. no bound holds)."""
    total = trial_row.get("epsilon_search")
    own = {key: value for key, value in trial_row.items() if not key.startswith("epsilon")}
    trial = {("epsilon_trial" if key == "epsilon" else f"{key}_trial"): value for key, value in trial_row.items()
             if key.startswith("epsilon") and key != "epsilon_search"}
    return own | trial | {
        "epsilon": total if total is not None and math.isfinite(total) else None,
        "tuning": PRIVATE_SEARCH,
        "tuned_on": trial_row["dataset"],
        "tuning_cost": "inside epsilon: the whole search, tuning included (Papernot & Steinke 2022)",
        "search_id": search_id,
        "pipeline_id": pipeline,
        "searched": sorted(searched),
        "trials_mean": trial_row["search"]["trials_mean"],
        "trials_shape": trial_row["search"]["trials_shape"],
        "trials_run": trials_run,
        "trials_finished": trials_finished,
    }


def public_proxy_record(tuned_on: str, searched: list[str], trials_run: int) -> dict[str, Any]:
    """What ``summary.json`` (and so the results row) of a run applying a public proxy's choice records."""
    return {
        "tuning": PUBLIC_PROXY,
        "tuned_on": tuned_on,
        "tuning_cost": PUBLIC_PROXY_COST.format(tuned_on),
        "searched": sorted(searched),
        "trials_run": trials_run,
    }
