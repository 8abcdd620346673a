"""Augmentation multiplicity: one averaged row per example (the privacy argument), equal to the mean of
the per-view gradients computed independently, and wired into runs through train.augmentation."""

import pytest
import torch
import torch.nn.functional as F

from dpbench.data.augmentation import random_crop_flip
from dpbench.engine import FunctorchEngine, GhostEngine
from dpbench.engine.augmentation_multiplicity import AugmentationMultiplicity
from dpbench.models import DigitsTanhCNN
from dpbench.training.experiment import run_experiment


def test_crops_are_shifted_copies_and_flips_mirror():
    image = torch.arange(16.0).reshape(1, 1, 4, 4)
    torch.manual_seed(0)
    views = random_crop_flip(image.repeat(200, 1, 1, 1), padding=1, flip=True)
    padded = F.pad(image, (1, 1, 1, 1))[0, 0]
    candidates = [padded[r : r + 4, c : c + 4] for r in range(3) for c in range(3)]
    candidates += [view.flip(-1) for view in candidates]
    assert all(any(torch.equal(view[0], c) for c in candidates) for view in views)
    assert len({tuple(view.flatten().tolist()) for view in views}) == 18  # all 9 offsets x 2 mirrorings occur
    assert torch.equal(random_crop_flip(image, padding=0, flip=False), image)


def test_each_row_is_the_mean_of_that_example_s_view_gradients():
    torch.manual_seed(0)
    model = DigitsTanhCNN()
    x, y = torch.randn(5, 1, 8, 8), torch.randint(0, 10, (5,))
    drawn = []

    def augment(images):
        views = random_crop_flip(images, padding=2, flip=True)
        drawn.append(views)
        return views

    averaged = AugmentationMultiplicity(GhostEngine(model, F.cross_entropy), augment, views=3).per_sample_gradients(x, y)
    assert averaged.batch_size == 5
    reference = FunctorchEngine(model, F.cross_entropy)
    for i in range(5):
        views = reference.per_sample_gradients(drawn[0][3 * i : 3 * i + 3], y[i].repeat(3))
        for got, per_view in zip(averaged.materialize(), views.materialize()):
            torch.testing.assert_close(got[i], per_view.mean(dim=0), rtol=1e-5, atol=1e-7)


def test_changing_one_example_changes_only_its_row():
    model = DigitsTanhCNN()
    engine = AugmentationMultiplicity(FunctorchEngine(model, F.cross_entropy), random_crop_flip, views=4)
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    changed = x.clone()
    changed[1] = 30.0 * torch.randn(1, 8, 8)
    torch.manual_seed(3)
    before = engine.per_sample_gradients(x, y).materialize()
    torch.manual_seed(3)
    after = engine.per_sample_gradients(changed, y).materialize()
    for b, a in zip(before, after):
        torch.testing.assert_close(b[[0, 2, 3]], a[[0, 2, 3]])
        assert not torch.allclose(b[1], a[1])


def test_zero_views_is_refused():
    with pytest.raises(ValueError, match="at least 1 view"):
        AugmentationMultiplicity(FunctorchEngine(DigitsTanhCNN(), F.cross_entropy), random_crop_flip, views=0)


@pytest.mark.slow
def test_run_with_augmentation_multiplicity(make_config, tmp_path):
    overrides = ("+train.augmentation.views=2", "+train.augmentation.crop_padding=1", "+train.augmentation.flip=false")
    summary = run_experiment(make_config(*overrides), tmp_path / "run")
    plain = run_experiment(make_config(), tmp_path / "plain")
    assert summary["verdict"] == "VERIFIED" and summary["epsilon"] == plain["epsilon"]  # same accounting
    weights = lambda run: torch.load(tmp_path / run / "checkpoint.pt", weights_only=False)["model"]  # noqa: E731
    assert not all(torch.equal(weights("run")[k], weights("plain")[k]) for k in weights("plain"))  # the views were used
