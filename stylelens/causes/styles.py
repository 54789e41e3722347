"""Single style channels (StyleSpace, Wu et al. 2021): the S space per seed, channels ranked by how they relate
to a score or by how locally they change a region of the image, and each top channel's locality map.

By scores: |Pearson r| between a channel's style and the score over the scored seeds (channels that track the
attribute). By region: for each channel c, E_in(c) and E_out(c), the mean squared change per pixel inside and
outside the region for a one-sigma change of c (sigma over many seeds' styles), from the Jacobian of the image
with respect to every style at once: a random ±1 image v gives (vᵀJ)_c², whose mean over probes is Σ_p J_pc²
(Hutchinson), so a few dozen backward passes per seed rank every channel of every layer. The score is
E_in − E_out: channels that change the region strongly and the rest little come first.
A locality map is |image(s + σ e_c) − image(s − σ e_c)| / 2, averaged over colours and seeds: where the channel
acts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from stylelens.causes.patching import check_noise_mode
from stylelens.causes.points import keep_outputs
from stylelens.errors import StylelensError
from stylelens.probes import edit
from stylelens.stylespace import StyleLayer, styles_of


@dataclass
class ChannelRank:
    """Style channels ranked best first: their layer, channel index, score, and what the score is made of."""

    layers: list[str]
    channels: np.ndarray
    scores: np.ndarray
    details: dict[str, np.ndarray]
    by: str

    def rows(self, top: int | None = None) -> list[dict]:
        """CSV rows: rank, layer, channel, score and the details."""
        count = len(self.scores) if top is None else min(top, len(self.scores))
        return [dict(rank=k + 1, layer=self.layers[k], channel=int(self.channels[k]), score=float(self.scores[k]),
                     **{name: float(values[k]) for name, values in self.details.items()}) for k in range(count)]


def style_arrays(G: torch.nn.Module, ws: torch.Tensor, layers: Sequence[StyleLayer]) -> dict[str, np.ndarray]:
    """{`b8.conv0`: styles [N, C] float32} for ws [N, num_ws, w_dim], computed from the affines alone."""
    return {layer.short: values.numpy() for layer, values in zip(layers, styles_of(G, ws, layers).values())}


def channel_sigmas(G: torch.nn.Module, ws: torch.Tensor, layers: Sequence[StyleLayer]) -> dict[str, torch.Tensor]:
    """The standard deviation of every style channel over ws [M, num_ws, w_dim] (M >= 2)."""
    if len(ws) < 2:
        raise StylelensError('style statistics need at least 2 seeds')
    return {name: values.std(dim=0) for name, values in styles_of(G, ws, layers).items()}


def _flat(layers: Sequence[StyleLayer]) -> tuple[list[str], np.ndarray]:
    """Every (layer short name, channel) of `layers`, in order."""
    names = [layer.short for layer in layers for _ in range(layer.channels)]
    return names, np.concatenate([np.arange(layer.channels) for layer in layers])


def _ranked(layers: Sequence[StyleLayer], scores: np.ndarray, details: dict[str, np.ndarray], by: str
            ) -> ChannelRank:
    """All channels sorted by score, best first."""
    names, channels = _flat(layers)
    order = np.argsort(-scores, kind='stable')
    return ChannelRank([names[k] for k in order], channels[order], scores[order],
                       {key: values[order] for key, values in details.items()}, by)


def rank_by_scores(G: torch.nn.Module, ws: torch.Tensor, scores: np.ndarray, layers: Sequence[StyleLayer]
                   ) -> ChannelRank:
    """Channels ranked by |Pearson r| between their style and `scores` [N] over ws [N, num_ws, w_dim]."""
    if len(scores) < 3 or np.std(scores) == 0:
        raise StylelensError('ranking by scores needs at least 3 seeds whose scores differ')
    values = np.concatenate([v.double().numpy() for v in styles_of(G, ws, layers).values()], axis=1)
    centred = values - values.mean(0)
    target = (scores - scores.mean()) / scores.std()
    spread = centred.std(0)
    r = np.where(spread > 0, (centred * target[:, None]).mean(0) / np.where(spread > 0, spread, 1), 0.0)
    return _ranked(layers, np.abs(r), dict(r=r), 'scores')


def rank_by_region(G: torch.nn.Module, ws: torch.Tensor, region: tuple[int, int, int, int],
                   layers: Sequence[StyleLayer], sigmas: dict[str, torch.Tensor], *, probes: int = 16,
                   seed: int = 0, batch_size: int = 16, noise_mode: str = 'const',
                   progress: Callable[[int], object] | None = None) -> ChannelRank:
    """Channels ranked by E_in − E_out (see the module docstring) over the images of ws [N, num_ws, w_dim]."""
    x0, y0, x1, y1 = region
    res = G.img_resolution
    inside = torch.zeros(res, res, dtype=torch.bool)
    inside[y0:y1, x0:x1] = True
    generator = torch.Generator().manual_seed(seed)
    energy = {'in': 0.0, 'out': 0.0}
    for where, mask in (('in', inside), ('out', ~inside)):
        if not mask.any():
            continue
        for w in ws:
            energy[where] = energy[where] + _probe_energy(G, w, mask, probes, generator, layers, batch_size,
                                                          noise_mode) / (int(mask.sum()) * G.img_channels)
            if progress is not None:
                progress(1)
    sigma = torch.cat([sigmas[layer.name] for layer in layers]).double().square()
    e_in, e_out = (torch.as_tensor(energy[k]) * sigma / len(ws) for k in ('in', 'out'))
    locality = e_in / (e_in + e_out).clamp_min(1e-30)
    return _ranked(layers, (e_in - e_out).numpy(), dict(in_rms=e_in.sqrt().numpy(), out_rms=e_out.sqrt().numpy(),
                                                        locality=locality.numpy()), 'region')


def _probe_energy(G: torch.nn.Module, w: torch.Tensor, mask: torch.Tensor, probes: int,
                  generator: torch.Generator, layers: Sequence[StyleLayer], batch_size: int,
                  noise_mode: str) -> torch.Tensor:
    """Σ over the masked pixels of J_pc² for every style channel c (concatenated over layers), estimated from
    `probes` random ±1 images on the mask."""
    total = torch.zeros(sum(layer.channels for layer in layers), dtype=torch.float64)
    for start in range(0, probes, batch_size):
        count = min(batch_size, probes - start)
        signs = torch.randint(0, 2, (count, G.img_channels, *mask.shape), generator=generator) * 2.0 - 1
        v = (signs * mask).to(w.device)
        kept: dict[str, torch.Tensor] = {}
        keep = keep_outputs(kept)
        with edit(G, {layer.affine: keep(layer.affine) for layer in layers}), torch.enable_grad():
            ws = w.unsqueeze(0).expand(count, -1, -1).detach().clone().requires_grad_(True)
            image = G.synthesis(ws, noise_mode=check_noise_mode(noise_mode)).float()
            grads = torch.autograd.grad((image * v).sum(), [kept[layer.affine] for layer in layers],
                                        allow_unused=True)
        parts = [torch.zeros(count, layer.channels) if g is None else g for g, layer in zip(grads, layers)]
        total += torch.cat(parts, dim=1).double().square().sum(0).cpu()
    return total / probes


def locality_maps(G: torch.nn.Module, ws: torch.Tensor, picks: Sequence[tuple[StyleLayer, int]],
                  sigmas: dict[str, torch.Tensor], *, span: float = 1.0, noise_mode: str = 'const'
                  ) -> tuple[np.ndarray, torch.Tensor]:
    """For each (layer, channel): the locality map [H, W] (mean over colours and the seeds of ws) for ±span σ,
    and the first seed's images at −span σ and +span σ ([K, 2, C, H, W] in [-1, 1])."""
    maps, ends = [], []
    for layer, channel in picks:
        step = span * float(sigmas[layer.name][channel])
        images = []
        for sign in (-1.0, 1.0):
            def shift(x: torch.Tensor, amount: float = sign * step) -> torch.Tensor:
                moved = x.clone()
                moved[:, channel] += amount
                return moved
            with edit(G, {layer.affine: shift}), torch.no_grad():
                images.append(G.synthesis(ws, noise_mode=check_noise_mode(noise_mode)).float())
        maps.append(((images[1] - images[0]).abs() / 2).mean(dim=(0, 1)).cpu().numpy())
        ends.append(torch.stack([images[0][0], images[1][0]]).cpu())
    return np.stack(maps), torch.stack(ends)
