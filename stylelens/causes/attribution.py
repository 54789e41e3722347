"""Attribution of a metric onto the channels of hook points: gradient × activation and integrated gradients.

Gradient × activation (one forward and one backward pass for all hook points): a · ∂m/∂a, summed per channel
(and per position). Integrated gradients (Sundararajan et al. 2017) at one hook point: (a − a') · the mean of
∂m/∂a along the straight path from the baseline activation a' to a (midpoint rule, `steps` points, batched),
whose sum over every element approaches m(a) − m(a') (completeness), where m(a') is the metric of the input with
only this hook point's activation set to a' (the rest of the network keeps the input's ws). The baseline
activation is the baseline input's (another seed or w) or zero. `m` is the metric's scalar (see
stylelens.causes.metrics): with a baseline input, the projection of φ on the baseline-to-input difference,
normalised so that the whole input-minus-baseline change is 1. For a block, attribution flows through its
features x, not through the RGB image the block adds itself (use `layers` for its toRGB).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from stylelens.causes.metrics import Metric
from stylelens.causes.patching import check_noise_mode, record
from stylelens.causes.points import keep_outputs, part_tensors
from stylelens.errors import StylelensError
from stylelens.probes import edit

METHODS = ('grad-x-act', 'ig')


@dataclass
class Attribution:
    """One hook point's attribution: per channel [C], per position [H, W] (None for styles [N, C]), their total,
    and the metric's change it should account for (m(input) − m(baseline); None for gradient × activation)."""

    name: str
    channels: np.ndarray
    positions: np.ndarray | None
    total: float
    delta: float | None = None


def metric_direction(metric: Metric, image: torch.Tensor, baseline_image: torch.Tensor | None
                     ) -> torch.Tensor | None:
    """The direction φ is projected on: (φ(input) − φ(baseline)) / ‖…‖² with a baseline, else None."""
    if baseline_image is None:
        return None
    with torch.no_grad():
        gap = (metric.features(image) - metric.features(baseline_image))[0]
    norm = float(gap.square().sum())
    if norm == 0:
        raise StylelensError('the input and the baseline give the same metric value: choose a baseline that differs')
    return gap / norm


def attribute(G: torch.nn.Module, ws: torch.Tensor, names: Sequence[str], metric: Metric, *,
              method: str = 'grad-x-act', baseline_ws: torch.Tensor | None = None, steps: int = 32,
              batch_size: int = 16, noise_mode: str = 'const',
              progress: Callable[[int], object] | None = None) -> list[Attribution]:
    """Attributions of the metric of ws [1, num_ws, w_dim] onto every channel of each named hook point."""
    if method not in METHODS:
        raise StylelensError(f"unknown attribution method {method!r}: choose {' or '.join(METHODS)}")
    image, recorded = record(G, ws, names, noise_mode)
    base_image, base = record(G, baseline_ws, names, noise_mode) if baseline_ws is not None else (None, None)
    direction = metric_direction(metric, image, base_image)
    if method == 'grad-x-act':
        result = _grad_x_act(G, ws, names, metric, direction, noise_mode)
        if progress is not None:
            progress(len(names))
        return result
    results = []
    for name in names:
        value = part_tensors(recorded[name])['x']
        start = part_tensors(base[name])['x'] if base is not None else torch.zeros_like(value)
        results.append(_integrated(G, ws, name, value, start, metric, direction, steps, batch_size, noise_mode))
        if progress is not None:
            progress(1)
    return results


def _summary(name: str, contribution: torch.Tensor, delta: float | None = None) -> Attribution:
    """Per-channel and per-position sums of an elementwise contribution [C] or [C, H, W]."""
    values = contribution.double().cpu()
    channels = values.flatten(1).sum(1) if values.ndim > 1 else values
    positions = values.sum(0).numpy() if values.ndim == 3 else None
    return Attribution(name, channels.numpy(), positions, float(values.sum()), delta)


def _grad_x_act(G: torch.nn.Module, ws: torch.Tensor, names: Sequence[str], metric: Metric,
                direction: torch.Tensor | None, noise_mode: str) -> list[Attribution]:
    """a · ∂m/∂a at every named hook point, from one forward and one backward pass."""
    kept: dict[str, torch.Tensor] = {}
    keep = keep_outputs(kept)
    with edit(G, {name: keep(name) for name in names}), torch.enable_grad():
        image = G.synthesis(ws.detach().clone().requires_grad_(True), noise_mode=noise_mode).float()
        scalar = metric.scalar(image, direction).sum()
        missing = [name for name in names if name not in kept or not kept[name].requires_grad]
        if missing:
            raise StylelensError(f'{missing[0]} does not depend on w, so nothing can be attributed to it')
        grads = torch.autograd.grad(scalar, [kept[name] for name in names], allow_unused=True)
    return [_summary(name, (kept[name] * (grad if grad is not None else 0))[0].detach())
            for name, grad in zip(names, grads)]


def _integrated(G: torch.nn.Module, ws: torch.Tensor, name: str, value: torch.Tensor, start: torch.Tensor,
                metric: Metric, direction: torch.Tensor | None, steps: int, batch_size: int,
                noise_mode: str) -> Attribution:
    """Integrated gradients at one hook point, `batch_size` path points per forward pass."""
    if steps < 1:
        raise StylelensError(f'--steps {steps} must be at least 1')
    total = torch.zeros_like(value[0], dtype=torch.float64)
    alphas = (torch.arange(steps, dtype=torch.float64) + 0.5) / steps
    with torch.no_grad():
        ends = [metric.scalar(_run_with(G, ws, name, a, noise_mode), direction) for a in (start, value)]
    for chunk in alphas.split(batch_size):
        shape = (-1, *[1] * (value.ndim - 1))
        path = (start + chunk.reshape(shape).to(value) * (value - start)).requires_grad_(True)
        with torch.enable_grad():
            scalar = metric.scalar(_run_with(G, ws.expand(len(chunk), -1, -1), name, path, noise_mode), direction)
            grad, = torch.autograd.grad(scalar.sum(), path)
        total += grad.double().sum(0)
    contribution = (value - start)[0].double() * total / steps
    return _summary(name, contribution, float(ends[1] - ends[0]))


def _run_with(G: torch.nn.Module, ws: torch.Tensor, name: str, activation: torch.Tensor,
              noise_mode: str) -> torch.Tensor:
    """The image when hook `name` outputs `activation` (its x part, for blocks)."""
    with edit(G, {name: lambda x: activation.expand_as(x)}):
        return G.synthesis(ws, noise_mode=check_noise_mode(noise_mode)).float()
