"""Classifiers on ScatterNet features (:mod:`dpbench.data.scattering`), after Tramèr & Boneh (2021).

Both normalise the coefficients first, in one of Tramèr & Boneh's two ways (``normalization``):

* ``"group"``: a parameter-free GroupNorm, per-example statistics, so no example's features depend on
  another's and normalisation costs no privacy;
* ``"data"``: the training set's per-channel mean and variance, released with Gaussian noise before training
  (:class:`~dpbench.models.released_normalization.ReleasedNormalization`, whose docstring gives the privacy
  argument); the release is in the run's ledger and noise calibration leaves room for it.
"""

from typing import Any

from torch import Tensor, nn

from dpbench.models.released_normalization import ReleasedNormalization

NORMALIZATIONS = ("group", "data")


def input_normalization(normalization: str, channels: int, groups: int,
                        released: dict[str, Any] | None) -> nn.Module:
    """The first layer: a parameter-free GroupNorm, or a :class:`ReleasedNormalization` (``released``: its
    keyword arguments)."""
    if normalization == "group":
        return nn.GroupNorm(groups, channels, affine=False)
    if normalization == "data":
        return ReleasedNormalization(channels, **(released or {}))
    raise ValueError(f"model.normalization must be one of {', '.join(NORMALIZATIONS)}; got '{normalization}'")


class ScatterLinear(nn.Module):
    """Logistic regression on normalised scattering coefficients ``[channels, height, width]``.

    Tramèr & Boneh's "ScatterNet + linear": 98.7 % (MNIST), 89.7 % (Fashion-MNIST), 67.0 %
    (CIFAR-10) at ε=3, δ=1e-5. ``groups`` must divide ``channels`` (81 per colour channel at J=2).
    """

    def __init__(self, channels: int, height: int, width: int, num_classes: int = 10, groups: int = 27,
                 normalization: str = "group", released_normalization: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.normalize = input_normalization(normalization, channels, groups, released_normalization)
        self.classifier = nn.Linear(channels * height * width, num_classes)

    def forward(self, coefficients: Tensor) -> Tensor:
        """Logits for a batch of scattering coefficients."""
        return self.classifier(self.normalize(coefficients).flatten(1))


class ScatterCNN(nn.Module):
    """A small tanh CNN on normalised scattering coefficients (Tramèr & Boneh's "ScatterNet + CNN").

    ``widths`` lists the 3x3 convolutions; ``"M"`` inserts a 2x2 max-pool. The convolutions are
    followed by an adaptive average pool to 4x4 and ``hidden`` tanh units (none if 0) before the logits.
    """

    def __init__(
        self,
        channels: int,
        num_classes: int = 10,
        groups: int = 27,
        widths: tuple[int | str, ...] = (64, "M", 64),
        hidden: int = 0,
        normalization: str = "group",
        released_normalization: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [input_normalization(normalization, channels, groups, released_normalization)]
        width = channels
        for spec in widths:
            if spec == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(width, int(spec), kernel_size=3, padding=1), nn.Tanh()]
                width = int(spec)
        layers += [nn.AdaptiveAvgPool2d(4), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.Linear(width * 16, hidden), nn.Tanh(), nn.Linear(hidden, num_classes)] if hidden else [
            nn.Linear(width * 16, num_classes)
        ]
        self.classifier = nn.Sequential(*head)

    def forward(self, coefficients: Tensor) -> Tensor:
        """Logits for a batch of scattering coefficients."""
        return self.classifier(self.features(coefficients))
