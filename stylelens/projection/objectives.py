"""What a projection minimises (`--loss lpips|vgg|mse`) and the distances reported afterwards.

lpips and vgg compare `PerceptualDistance` embeddings of images shrunk to at most 256x256 by area averaging (as
projector.py feeds VGG16, which was built for 224x224); mse is the mean squared pixel difference in [-1, 1] at full
resolution, about as large as an LPIPS distance, so the same noise-regularisation weight suits all three.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from stylelens.errors import StylelensError
from stylelens.projection.perceptual import PerceptualDistance, VGG16Features
from stylelens.projection.projector import Objective
from stylelens.projection.target import CHANNEL_NAMES

LOSSES = ('lpips', 'vgg', 'mse')
PERCEPTUAL_LOSSES = ('lpips', 'vgg')
PERCEPTUAL_MAX_SIZE = 256
PERCEPTUAL_CHANNELS = (1, 3)


def check_loss(loss: str, channels: int) -> None:
    """One line for an unknown loss, or a perceptual loss on images VGG16 cannot see (2 or 4 channels)."""
    if loss not in LOSSES:
        raise StylelensError(f"unknown --loss {loss!r}: choose one of {', '.join(LOSSES)}")
    if loss in PERCEPTUAL_LOSSES and channels not in PERCEPTUAL_CHANNELS:
        raise StylelensError(f'--loss {loss} compares RGB (or grayscale) images with VGG16, and this network makes '
                             f'{channels}-channel ({CHANNEL_NAMES.get(channels, "?")}) images: use --loss mse')


def image_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 [H, W, C] -> float [1, C, H, W] in [-1, 1]."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).to(device).permute(2, 0, 1)[None].float() / 127.5 - 1


def perceptual_input(images: torch.Tensor) -> torch.Tensor:
    """Images larger than 256x256 area-averaged down to 256x256, as projector.py does before VGG16."""
    if images.shape[2] > PERCEPTUAL_MAX_SIZE:
        return F.interpolate(images, size=(PERCEPTUAL_MAX_SIZE, PERCEPTUAL_MAX_SIZE), mode='area')
    return images


def make_objective(loss: str, target: np.ndarray, features: VGG16Features | None,
                   device: torch.device) -> Objective:
    """The distance from synthesised images [1, C, H, W] to `target` (uint8 [H, W, C]); the target's embedding is
    computed once. Perceptual losses need `features`."""
    goal = image_tensor(target, device)
    if loss == 'mse':
        return lambda images: (images - goal).square().mean()
    if features is None:
        raise StylelensError(f'--loss {loss} needs the VGG16 weights')
    distance = PerceptualDistance(features.to(device), learned=loss == 'lpips')
    with torch.no_grad():
        goal_embedding = distance.embed(perceptual_input(goal))
    return lambda images: (distance.embed(perceptual_input(images)) - goal_embedding).square().sum()


def perceptual_distances(a: np.ndarray, b: np.ndarray, features: VGG16Features,
                         device: torch.device) -> dict[str, float]:
    """LPIPS and the plain VGG distance between two uint8 images [H, W, C] (each shrunk as for the loss)."""
    x, y = (perceptual_input(image_tensor(image, device)) for image in (a, b))
    out = {}
    with torch.no_grad():
        for name, learned in (('lpips', True), ('vgg', False)):
            out[name] = float(PerceptualDistance(features.to(device), learned=learned)(x, y)[0])
    return out
