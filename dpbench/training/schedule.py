"""Learning-rate schedules as pure functions of the step, so a resumed run needs no scheduler state.

The schedule depends only on the step count and the planned number of steps, never on data: it is
post-processing of the released gradients and costs no privacy.
"""

import math
from collections.abc import Callable

LearningRate = Callable[[int], float]

SCHEDULES = ("constant", "cosine", "linear")


def learning_rate_schedule(name: str, base_lr: float, total_steps: int, warmup_steps: int = 0) -> LearningRate:
    """``step -> learning rate``: linear warm-up from 0 over ``warmup_steps``, then ``name``:

    - ``constant``: ``base_lr``;
    - ``cosine``: half a cosine from ``base_lr`` down to 0 at ``total_steps``;
    - ``linear``: a straight line from ``base_lr`` down to 0 at ``total_steps``.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown train.lr_schedule '{name}'; use one of {', '.join(SCHEDULES)}")
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"warm-up of {warmup_steps} steps does not fit in a run of {total_steps} steps; lower train.warmup_epochs"
        )

    def learning_rate(step: int) -> float:
        if step < warmup_steps:
            return base_lr * (step + 1) / warmup_steps
        progress = (step - warmup_steps) / (total_steps - warmup_steps)
        if name == "cosine":
            return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
        if name == "linear":
            return base_lr * (1.0 - progress)
        return base_lr

    return learning_rate
