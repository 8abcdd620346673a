"""DP-SGD-compatible image classifiers: tanh CNNs without BatchNorm (which would mix examples).

Build one with Hydra (``conf/model/*.yaml``) or by name with :func:`build_model`.
"""

from dpbench.models.cifar10_cnn import Cifar10TanhCNN
from dpbench.models.digits_cnn import DigitsTanhCNN
from dpbench.models.mnist_cnn import MnistTanhCNN
from dpbench.models.registry import build_model, model_names, register_model

__all__ = [
    "Cifar10TanhCNN",
    "DigitsTanhCNN",
    "MnistTanhCNN",
    "build_model",
    "model_names",
    "register_model",
]
