"""Learning-rate schedules: the documented values at the ends, warm-up, and clear errors."""

import math

import pytest

from dpbench.training.schedule import learning_rate_schedule


def test_constant_cosine_and_linear_values():
    constant = learning_rate_schedule("constant", 2.0, 100)
    cosine = learning_rate_schedule("cosine", 2.0, 100)
    linear = learning_rate_schedule("linear", 2.0, 100)
    assert [constant(s) for s in (0, 50, 99)] == [2.0, 2.0, 2.0]
    assert cosine(0) == 2.0 and math.isclose(cosine(50), 1.0) and cosine(99) < 0.001
    assert linear(0) == 2.0 and math.isclose(linear(50), 1.0) and math.isclose(linear(99), 0.02)


def test_warmup_rises_linearly_then_follows_the_schedule():
    schedule = learning_rate_schedule("cosine", 1.0, 110, warmup_steps=10)
    assert [schedule(s) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert schedule(10) == 1.0 and math.isclose(schedule(60), 0.5)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="unknown train.lr_schedule 'step'"):
        learning_rate_schedule("step", 1.0, 10)
    with pytest.raises(ValueError, match="lower train.warmup_epochs"):
        learning_rate_schedule("constant", 1.0, 10, warmup_steps=10)
