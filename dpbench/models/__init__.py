"""DP-SGD-compatible models: tanh CNNs without BatchNorm (which would mix examples) for images,
classifiers on ScatterNet features (:mod:`dpbench.models.scatter_net`), and
variational autoencoders of the telemetry wide table (:mod:`dpbench.models.vae`, imported by name: it needs
the ``dpbench[telemetry]`` extra).

Build one with Hydra (``conf/model/*.yaml``) or by name with :func:`build_model`.
"""

from dpbench.models.cifar10_cnn import Cifar10TanhCNN
from dpbench.models.digits_cnn import DigitsTanhCNN
from dpbench.models.mnist_cnn import MnistTanhCNN
from dpbench.models.registry import build_model, model_names, register_model
from dpbench.models.scatter_net import ScatterCNN, ScatterLinear

__all__ = [
    "Cifar10TanhCNN",
    "DigitsTanhCNN",
    "MnistTanhCNN",
    "ScatterCNN",
    "ScatterLinear",
    "build_model",
    "model_names",
    "register_model",
]
