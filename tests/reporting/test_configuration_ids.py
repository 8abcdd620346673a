"""What defines a configuration when options are added over time: a run that sets a newer option to the value
that computes what runs without it computed shares their configuration; any other value is a new one."""

from dpbench.reporting.configuration import config_id, defining

RECORDED_BEFORE = {"seed": 0, "model._target_": "dpbench.models.ScatterLinear", "model.groups": 27, "train.lr": 4.0}
DATA_NORM = {"model.released_normalization.noise_multiplier": 8, "model.released_normalization.mean_rms_bound": 0.11}


def test_a_newer_option_at_its_earlier_behaviour_keeps_the_configuration():
    group = RECORDED_BEFORE | {"model.normalization": "group"} | DATA_NORM  # its other values' keys are inert
    assert config_id(defining(group)) == config_id(defining(RECORDED_BEFORE))


def test_any_other_value_of_the_option_is_another_configuration():
    data = RECORDED_BEFORE | {"model.normalization": "data"} | DATA_NORM
    assert config_id(defining(data)) != config_id(defining(RECORDED_BEFORE))
    assert set(DATA_NORM) <= set(defining(data))  # the release's parameters define it too
    noisier = data | {"model.released_normalization.noise_multiplier": 16}
    assert config_id(defining(noisier)) != config_id(defining(data))
