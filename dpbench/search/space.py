"""Search spaces: which hyper-parameters a private search draws, from which ranges.

A mechanism's space lives next to its config, in ``conf/search_space/<mechanism>.yaml``: one entry
per Hydra override key, each one of

- ``{log_uniform: [low, high]}`` or ``{uniform: [low, high]}`` (floats; ``int: true`` rounds them),
- ``{choice: [a, b, ...]}``,
- ``{fixed: value}`` (the same in every trial, e.g. the optimizer's own momentum off for ``momentum``),

and ``relative: true`` makes a range a factor of the value in the base configuration (the dataset's
tuned preset), so one space serves every dataset. Every file says where its ranges come from.
``tune.space=a+b`` searches the union of two spaces, e.g. ``fixed+training_options`` (a mechanism's space and
the training options that cost no privacy).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

SPACES_DIR = Path(__file__).resolve().parents[2] / "conf" / "search_space"
DISTRIBUTIONS = ("log_uniform", "uniform", "choice", "fixed")


class SearchSpaceError(ValueError):
    """A search space that cannot be drawn from."""


@dataclass(frozen=True)
class Dimension:
    """One hyper-parameter: its override key and how its values are drawn."""

    key: str
    distribution: str
    values: tuple[Any, ...]
    relative: bool = False
    integer: bool = False

    def draw(self, rng: np.random.Generator, base: Any) -> Any:
        if self.distribution == "fixed":
            return self.values[0]
        if self.distribution == "choice":
            return self.values[int(rng.integers(len(self.values)))]
        low, high = self.values
        if self.distribution == "log_uniform":
            value = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            value = float(rng.uniform(low, high))
        if self.relative:
            if not isinstance(base, (int, float)) or isinstance(base, bool):
                raise SearchSpaceError(f"'{self.key}' is relative but the base configuration's value is {base!r}")
            value *= base
        return round(value) if self.integer else float(f"{value:.4g}")


TUNABLE_GROUPS = ("train", "mechanism", "model")
"""The config groups a search may vary. The privacy settings (target, accountant), the search's own (the law of
K, the validation split, the reference plan), the data and the paths are the search's, the same in every trial:
a space that set ``tune.trials_mean`` had its trials calibrated for another number of trials than the plan drew
(a seventh red team's printed epsilon 2.98 for a search whose tuning bound was 5.12)."""


def parse_dimension(key: str, spec: Mapping[str, Any]) -> Dimension:
    if key.split(".")[0] not in TUNABLE_GROUPS or "." not in key:
        raise SearchSpaceError(
            f"search space entry '{key}': a search varies hyper-parameters only, keys under "
            f"{', '.join(g + '.' for g in TUNABLE_GROUPS)}; the privacy target, the search's settings (tune.*), the "
            "data and the seed are the whole search's. Set them on the command line of python -m dpbench.search"
        )
    kinds = [name for name in DISTRIBUTIONS if name in spec]
    unknown = set(spec) - set(DISTRIBUTIONS) - {"relative", "int"}
    if len(kinds) != 1 or unknown:
        raise SearchSpaceError(
            f"search space entry '{key}': give exactly one of {', '.join(DISTRIBUTIONS)} (plus optional relative, "
            f"int); got {sorted(spec)}"
        )
    kind = kinds[0]
    raw = spec[kind]
    values = (raw,) if kind == "fixed" else tuple(raw)
    if kind in ("log_uniform", "uniform"):
        if len(values) != 2 or not all(isinstance(v, (int, float)) for v in values) or not values[0] < values[1]:
            raise SearchSpaceError(f"search space entry '{key}': {kind} needs [low, high] with low < high, got {raw}")
        if kind == "log_uniform" and values[0] <= 0:
            raise SearchSpaceError(f"search space entry '{key}': log_uniform needs low > 0, got {raw}")
    if kind == "choice" and not values:
        raise SearchSpaceError(f"search space entry '{key}': choice needs at least one value")
    return Dimension(key, kind, values, bool(spec.get("relative", False)), bool(spec.get("int", False)))


@dataclass(frozen=True)
class SearchSpace:
    """The dimensions of one mechanism's search."""

    name: str
    dimensions: tuple[Dimension, ...]

    def draw(self, rng: np.random.Generator, base: Mapping[str, Any]) -> dict[str, Any]:
        """One trial's hyper-parameters as ``{override key: value}``; ``base`` maps each key to the base
        configuration's value (for relative ranges)."""
        return {d.key: d.draw(rng, base.get(d.key)) for d in self.dimensions}


def load_space(name: str, directory: Path = SPACES_DIR) -> SearchSpace:
    """The search space ``<directory>/<name>.yaml``, or for ``a+b+...`` the union of those spaces (e.g. a
    mechanism's space and ``training_options``); a key in two of them is refused."""
    if "+" in name:
        dimensions: dict[str, Dimension] = {}
        for part in name.split("+"):
            for dimension in load_space(part, directory).dimensions:
                if dimension.key in dimensions:
                    raise SearchSpaceError(f"search space '{name}': '{dimension.key}' is in more than one of its parts")
                dimensions[dimension.key] = dimension
        return SearchSpace(name, tuple(dimensions.values()))
    path = directory / f"{name}.yaml"
    if not name or Path(name).name != name or name.startswith("."):
        raise SearchSpaceError(
            f"tune.space={name}: name a space in {directory} (its file name without .yaml, e.g. tune.space=fixed); "
            "a new space goes there, next to the mechanism's config"
        )
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in directory.glob("*.yaml")))
        raise SearchSpaceError(
            f"no search space for '{name}' ({path} not found); known: {known}. Write one next to the mechanism's "
            "config or pick one with tune.space=NAME"
        )
    spec = yaml.safe_load(path.read_text()) or {}
    if not isinstance(spec, dict) or not spec:
        raise SearchSpaceError(f"{path} must map override keys to distributions")
    return SearchSpace(name, tuple(parse_dimension(str(k), v) for k, v in spec.items()))
