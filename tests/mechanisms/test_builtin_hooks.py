"""The built-ins' raw-data hooks see the whole norm matrix at once (:func:`dpbench.privacy.clipping.reviewed_rowwise`),
which is private only because each of them is a function of each example's row alone: pinned here for every
built-in that overrides one, so a new built-in whose hook mixes rows fails this test. Every other hook (a
researcher's, a subclass of a built-in, a composition holding components) runs once per example."""

import importlib
import inspect
import pkgutil

import pytest
import torch

import mechanisms
from dpbench.privacy.clipping import reviewed_rowwise
from dpbench.privacy.isolation import RAW_DATA_HOOKS
from dpbench.privacy.mechanism import Mechanism
from mechanisms.composed import Composed
from mechanisms.normalized import AutomaticClipping


def built_in_hooks() -> list[tuple[type, str]]:
    found = []
    for info in pkgutil.iter_modules(mechanisms.__path__):
        module = importlib.import_module(f"mechanisms.{info.name}")
        for cls in vars(module).values():
            if inspect.isclass(cls) and issubclass(cls, Mechanism) and cls.__module__ == module.__name__:
                found += [(cls, hook) for hook in RAW_DATA_HOOKS if getattr(cls, hook) is not getattr(Mechanism, hook)]
    return found


def test_the_built_ins_that_override_a_raw_data_hook_are_found():
    assert {(c.__name__, h) for c, h in built_in_hooks()} >= {("AdaptiveClipping", "clip_statistic"), ("AutomaticClipping", "clip_factors")}


@pytest.mark.parametrize("cls,hook", [p for p in built_in_hooks() if p[0] is not Composed], ids=lambda p: getattr(p, "__name__", p))
def test_each_examples_output_depends_on_its_own_row_only(cls, hook):
    mechanism = cls(max_grad_norm=1.0)
    generator = torch.Generator().manual_seed(0)
    norms = torch.rand(64, 3, generator=generator, dtype=torch.float64) * torch.logspace(-3, 3, 64, dtype=torch.float64)[:, None]
    thresholds = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    whole = getattr(mechanism, hook)(norms.clone(), thresholds, 3, 0)
    alone = torch.cat([getattr(mechanism, hook)(norms[i:i + 1].clone(), thresholds, 3, 0) for i in range(64)])
    others = norms.clone()
    others[1:] = torch.rand(63, 3, generator=generator, dtype=torch.float64) * 1e6
    assert torch.equal(whole, alone)
    assert torch.equal(getattr(mechanism, hook)(others, thresholds, 3, 0)[0], whole[0])
    assert reviewed_rowwise(mechanism, vars(cls)[hook] if hook in vars(cls) else getattr(cls, hook))


class Subclass(AutomaticClipping):
    name = "subclass"


def test_only_a_built_in_with_plain_attributes_gets_the_whole_matrix():
    hook = AutomaticClipping.clip_factors
    assert reviewed_rowwise(AutomaticClipping(1.0), hook)
    assert not reviewed_rowwise(Subclass(1.0), hook)  # a researcher's class, whatever hook it inherits
    odd = AutomaticClipping(1.0)
    odd.stability = torch.tensor(0.01)  # a value whose operations could run a researcher's code
    assert not reviewed_rowwise(odd, hook)
    composed = Composed(1.0, clipping=AutomaticClipping)  # holds its components: each runs per example
    assert not reviewed_rowwise(composed, vars(Composed)["clip_factors"])
