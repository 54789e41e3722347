"""Principal directions of W (GANSpace, Härkönen et al. 2020), from mapped samples, cached per network.

The cache is a direction file (stylelens.directions.format) keyed by the network's sha256 (or a digest of its
mapping network), the sample count, the seed and the class; it also keeps each component's variance and the mean
w, so the standard deviation of W along any direction is known without sampling again.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from stylelens import distributed
from stylelens.directions.format import DirectionSet, load_directions, make_set, save_directions
from stylelens.errors import StylelensError
from stylelens.generation import map_z
from stylelens.latents import class_to_c

MAPPING_CHUNK = 4096     # samples per mapping call


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
    """PCA of W from `num_samples` mapped latents (z from one RandomState(seed), no truncation), cached."""
    if num_samples < 2:
        raise StylelensError(f'--pca-samples {num_samples} is too small: pass at least 2 (default 10000)')
    class_index = _class_index(G, class_idx, class_names)
    key = network_sha256 or mapping_digest(G)
    path = _cache_path(key, num_samples, seed, class_index)
    cached = distributed.from_main(lambda: _read_cache(path, G.w_dim)) if use_cache else None  # rank 0's decides
    if cached is not None:
        return cached
    options = dict(num_samples=num_samples, seed=seed, class_index=class_index)
    dirs = pca_set(_fit(G, num_samples, seed, class_idx, class_names), G.num_ws, options, network_sha256)
    if use_cache and distributed.is_main():
        _write_cache(path, dirs)
    return _from_set(dirs)


def pca_directions(G: torch.nn.Module, num_samples: int = 10_000, seed: int = 0,
                   class_idx: int | str | None = None, class_names: Sequence[str] | None = None,
                   network_sha256: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GANSpace-style principal directions of W: (components [K, w_dim], explained_variance_ratio [K], mean)."""
    pca = w_pca(G, num_samples, seed, class_idx, class_names, network_sha256)
    return pca.components, pca.explained_variance_ratio, pca.mean


def pca_set(pca: WPCA, num_ws: int, options: dict, network_sha256: str | None = None,
            num: int | None = None, layers: Sequence[int] | None = None) -> DirectionSet:
    """The first `num` (default all) principal directions as a direction set moving `layers` (ws indices; None:
    every ws), as GANSpace applies them to layer ranges."""
    count = len(pca.components) if num is None else min(num, len(pca.components))
    mask = np.zeros((count, num_ws), bool)
    mask[:, list(range(num_ws)) if layers is None else list(layers)] = True
    return make_set(pca.components[:count], mask, method='pca', options=options,
                    scores=pca.explained_variance_ratio[:count], score_name='explained variance ratio',
                    labels=[f'pca:{k}' for k in range(count)], network_sha256=network_sha256,
                    extras=dict(explained_variance=pca.explained_variance[:count], mean=pca.mean))


def _fit(G: torch.nn.Module, num_samples: int, seed: int, class_idx: int | str | None,
         class_names: Sequence[str] | None) -> WPCA:
    """Eigenvectors of the covariance of `num_samples` mapped latents (z from one RandomState(seed), no truncation),
    mapped MAPPING_CHUNK at a time: the mean and the scatter matrix are float64 sums over the chunks, added in chunk
    order, so under torchrun (each rank maps the chunks `shard` deals it) they have one process's bits. eigh in
    torch, whose threads are already running (numpy's BLAS threads would compete with them), on rank 0, which hands
    its result to every rank. Each component's sign makes its largest-magnitude entry positive."""
    z = np.random.RandomState(seed).randn(num_samples, G.z_dim)
    starts = range(0, num_samples, MAPPING_CHUNK)

    def chunk(k: int) -> np.ndarray:
        """Chunk k's mapped samples, float64 [n, w_dim]."""
        return map_z(G, torch.from_numpy(z[starts[k]:starts[k] + MAPPING_CHUNK]), class_idx=class_idx,
                     class_names=class_names)[:, 0].double().cpu().numpy()

    mean, scatter = distributed.ordered_centred_sums(len(starts), chunk, lambda k, centred: centred.T @ centred,
                                                     num_samples, per_round=1)  # w_dim² terms: few held at once
    values, vectors = distributed.from_main(lambda: [t.numpy() for t in torch.linalg.eigh(torch.from_numpy(scatter))])
    order = np.argsort(values)[::-1][:min(num_samples, len(values))]  # as many as an SVD of the samples has
    energy = np.clip(values[order], 0, None)
    components = sign_convention(vectors[:, order].T)
    return WPCA(components=components, explained_variance=energy / (num_samples - 1),
                explained_variance_ratio=energy / energy.sum(), mean=mean)


def sign_convention(vectors: np.ndarray) -> np.ndarray:
    """Rows flipped so that each one's largest-magnitude entry is positive (SVD signs are arbitrary)."""
    largest = vectors[np.arange(len(vectors)), np.abs(vectors).argmax(axis=1)]
    return vectors * np.where(largest < 0, -1.0, 1.0)[:, None]


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


def _from_set(dirs: DirectionSet) -> WPCA:
    """The PCA a direction set of method pca holds (as written and read back, so both agree bit for bit)."""
    return WPCA(dirs.directions, dirs.extras['explained_variance'], dirs.scores, dirs.extras['mean'])


def _cache_path(key: str, num_samples: int, seed: int, class_index: int | None) -> Path:
    """cache_dir()/pca/<key>-n<samples>-seed<seed>[-class<c>].npz"""
    from stylelens.loading.download import cache_dir

    suffix = '' if class_index is None else f'-class{class_index}'
    return cache_dir() / 'pca' / f'{key[:16]}-n{num_samples}-seed{seed}{suffix}.npz'


def _read_cache(path: Path, w_dim: int) -> WPCA | None:
    """A cached PCA, or None when absent, unreadable, of an older layout or of the wrong shape (then it is redone)."""
    if not path.is_file():
        return None
    try:
        pca = _from_set(load_directions(path))
    except (StylelensError, KeyError):
        return None
    return pca if pca.components.shape[1] == w_dim and len(pca.explained_variance) == len(pca.components) else None


def _write_cache(path: Path, dirs: DirectionSet) -> None:
    """Store the PCA atomically; a cache that cannot be written only costs the recomputation next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_directions(path, dirs)
    except OSError:
        pass
