"""ScatterNet features: shape, per-example independence (why they cost no privacy), caching, errors."""

from pathlib import Path

import pytest
import torch

from dpbench.data import load_dataset, scattering
from dpbench.data.scattering import load_scattered_dataset, scattering_transform


def test_shape_is_channels_times_81_at_a_quarter_of_the_resolution():
    assert scattering_transform(torch.randn(3, 1, 16, 16)).shape == (3, 81, 4, 4)
    assert scattering_transform(torch.randn(2, 3, 32, 32), batch_size=1).shape == (2, 243, 8, 8)


def test_each_example_is_transformed_on_its_own():
    """Changing one image changes only its own coefficients, and batching does not matter."""
    torch.manual_seed(0)
    images = torch.randn(5, 1, 16, 16)
    changed = images.clone()
    changed[2] = 50.0 * torch.randn(1, 16, 16)
    original, modified = scattering_transform(images, batch_size=2), scattering_transform(changed, batch_size=5)
    unchanged_rows = [0, 1, 3, 4]
    torch.testing.assert_close(original[unchanged_rows], modified[unchanged_rows], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(original[2], modified[2])


def test_images_smaller_than_the_largest_scale_are_refused():
    with pytest.raises(ValueError, match="J=3 needs images of at least 8x8"):
        scattering_transform(torch.randn(1, 1, 4, 4), J=3)


def test_dataset_is_cached_and_reloaded(tmp_path, monkeypatch):
    """The built-in digits (8x8) stand in for a vision dataset; the second load must come from the cache."""
    first = load_scattered_dataset("digits", root=tmp_path, J=1, L=4)
    pixels = load_dataset("digits", root=tmp_path)
    assert first.name == "digits_scattering"
    assert first.train_features.shape == (pixels.train_size, 1 + 4, 4, 4)
    assert torch.equal(first.train_labels, pixels.train_labels)
    assert len(list((tmp_path / scattering.CACHE_FOLDER).glob("digits-J1-L4-*.pt"))) == 1

    def not_called(*args, **kwargs):
        raise AssertionError("the cached coefficients should have been used")

    monkeypatch.setattr(scattering, "scattering_transform", not_called)
    second = load_scattered_dataset("digits", root=tmp_path, J=1, L=4)
    assert torch.equal(first.train_features, second.train_features)
    assert torch.equal(first.test_features, second.test_features)


def test_the_cache_is_mapped_from_its_file_and_writing_to_it_leaves_the_file_intact(tmp_path):
    """A cached dataset is memory-mapped (its pages are the file cache, shared by concurrent runs), privately: a
    run that changes its features in place changes neither the file nor the next run's features."""
    first = load_scattered_dataset("digits", root=tmp_path, J=1, L=4)
    second = load_scattered_dataset("digits", root=tmp_path, J=1, L=4)
    maps = Path("/proc/self/maps")
    if maps.exists():
        (cache_file,) = (tmp_path / scattering.CACHE_FOLDER).glob("digits-J1-L4-*.pt")
        pointer = second.train_features.data_ptr()
        mapped = [line.split()[0].split("-") for line in maps.read_text().splitlines() if str(cache_file) in line]
        assert any(int(low, 16) <= pointer < int(high, 16) for low, high in mapped)
    second.train_features.add_(1.0)
    third = load_scattered_dataset("digits", root=tmp_path, J=1, L=4)
    assert torch.equal(third.train_features, first.train_features)
