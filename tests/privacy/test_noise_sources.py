"""Where the noise comes from: seeded (reproducible, and so recomputable by anyone who reads the seed)
or OS entropy (``privacy.secure_noise=true``: nothing the run publishes determines it)."""

import json
import os
import random
import secrets

import numpy as np
import pytest
import torch
from scipy import stats

from dpbench.engine.per_sample import MaterializedGradients
from dpbench.privacy.noise import OSEntropy, noise_source, standard_normal
from dpbench.privacy.plugin_streams import entropy_under_seed, isolated_randomness, released_call, walk
from dpbench.privacy.privatizer import StructuredPrivatizer
from dpbench.training import experiment
from dpbench.training.experiment import run_experiment
from mechanisms.fixed import FixedClipping

SHAPES = [torch.Size([50, 20]), torch.Size([20])]


def test_os_entropy_samples_are_standard_normal():
    sample = OSEntropy().standard_normal(torch.Size([200_000]), torch.float64, "cpu").numpy()
    assert stats.kstest(sample, "norm").pvalue > 1e-4
    assert abs(sample.mean()) < 0.02 and abs(sample.var() - 1.0) < 0.02
    assert np.isfinite(sample).all()


def test_os_entropy_never_repeats_and_keeps_shape_and_dtype():
    source = OSEntropy()
    first = standard_normal(torch.Size([3, 5]), torch.float32, "cpu", source)
    second = standard_normal(torch.Size([3, 5]), torch.float32, "cpu", source)
    assert first.shape == (3, 5) and first.dtype == torch.float32 and not torch.equal(first, second)


def recovered_clipped_sum(secure: bool) -> float:
    """The attack on a seeded run: regenerate the noise from the published seed, subtract it from the
    release, and compare with the true clipped sum (the largest coordinate error)."""
    grads = [torch.randn((8, *s), generator=torch.Generator().manual_seed(4)) for s in SHAPES]
    privatizer = StructuredPrivatizer(FixedClipping(1.0), SHAPES, 1.0, 8.0, 0.1, noise_source(secure, 11))
    released = privatizer.release([MaterializedGradients(grads)], 0, 0).gradient
    regenerated = torch.Generator().manual_seed(11)
    noise = [torch.randn(s, generator=regenerated) for s in SHAPES]
    # the clipped sum itself, from a release whose noise is negligible
    exact = StructuredPrivatizer(FixedClipping(1.0), SHAPES, 1e-30, 8.0, 0.1, torch.Generator().manual_seed(0))
    true_sum = exact.release([MaterializedGradients(grads)], 0, 0).gradient
    recovered = [r - n / 8.0 for r, n in zip(released, noise)]
    return max(float((a - b).abs().max()) for a, b in zip(recovered, true_sum))


def test_a_seeded_release_can_be_denoised_from_the_seed_and_a_secure_one_cannot():
    assert recovered_clipped_sum(secure=False) < 1e-5
    assert recovered_clipped_sum(secure=True) > 0.05


@pytest.mark.slow
# the kernel's noise; a plugin's own, with every step probed (each release is then a verifier's draw too)
@pytest.mark.parametrize("mechanism", ["fixed", "example_plugin"])
@pytest.mark.parametrize("secure", [False, True])
def test_runs_record_their_noise_source_and_only_seeded_runs_repeat(make_config, tmp_path, secure, mechanism):
    summaries = []
    for name in ("a", "b"):
        cfg = make_config("train.epochs=1", f"privacy.secure_noise={str(secure).lower()}", f"mechanism={mechanism}",
                          "verify.probe_rate=1")
        summary = run_experiment(cfg, tmp_path / name)
        summaries.append(summary)
        assert json.loads((tmp_path / name / "summary.json").read_text())["noise"] == summary["noise"]
    assert summaries[0]["noise"] == ("os-entropy" if secure else summaries[1]["noise"])
    models = [torch.load(tmp_path / n / "checkpoint.pt", weights_only=False)["model"] for n in "ab"]
    same = all(torch.equal(models[0][key], models[1][key]) for key in models[0])
    assert same != secure


@pytest.mark.slow
@pytest.mark.parametrize("secure", [False, True])
def test_plugin_streams_are_keyed_by_the_seed_only_in_a_seeded_run(make_config, tmp_path, monkeypatch, secure):
    """Every release of a researcher-form plugin is made under a seed derived from the run's plugin key and
    the step (:mod:`dpbench.privacy.plugin_streams`); with secure noise the key is OS entropy, never the
    published seed, so no release (a probed step's included) can be regenerated from what the run publishes."""
    keys = []
    prepare = experiment.prepare_mechanism

    def spy(*args, **kwargs):
        keys.append(kwargs["plugin_key"])
        return prepare(*args, **kwargs)

    monkeypatch.setattr(experiment, "prepare_mechanism", spy)
    seeds = []
    for name in ("a", "b"):
        cfg = make_config("train.epochs=1", "mechanism=example_plugin", f"privacy.secure_noise={str(secure).lower()}")
        seeds.append(cfg.seed)
        run_experiment(cfg, tmp_path / name)
    if secure:
        assert keys[0] != keys[1] and not set(keys) & set(seeds)
        for name, key in zip("ab", keys):  # the secret key is written nowhere: run files, checkpoint
            run = tmp_path / name
            assert not any(str(key) in f.read_text(errors="ignore") for f in run.rglob("*") if f.suffix != ".pt")
            checkpoint = torch.load(run / "checkpoint.pt", weights_only=False)
            assert key not in [leaf for _, leaf in walk(checkpoint) if isinstance(leaf, int)]
    else:
        assert keys == seeds


class EntropyEveryCall:
    """Flat clipping to 1 with noise std 1 drawn from OS entropy afresh at every call."""

    def clip_and_noise(self, grads: list[torch.Tensor], step: int, epoch: int) -> list[torch.Tensor]:
        norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads))
        scale = torch.clamp(1.0 / (norms + 1e-12), max=1.0)
        generator = torch.Generator().manual_seed(secrets.randbits(63))
        return [torch.einsum("b,b...->...", scale, g) + torch.randn(g.shape[1:], generator=generator) for g in grads]

    def get_effective_sigma(self, step: int, epoch: int) -> float:
        return 1.0


def test_a_plugin_drawing_os_entropy_sees_its_calls_stream_and_the_process_gets_it_back():
    """A plugin that draws its noise from OS entropy (``os.urandom``, ``secrets``, numpy's unseeded generator)
    is measured like one with a seeded generator: its release and the verifier's calls under the same seed see
    common random numbers (without this an honest such plugin was a VIOLATION, 'release-not-reproduced'),
    different seeds see different noise, and the real entropy is back once the call returns."""
    plugin = EntropyEveryCall()
    grads = [torch.randn((8, *s), generator=torch.Generator().manual_seed(3)) for s in SHAPES]
    urandom = os.urandom

    def release(seed: int) -> list[torch.Tensor]:
        with isolated_randomness():
            return released_call(plugin, [g.clone() for g in grads], 0, 0, seed)[1]

    first, again, other = release(5), release(5), release(6)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert all(not torch.equal(a, b) for a, b in zip(first, other))
    assert os.urandom is urandom and random._urandom is urandom
    assert os.urandom(16) != os.urandom(16)


def test_entropy_under_seed_is_a_function_of_the_seed_and_refuses_what_os_urandom_refuses():
    with entropy_under_seed(1):
        a = (os.urandom(8), secrets.token_bytes(8), np.random.default_rng().integers(1 << 62), os.getrandom(8))
    with entropy_under_seed(1):
        b = (os.urandom(8), secrets.token_bytes(8), np.random.default_rng().integers(1 << 62), os.getrandom(8))
        assert os.getrandom(8) != os.getrandom(8)  # a stream of the seed too, not the kernel's entropy
        with pytest.raises(ValueError):
            os.urandom(-1)
    with entropy_under_seed(2):
        c = (os.urandom(8), secrets.token_bytes(8), np.random.default_rng().integers(1 << 62), os.getrandom(8))
    assert a == b and all(x != y for x, y in zip(a, c))
