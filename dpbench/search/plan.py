"""The plan of a private search: the secret number of trials K and each trial's hyper-parameters.

Drawn once, written to the search directory, and read back when the search is launched again, so a
killed search resumes with the same K and the same trials (re-drawing K after seeing results would
void the tuning bound). The plan is the operator's private record: K must not be published.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dpbench.privacy.tuning import TrialCount
from dpbench.search.space import SearchSpace

PLAN_FILE = "search.json"
TRIAL_GROUP = "trial"


@dataclass
class SearchPlan:
    """What a search runs: the base overrides, K and the K trials' overrides."""

    base_overrides: list[str]
    space: str
    trials_mean: float
    trials_shape: float
    reference_batch_size: int
    reference_epochs: int
    trials: list[dict[str, Any]] = field(default_factory=list)
    tune: str = "private"  # the conf/tune/ preset: private (on the private data) or public (a public proxy)
    tuned_on: str | None = None  # a public proxy's dataset

    @property
    def count(self) -> int:
        return len(self.trials)

    @property
    def law(self) -> TrialCount:
        return TrialCount(self.trials_mean, self.trials_shape)

    @staticmethod
    def trial_id(index: int) -> str:
        return f"t{index}"

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / PLAN_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")
        configs = directory / "configs" / TRIAL_GROUP
        configs.mkdir(parents=True, exist_ok=True)
        for index, overrides in enumerate(self.trials):
            text = "# @package _global_\n" + yaml.safe_dump(_nested({**overrides, "tune.trial": self.trial_id(index)}))
            (configs / f"{self.trial_id(index)}.yaml").write_text(text)

    @classmethod
    def load(cls, directory: Path) -> SearchPlan | None:
        path = directory / PLAN_FILE
        return cls(**json.loads(path.read_text())) if path.is_file() else None


def draw_plan(
    space: SearchSpace,
    base_values: Mapping[str, Any],
    law: TrialCount,
    rng: np.random.Generator,
    base_overrides: list[str],
    reference_batch_size: int,
    reference_epochs: int,
    tuned_on: str | None = None,
) -> SearchPlan:
    """Draw K from ``law`` and K trials from ``space`` (relative ranges around ``base_values``); a public proxy
    (``tuned_on``) runs exactly ``law.mean`` trials, as its K need be neither random nor secret."""
    count = law.sample(rng) if tuned_on is None else int(law.mean)
    trials = [space.draw(rng, base_values) for _ in range(count)]
    return SearchPlan(
        list(base_overrides), space.name, law.mean, law.shape, reference_batch_size, reference_epochs, trials,
        "private" if tuned_on is None else "public", tuned_on,
    )


def _nested(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree
