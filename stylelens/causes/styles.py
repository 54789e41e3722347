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

Under torchrun every step splits its work by rank, round-robin, and ends with one process's bits: styles and their
statistics (sigmas, correlations) are computed `chunk` seeds at a time, each rank the chunks `shard` deals it, the
per-chunk float64 sums added in chunk order (`distributed.ordered_sum`); the region's probes are dealt by (side,
seed), each drawn from its own generator, and the locality maps by channel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from stylelens import distributed
from stylelens.causes.patching import check_noise_mode
from stylelens.causes.points import keep_outputs
from stylelens.errors import StylelensError
from stylelens.generation import seeds_to_ws
from stylelens.probes import edit
from stylelens.stylespace import StyleLayer, styles_of

CHUNK = 1024  # seeds mapped per pass for style statistics, unless the caller says otherwise


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


def seed_styles(G: torch.nn.Module, seeds: Sequence[int], layers: Sequence[StyleLayer], *, chunk: int = CHUNK,
                **latent: Any) -> dict[str, np.ndarray]:
    """`style_arrays` of `seeds` (mapped with `latent`: seeds_to_ws's options), `chunk` seeds per mapping pass, each
    rank the passes `shard` deals it; rank 0 gets every seed's styles, in seed order, the other ranks {}."""
    mine = []
    with distributed.progress(len(seeds), 'styles') as advance:
        for start in distributed.shard(range(0, len(seeds), chunk)):
            mine.append(style_arrays(G, seeds_to_ws(G, seeds[start:start + chunk], **latent), layers))
            advance(min(chunk, len(seeds) - start))
    parts = distributed.gather_to_main(mine)
    if not parts:
        return {}
    return {layer.short: np.concatenate([part[layer.short] for part in parts]) for layer in layers}


def style_moments(G: torch.nn.Module, seeds: Sequence[int], layers: Sequence[StyleLayer],
                  target: np.ndarray | None = None, *, chunk: int, **latent: Any
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, Σ (s − mean)² and Σ (s − mean) · target (zeros without a target [N]) of every style channel (layers
    concatenated) over the styles s of `seeds`, in float64, `chunk` seeds at a time (see the module docstring)."""
    seeds = list(seeds)

    def styles(k: int) -> np.ndarray:
        """Chunk k's styles, float64 [n, channels]."""
        ws = seeds_to_ws(G, seeds[k * chunk:(k + 1) * chunk], **latent)
        return np.concatenate([v.double().numpy() for v in styles_of(G, ws, layers).values()], axis=1)

    def moments(k: int, c: np.ndarray) -> np.ndarray:
        """Chunk k's Σ (s − mean)² and Σ (s − mean) · target, from its centred styles `c`."""
        t = np.zeros(len(c)) if target is None else target[k * chunk:(k + 1) * chunk]
        return np.stack([np.square(c).sum(axis=0), (c * t[:, None]).sum(axis=0)])

    mean, (square, cross) = distributed.ordered_centred_sums(-(-len(seeds) // chunk), styles, moments, len(seeds))
    return mean, square, cross


def channel_sigmas(G: torch.nn.Module, seeds: Sequence[int], layers: Sequence[StyleLayer], *, chunk: int = CHUNK,
                   **latent: Any) -> dict[str, torch.Tensor]:
    """The standard deviation (float64) of every style channel over the styles of `seeds` (at least 2), mapped
    with `latent` (seeds_to_ws's options)."""
    if len(seeds) < 2:
        raise StylelensError('style statistics need at least 2 seeds')
    _, square, _ = style_moments(G, seeds, layers, chunk=chunk, **latent)
    sigma = torch.from_numpy(np.sqrt(square / (len(seeds) - 1)))
    return {layer.name: part for layer, part in zip(layers, sigma.split([layer.channels for layer in layers]))}


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


def rank_by_scores(G: torch.nn.Module, seeds: Sequence[int], scores: np.ndarray, layers: Sequence[StyleLayer], *,
                   chunk: int = CHUNK, **latent: Any) -> ChannelRank:
    """Channels ranked by |Pearson r| between their style and `scores` [N] over the styles of `seeds` [N], mapped
    with `latent` (seeds_to_ws's options)."""
    if len(scores) < 3 or np.std(scores) == 0:
        raise StylelensError('ranking by scores needs at least 3 seeds whose scores differ')
    target = (scores - scores.mean()) / scores.std()
    _, square, cross = style_moments(G, seeds, layers, target, chunk=chunk, **latent)
    spread = np.sqrt(square / len(seeds))
    r = np.where(spread > 0, cross / len(seeds) / np.where(spread > 0, spread, 1), 0.0)
    return _ranked(layers, np.abs(r), dict(r=r), 'scores')


def rank_by_region(G: torch.nn.Module, ws: torch.Tensor, region: tuple[int, int, int, int],
                   layers: Sequence[StyleLayer], sigmas: dict[str, torch.Tensor], *, probes: int = 16,
                   seed: int = 0, batch_size: int = 16, noise_mode: str = 'const',
                   progress: Callable[[int], object] | None = None) -> ChannelRank:
    """Channels ranked by E_in − E_out (see the module docstring) over the images of ws [N, num_ws, w_dim]; the
    probes of each (side, seed) come from a generator of their own, seeded from (`seed`, seed index, side)."""
    x0, y0, x1, y1 = region
    res = G.img_resolution
    inside = torch.zeros(res, res, dtype=torch.bool)
    inside[y0:y1, x0:x1] = True
    items = [(side, mask, index) for side, mask in enumerate((inside, ~inside)) if mask.any()
             for index in range(len(ws))]

    def energy(i: int) -> np.ndarray:
        """Item i's probed energy per channel, in the row of its side (in, out)."""
        side, mask, index = items[i]
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, index, side]).generate_state(1)[0]))
        part = np.zeros((2, sum(layer.channels for layer in layers)))
        part[side] = _probe_energy(G, ws[index], mask, probes, generator, layers, batch_size,
                                   noise_mode).numpy() / (int(mask.sum()) * G.img_channels)
        if progress is not None:
            progress(1)
        return part

    totals = distributed.ordered_sum(len(items), energy)
    sigma = torch.cat([sigmas[layer.name] for layer in layers]).double().square()
    e_in, e_out = (torch.from_numpy(totals[k]) * sigma / len(ws) for k in (0, 1))
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
    and the first seed's images at −span σ and +span σ ([K, 2, C, H, W] in [-1, 1]); under torchrun each rank
    renders the channels `shard` deals it and every rank gets all of them, in order."""
    results = distributed.gather_shards([_locality(G, ws, layer, channel, span * float(sigmas[layer.name][channel]),
                                                   noise_mode) for layer, channel in distributed.shard(picks)])
    return np.stack([found for found, _ in results]), torch.stack([ends for _, ends in results])


def _locality(G: torch.nn.Module, ws: torch.Tensor, layer: StyleLayer, channel: int, step: float,
              noise_mode: str) -> tuple[np.ndarray, torch.Tensor]:
    """One channel's locality map [H, W] and the first seed's images [2, C, H, W] at −step and +step."""
    images = []
    for sign in (-1.0, 1.0):
        def shift(x: torch.Tensor, amount: float = sign * step) -> torch.Tensor:
            moved = x.clone()
            moved[:, channel] += amount
            return moved
        with edit(G, {layer.affine: shift}), torch.no_grad():
            images.append(G.synthesis(ws, noise_mode=check_noise_mode(noise_mode)).float())
    found = ((images[1] - images[0]).abs() / 2).mean(dim=(0, 1)).cpu().numpy()
    return found, torch.stack([images[0][0], images[1][0]]).cpu()
