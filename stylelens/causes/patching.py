"""Activation patching (causal tracing) for generators: run the corrupt input with one activation taken from the
clean run, for every hook point, and measure how much of the clean output comes back.

The clean run is recorded once; the patched runs are batched, one patched point per row of the batch (each row
holds the corrupt ws, and the hooks replace that row's activation by the clean one, whole or one channel). Noise
is `const` or `none`, so every run sees the same noise. Patching a block's output replaces both its features and
its running RGB image, so patching every block (or only the last) gives back the clean image bit for bit.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from stylelens.causes.metrics import Metric, recovered
from stylelens.causes.points import Point, PointSpec, masked_edit, parse_at, part_tensors, row_masks
from stylelens.errors import StylelensError
from stylelens.outputs import to_uint8
from stylelens.probes import Recording, edit, probe

NOISE_MODES = ('const', 'none')


@dataclass
class PatchResult:
    """Per point, the share of the metric recovered (0: corrupt, 1: clean); the clean and corrupt images (uint8
    [H, W, C]); and, when every point was also patched at once, the largest pixel difference from the clean image."""

    points: list[Point]
    recovered: np.ndarray
    at: str
    metric: str
    clean_image: np.ndarray
    corrupt_image: np.ndarray
    all_at_once_max_diff: float | None = None

    def rows(self) -> list[dict]:
        """CSV rows: point, hook, channel, recovered."""
        return [dict(point=p.label, hook=p.name, channel='' if p.channel is None else p.channel,
                     recovered=float(r)) for p, r in zip(self.points, self.recovered)]


def check_noise_mode(noise_mode: str) -> str:
    """Patching compares runs, so their noise must not change: const or none."""
    if noise_mode not in NOISE_MODES:
        raise StylelensError(f"noise mode {noise_mode!r} would differ between runs: choose {' or '.join(NOISE_MODES)}")
    return noise_mode


def record(G: torch.nn.Module, ws: torch.Tensor, names: Sequence[str], noise_mode: str = 'const'
           ) -> tuple[torch.Tensor, Recording]:
    """The image of ws [1, num_ws, w_dim] and the outputs of the named hook points, kept on G's device."""
    with probe(G, list(names), device=None) as rec, torch.no_grad():
        image = G.synthesis(ws, noise_mode=check_noise_mode(noise_mode)).float()
    return image, rec


def run_patched(G: torch.nn.Module, ws: torch.Tensor, rows: Sequence[Sequence[Point]], clean: Recording, *,
                noise_mode: str = 'const', batch_size: int = 16,
                progress: Callable[[int], object] | None = None) -> torch.Tensor:
    """Images [len(rows), C, H, W] of ws [1, num_ws, w_dim], row r with the points of rows[r] set to their clean
    values (`clean` records every point's hook), `batch_size` rows per forward pass."""
    images = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        with contextlib.ExitStack() as stack, torch.no_grad():
            for name in dict.fromkeys(point.name for row in chunk for point in row):
                parts = part_tensors(clean[name])
                masks = row_masks(chunk, name, {part: tensor.shape for part, tensor in parts.items()})
                for part, mask in masks.items():
                    if mask.any():
                        fn = masked_edit(mask, lambda x, value=parts[part]: value.expand_as(x))
                        stack.enter_context(edit(G, {name: fn}, part=part))
            images.append(G.synthesis(ws.expand(len(chunk), -1, -1), noise_mode=check_noise_mode(noise_mode)).float())
        if progress is not None:
            progress(len(chunk))
    return torch.cat(images)


def patch(G: torch.nn.Module, clean_ws: torch.Tensor, corrupt_ws: torch.Tensor, at: str | PointSpec,
          metric: Metric, *, noise_mode: str = 'const', batch_size: int = 16, all_at_once: bool = True,
          progress: Callable[[int], object] | None = None) -> PatchResult:
    """Patch every point of `at` (see stylelens.causes.points) from the clean run into the corrupt run, one at a
    time, and measure the metric recovered; with `all_at_once`, one more row patches them all together."""
    spec = parse_at(G, at) if isinstance(at, str) else at
    clean_image, clean = record(G, clean_ws, spec.names, noise_mode)
    counts = {name: part_tensors(clean[name])['x'].shape[1] for name in spec.names}
    points = spec.points(counts)
    rows = [[point] for point in points] + ([points] if all_at_once else [])
    with torch.no_grad():
        corrupt_image = G.synthesis(corrupt_ws, noise_mode=noise_mode).float()
        patched = run_patched(G, corrupt_ws, rows, clean, noise_mode=noise_mode, batch_size=batch_size,
                              progress=progress)
        phi = metric.features(torch.cat([clean_image, corrupt_image, patched[:len(points)]]))
    share = recovered(phi[2:], phi[:1], phi[1:2]).cpu().numpy()
    together = float((patched[-1] - clean_image[0]).abs().max()) if all_at_once else None
    return PatchResult(points, share, spec.spec, metric.spec, to_uint8(clean_image)[0], to_uint8(corrupt_image)[0],
                       together)
