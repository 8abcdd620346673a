"""What defines a run's configuration, and stable ids for it.

A leaderboard row must average only runs of one configuration: two runs belong together iff their resolved
configs are equal after dropping the seed and the keys that change how a run executes but not what it computes
(:data:`EXECUTION_KEYS`). The config is flattened to dotted keys (``train.epochs``), so the id covers every
hyper-parameter, the model, and the mechanism's ``_target_``; the class that actually ran (``mechanism_class``)
is added when the run recorded it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

SEED = "seed"
# Where and how a run executes, not what it computes: same configuration whatever their values.
EXECUTION_KEYS = frozenset({
    "resume", "overwrite", "progress", "device",
    "dataset.root", "dataset.download", "dataset.verify_checksums",
    "train.physical_batch_size",
    "tune.final_seeds",  # how many runs apply a public proxy's choice; each run records its own seed
})
EXECUTION_PREFIXES = ("paths.",)
MECHANISM_CLASS = "mechanism_class"
MECHANISM_PREFIX = "mechanism."
TARGET_EPSILON = "privacy.target_epsilon"
# A tuned result's configuration also holds how it was tuned (``tuning``) and, for a private search's released
# model, which search released it (``tuning.search``): one search's result never shares a row with another's.
TUNING = "tuning"
SEARCH = "tuning.search"
TRIAL = "tune.trial"
# Keys that identify one search's trial rather than the settings two tuned results are compared under.
PER_SEARCH_KEYS = frozenset({TRIAL, "tune.seed", "tune.space", SEARCH})


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping to ``{"a.b.c": value}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, name + ".")
        else:
            flat[name] = value
    return flat


# Options added after results were recorded, at the value that computes what runs without the option computed:
# at that value the key is dropped, with the keys that matter only for its other values, so a run that sets it and
# a run recorded before it existed share a configuration. Any other value keeps them all (a new configuration).
EARLIER_BEHAVIOUR = {
    "model.normalization": ("group", ("model.released_normalization.",)),
}


def defining(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The keys that define a configuration: all but the seed, the execution-only keys and options at the value
    that reproduces the behaviour from before they existed (:data:`EARLIER_BEHAVIOUR`)."""
    dropped: set[str] = set()
    for key, (value, only_for_others) in EARLIER_BEHAVIOUR.items():
        if key in flat and flat[key] == value:
            dropped |= {key} | {other for other in flat if other.startswith(only_for_others)}
    return {
        key: value for key, value in flat.items()
        if key != SEED and key not in EXECUTION_KEYS and not key.startswith(EXECUTION_PREFIXES) and key not in dropped
    }


def is_mechanism_key(key: str) -> bool:
    """Keys of the mechanism config group, plus the class that ran: what a mechanism comparison may vary."""
    return key == MECHANISM_CLASS or key.startswith(MECHANISM_PREFIX)


def config_id(flat: Mapping[str, Any], without: Iterable[str] = ()) -> str:
    """Stable 8-hex-digit id of a defining config (sha256 of its canonical JSON), ignoring ``without`` keys
    and every mechanism key when ``"mechanism"`` is among them."""
    dropped = set(without)
    kept = {
        key: value for key, value in flat.items()
        if key not in dropped and not ("mechanism" in dropped and is_mechanism_key(key))
    }
    text = json.dumps(kept, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def confounding_keys(configs: Iterable[Mapping[str, Any]], free: Iterable[str] = ()) -> list[str]:
    """Keys outside the mechanism group and outside ``free`` whose values differ between ``configs``: what a
    comparison of their mechanisms would also compare (``free``: the hyper-parameters tuning chose)."""
    free = set(free)
    return [key for key in differing_keys(configs) if not is_mechanism_key(key) and key not in free]


def differing_keys(configs: Iterable[Mapping[str, Any]]) -> list[str]:
    """Sorted keys whose value is not the same in every config (a key missing from one counts as differing)."""
    configs = list(configs)
    keys = set().union(*configs) if configs else set()
    missing = object()
    return sorted(key for key in keys if len({_canonical(c.get(key, missing)) for c in configs}) > 1)


def describe(config: Mapping[str, Any], keys: Iterable[str]) -> str:
    """``"train.epochs=1, model._target_=..."`` for ``keys``; a missing key reads ``<unset>``."""
    return ", ".join(f"{key}={_value(config[key]) if key in config else '<unset>'}" for key in keys)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
