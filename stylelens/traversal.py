"""Walks through latent space: interpolation between seeds (in Z or W) and traversal of one seed along a W direction.

Interpolation. In Z the latents are Gaussian, so almost all their mass lies on a thin shell of radius ~sqrt(z_dim);
a straight line between two samples cuts through the low-density interior, so spherical interpolation (slerp) is
the natural default there. W is not Gaussian and the synthesis network sees it directly; lerp is standard in W
(it is what the perceptual-path-length metric uses) and is the default there.

Traversal moves w by `value * sigma * direction` (a `stylelens.directions.spec.Direction`: `pca:K`, `random:S`,
a direction file's entry or an array), where `direction` is unit-norm and `sigma` is the standard deviation of W
along it, so a value of 1 is one standard deviation of W whatever the direction and `-3..3` covers nearly all of
W's spread. A per-layer array [num_ws, w_dim] is an offset in W+, which has no single standard deviation: it is
added as stored, `value * offset`, without normalising.

This module computes the walks as ws; `stylelens.walks` renders them and writes them out.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from stylelens.directions.spec import Direction
from stylelens.errors import StylelensError
from stylelens.generation import map_z, seeds_to_ws
from stylelens.latents import seeds_to_z

SPACES = ('z', 'w')
PARALLEL_EPS = 1e-7      # below this sin(angle), two vectors count as (anti)parallel and slerp falls back to lerp


# ------------------------------------------------------------------------------------------------ interpolation

def lerp(a: Any, b: Any, t: Any) -> torch.Tensor:
    """Linear interpolation `(1 - t) a + t b`, exact at t = 0 and t = 1; `t` broadcasts against `a[..., :1]`."""
    a, b, t = _as_float64(a, b, t)
    return (1 - t) * a + t * b


def slerp(a: Any, b: Any, t: Any) -> torch.Tensor:
    """Spherical interpolation along the last dim (Shoemake's formula on the raw vectors), exact at t = 0 and 1.

    Unit vectors stay unit-norm. Where a and b are parallel, anti-parallel (no unique great circle) or zero,
    the arc is undefined and that row falls back to lerp.
    """
    a, b, t = _as_float64(a, b, t)
    norms = a.norm(dim=-1, keepdim=True) * b.norm(dim=-1, keepdim=True)
    cos = ((a * b).sum(dim=-1, keepdim=True) / norms).clamp(-1, 1)
    omega = torch.arccos(cos)
    sin = torch.sin(omega)
    degenerate = ~(sin > PARALLEL_EPS)  # also catches the NaN of a zero vector
    safe_sin = torch.where(degenerate, torch.ones_like(sin), sin)
    weight_a = torch.where(degenerate, 1 - t, torch.sin((1 - t) * omega) / safe_sin)
    weight_b = torch.where(degenerate, t, torch.sin(t * omega) / safe_sin)
    return weight_a * a + weight_b * b


def _as_float64(a: Any, b: Any, t: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs as float64 tensors on a's device, so interpolated latents keep the precision of seeds_to_z."""
    a = torch.as_tensor(a).double()
    return a, torch.as_tensor(b).double().to(a.device), torch.as_tensor(t, dtype=torch.float64, device=a.device)


def path_points(keys: Any, frames: int, spherical: bool, loop: bool = False) -> torch.Tensor:
    """`frames` points [F, ...] through keyframes `keys` [K, ...], every keyframe hit exactly.

    Steps are shared out as evenly as possible over the segments (their counts differ by at most one). The last
    keyframe is the last frame; with `loop` the path returns to the first keyframe, which is not repeated at the
    end, so a looping GIF has no doubled frame.
    """
    keys = torch.as_tensor(keys).double()
    if keys.shape[0] < 2:
        raise StylelensError(f'an interpolation needs at least 2 keyframes (got {keys.shape[0]})')
    if loop:
        keys = torch.cat([keys, keys[:1]])
    segments = keys.shape[0] - 1
    steps = frames if loop else frames - 1
    if steps < segments:
        needed = segments if loop else segments + 1
        raise StylelensError(f'--frames {frames} is too few for {segments + (0 if loop else 1)} keyframes'
                             f'{" (looping)" if loop else ""}: pass --frames {needed} or more')
    blend = slerp if spherical else lerp
    points = []
    for index, count in enumerate(_split_evenly(steps, segments)):
        t = (torch.arange(count, dtype=torch.float64) / count).reshape(-1, *[1] * (keys.dim() - 1))
        points.append(blend(keys[index:index + 1], keys[index + 1:index + 2], t))
    if not loop:
        points.append(keys[-1:])
    return torch.cat(points)


def _split_evenly(total: int, parts: int) -> list[int]:
    """`total` split into `parts` counts that differ by at most one, larger ones first."""
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


def default_slerp(space: str) -> bool:
    """Slerp in Z (Gaussian shell), lerp in W (standard there)."""
    return _check_space(space) == 'z'


def _check_space(space: str) -> str:
    """Reject anything but 'z' and 'w'."""
    if space not in SPACES:
        raise StylelensError(f"unknown space {space!r}: choose one of {', '.join(SPACES)}")
    return space


def interpolation_ws(G: torch.nn.Module, seeds: Sequence[int], *, space: str = 'z', frames: int = 60,
                     slerp: bool | None = None, loop: bool = False, truncation_psi: float = 1,
                     truncation_cutoff: int | None = None, class_idx: int | str | None = None,
                     class_names: Sequence[str] | None = None) -> torch.Tensor:
    """ws [frames, num_ws, w_dim] walking through `seeds`.

    In Z the latents are interpolated and every frame is mapped (with truncation) in one mapping call; in W the
    seeds are mapped and truncated first and their ws interpolated (in float64 on the CPU, which every backend
    has). `slerp=None` picks slerp in Z, lerp in W.
    """
    spherical = default_slerp(space) if slerp is None else slerp
    device = _device_of(G)
    if _check_space(space) == 'w':
        keys = seeds_to_ws(G, seeds, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                           class_idx=class_idx, class_names=class_names, device=device)
        return path_points(keys.cpu(), frames, spherical, loop).to(device=device, dtype=torch.float32)
    z = path_points(seeds_to_z(seeds, G.z_dim), frames, spherical, loop)
    return map_z(G, z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, class_idx=class_idx,
                 class_names=class_names)


def _device_of(G: torch.nn.Module) -> torch.device:
    """The device G's parameters live on."""
    return next(G.parameters()).device


# ------------------------------------------------------------------------------------------------ traversal

def traversal_ws(G: torch.nn.Module, seed: int, direction: Direction, values: Sequence[float],
                 layers: Sequence[int] | None = None, *, truncation_psi: float = 1,
                 truncation_cutoff: int | None = None, class_idx: int | str | None = None,
                 class_names: Sequence[str] | None = None) -> torch.Tensor:
    """ws [len(values), num_ws, w_dim]: the seed's (truncated) ws plus value * scale * direction on `layers`
    (ws indices, e.g. `stylelens.mixing.parse_layers(G, 'b4,b8')`; None = all); the other ws stay exactly as
    they are."""
    w = seeds_to_ws(G, [seed], truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                    class_idx=class_idx, class_names=class_names, device=_device_of(G))
    return shift_ws(G, w, direction.vector * direction.scale, values, layers)[0]


def shift_ws(G: torch.nn.Module, ws: torch.Tensor, offset: Any, values: Sequence[float],
             layers: Sequence[int] | None = None) -> torch.Tensor:
    """ws [N, num_ws, w_dim] moved by value * offset ([w_dim], or [num_ws, w_dim]) on `layers` (ws indices; None =
    all) for every value: [N, len(values), num_ws, w_dim]; the other ws stay exactly as they are."""
    step = torch.as_tensor(offset, dtype=ws.dtype, device=ws.device).expand_as(ws[0])
    mask = torch.zeros(G.num_ws, 1, dtype=ws.dtype, device=ws.device)
    mask[_check_layers(G, layers)] = 1
    steps = torch.as_tensor(list(values), dtype=ws.dtype, device=ws.device).reshape(1, -1, 1, 1)
    return ws.unsqueeze(1) + steps * (step * mask)


def _check_layers(G: torch.nn.Module, layers: Sequence[int] | None) -> list[int]:
    """The ws indices to move (all when None); out-of-range indices are a user error."""
    if layers is None:
        return list(range(G.num_ws))
    chosen = list(layers)
    if not chosen or any(not 0 <= i < G.num_ws for i in chosen):
        raise StylelensError(f'bad layers {chosen}: expected ws indices in 0..{G.num_ws - 1}')
    return chosen


def traversal_values(value_range: tuple[float, float], steps: int) -> list[float]:
    """`steps` evenly spaced values from value_range[0] to value_range[1], both included."""
    if steps < 1:
        raise StylelensError(f'--steps {steps} is too small: pass at least 1')
    return [float(v) for v in np.linspace(value_range[0], value_range[1], steps)]
