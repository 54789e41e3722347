"""Walks through latent space: interpolation between seeds (in Z or W) and traversal of one seed along a W direction.

Interpolation. In Z the latents are Gaussian, so almost all their mass lies on a thin shell of radius ~sqrt(z_dim);
a straight line between two samples cuts through the low-density interior, so spherical interpolation (slerp) is
the natural default there. W is not Gaussian and the synthesis network sees it directly; lerp is standard in W
(it is what the perceptual-path-length metric uses) and is the default there.

Directions. `pca:K` is the K-th principal direction of W (GANSpace), estimated from mapped samples and cached per
network. Traversal moves w by `value * sigma * direction`, where `direction` is unit-norm and `sigma` is the
standard deviation of W along it (measured on the same samples, so the PCA is computed for `random:S` and `.npy`
directions too). A value of 1 is therefore one standard deviation of W whatever the direction, and `-3..3`
covers nearly all of W's spread. A per-layer direction file [num_ws, w_dim] is an offset in W+, which has no
single standard deviation: it is added as stored, `value * offset`, without normalising.

This module computes the walks as ws; `stylelens.walks` renders them and writes them out.
"""
from __future__ import annotations

import functools
import hashlib
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from stylelens.errors import StylelensError
from stylelens.generation import seeds_to_ws
from stylelens.latents import MAX_SEED, class_to_c, seeds_to_z
from stylelens.outputs import save_npz

SPACES = ('z', 'w')
PARALLEL_EPS = 1e-7      # below this sin(angle), two vectors count as (anti)parallel and slerp falls back to lerp
MAPPING_CHUNK = 4096     # samples per mapping call when estimating the PCA of W
_DIRECTION_HINT = 'expected pca:K, random:S (S a seed) or a .npy/.npz file'


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


def map_z(G: torch.nn.Module, z: Any, *, truncation_psi: float = 1, truncation_cutoff: int | None = None,
          class_idx: int | str | None = None, class_names: Sequence[str] | None = None) -> torch.Tensor:
    """Map latents z [N, z_dim] (and one class for all) to ws [N, num_ws, w_dim] in one call, without autograd."""
    device = _device_of(G)
    z = torch.as_tensor(z).to(device)
    c = torch.from_numpy(class_to_c(class_idx, G.c_dim, z.shape[0], class_names)).to(device)
    with torch.no_grad():
        return G.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)


def _device_of(G: torch.nn.Module) -> torch.device:
    """The device G's parameters live on."""
    return next(G.parameters()).device


# ------------------------------------------------------------------------------------------------ PCA of W

@dataclass
class WPCA:
    """Principal directions of W: components [K, w_dim] (unit-norm, by decreasing variance), their variances,
    the share of total variance each explains, and the mean w."""

    components: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    mean: np.ndarray

    def std_along(self, direction: np.ndarray) -> float:
        """Standard deviation of the samples projected on a unit vector: sqrt(sum_k var_k (d . c_k)^2)."""
        return float(np.sqrt(np.sum(self.explained_variance * (self.components @ direction) ** 2)))


def w_pca(G: torch.nn.Module, num_samples: int = 10_000, seed: int = 0, class_idx: int | str | None = None,
          class_names: Sequence[str] | None = None, network_sha256: str | None = None,
          use_cache: bool = True) -> WPCA:
    """PCA of W from `num_samples` mapped latents (z from one RandomState(seed), no truncation), cached as npz.

    The cache key is the network file's sha256 (or, without one, a digest of the mapping network's tensors),
    the sample count, the seed and the class.
    """
    if num_samples < 2:
        raise StylelensError(f'--pca-samples {num_samples} is too small: pass at least 2 (default 10000)')
    class_index = _class_index(G, class_idx, class_names)
    path = _pca_cache_path(network_sha256 or mapping_digest(G), num_samples, seed, class_index)
    cached = _read_pca(path, G.w_dim) if use_cache else None
    if cached is not None:
        return cached
    pca = _fit_pca(_sample_w(G, num_samples, seed, class_idx, class_names))
    if use_cache:
        _write_pca(path, pca)
    return pca


def pca_directions(G: torch.nn.Module, num_samples: int = 10_000, seed: int = 0,
                   class_idx: int | str | None = None, class_names: Sequence[str] | None = None,
                   network_sha256: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GANSpace-style principal directions of W: (components [K, w_dim], explained_variance_ratio [K], mean)."""
    pca = w_pca(G, num_samples, seed, class_idx, class_names, network_sha256)
    return pca.components, pca.explained_variance_ratio, pca.mean


def _sample_w(G: torch.nn.Module, num_samples: int, seed: int, class_idx: int | str | None,
              class_names: Sequence[str] | None) -> np.ndarray:
    """[num_samples, w_dim] float64 samples of W, mapped MAPPING_CHUNK at a time."""
    z = np.random.RandomState(seed).randn(num_samples, G.z_dim)
    chunks = [map_z(G, torch.from_numpy(z[start:start + MAPPING_CHUNK]), class_idx=class_idx,
                    class_names=class_names)[:, 0].double().cpu().numpy()
              for start in range(0, num_samples, MAPPING_CHUNK)]
    return np.concatenate(chunks)


def _fit_pca(samples: np.ndarray) -> WPCA:
    """SVD of the centred samples; each component's sign makes its largest-magnitude entry positive."""
    mean = samples.mean(axis=0)
    _, singular, components = np.linalg.svd(samples - mean, full_matrices=False)
    largest = components[np.arange(len(components)), np.abs(components).argmax(axis=1)]
    components = components * np.where(largest < 0, -1.0, 1.0)[:, None]
    energy = singular ** 2
    return WPCA(components=components, explained_variance=energy / (len(samples) - 1),
                explained_variance_ratio=energy / energy.sum(), mean=mean)


def mapping_digest(G: torch.nn.Module) -> str:
    """sha256 over the mapping network's parameter and buffer tensors: identifies W when no file hash is known."""
    digest = hashlib.sha256()
    for name, tensor in sorted(G.mapping.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _class_index(G: torch.nn.Module, class_idx: int | str | None, class_names: Sequence[str] | None) -> int | None:
    """The resolved class index for conditional networks (validating it), None for unconditional ones."""
    c = class_to_c(class_idx, G.c_dim, 1, class_names)
    return int(c.argmax()) if G.c_dim else None


def _pca_cache_path(key: str, num_samples: int, seed: int, class_index: int | None) -> Path:
    """cache_dir()/pca/<key>-n<samples>-seed<seed>[-class<c>].npz"""
    from stylelens.loading.download import cache_dir

    suffix = '' if class_index is None else f'-class{class_index}'
    return cache_dir() / 'pca' / f'{key[:16]}-n{num_samples}-seed{seed}{suffix}.npz'


def _read_pca(path: Path, w_dim: int) -> WPCA | None:
    """A cached PCA, or None when absent, unreadable or of the wrong shape (then it is recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            pca = WPCA(**{field: data[field] for field in WPCA.__dataclass_fields__})
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
        return None
    return pca if pca.components.ndim == 2 and pca.components.shape[1] == w_dim else None


def _write_pca(path: Path, pca: WPCA) -> None:
    """Store the PCA atomically; a cache that cannot be written only costs the recomputation next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_npz(path, **vars(pca))
    except OSError:
        pass


# ------------------------------------------------------------------------------------------------ directions

@dataclass
class Direction:
    """A direction in W: `vector` is unit-norm [w_dim], or a per-layer offset [num_ws, w_dim] used as stored;
    `scale` is the W distance of a step of 1 (sigma of W along a [w_dim] direction, 1 for a per-layer offset)."""

    vector: np.ndarray
    scale: float
    label: str
    explained_variance_ratio: float | None = None

    @property
    def unit(self) -> str:
        """How traversal values are shown: 'σ' (standard deviations of W) or '' (raw multiples of the offset)."""
        return 'σ' if self.vector.ndim == 1 else ''


def direction_from_spec(G: torch.nn.Module, spec: str, *, num_samples: int = 10_000, pca_seed: int = 0,
                        class_idx: int | str | None = None, class_names: Sequence[str] | None = None,
                        network_sha256: str | None = None) -> Direction:
    """`pca:K` (K-th principal direction of W), `random:S` (Gaussian direction from seed S) or a .npy/.npz file
    holding [w_dim] or [num_ws, w_dim]. [w_dim] directions are normalised and scaled by sigma of W along them."""
    text = spec.strip()
    kind, _, arg = text.partition(':')
    stats = functools.partial(w_pca, G, num_samples, pca_seed, class_idx, class_names, network_sha256)
    if text.lower().endswith(('.npy', '.npz')):
        vector = _read_direction_file(Path(text), G.w_dim, G.num_ws)
    elif kind == 'random' and _is_number(arg, MAX_SEED):
        vector = np.random.RandomState(int(arg)).randn(G.w_dim)
    elif kind == 'pca' and _is_number(arg):
        return _pca_direction(stats(), int(arg), text)
    else:
        raise StylelensError(f"unknown --direction '{spec}': {_DIRECTION_HINT}")
    if vector.ndim == 2:
        return Direction(vector, 1.0, f'{text} (per-layer offset)')
    unit = vector / np.linalg.norm(vector)
    return Direction(unit, stats().std_along(unit), text)


def _is_number(text: str, largest: int | None = None) -> bool:
    """Whether `text` is a non-negative decimal integer (at most `largest`)."""
    return bool(re.fullmatch(r'[0-9]+', text, re.ASCII)) and (largest is None or int(text) <= largest)


def _pca_direction(pca: WPCA, index: int, label: str) -> Direction:
    """Component `index` of the PCA, with its sigma and explained-variance ratio; out of range is a user error."""
    count = len(pca.components)
    if index >= count:
        raise StylelensError(f"--direction '{label}' is out of range: this PCA has components pca:0..pca:{count - 1}")
    return Direction(pca.components[index], float(np.sqrt(pca.explained_variance[index])), label,
                     float(pca.explained_variance_ratio[index]))


def _read_direction_file(path: Path, w_dim: int, num_ws: int) -> np.ndarray:
    """A direction from .npy or .npz (key 'direction', else the only array): [w_dim] or [num_ws, w_dim]."""
    if not path.is_file():
        raise StylelensError(f"direction file '{path}' not found: pass an existing .npy/.npz file, pca:K or random:S")
    try:
        array = _load_array(path)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise StylelensError(f"cannot read direction file '{path}': {reason}; expected a .npy or .npz file") from None
    if array.shape not in ((w_dim,), (num_ws, w_dim)) or not np.issubdtype(array.dtype, np.floating):
        raise StylelensError(f"direction file '{path}' holds {array.dtype} {list(array.shape)}: expected floats of "
                             f'shape [{w_dim}] (w_dim) or [{num_ws}, {w_dim}] (num_ws, w_dim) for this network')
    if not np.isfinite(array).all() or not np.any(array):
        raise StylelensError(f"direction file '{path}' is zero or not finite: expected a non-zero finite direction")
    return array.astype(np.float64)


def _load_array(path: Path) -> np.ndarray:
    """The array of a .npy, or the chosen array of a .npz, without unpickling anything."""
    loaded = np.load(path, allow_pickle=False)
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        return _only_array(path, loaded)


def _only_array(path: Path, data: Any) -> np.ndarray:
    """The 'direction' array of an npz, else its only array."""
    if 'direction' in data.files:
        return data['direction']
    if len(data.files) == 1:
        return data[data.files[0]]
    raise StylelensError(f"direction file '{path}' has arrays {', '.join(data.files) or '(none)'}: "
                         "save one array, or name it 'direction'")


# ------------------------------------------------------------------------------------------------ traversal

def traversal_ws(G: torch.nn.Module, seed: int, direction: Direction, values: Sequence[float],
                 layers: Sequence[int] | None = None, *, truncation_psi: float = 1,
                 truncation_cutoff: int | None = None, class_idx: int | str | None = None,
                 class_names: Sequence[str] | None = None) -> torch.Tensor:
    """ws [len(values), num_ws, w_dim]: the seed's (truncated) ws plus value * scale * direction on `layers`
    (ws indices, e.g. `stylelens.mixing.parse_layers(G, 'b4,b8')`; None = all); the other ws stay exactly as
    they are."""
    device = _device_of(G)
    w = seeds_to_ws(G, [seed], truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                    class_idx=class_idx, class_names=class_names, device=device)[0]
    offset = torch.as_tensor(direction.vector * direction.scale, dtype=w.dtype, device=device).expand_as(w)
    mask = torch.zeros(G.num_ws, 1, dtype=w.dtype, device=device)
    mask[_check_layers(G, layers)] = 1
    steps = torch.as_tensor(list(values), dtype=w.dtype, device=device).reshape(-1, 1, 1)
    return w.unsqueeze(0) + steps * (offset * mask).unsqueeze(0)


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
