"""Figures of the causes analyses: patching heat maps, per-layer attribution bars, ablation bars, and style
channels with their locality maps. Matplotlib loads inside the functions (Agg canvas); files are written
atomically by stylelens.viz.save_figure."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from stylelens.viz import DIVERGING, new_figure, save_figure

CHANNELS_PER_ROW = 32


def _picture(ax, image: np.ndarray, title: str, region: tuple[int, int, int, int] | None = None) -> None:
    """A uint8 image without ticks, with the metric's region outlined."""
    from matplotlib.patches import Rectangle

    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap='gray' if image.shape[-1] == 1 else None)
    if region is not None:
        x0, y0, x1, y1 = region
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor='yellow', linewidth=1.5))
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def patch_figure(labels: Sequence[str], values: np.ndarray, clean: np.ndarray, corrupt: np.ndarray, title: str,
                 path: str | os.PathLike, region: tuple[int, int, int, int] | None = None,
                 per_channel: bool = False) -> Path:
    """The clean and corrupt images beside a heat map of the share recovered per point (a row of points, or a grid
    of channels), 0 = corrupt, 1 = clean."""
    count = len(values)
    if per_channel:
        cols = min(CHANNELS_PER_ROW, count)
        grid = np.full(cols * math.ceil(count / cols), np.nan)
        grid[:count] = values
        grid = grid.reshape(-1, cols)
    else:
        grid = np.asarray(values, dtype=float)[None]
    width = max(6.0, (0.3 if per_channel else 0.55) * grid.shape[1] + 4.5)
    fig = new_figure(width, 2.6 + 0.3 * grid.shape[0])
    axes = fig.subplots(1, 3, gridspec_kw=dict(width_ratios=[1, 1, max(2.0, grid.shape[1] / 4)]))
    _picture(axes[0], clean, 'clean', region)
    _picture(axes[1], corrupt, 'corrupt', region)
    limit = max(1.0, float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0)
    shown = axes[2].imshow(grid, cmap=DIVERGING, vmin=-limit, vmax=limit, aspect='auto')
    if per_channel:
        axes[2].set_xlabel('channel (row-major, %d per row)' % grid.shape[1], fontsize=8)
        axes[2].set_yticks(range(grid.shape[0]), [str(r * grid.shape[1]) for r in range(grid.shape[0])], fontsize=7)
    else:
        axes[2].set_xticks(range(count), labels, rotation=60, ha='right', fontsize=7)
        axes[2].set_yticks([])
        for k, value in enumerate(values):
            axes[2].text(k, 0, f'{value:.2f}', ha='center', va='center', fontsize=7)
    fig.colorbar(shown, ax=axes[2], fraction=0.04, label='recovered')
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, tight=True)


def bars_figure(rows: Sequence[tuple[str, np.ndarray]], title: str, path: str | os.PathLike,
                ylabel: str = 'attribution', top: int = 3) -> Path:
    """One bar chart per row (e.g. per layer: a value per channel), the `top` largest |values| labelled."""
    fig = new_figure(10, 1.6 * len(rows) + 0.8)
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, (name, values) in zip(axes, rows):
        ax.bar(np.arange(len(values)), values, width=1.0, color=np.where(values >= 0, '#c44e52', '#4c72b0'))
        for k in np.argsort(-np.abs(values))[:top]:
            ax.annotate(str(k), (k, values[k]), fontsize=7, ha='center', va='bottom' if values[k] >= 0 else 'top')
        ax.axhline(0, color='black', linewidth=0.5)
        ax.set_ylabel(name, fontsize=8, rotation=0, ha='right', va='center')
        ax.set_xlim(-0.5, len(values) - 0.5)
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel(f'channel ({ylabel})', fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, tight=True)


def channels_figure(names: Sequence[str], before: np.ndarray, after: np.ndarray, maps: np.ndarray, title: str,
                    path: str | os.PathLike, region: tuple[int, int, int, int] | None = None,
                    span: float = 1.0) -> Path:
    """One row per style channel: the image at −span σ and +span σ, and its locality map."""
    fig = new_figure(7.2, 2.1 * len(names) + 0.6)
    axes = fig.subplots(len(names), 3, squeeze=False)
    for row, name in enumerate(names):
        _picture(axes[row, 0], before[row], f'{name}  −{span:g}σ', region)
        _picture(axes[row, 1], after[row], f'+{span:g}σ', region)
        axes[row, 2].imshow(maps[row], cmap='magma')
        axes[row, 2].set_title('locality map', fontsize=9)
        axes[row, 2].set_xticks([])
        axes[row, 2].set_yticks([])
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, tight=True)
