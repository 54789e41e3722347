"""One direction to move along, from a `--direction` spec: `pca:K`, `random:S`, `dirs.npz:K` or a .npy/.npz array.

A [w_dim] direction is made unit-norm and scaled by sigma, the standard deviation of W along it (from the cached
PCA of W), so a step of 1 is one standard deviation whatever the direction. A direction file's entry also brings
the layers it moves. A per-layer array [num_ws, w_dim] is an offset in W+, added as stored.
"""
from __future__ import annotations

import functools
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from stylelens.directions.format import is_direction_file, load_directions
from stylelens.directions.pca import WPCA, w_pca
from stylelens.errors import StylelensError
from stylelens.latents import MAX_SEED

_DIRECTION_HINT = 'expected pca:K, random:S (S a seed), DIRS.npz:K (a direction file) or a .npy/.npz file'


@dataclass
class Direction:
    """A direction in W: `vector` is unit-norm [w_dim], or a per-layer offset [num_ws, w_dim] used as stored;
    `scale` is the W distance of a step of 1 (sigma of W along a [w_dim] direction, 1 for a per-layer offset);
    `layers` the ws it moves by default (None: all); `found_on` the sha256 of the network a direction file was
    made on."""

    vector: np.ndarray
    scale: float
    label: str
    explained_variance_ratio: float | None = None
    layers: list[int] | None = None
    found_on: str | None = None

    @property
    def unit(self) -> str:
        """How traversal values are shown: 'σ' (standard deviations of W) or '' (raw multiples of the offset)."""
        return 'σ' if self.vector.ndim == 1 else ''


def direction_from_spec(G: torch.nn.Module, spec: str, *, num_samples: int = 10_000, pca_seed: int = 0,
                        class_idx: int | str | None = None, class_names: Sequence[str] | None = None,
                        network_sha256: str | None = None) -> Direction:
    """`pca:K`, `random:S`, `DIRS.npz:K` (entry K of a direction file) or a .npy/.npz holding [w_dim] or
    [num_ws, w_dim]. [w_dim] directions are normalised and scaled by sigma of W along them."""
    text = spec.strip()
    kind, _, arg = text.partition(':')
    stats = functools.partial(w_pca, G, num_samples, pca_seed, class_idx, class_names, network_sha256)
    path_text, _, entry = text.rpartition(':')
    if path_text.lower().endswith('.npz') and _is_number(entry):
        return _file_entry(G, Path(path_text), int(entry), text, stats)
    if text.lower().endswith(('.npy', '.npz')):
        if is_direction_file(text):
            count = len(load_directions(text))
            raise StylelensError(f"'{text}' is a direction file of {count} directions: pick one with "
                                 f'{text}:K (K in 0..{count - 1})')
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


def _file_entry(G: torch.nn.Module, path: Path, index: int, label: str, stats: Any) -> Direction:
    """Entry `index` of a direction file, checked against G, with sigma of W along it and its own layers."""
    dirs = load_directions(path).check_network(G.w_dim, G.num_ws, f"directions in '{path}'")
    if index >= len(dirs):
        raise StylelensError(f"--direction '{label}' is out of range: '{path}' holds entries 0..{len(dirs) - 1}")
    vector = dirs.directions[index]
    name = dirs.labels[index]
    return Direction(vector, stats().std_along(vector), f'{label} ({name})', layers=dirs.layer_indices(index),
                     found_on=dirs.network_sha256 or None)


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
