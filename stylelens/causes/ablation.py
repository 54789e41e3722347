"""Ablation: set channels of a hook point to zero or to their mean, one channel at a time, and tabulate how the
metric changes (averaged over seeds).

The runs use stylelens.probes.edit hooks and are batched: each row of a batch is one (channel, seed) pair. Mean
ablation replaces a channel by its mean activation (per position) over other seeds, which keeps the layer's
typical input to what follows (zeroing can push a layer far outside anything it saw in training).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from stylelens.causes.metrics import Metric
from stylelens.causes.patching import check_noise_mode
from stylelens.causes.points import masked_edit, part_tensors
from stylelens.errors import StylelensError
from stylelens.probes import edit, probe

MODES = ('zero', 'mean')


@dataclass
class AblationResult:
    """Per ablated channel: the mean signed change of a single-score metric (NaN for vector metrics) and the mean
    size of the change (|Δ| for a score, the RMS change of φ otherwise); the unablated mean score."""

    name: str
    channels: list[int]
    mode: str
    metric: str
    change: np.ndarray
    size: np.ndarray
    baseline: float | None

    def rows(self) -> list[dict]:
        """CSV rows, largest change first."""
        order = np.argsort(-self.size, kind='stable')
        return [dict(rank=r + 1, channel=self.channels[k], change=float(self.change[k]), size=float(self.size[k]))
                for r, k in enumerate(order)]


def channel_means(G: torch.nn.Module, name: str, ws: torch.Tensor, noise_mode: str = 'const') -> torch.Tensor:
    """The mean output [1, C, ...] of hook `name` (its x part, for blocks) over ws [M, num_ws, w_dim]."""
    with probe(G, [name], device=None) as rec, torch.no_grad():
        G.synthesis(ws, noise_mode=check_noise_mode(noise_mode))
    return part_tensors(rec[name])['x'].mean(dim=0, keepdim=True)


def ablate(G: torch.nn.Module, ws: torch.Tensor, name: str, metric: Metric, *, channels: Sequence[int] | None = None,
           mode: str = 'zero', mean_ws: torch.Tensor | None = None, batch_size: int = 16, noise_mode: str = 'const',
           progress: Callable[[int], object] | None = None) -> AblationResult:
    """Ablate each channel of hook `name` (default all) in the images of ws [N, num_ws, w_dim]."""
    if mode not in MODES:
        raise StylelensError(f"unknown ablation mode {mode!r}: choose {' or '.join(MODES)}")
    if mode == 'mean' and (mean_ws is None or len(mean_ws) < 2):
        raise StylelensError('mean ablation needs at least 2 seeds to average the activations over')
    with probe(G, [name], device=None) as rec, torch.no_grad():
        original = metric.features(G.synthesis(ws, noise_mode=check_noise_mode(noise_mode)).float())
    count = part_tensors(rec[name])['x'].shape[1]
    chosen = list(range(count)) if channels is None else list(channels)
    bad = [c for c in chosen if not 0 <= c < count]
    if bad or not chosen:
        raise StylelensError(f'channel {bad[0] if bad else "(none)"} does not exist: {name} has channels 0..{count - 1}')
    fill = channel_means(G, name, mean_ws, noise_mode) if mode == 'mean' else None
    pairs = [(k, i) for k in range(len(chosen)) for i in range(len(ws))]
    deltas = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        mask = torch.zeros(len(chunk), count, dtype=torch.bool)
        for r, (k, _) in enumerate(chunk):
            mask[r, chosen[k]] = True
        replacement = (lambda x: torch.zeros_like(x)) if fill is None else (lambda x: fill.expand_as(x))
        rows = torch.tensor([i for _, i in chunk])
        with edit(G, {name: masked_edit(mask, replacement)}), torch.no_grad():
            phi = metric.features(G.synthesis(ws[rows], noise_mode=noise_mode).float())
        deltas.append((phi - original[rows]).double().cpu())
        if progress is not None:
            progress(len(chunk))
    delta = torch.cat(deltas).reshape(len(chosen), len(ws), -1)
    single = delta.shape[-1] == 1
    change = delta[..., 0].mean(1).numpy() if single else np.full(len(chosen), np.nan)
    size = (delta[..., 0].abs() if single else delta.square().mean(-1).sqrt()).mean(1).numpy()
    baseline = float(original.double().mean()) if single else None
    return AblationResult(name, chosen, mode, metric.spec, change, size, baseline)
