"""Figures: weight kernels with their histogram, strongest feature channels, a per-block overview, labelled strips
of frames, rows of walks side by side, and captioned image grids with their row and column labels.

Matplotlib is imported inside the functions (Agg canvas, no pyplot state), so importing this module is cheap.
Every figure is written atomically: rendered to a temporary file beside the target, then renamed.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from stylelens.outputs import atomic_path

MAX_GRID_ROWS = 16  # out-channels shown in a kernel grid
MAX_GRID_COLS = 16  # in-channels shown in a kernel grid
MAX_TILES = 256     # maps shown for a 3-D tensor such as a block's `const`
DIVERGING = 'RdBu_r'
DPI = 100


@dataclass
class LabelledGrid:
    """An image grid whose first row and column show its sources (uint8 [H, W, C]), the labels of its other rows and
    columns, and a caption."""

    image: np.ndarray
    row_labels: Sequence[str]
    col_labels: Sequence[str]
    caption: str


@dataclass
class OverviewColumn:
    """One block in the overview: its RGB output (uint8 [H, W, C], or None) and its strongest channel [H, W]."""

    name: str
    rgb: np.ndarray | None
    channel: np.ndarray
    channel_index: int


def as_numpy(value: Any) -> np.ndarray:
    """A float32 numpy copy of a tensor or array (bfloat16 and float16 included)."""
    if hasattr(value, 'detach'):
        value = value.detach().cpu().float().numpy()
    return np.asarray(value, dtype=np.float32)


def new_figure(width: float, height: float) -> Any:
    """A matplotlib Figure on an Agg canvas, independent of pyplot's global state (matplotlib loads lazily)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: str | os.PathLike, tight: bool = False) -> Path:
    """Write the figure atomically (the temporary file keeps the suffix, so the format follows `path`)."""
    if tight:
        fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI)
    return Path(path)


def _symmetric_limit(values: np.ndarray) -> float:
    """max |x| over finite values (1 when all are zero), for colour maps centred on 0."""
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def mosaic(tiles: np.ndarray, ncols: int) -> np.ndarray:
    """Tile [N, h, w] maps into one 2-D array, `ncols` per row, with one NaN pixel between tiles."""
    n, h, w = tiles.shape
    nrows = math.ceil(n / ncols)
    out = np.full((nrows * (h + 1) - 1, ncols * (w + 1) - 1), np.nan, dtype=np.float32)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, ncols)
        out[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = tile
    return out


def _kernel_tiles(values: np.ndarray) -> tuple[np.ndarray, int, str]:
    """(tiles [N, h, w], columns, what is shown) for a 3-D or 4-D tensor, capped to a readable grid."""
    if values.ndim == 4:
        rows, cols = min(values.shape[0], MAX_GRID_ROWS), min(values.shape[1], MAX_GRID_COLS)
        tiles = values[:rows, :cols].reshape(rows * cols, *values.shape[2:])
        note = (f'rows: out-channels 0..{rows - 1} of {values.shape[0]}, '
                f'columns: in-channels 0..{cols - 1} of {values.shape[1]}')
        if rows < values.shape[0] or cols < values.shape[1]:
            note += f' (capped at {MAX_GRID_ROWS}x{MAX_GRID_COLS})'
        return tiles, cols, note
    count = min(values.shape[0], MAX_TILES)
    note = f'maps 0..{count - 1} of {values.shape[0]}' + (f' (capped at {MAX_TILES})' if count < values.shape[0]
                                                          else '')
    return values[:count], math.ceil(math.sqrt(count)), note


def _draw_weights(fig: Any, ax: Any, values: np.ndarray, limit: float) -> str:
    """Draw the tensor in the main panel (grid, heatmap or bars) and return a note on what is shown."""
    if values.ndim <= 1:
        flat = values.reshape(-1)
        ax.bar(np.arange(flat.size), flat, width=1.0, color=np.where(flat >= 0, '#b2182b', '#2166ac'))
        ax.axhline(0, color='black', linewidth=0.5)
        ax.set_xlabel('index')
        return f'{flat.size} values'
    if values.ndim == 4 and values.shape[2:] == (1, 1):
        values = values[:, :, 0, 0]
    if values.ndim == 2:
        image, note, aspect = values, 'heatmap: rows = dim 0 (out), columns = dim 1 (in)', 'auto'
        ax.set_xlabel('in')
        ax.set_ylabel('out')
    else:
        tiles, ncols, note = _kernel_tiles(values if values.ndim <= 4 else values.reshape(-1, *values.shape[-2:]))
        image, aspect = mosaic(tiles, ncols), 'equal'
        ax.set_xticks([])
        ax.set_yticks([])
    shown = ax.imshow(image, cmap=DIVERGING, vmin=-limit, vmax=limit, interpolation='nearest', aspect=aspect)
    fig.colorbar(shown, ax=ax, fraction=0.04, pad=0.02)
    return note


def _draw_histogram(ax: Any, values: np.ndarray) -> None:
    """Histogram of every value of the tensor, with 0 marked."""
    flat = values.reshape(-1)
    ax.hist(flat[np.isfinite(flat)], bins=min(100, max(10, flat.size // 10)), color='#555555')
    ax.axvline(0, color='#b2182b', linewidth=0.8)
    ax.set_title(f'histogram of all {flat.size:,} values', fontsize=9)
    ax.set_yscale('log' if flat.size > 1000 else 'linear')


def kernel_grid_figure(weight: Any, path: str | os.PathLike, title: str) -> Path:
    """Plot a weight tensor beside the histogram of its values: conv [out, in, kh, kw] as an out x in grid of
    kernels (capped, the cap stated in the title), FC [out, in] as a heatmap, 1-D and scalars as bars."""
    values = as_numpy(weight)
    fig = new_figure(13, 6.5)
    grid = fig.add_gridspec(1, 2, width_ratios=[2.2, 1])
    main, hist = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
    note = _draw_weights(fig, main, values, _symmetric_limit(values))
    _draw_histogram(hist, values)
    fig.suptitle(f'{title}  {list(values.shape)}\n{note}', fontsize=10)
    return save_figure(fig, path)


def strongest_channels(fmap: np.ndarray, top_k: int) -> np.ndarray:
    """Indices of the `top_k` channels of [C, H, W] with the largest mean |activation|, strongest first."""
    strength = np.abs(fmap).reshape(fmap.shape[0], -1).mean(axis=1)
    return np.argsort(-strength, kind='stable')[:top_k]


def feature_grid_figure(fmap: Any, path: str | os.PathLike, title: str, top_k: int = 16,
                        max_px: int | None = None) -> Path:
    """The `top_k` strongest channels of a feature map [C, H, W] in one grid, on one colour scale centred on 0,
    each labelled with its channel index and mean |activation|; with `max_px`, tiles are average-pooled to at most
    that many pixels a side (a figure tile shows fewer anyway, and full 1024² tiles cost hundreds of MB to draw)."""
    values = as_numpy(fmap)
    values = values.reshape(-1, *values.shape[-2:])
    index = strongest_channels(values, top_k)
    means = [float(np.abs(values[channel]).mean()) for channel in index]
    tiles = values[index]
    factor = tiles.shape[-1] // max_px if max_px else 1
    if factor > 1:
        n, h, w = tiles.shape[0], tiles.shape[1] // factor, tiles.shape[2] // factor
        tiles = tiles[:, :h * factor, :w * factor].reshape(n, h, factor, w, factor).mean(axis=(2, 4))
    ncols = math.ceil(math.sqrt(len(index)))
    h, w = tiles.shape[-2:]
    fig = new_figure(1.6 * ncols + 1.2, 1.6 * math.ceil(len(index) / ncols) + 0.8)
    ax = fig.add_axes((0.02, 0.04, 0.84, 0.82))
    limit = _symmetric_limit(tiles)
    shown = ax.imshow(mosaic(tiles, ncols), cmap=DIVERGING, vmin=-limit, vmax=limit, interpolation='nearest')
    for i, (channel, mean) in enumerate(zip(index, means)):
        r, c = divmod(i, ncols)
        ax.text(c * (w + 1), r * (h + 1), f'ch {channel}  |x| {mean:.3g}',
                fontsize=7, va='top', ha='left', color='black',
                bbox=dict(facecolor='white', alpha=0.7, pad=0.5, linewidth=0))
    ax.set_axis_off()
    fig.colorbar(shown, cax=fig.add_axes((0.88, 0.04, 0.025, 0.82)))
    fig.suptitle(f'{title}\ntop {len(index)} of {values.shape[0]} channels by mean |activation|', fontsize=9)
    return save_figure(fig, path)


def overview_figure(rows: Sequence[OverviewColumn], path: str | os.PathLike) -> Path:
    """Every block side by side, labelled with its name: its RGB output at full size on top (nearest-neighbour,
    so the block's own pixels stay visible) and its strongest channel below."""
    fig = new_figure(2.2 * len(rows), 5.0)
    axes = fig.subplots(2, len(rows), squeeze=False)
    for column, (top, bottom) in zip(rows, axes.T):
        if column.rgb is None:
            top.text(0.5, 0.5, 'no RGB output', ha='center', va='center', transform=top.transAxes)
        else:
            rgb = column.rgb[..., 0] if column.rgb.shape[-1] == 1 else column.rgb
            top.imshow(rgb, cmap='gray', vmin=0, vmax=255, interpolation='nearest', extent=(0, 1, 1, 0))
        top.set_title(column.name, fontsize=11)
        limit = _symmetric_limit(column.channel)
        bottom.imshow(column.channel, cmap=DIVERGING, vmin=-limit, vmax=limit, interpolation='nearest',
                      extent=(0, 1, 1, 0))
        bottom.set_title(f'ch {column.channel_index}', fontsize=9)
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel('RGB output')
    axes[1, 0].set_ylabel('strongest channel')
    fig.tight_layout()
    return save_figure(fig, path)


def _show(ax: Any, frame: np.ndarray) -> None:
    """One uint8 frame on an axis without ticks (grayscale with a gray colour map)."""
    if frame.shape[-1] == 1:
        ax.imshow(frame[..., 0], cmap='gray', vmin=0, vmax=255)
    else:
        ax.imshow(frame)
    ax.set_xticks([])
    ax.set_yticks([])


def labelled_strip_figure(frames: np.ndarray, labels: Sequence[str], title: str, path: str | os.PathLike) -> Path:
    """Frames side by side with a label under each and a title on top."""
    fig = new_figure(1.6 * len(frames) + 0.4, 2.5)
    axes = fig.subplots(1, len(frames), squeeze=False)[0]
    for ax, frame, label in zip(axes, frames, labels):
        _show(ax, frame)
        ax.set_xlabel(label, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def comparison_figure(rows: dict[str, np.ndarray], labels: Sequence[str], title: str,
                      path: str | os.PathLike) -> Path:
    """Several walks as labelled rows of frames (same count each), with a label under each column."""
    columns = len(labels)
    fig = new_figure(1.4 * columns + 1.0, 1.6 * len(rows) + 0.8)
    axes = fig.subplots(len(rows), columns, squeeze=False)
    for row_axes, (name, frames) in zip(axes, rows.items()):
        for ax, frame in zip(row_axes, frames):
            _show(ax, frame)
        row_axes[0].set_ylabel(name, fontsize=10)
    for ax, label in zip(axes[-1], labels):
        ax.set_xlabel(label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def labelled_grids_figure(grids: Sequence[LabelledGrid], path: str | os.PathLike, title: str) -> Path:
    """Grids side by side (up to three per row, sized by the first), each with its caption and with its row and
    column labels as tick labels."""
    h, w = grids[0].image.shape[:2]
    per_row = min(3, len(grids))
    n_rows = -(-len(grids) // per_row)
    fig = new_figure(per_row * max(3.0, 3.2 * w / h) + 0.5, n_rows * 3.4 + 0.6)
    for k, grid in enumerate(grids):
        ax = fig.add_subplot(n_rows, per_row, k + 1)
        ax.imshow(grid.image.squeeze(), cmap='gray' if grid.image.shape[-1] == 1 else None)
        cell_h, cell_w = h // (len(grid.row_labels) + 1), w // (len(grid.col_labels) + 1)
        ax.set_xticks([cell_w * (i + 1.5) for i in range(len(grid.col_labels))], grid.col_labels)
        ax.set_yticks([cell_h * (i + 1.5) for i in range(len(grid.row_labels))], grid.row_labels)
        ax.tick_params(length=0)
        ax.set_title(grid.caption, fontsize=9)
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, path, tight=True)
