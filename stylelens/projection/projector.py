"""Projecting an image into W or W+: NVIDIA's projector.py algorithm and defaults, on any device.

One w (or, for W+, one w per ws index) starts at the mean of 10,000 mapped samples and is optimised with Adam for
`steps` steps: the learning rate ramps up over the first 5 % and down along a cosine over the last 25 %, Gaussian
noise of 5 % of W's spread (shrinking quadratically to zero at 75 %) is added to w, and the noise buffers of the
synthesis network are optimised too, regularised towards spatially uncorrelated noise at every scale and
renormalised after each step. Networks without noise buffers (StyleGAN3) optimise w alone. The generator passed in
is never modified: the optimisation runs on a copy.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from stylelens.devices import precision_context
from stylelens.errors import StylelensError

SPACES = ('w', 'w+')
FRAME_COUNT = 100          # progress-video frames kept, spread evenly over the steps
W_STATS_SEED = 123         # projector.py's RandomState for the W statistics
W_STATS_BATCH = 2000       # mapped samples per pass while measuring the W statistics
NOISE_REG_MIN_SIZE = 8     # the noise regulariser pools each buffer down to this size


@dataclass
class ProjectionSettings:
    """projector.py's hyper-parameters (same names and defaults), the space, the seed and the precision."""

    steps: int = 1000
    space: str = 'w'
    seed: int = 303
    precision: str = 'fp32'
    w_avg_samples: int = 10000
    initial_learning_rate: float = 0.1
    initial_noise_factor: float = 0.05
    lr_rampdown_length: float = 0.25
    lr_rampup_length: float = 0.05
    noise_ramp_length: float = 0.75
    regularize_noise_weight: float = 1e5

    def check(self) -> None:
        """One line for settings the algorithm cannot run with."""
        if self.steps < 1:
            raise StylelensError(f'--steps {self.steps} is too small: pass at least 1')
        if self.space not in SPACES:
            raise StylelensError(f"unknown --space {self.space!r}: choose one of {', '.join(SPACES)}")
        if self.w_avg_samples < 2:
            raise StylelensError(f'w_avg_samples {self.w_avg_samples} is too small: the W spread needs at least 2')

    def learning_rate(self, step: int) -> float:
        """projector.py's schedule: linear ramp-up, cosine ramp-down."""
        t = step / self.steps
        ramp = min(1.0, (1.0 - t) / self.lr_rampdown_length)
        ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
        return self.initial_learning_rate * ramp * min(1.0, t / self.lr_rampup_length)

    def w_noise_scale(self, step: int, w_std: float) -> float:
        """Standard deviation of the noise added to w at `step`: shrinks quadratically to 0 at noise_ramp_length."""
        t = step / self.steps
        return w_std * self.initial_noise_factor * max(0.0, 1.0 - t / self.noise_ramp_length) ** 2


@dataclass
class ProjectionResult:
    """The projected ws [1, num_ws, w_dim], the ws of the progress frames with their steps, per-step history
    (dist, noise regulariser, loss, learning rate), the W spread, and timings."""

    ws: torch.Tensor
    frame_ws: torch.Tensor
    frame_steps: list[int]
    history: dict[str, list[float]] = field(default_factory=dict)
    w_std: float = 0.0
    setup_seconds: float = 0.0
    step_seconds: list[float] = field(default_factory=list)
    noise_buffers: int = 0


# The distance being minimised: synthesised images [1, C, H, W] in [-1, 1] -> a scalar.
Objective = Callable[[torch.Tensor], torch.Tensor]
# Called after every step with (step index, dist, loss).
StepCallback = Callable[[int, float, float], None]


def w_statistics(G: torch.nn.Module, c: torch.Tensor, samples: int) -> tuple[torch.Tensor, float]:
    """projector.py's W statistics: the mean w [1, 1, w_dim] of `samples` mapped latents
    (``RandomState(123).randn``) and the scalar spread sqrt(sum |w - mean|^2 / samples)."""
    device = c.device
    z_all = np.random.RandomState(W_STATS_SEED).randn(samples, G.z_dim)
    parts = []
    with torch.no_grad():
        for start in range(0, samples, W_STATS_BATCH):
            z = torch.from_numpy(z_all[start:start + W_STATS_BATCH]).to(device, torch.float32)
            parts.append(G.mapping(z, c.expand(z.shape[0], -1))[:, :1, :].float().cpu())
    w = torch.cat(parts).numpy().astype(np.float32)
    w_avg = np.mean(w, axis=0, keepdims=True)
    w_std = float((np.sum((w - w_avg) ** 2) / samples) ** 0.5)
    return torch.from_numpy(w_avg).to(device), w_std


def noise_buffers(synthesis: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The per-layer constant noise inputs (``noise_const``) of a synthesis network; empty for StyleGAN3."""
    return {name: buf for name, buf in synthesis.named_buffers() if name.endswith('noise_const')}


def noise_regularization(buffers: dict[str, torch.Tensor]) -> torch.Tensor | float:
    """Sum over buffers and scales (halved down to 8x8) of the squared mean products of each noise map with itself
    shifted by one pixel along x and along y: zero for spatially uncorrelated noise."""
    total: torch.Tensor | float = 0.0
    for buf in buffers.values():
        noise = buf[None, None, :, :]
        while True:
            total = total + (noise * torch.roll(noise, shifts=1, dims=3)).mean() ** 2
            total = total + (noise * torch.roll(noise, shifts=1, dims=2)).mean() ** 2
            if noise.shape[2] <= NOISE_REG_MIN_SIZE:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
    return total


def frame_steps(steps: int, count: int = FRAME_COUNT) -> list[int]:
    """Up to `count` step indices spread evenly over the run, first and last included."""
    return sorted({int(i) for i in np.linspace(0, steps - 1, min(steps, count)).round()})


def project(G: torch.nn.Module, objective: Objective, settings: ProjectionSettings, c: torch.Tensor | None = None,
            callback: StepCallback | None = None) -> ProjectionResult:
    """Optimise ws so that `G.synthesis(ws, noise_mode='const')` minimises `objective` (plus the noise regulariser)
    with projector.py's algorithm; `c` is the one-hot class [1, c_dim] of a conditional network. G is unchanged."""
    settings.check()
    started = time.perf_counter()
    device = next(G.parameters()).device
    c = torch.zeros([1, G.c_dim], device=device) if c is None else c.to(device)
    G = copy.deepcopy(G).eval().requires_grad_(False)
    w_avg, w_std = w_statistics(G, c, settings.w_avg_samples)
    num_ws = G.mapping.num_ws
    gen = torch.Generator(device=device).manual_seed(settings.seed)
    start = w_avg.repeat(1, num_ws, 1) if settings.space == 'w+' else w_avg
    w_opt = start.clone().requires_grad_(True)
    buffers = noise_buffers(G.synthesis)
    for buf in buffers.values():
        buf.copy_(torch.randn(buf.shape, generator=gen, device=device))
        buf.requires_grad_(True)
    optimizer = torch.optim.Adam([w_opt, *buffers.values()], betas=(0.9, 0.999), lr=settings.initial_learning_rate)
    keep = frame_steps(settings.steps)
    kept = set(keep)
    frames: list[torch.Tensor] = []
    history: dict[str, list[float]] = {key: [] for key in ('dist', 'noise_reg', 'loss', 'lr')}
    step_seconds: list[float] = []
    setup_seconds = time.perf_counter() - started
    for step in range(settings.steps):
        tick = time.perf_counter()
        lr = settings.learning_rate(step)
        for group in optimizer.param_groups:
            group['lr'] = lr
        w_noise = torch.randn(w_opt.shape, generator=gen, device=device) * settings.w_noise_scale(step, w_std)
        ws = w_opt + w_noise
        ws = ws.repeat(1, num_ws, 1) if settings.space == 'w' else ws
        with precision_context(settings.precision, device):
            dist = objective(G.synthesis(ws, noise_mode='const').float()).float()
        reg = noise_regularization(buffers)
        loss = dist + reg * settings.regularize_noise_weight
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for buf in buffers.values():
                buf -= buf.mean()
                buf *= buf.square().mean().rsqrt()
        if step in kept:
            frames.append(_full_ws(w_opt.detach(), num_ws))
        values = dict(dist=dist.detach().item(), noise_reg=float(reg.detach() if torch.is_tensor(reg) else reg),
                      loss=loss.detach().item(), lr=lr)
        for key, value in values.items():
            history[key].append(value)
        step_seconds.append(time.perf_counter() - tick)
        if callback is not None:
            callback(step, values['dist'], values['loss'])
    return ProjectionResult(ws=_full_ws(w_opt.detach(), num_ws), frame_ws=torch.cat(frames), frame_steps=keep,
                            history=history, w_std=w_std, setup_seconds=setup_seconds, step_seconds=step_seconds,
                            noise_buffers=len(buffers))


def _full_ws(w: torch.Tensor, num_ws: int) -> torch.Tensor:
    """[1, 1, w_dim] or [1, num_ws, w_dim] as [1, num_ws, w_dim], detached, as projected_w.npz stores it."""
    return w.repeat(1, num_ws // w.shape[1], 1).clone()
