"""A compact StyleGAN2 trainer for small images: the `vendor/` generator and discriminator, trained with the
non-saturating logistic loss, lazy R1 regularisation, style-mixing regularisation and an exponential moving
average of G (`G_ema`), following the StyleGAN2-ADA recipe without augmentation or path-length regularisation.

Sizes follow one width knob per network: a block at resolution r has `min(32 * width / r, 2 * width)` channels,
so `width=64` gives 128 channels up to 16x16 and 64 at 32x32 (1.4 M parameters in G at 32x32; width 32: 0.64 M).
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from stylelens.errors import StylelensError
from stylelens.scratch.losses import accuracies
from stylelens.vendor.stylegan2_ada.networks import Discriminator, Generator

MODEL = 'stylegan2-small'
DEFAULT_LR = 0.0025
DEFAULT_BETAS = (0.0, 0.99)
R1_INTERVAL = 16
EMA_RAMPUP = 0.05
Z_DIM = W_DIM = 256


def auto_r1_gamma(resolution: int, batch: int) -> float:
    """StyleGAN2-ADA's automatic R1 weight: 0.0002 * resolution^2 / batch."""
    return 0.0002 * resolution ** 2 / batch


def auto_ema_kimg(batch: int) -> float:
    """StyleGAN2-ADA's automatic EMA half-life in thousands of images: 10 per 32 images of batch."""
    return batch * 10 / 32


def _sizes(width: int) -> dict[str, int]:
    """The official channel arguments for one width knob."""
    return dict(channel_base=32 * width, channel_max=2 * width)


def build_stylegan2(resolution: int = 32, channels: int = 3, g_width: int = 64, d_width: int = 64,
                    map_depth: int = 4) -> tuple[Generator, Discriminator]:
    """Unconditional G and D in the official module layout (so snapshots load anywhere), sized by the widths;
    no fp16 layers and no activation clamping, which only fp16 needs."""
    if resolution < 8 or resolution & (resolution - 1):
        raise StylelensError(f'{MODEL} needs a power-of-two --resolution of 8 or more (e.g. 16, 32, 64), '
                             f'got {resolution}')
    G = Generator(z_dim=Z_DIM, c_dim=0, w_dim=W_DIM, img_resolution=resolution, img_channels=channels,
                  mapping_kwargs=dict(num_layers=map_depth), synthesis_kwargs=dict(**_sizes(g_width), num_fp16_res=0))
    D = Discriminator(c_dim=0, img_resolution=resolution, img_channels=channels, **_sizes(d_width),
                      epilogue_kwargs=dict(mbstd_group_size=4))
    return G, D


def lazy_regularised_adam(params: Any, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """Adam for a network regularised every R1_INTERVAL steps: learning rate and betas scaled as the official
    trainer does, so the main and the regularisation steps together move like one step would."""
    ratio = R1_INTERVAL / (R1_INTERVAL + 1)
    return torch.optim.Adam(params, lr=lr * ratio, betas=(betas[0] ** ratio, betas[1] ** ratio), eps=1e-8)


@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, images_seen: int, batch: int, ema_kimg: float) -> None:
    """Move G_ema towards G (half-life `ema_kimg` thousand images, ramped up over the first 5 % of training);
    buffers (w_avg, constant noise) are copied."""
    ema_images = min(ema_kimg * 1000, images_seen * EMA_RAMPUP)
    beta = 0.5 ** (batch / max(ema_images, 1e-8))
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def make_ema(G: nn.Module) -> nn.Module:
    """A frozen copy of G that `update_ema` keeps averaging."""
    return copy.deepcopy(G).eval().requires_grad_(False)


@dataclass
class StyleGAN2Step:
    """One StyleGAN2 step: a D update (plus R1 every R1_INTERVAL steps), a G update with style mixing, the EMA."""

    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    autocast: Callable[[], contextlib.AbstractContextManager]
    device: torch.device
    memory_format: torch.memory_format
    r1_gamma: float
    style_mixing: float
    ema_kimg: float
    steps_done: Callable[[], int]

    def ws(self, n: int, update_emas: bool = False) -> torch.Tensor:
        """Mapped latents; with probability `style_mixing` the layers from a random cutoff on come from a second z
        (the regulariser that keeps neighbouring layers' styles independent). Draws from torch's global RNG,
        which checkpoints save."""
        z = torch.randn([n, self.G.z_dim], device=self.device)
        ws = self.G.mapping(z, None, update_emas=update_emas)
        if float(torch.rand([])) < self.style_mixing:
            cutoff = int(torch.randint(1, ws.shape[1], []))
            ws = ws.clone()
            ws[:, cutoff:] = self.G.mapping(torch.randn_like(z), None, update_emas=False)[:, cutoff:]
        return ws

    def generate(self, n: int, update_emas: bool = False) -> torch.Tensor:
        """Training-mode fakes (random noise) in float32."""
        return self.G.synthesis(self.ws(n, update_emas)).float()

    def d_update(self, real: torch.Tensor) -> dict[str, float]:
        """softplus(D(fake)) + softplus(-D(real)), then on every R1_INTERVAL-th step the R1 penalty on reals."""
        with torch.no_grad(), self.autocast():
            fake = self.generate(len(real))
        with self.autocast():
            real_logits, fake_logits = self.D(real, None).float(), self.D(fake, None).float()
        loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        accuracy = accuracies(real_logits.detach(), fake_logits.detach())
        metrics = dict(loss_d=float(loss.detach()), **{k: float(v) for k, v in accuracy.items()})
        if self.r1_gamma > 0 and self.steps_done() % R1_INTERVAL == 0:
            metrics['r1'] = self.r1_penalty(real)
        self.opt_d.step()
        return metrics

    def r1_penalty(self, real: torch.Tensor) -> float:
        """Accumulate the gradient of (gamma / 2) * |dD(real)/dreal|^2 * R1_INTERVAL (in float32, since it is a
        gradient of a gradient); returns the mean squared gradient norm."""
        real = real.detach().requires_grad_(True)
        logits = self.D(real, None)
        grad, = torch.autograd.grad(logits.sum(), real, create_graph=True)
        penalty = grad.square().sum(dim=[1, 2, 3])
        (penalty.mean() * (self.r1_gamma / 2) * R1_INTERVAL).backward()
        return float(penalty.detach().mean())

    def g_update(self, batch: int) -> dict[str, float]:
        """softplus(-D(G(z))) with style mixing; D is frozen; then G_ema follows G."""
        self.D.requires_grad_(False)
        with self.autocast():
            logits = self.D(self.generate(batch, update_emas=True), None).float()
        loss = F.softplus(-logits).mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        update_ema(self.G_ema, self.G, (self.steps_done() + 1) * batch, batch, self.ema_kimg)
        return dict(loss_g=float(loss.detach()))

    def __call__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        """The step's metrics: D loss and accuracies (R1 when it ran), then G loss."""
        real = batches[0][0].to(self.device, memory_format=self.memory_format)
        metrics = self.d_update(real)
        metrics.update(self.g_update(len(real)))
        return metrics
