"""The one direction file format: every method (PCA, SeFa, supervised boundaries) writes and reads the same npz.

An npz (read without pickle) holding:
  format, version      'stylelens-directions', 1
  directions           [K, w_dim] float64, unit rows, strongest first
  layers               [K, num_ws] bool: the ws each direction moves (W+ boundaries move one layer each)
  method, options      the method's name and its options as a JSON object
  scores, score_name   [K] floats and what they are (singular value, explained variance ratio, held-out accuracy)
  labels               [K] names ('sefa:0', 'size')
  network_sha256       the network the directions were found on ('' when unknown)
  extra.<name>         method-specific arrays (PCA: explained_variance, mean)
"""
from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stylelens.errors import StylelensError
from stylelens.outputs import save_npz, to_jsonable

FORMAT = 'stylelens-directions'
VERSION = 1
UNIT_TOLERANCE = 1e-4
_EXTRA = 'extra.'
_REQUIRED = ('format', 'version', 'directions', 'layers', 'method', 'options', 'scores', 'score_name', 'labels',
             'network_sha256')


@dataclass
class DirectionSet:
    """K unit directions in W with the layers each moves, how they were found and how each scored."""

    directions: np.ndarray
    layers: np.ndarray
    method: str
    options: dict[str, Any]
    scores: np.ndarray
    score_name: str
    labels: list[str]
    network_sha256: str = ''
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.directions)

    def layer_indices(self, k: int) -> list[int] | None:
        """The ws indices direction k moves, or None when it moves them all."""
        chosen = np.flatnonzero(self.layers[k]).tolist()
        return None if len(chosen) == self.layers.shape[1] else chosen

    def check_network(self, w_dim: int, num_ws: int, source: str = 'directions') -> DirectionSet:
        """Self, if made for a network with this w_dim and num_ws; else a one-line error."""
        found = (self.directions.shape[1], self.layers.shape[1])
        if found != (w_dim, num_ws):
            raise StylelensError(f'{source} were found on a network with w_dim {found[0]} and {found[1]} ws; this one '
                                 f'has w_dim {w_dim} and {num_ws} ws')
        return self

    def subset(self, count: int) -> DirectionSet:
        """The first `count` directions (all when count exceeds the set)."""
        pick = slice(0, count)
        return DirectionSet(self.directions[pick], self.layers[pick], self.method, self.options, self.scores[pick],
                            self.score_name, self.labels[pick], self.network_sha256, self.extras)


def make_set(directions: Any, layers: Any, *, method: str, options: dict, scores: Any, score_name: str,
             labels: list[str], network_sha256: str | None = None, extras: dict | None = None) -> DirectionSet:
    """A checked DirectionSet: directions normalised to unit rows, `layers` as [K, num_ws] bool."""
    vectors = np.asarray(directions, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if vectors.ndim != 2 or not np.all(norms > 0):
        raise StylelensError(f'{method}: directions must be non-zero rows [K, w_dim] (got {list(vectors.shape)})')
    result = DirectionSet(vectors / norms, np.asarray(layers, dtype=bool), method, dict(options),
                          np.asarray(scores, dtype=np.float64), score_name, list(labels), network_sha256 or '',
                          {k: np.asarray(v) for k, v in (extras or {}).items()})
    _check(result, method)
    return result


def save_directions(path: str | os.PathLike, dirs: DirectionSet) -> Path:
    """Write the set as an npz at exactly `path`, atomically."""
    arrays = dict(format=np.asarray(FORMAT), version=np.asarray(VERSION), directions=dirs.directions,
                  layers=dirs.layers, method=np.asarray(dirs.method),
                  options=np.asarray(json.dumps(to_jsonable(dirs.options))), scores=dirs.scores,
                  score_name=np.asarray(dirs.score_name), labels=np.asarray(dirs.labels, dtype=str),
                  network_sha256=np.asarray(dirs.network_sha256))
    arrays.update({f'{_EXTRA}{k}': v for k, v in dirs.extras.items()})
    return save_npz(path, **arrays)


def is_direction_file(path: str | os.PathLike) -> bool:
    """Whether `path` is an npz that declares this format (any other file, or none, is not)."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return False
    if isinstance(data, np.ndarray):
        return False
    with data:
        return 'format' in data.files and str(data['format']) == FORMAT


def load_directions(path: str | os.PathLike) -> DirectionSet:
    """Read and validate a direction file; anything malformed is a one-line error naming what is wrong."""
    source = Path(path)
    if not source.is_file():
        raise StylelensError(f"direction file '{source}' not found: write one with `stylelens directions "
                             f"pca|sefa|supervised --out FILE`")
    try:
        data = np.load(source, allow_pickle=False)
        if isinstance(data, np.ndarray):
            raise ValueError('a .npy array, not an npz archive')
        with data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise StylelensError(f"cannot read direction file '{source}': {reason}") from None
    missing = [key for key in _REQUIRED if key not in arrays]
    if missing or str(arrays.get('format')) != FORMAT:
        raise StylelensError(f"'{source}' is not a stylelens direction file (missing {', '.join(missing) or 'format'}"
                             f"): write one with `stylelens directions pca|sefa|supervised`")
    if int(arrays['version']) > VERSION:
        raise StylelensError(f"'{source}' is direction format version {int(arrays['version'])}; this stylelens "
                             f'reads up to {VERSION}: upgrade stylelens')
    try:
        options = json.loads(str(arrays['options']))
    except json.JSONDecodeError:
        options = None
    if not isinstance(options, dict):
        raise StylelensError(f"direction file '{source}': options is not a JSON object")
    dirs = DirectionSet(arrays['directions'], arrays['layers'], str(arrays['method']), options, arrays['scores'],
                        str(arrays['score_name']), [str(x) for x in np.atleast_1d(arrays['labels'])],
                        str(arrays['network_sha256']),
                        {k[len(_EXTRA):]: v for k, v in arrays.items() if k.startswith(_EXTRA)})
    _check(dirs, f"direction file '{source}'")
    return dirs


def _check(dirs: DirectionSet, source: str) -> None:
    """Shapes, dtypes, unit norms and finiteness; a one-line error naming the first problem."""
    vectors, layers = dirs.directions, dirs.layers
    if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.floating) or len(vectors) == 0:
        raise StylelensError(f'{source}: directions must be floats [K, w_dim] with K >= 1 (got {vectors.dtype} '
                             f'{list(vectors.shape)})')
    count = len(vectors)
    if layers.dtype != bool or layers.ndim != 2 or layers.shape[0] != count or not layers.any(axis=1).all():
        raise StylelensError(f'{source}: layers must be a bool mask [{count}, num_ws] choosing at least one ws per '
                             f'direction (got {layers.dtype} {list(layers.shape)})')
    if dirs.scores.shape != (count,) or len(dirs.labels) != count:
        raise StylelensError(f'{source}: scores and labels must have one entry per direction ({count}); got '
                             f'{list(dirs.scores.shape)} and {len(dirs.labels)}')
    if not np.isfinite(vectors).all():
        raise StylelensError(f'{source}: directions contain NaN or infinite values')
    norms = np.linalg.norm(vectors, axis=1)
    if np.abs(norms - 1).max() > UNIT_TOLERANCE:
        raise StylelensError(f'{source}: directions must be unit vectors (norms {norms.min():.4g}..{norms.max():.4g})')
