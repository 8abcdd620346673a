"""DP-SGD-compatible models: tanh CNNs without BatchNorm (which would mix examples) for images,
and classifiers on ScatterNet features (:mod:`dpbench.models.scatter_net`). A workload's own models live
with the workload (the telemetry VAEs: :mod:`dpbench.telemetry.vae`).

Build one with Hydra (``conf/model/*.yaml``, ``_target_`` the class).
"""

from dpbench.models.cifar10_cnn import Cifar10TanhCNN
from dpbench.models.digits_cnn import DigitsTanhCNN
from dpbench.models.mnist_cnn import MnistTanhCNN
from dpbench.models.scatter_net import ScatterCNN, ScatterLinear

__all__ = [
    "Cifar10TanhCNN",
    "DigitsTanhCNN",
    "MnistTanhCNN",
    "ScatterCNN",
    "ScatterLinear",
]
