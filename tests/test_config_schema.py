"""Every shipped config passes the key check; an unknown key anywhere is refused, naming the nearest known key."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from dpbench.config_schema import CONF_DIR, ConfigKeyError, check_config_keys


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def names(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "overrides",
    [[f"dataset={name}"] for name in names("dataset")]
    + [[f"mechanism={name}"] for name in names("mechanism")]
    + [[f"+experiment={name}"] for name in names("experiment")]
    + [["+tune=private"], ["+train.augmentation.views=2", "+train.augmentation.flip=true"]],
    ids=lambda overrides: " ".join(overrides),
)
def test_every_shipped_config_passes(overrides):
    check_config_keys(composed(*overrides))


@pytest.mark.parametrize(
    "overrides, nearest",
    [
        (["+privacy.epsilon=-1"], "privacy.target_epsilon"),
        (["+verify.probe=0.5"], "verify.probe_rate"),
        (["+audit.canary=10"], "audit.canaries"),
        (["+paths.result=/tmp"], "paths.results"),
        (["+sed=3"], "seed"),
        (["+tune=private", "+tune.trials_means=3"], "tune.trials_mean"),
        (["+train.augmentation.view=2"], "train.augmentation.views"),
        (["dataset=telemetry", "+dataset.device=10"], "dataset.devices"),
        (["mechanism=perlayer_decay", "+mechanism.noise.end_ration=0.1"], "mechanism.noise.end_ratio"),
        (["mechanism=adaptive", "+mechanism.target_quantil=0.1"], "mechanism.target_quantile"),
    ],
)
def test_an_unknown_key_names_the_nearest_known_key(overrides, nearest):
    with pytest.raises(ConfigKeyError, match=f"did you mean '{nearest}'"):
        check_config_keys(composed(*overrides))


def test_a_target_taking_any_keyword_takes_any_key():
    check_config_keys(composed("model._target_=builtins.dict", "+model.anything=1"))
