"""The perceptual distances of the projector: our own VGG16 feature network and the LPIPS distance on top of it.

LPIPS (Zhang et al. 2018) compares five VGG16 feature maps (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3): each is
normalised to unit length over channels, the squared differences are weighted per channel by learned non-negative
weights, summed over channels and averaged over positions, and the five terms are added. `PerceptualDistance.embed`
returns one vector per image whose squared Euclidean distance is exactly that sum, as NVIDIA's `vgg16.pt` does with
``return_lpips=True``, so a target is embedded once and every step compares vectors. With all channel weights 1 the
same sum is the plain "vgg" distance (LPIPS's unlearned baseline).

Images come in [-1, 1]; LPIPS's scaling layer maps them to ImageNet-normalised inputs (its shift and scale are the
ImageNet mean and standard deviation rewritten for [-1, 1]). Grayscale images are repeated to three channels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# (convolutions, output channels) of VGG16's five stages; LPIPS reads the last ReLU of every stage.
STAGES: tuple[tuple[int, int], ...] = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10


class VGG16Features(torch.nn.Module):
    """VGG16's 13 convolutions (3x3, padding 1, ReLU; 2x2 max-pooling between stages) and the five LPIPS channel
    weights; `forward` returns the five stage outputs LPIPS compares."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = torch.nn.ModuleList()
        in_channels = 3
        for count, channels in STAGES:
            for _ in range(count):
                self.convs.append(torch.nn.Conv2d(in_channels, channels, kernel_size=3, padding=1))
                in_channels = channels
        for index, (_, channels) in enumerate(STAGES):
            self.register_buffer(f'lpips{index}', torch.ones(channels))
        self.register_buffer('shift', torch.tensor(LPIPS_SHIFT).reshape(1, 3, 1, 1))
        self.register_buffer('scale', torch.tensor(LPIPS_SCALE).reshape(1, 3, 1, 1))

    def lpips_weights(self) -> list[torch.Tensor]:
        """The learned per-channel weights of the five stages (all ones until NVIDIA's are loaded)."""
        return [getattr(self, f'lpips{index}') for index in range(len(STAGES))]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Images [N, 1 or 3, H, W] in [-1, 1] -> the ReLU outputs ending each of the five stages."""
        x = images.repeat(1, 3, 1, 1) if images.shape[1] == 1 else images
        x = (x - self.shift.to(x.dtype)) / self.scale.to(x.dtype)
        convs = iter(self.convs)
        outputs = []
        for stage, (count, _) in enumerate(STAGES):
            if stage:
                x = F.max_pool2d(x, kernel_size=2, stride=2)
            for _ in range(count):
                x = F.relu(next(convs)(x))
            outputs.append(x)
        return outputs


class PerceptualDistance(torch.nn.Module):
    """LPIPS (`learned=True`: NVIDIA's channel weights) or the plain VGG distance (`learned=False`: weights 1),
    computed as squared distances between `embed` vectors."""

    def __init__(self, features: VGG16Features, learned: bool = True) -> None:
        super().__init__()
        self.features = features.eval().requires_grad_(False)
        self.learned = learned

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Images [N, C, H, W] in [-1, 1] -> [N, D]: per stage, unit-normalised features times the square root of
        the channel weights over the square root of the number of positions, flattened and concatenated."""
        parts = []
        for feature, weight in zip(self.features(images), self.features.lpips_weights()):
            unit = feature / (torch.linalg.vector_norm(feature, dim=1, keepdim=True) + NORM_EPS)  # grad 0 at 0
            if self.learned:
                unit = unit * weight.to(unit.dtype).sqrt().reshape(1, -1, 1, 1)
            parts.append(unit.flatten(1) / (feature.shape[2] * feature.shape[3]) ** 0.5)
        return torch.cat(parts, dim=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The distance between two image batches, one value per pair [N]."""
        return (self.embed(a) - self.embed(b)).square().sum(dim=1)
