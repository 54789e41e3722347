"""What a training run writes as it goes: sample grids and their GIF, the step and epoch CSVs, loss figures."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stylelens.datasets import ImageDataset
from stylelens.outputs import atomic_path, atomic_write_text, to_uint8
from stylelens.viz import new_figure, save_figure


def tile(images: np.ndarray, cols: int) -> np.ndarray:
    """Tile uint8 NHWC images into one HWC image, `cols` per row."""
    n, h, w, c = images.shape
    rows = math.ceil(n / cols)
    padded = np.concatenate([images, np.zeros((rows * cols - n, h, w, c), np.uint8)])
    return padded.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


@torch.no_grad()
def sample_grid(G: nn.Module, z: torch.Tensor, c: torch.Tensor | None, cols: int) -> np.ndarray:
    """G's images for the fixed inputs as one uint8 grid, in eval mode and without touching the training RNG."""
    was_training = G.training
    G.eval()
    with torch.random.fork_rng(devices=[z.device] if z.device.type == 'cuda' else []):
        torch.manual_seed(0)
        images = G(z, c)
    G.train(was_training)
    return tile(to_uint8(images), cols)


def write_gif(samples: Path) -> Path:
    """`progress.gif` of the per-epoch grids `epochNNN.png`, in order, half a second each."""
    import imageio.v3 as iio

    frames = [iio.imread(path) for path in sorted(samples.glob('epoch*.png'))]
    with atomic_path(samples / 'progress.gif') as tmp:
        iio.imwrite(tmp, np.stack(frames), extension='.gif', duration=500, loop=0)
    return samples / 'progress.gif'


# ------------------------------------------------------------------------------------------------ logs

def _columns(history: list[dict[str, float]]) -> list[str]:
    """CSV columns: step and epoch first, then every metric in the order it first appeared."""
    columns = ['step', 'epoch']
    for row in history:
        columns += [k for k in row if k not in columns]
    return columns


def epoch_means(history: list[dict[str, float]]) -> list[dict[str, float]]:
    """The per-step metrics averaged over each epoch (step = the epoch's last step)."""
    means = []
    for epoch in sorted({int(row['epoch']) for row in history}):
        rows = [row for row in history if row['epoch'] == epoch]
        mean = {k: float(np.mean([r[k] for r in rows if k in r])) for k in _columns(rows)}
        means.append({**mean, 'step': rows[-1]['step'], 'epoch': epoch})
    return means


def write_csv(rows: list[dict[str, float]], path: Path) -> Path:
    """Rows as CSV with a header, atomically; integers stay integers."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_columns(rows), lineterminator='\n')
    writer.writeheader()
    writer.writerows({k: (int(v) if k in ('step', 'epoch') else repr(v)) for k, v in row.items()} for row in rows)
    return atomic_write_text(path, buffer.getvalue())


def write_logs(history: list[dict[str, float]], outdir: Path) -> None:
    """`steps.csv` and `epochs.csv` from the full history (rewritten, so a resumed run never duplicates rows)."""
    if history:
        write_csv(history, outdir / 'steps.csv')
        write_csv(epoch_means(history), outdir / 'epochs.csv')


# ------------------------------------------------------------------------------------------------ figures





def curves_figure(history: list[dict[str, float]], keys: dict[str, str], title: str, path: Path) -> Path:
    """Per-step curves of `keys` (column -> legend label) with their per-epoch means as dots."""
    fig = new_figure(8, 4)
    ax = fig.add_subplot()
    means = epoch_means(history)
    for key, label in keys.items():
        line, = ax.plot([r['step'] for r in history], [r[key] for r in history], alpha=0.4, label=label)
        ax.plot([m['step'] for m in means], [m[key] for m in means], 'o-', color=line.get_color(),
                label=f'{label} (epoch mean)')
    ax.set(xlabel='step', title=title)
    ax.legend(fontsize='small')
    return save_figure(fig, path, tight=True)


def real_vs_generated_figure(real: np.ndarray, fake: np.ndarray, path: Path) -> Path:
    """Side by side: a grid of training images and the final generated grid."""
    fig = new_figure(10, 5.3)
    for idx, (image, title) in enumerate([(real, 'real'), (fake, 'generated')], start=1):
        ax = fig.add_subplot(1, 2, idx)
        ax.imshow(image.squeeze(), cmap='gray' if image.shape[2] == 1 else None, interpolation='nearest')
        ax.set_title(title)
        ax.axis('off')
    return save_figure(fig, path, tight=True)


def write_figures(history: list[dict[str, float]], loss: str, dataset: ImageDataset, fake: np.ndarray, grid: int,
                  seed: int, outdir: Path) -> None:
    """`losses.png`, `accuracy.png` (Wasserstein estimate and GP for WGAN-GP) and `real_vs_generated.png` (a
    seeded pick of `grid`² training images beside the final generated grid)."""
    curves_figure(history, {'loss_d': 'D loss', 'loss_g': 'G loss'}, 'losses', outdir / 'losses.png')
    if loss == 'wgan-gp':
        keys, title = {'wasserstein': 'Wasserstein estimate', 'gp': 'gradient penalty'}, 'critic'
    else:
        keys, title = {'acc_real': 'D accuracy on real', 'acc_fake': 'D accuracy on fake'}, 'D accuracy'
    curves_figure(history, keys, title, outdir / 'accuracy.png')
    count = grid ** 2
    pick = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:count]
    real = tile(to_uint8(dataset.images[pick]), grid)
    real_vs_generated_figure(real, fake, outdir / 'real_vs_generated.png')
