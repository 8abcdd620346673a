"""A small tanh CNN for scikit-learn's 8x8 digits that trains with DP-SGD in seconds."""

from torch import Tensor, nn


class DigitsTanhCNN(nn.Module):
    """Two 3x3 tanh convolutions with 2x2 max pooling and one linear layer; 6,090 parameters.

    Same layer vocabulary as the Tramèr & Boneh networks, scaled down for
    input ``[N, 1, 8, 8]``; output logits ``[N, num_classes]``.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.Tanh(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.Tanh(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(32 * 2 * 2, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        """Logits for a batch of images."""
        return self.classifier(self.features(images))
