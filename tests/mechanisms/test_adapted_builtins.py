"""Every built-in structured mechanism (each conf/mechanism/*.yaml whose target is one) runs as a
researcher-form plugin through the adapter and releases what the kernel releases, same seed."""

from pathlib import Path

import pytest
import torch
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from dpbench.engine.per_sample import MaterializedGradients
from dpbench.privacy.adapter import as_researcher_plugin
from dpbench.privacy.mechanism import Mechanism, ResearcherMechanism
from dpbench.privacy.privatizer import StructuredPrivatizer

CONF = Path(__file__).resolve().parents[2] / "conf" / "mechanism"
SHAPES = [torch.Size([5, 3]), torch.Size([5]), torch.Size([2, 5]), torch.Size([2])]
ARGS = dict(
    max_grad_norm=0.6,
    noise_multiplier=1.3,
    n_params=27,
    dataset_size=200,
    batch_size=10.0,
    epochs=3,
    target_epsilon=3.0,
    target_delta=1e-5,
)
STEPS = [(0, 0), (1, 0), (20, 1), (21, 1), (40, 2)]


def structured_configs() -> dict[str, dict]:
    configs = {}
    for path in sorted(CONF.glob("*.yaml")):
        root = OmegaConf.create({"train": {"max_grad_norm": ARGS["max_grad_norm"], "epochs": ARGS["epochs"]}})
        root.mechanism = OmegaConf.load(path)
        config = OmegaConf.to_container(root.mechanism, resolve=True)
        if issubclass(get_class(config["_target_"]), Mechanism):
            configs[path.stem] = config
    return configs


CONFIGS = structured_configs()


def factory(name: str):
    """The configured mechanism with everything but max_grad_norm bound (what the adapter expects)."""
    options = {k: v for k, v in CONFIGS[name].items() if k not in ("name", "max_grad_norm")}
    return instantiate({**options, "_partial_": True}, _convert_="all")


def test_all_built_ins_are_covered():
    assert {"fixed", "perlayer", "noise_decay", "momentum", "normalized", "perlayer_decay", "fixed_momentum"} <= set(
        CONFIGS
    )


@pytest.mark.parametrize("name", CONFIGS)
def test_adapted_plugin_releases_what_the_kernel_releases(name):
    grads = [[torch.randn(12, *s, generator=torch.Generator().manual_seed(t)) for s in SHAPES] for t, _ in STEPS]
    plugin = as_researcher_plugin(factory(name))(**ARGS)
    assert isinstance(plugin, ResearcherMechanism)
    kernel = StructuredPrivatizer(
        factory(name)(max_grad_norm=ARGS["max_grad_norm"]),
        SHAPES,
        ARGS["noise_multiplier"],
        ARGS["batch_size"],
        ARGS["batch_size"] / ARGS["dataset_size"],
        generator=None,
    )
    torch.manual_seed(11)
    from_plugin = [
        (plugin.clip_and_noise(g, t, e), plugin.get_effective_sigma(t, e)) for g, (t, e) in zip(grads, STEPS)
    ]
    torch.manual_seed(11)
    from_kernel = [kernel.release([MaterializedGradients(g)], t, e) for g, (t, e) in zip(grads, STEPS)]
    for (gradient, sigma), release in zip(from_plugin, from_kernel):
        assert sigma == pytest.approx(release.record.noise_multiplier, rel=1e-12)
        for a, b in zip(gradient, release.gradient):
            assert torch.equal(a, b)
