"""The picture of a direction set: one seed moved along each of the top directions, one row per direction."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from stylelens import distributed
from stylelens.directions.format import DirectionSet
from stylelens.directions.pca import WPCA
from stylelens.generation import seeds_to_ws
from stylelens.traversal import shift_ws
from stylelens.viz import comparison_figure
from stylelens.walks import render_frames


def traversal_frames(G: torch.nn.Module, dirs: DirectionSet, pca: WPCA, ws: torch.Tensor, values: Sequence[float],
                     rows: Sequence[int], *, batch_size: int = 16, noise_mode: str = 'const') -> np.ndarray:
    """uint8 frames [len(rows), N, len(values), H, W, C]: ws [N, num_ws, w_dim] moved along each chosen direction
    by value * sigma (sigma of W along it) on the direction's own layers."""
    moved = torch.cat([shift_ws(G, ws, dirs.directions[k] * pca.std_along(dirs.directions[k]), values,
                                dirs.layer_indices(k)) for k in rows])
    frames = render_frames(G, moved.reshape(-1, *ws.shape[1:]), noise_mode, batch_size)
    return frames.reshape(len(rows), len(ws), len(values), *frames.shape[1:])


def direction_figure(G: torch.nn.Module, dirs: DirectionSet, pca: WPCA, path: str | os.PathLike, *, seed: int = 0,
                     rows: int = 8, span: float = 3.0, steps: int = 7, truncation_psi: float = 1,
                     batch_size: int = 16) -> Path:
    """A grid: the top `rows` directions (rows, labelled with their score) by `steps` values from -span to +span
    standard deviations of W (columns), all from one seed. Each row is rendered on its own, so under torchrun every
    rank renders the rows `shard` deals it, exactly as one process does; rank 0 draws and writes the figure."""
    picked = list(range(min(rows, len(dirs))))
    values = np.linspace(-span, span, steps).tolist()
    ws = seeds_to_ws(G, [seed], truncation_psi=truncation_psi, device=next(G.parameters()).device)
    frames = distributed.gather_shards([traversal_frames(G, dirs, pca, ws, values, [k], batch_size=batch_size)[0, 0]
                                        for k in distributed.shard(picked)])
    if not distributed.is_main():
        return Path(path)
    named = {f'{dirs.labels[k]}\n{dirs.scores[k]:.3g}': frames[i] for i, k in enumerate(picked)}
    title = f'{dirs.method} directions ({dirs.score_name} under each name) · seed {seed} · columns in σ of W'
    return comparison_figure(named, [f'{v:+.1f}σ' for v in values], title, path)
