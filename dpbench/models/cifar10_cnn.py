"""The end-to-end tanh CNN of Tramèr & Boneh (2021) for CIFAR-10."""

from torch import Tensor, nn

from dpbench.models.mnist_cnn import conv_tanh


def _conv_block(in_channels: int, out_channels: int, groups: int) -> list[nn.Module]:
    """Two 3x3 same-padding tanh convolutions (each GroupNorm-ed first if ``groups``) followed by 2x2
    max pooling (halves height and width)."""
    return [
        *conv_tanh(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), groups),
        *conv_tanh(nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1), groups),
        nn.MaxPool2d(kernel_size=2, stride=2),
    ]


class Cifar10TanhCNN(nn.Module):
    """Three VGG-style tanh blocks (32, 64, 128 channels) and two linear layers; 550,570 parameters.

    Tramèr & Boneh, "Differentially Private Learning Needs Better Features (or Much
    More Data)", ICLR 2021 (after Papernot et al. 2021). Input
    ``[N, 3, 32, 32]``, output logits ``[N, num_classes]``. ``group_norm_groups > 0`` adds a
    GroupNorm with that many groups after every convolution (De et al. 2022); 0 keeps the original.
    """

    def __init__(self, num_classes: int = 10, group_norm_groups: int = 0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_block(3, 32, group_norm_groups),
            *_conv_block(32, 64, group_norm_groups),
            *_conv_block(64, 128, group_norm_groups),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(128 * 4 * 4, 128),
            nn.Tanh(),
            nn.Linear(128, num_classes),
        )

    def forward(self, images: Tensor) -> Tensor:
        """Logits for a batch of images."""
        return self.classifier(self.features(images))
