"""The telemetry table's training/test split: each device's side is a keyed hash of its own guid, so a corpus with
one device more or less splits every other device the same way (a permutation of the row count moved most)."""

import torch

from dpbench.privacy.example_split import held_out
from dpbench.telemetry.dataset import load_telemetry
from dpbench.telemetry.simulator import simulate
from dpbench.telemetry.wide_table import build_wide_table


def test_each_devices_side_is_a_function_of_its_guid(tmp_path):
    simulate(1_500, tmp_path, seed=3)
    splits = load_telemetry(path=str(tmp_path), test_fraction=0.1, split_seed=4)
    wide = build_wide_table(tmp_path)
    test = held_out((str(g) for g in wide.guids), 0.1, 4)
    features = torch.from_numpy(wide.features)
    assert 0 < int(test.sum()) < len(test)
    assert torch.equal(splits.test_features, features[test]) and torch.equal(splits.train_features, features[~test])
    # without the first device (guids are sorted): every other device keeps its side
    assert torch.equal(held_out((str(g) for g in wide.guids[1:]), 0.1, 4), test[1:])
