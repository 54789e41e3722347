"""Train the factor regressor on the procedural shapes with their true factors, reproducibly from fixed seeds.

`python -m stylelens.factors.train checkpoints/factor-regressor.pt [COUNT] [EPOCHS]` draws COUNT training images
(shapes' train split seed) and a test set (its test split seed), trains with Adam and a cosine learning rate on
one CPU thread (so the same command gives the same weights), and writes the weights with the test errors.
Images get a little Gaussian pixel noise and blur while training, so generated images (which are never quite as
crisp as the drawn ones) read as well as drawn ones.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stylelens.datasets.shapes import SPLIT_SEEDS, render, sample_factors
from stylelens.errors import StylelensError
from stylelens.factors.model import (
    CIRCULAR,
    LINEAR,
    RESOLUTION,
    FactorNet,
    FactorRegressor,
    save_regressor,
    targets,
    true_angles,
    true_linear,
)
from stylelens.progress import progress_bar

BATCH = 128
LR = 2e-3
TEST_COUNT = 4000
NOISE = 0.04
SEED = 0


def shapes_tensors(count: int, split: str) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """`count` drawn images of a split as float [N, 3, 32, 32] in [-1, 1], with their factors."""
    factors = sample_factors(count, SPLIT_SEEDS[split])
    pixels = torch.from_numpy(render(factors, RESOLUTION)).permute(0, 3, 1, 2)
    return pixels.float() / 127.5 - 1, factors


def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Pixel noise, and a 3x3 blur on a random half of the batch."""
    noisy = images + NOISE * torch.randn(images.shape, generator=generator)
    kernel = torch.tensor([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :] / 16).expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(noisy, (1, 1, 1, 1), mode='replicate'), kernel, groups=3)
    pick = (torch.rand(len(images), generator=generator) < 0.5)[:, None, None, None]
    return torch.where(pick, blurred, noisy)


def loss_fn(raw: torch.Tensor, kind: torch.Tensor, goal: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the kind plus the mean squared error of the defined regression targets."""
    kinds = raw.shape[1] - goal.shape[1]
    squared = (raw[:, kinds:] - goal).square() * mask
    return F.cross_entropy(raw[:, :kinds], kind) + squared.sum() / mask.sum()


def train_regressor(out: str | Path, count: int = 40_000, epochs: int = 8, width: int = 32,
                    progress: bool = True, test_count: int = TEST_COUNT) -> FactorRegressor:
    """Train on `count` drawn images for `epochs` epochs (one thread, seeded), evaluate on `test_count` images of
    the test split, save."""
    if count < BATCH or epochs < 1:
        raise StylelensError(f'need COUNT >= {BATCH} and EPOCHS >= 1 (got {count}, {epochs})')
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(SEED)
        net = FactorNet(width)
        images, factors = shapes_tensors(count, 'train')
        kind, goal, mask = (torch.from_numpy(a) for a in targets(factors))
        steps = epochs * (count // BATCH)
        optimizer = torch.optim.Adam(net.parameters(), lr=LR)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
        generator = torch.Generator().manual_seed(SEED)
        start = time.time()
        with progress_bar(steps, 'training factor regressor', progress) as bar:
            for _ in range(epochs):
                for idx in torch.randperm(count, generator=generator)[:steps // epochs * BATCH].view(-1, BATCH):
                    loss = loss_fn(net(_augment(images[idx], generator)), kind[idx], goal[idx], mask[idx])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    bar.update(1)
                    bar.set_postfix(loss=f'{float(loss.detach()):.4f}', refresh=False)
        regressor = FactorRegressor(net)
        regressor.metrics = dict(evaluate(regressor, test_count), train_images=count, epochs=epochs, width=width,
                                 train_seconds=round(time.time() - start, 1), seed=SEED)
    finally:
        torch.set_num_threads(threads)
    save_regressor(regressor, out)
    return regressor


def evaluate(regressor: FactorRegressor, count: int = TEST_COUNT) -> dict[str, float]:
    """Test-split errors: kind accuracy, mean absolute error of each linear factor (natural units) and of each
    angle (degrees; the turn in degrees of actual rotation, squares and triangles only)."""
    images, factors = shapes_tensors(count, 'test')
    with torch.no_grad():
        parts = [regressor.read(images[i:i + 500]) for i in range(0, count, 500)]
    kind = torch.cat([p.kind for p in parts]).argmax(1).numpy()
    result = {'kind_accuracy': float((kind == factors['shape']).mean())}
    for name in LINEAR:
        predicted = torch.cat([p.linear[name] for p in parts]).numpy()
        result[f'{name}_mae'] = float(np.abs(predicted - true_linear(factors, name)).mean())
    truths, symmetry = true_angles(factors)
    for name in CIRCULAR:
        error = np.abs(np.angle(np.exp(1j * (torch.cat([p.angles[name] for p in parts]).numpy() - truths[name]))))
        if name == 'rotation':
            keep = symmetry > 0
            error = error[keep] / symmetry[keep]
        result[f'{name}_mae_deg'] = float(np.degrees(error).mean())
    return result


if __name__ == '__main__':
    if len(sys.argv) < 2:
        sys.exit('usage: python -m stylelens.factors.train OUT [COUNT] [EPOCHS]')
    try:
        trained = train_regressor(sys.argv[1], *(int(arg) for arg in sys.argv[2:4]))
    except (StylelensError, ValueError) as error:
        sys.exit(f'error: {error}')
    print(' '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in trained.metrics.items()))
