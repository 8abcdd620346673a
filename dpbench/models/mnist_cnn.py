"""The end-to-end tanh CNN of Tramèr & Boneh (2021) for MNIST and Fashion-MNIST."""

from torch import Tensor, nn


def conv_tanh(conv: nn.Conv2d, groups: int) -> list[nn.Module]:
    """``conv`` then tanh, with a GroupNorm of ``groups`` groups between them if ``groups > 0``.
    GroupNorm normalises each example on its own, so unlike BatchNorm it keeps per-example gradients."""
    norm = [nn.GroupNorm(groups, conv.out_channels)] if groups else []
    return [conv, *norm, nn.Tanh()]


class MnistTanhCNN(nn.Module):
    """Two strided tanh convolutions and two linear layers; 26,010 parameters for 10 classes.

    Tramèr & Boneh, "Differentially Private Learning Needs Better Features (or Much
    More Data)", ICLR 2021. Input ``[N, 1, 28, 28]``, output logits ``[N, num_classes]``.
    ``group_norm_groups > 0`` adds a GroupNorm with that many groups after each convolution (De et
    al. 2022); 0 keeps the original.
    """

    def __init__(self, num_classes: int = 10, group_norm_groups: int = 0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *conv_tanh(nn.Conv2d(1, 16, kernel_size=8, stride=2, padding=2), group_norm_groups),
            nn.MaxPool2d(kernel_size=2, stride=1),
            *conv_tanh(nn.Conv2d(16, 32, kernel_size=4, stride=2), group_norm_groups),
            nn.MaxPool2d(kernel_size=2, stride=1),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(32 * 4 * 4, 32),
            nn.Tanh(),
            nn.Linear(32, num_classes),
        )

    def forward(self, images: Tensor) -> Tensor:
        """Logits for a batch of images."""
        return self.classifier(self.features(images))
