"""Inception features of many images, batch by batch, their float64 statistics, and the on-disk cache of real-data
features keyed by the images' own bytes."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stylelens import distributed
from stylelens.errors import StylelensError
from stylelens.loading.download import cache_dir
from stylelens.metrics.inception import FEATURE_DIM, NUM_LOGITS, PREPROCESSING, FeatureNetwork
from stylelens.outputs import save_npz

CACHE_VERSION = 1  # bump when what is stored, or how features are made, changes


@dataclass
class Features:
    """What the metrics need of one image set: pool3 features (None when only statistics were given), their mean
    and covariance in float64, and the bias-free logits (None for real data)."""

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray | None = None
    logits: np.ndarray | None = None

    @property
    def count(self) -> int | None:
        return None if self.features is None else len(self.features)


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (N-1 normalised, like numpy's and pytorch-fid's) in float64 of [N, D] features; under
    torchrun of the rows all ranks hold between them, each rank passing its own (`distributed.mean_and_scatter`)."""
    count, mu, scatter = distributed.mean_and_scatter(features)
    return mu, scatter / (count - 1)


def extract(network: FeatureNetwork, batches: Iterable[torch.Tensor], total: int, *, label: str = 'features',
            progress: bool = True) -> Features:
    """Run uint8 NCHW batches (under torchrun: this rank's share, dealt by batch) through the network; pool3
    features become float64 statistics over all ranks, and rank 0 gets all features and logits in order (the other
    ranks keep the statistics and empty arrays: KID and IS run on rank 0)."""
    feats, logits = [], []
    with distributed.progress(total, label, progress) as advance:
        for images in batches:
            f, lg = network(images)
            feats.append(f.numpy())
            logits.append(lg.numpy())
            advance(len(images))
    mu, sigma = statistics(_rows(feats, FEATURE_DIM))
    return Features(mu, sigma, _rows(distributed.gather_to_main(feats), FEATURE_DIM),
                    _rows(distributed.gather_to_main(logits), NUM_LOGITS))


def _rows(parts: list[np.ndarray], width: int) -> np.ndarray:
    """Batches of float32 rows [n, width] as one array ([0, width] when there are none)."""
    return np.concatenate(parts) if parts else np.zeros((0, width), np.float32)


def dataset_key(pixels: torch.Tensor, network: FeatureNetwork) -> str:
    """SHA-256 of the uint8 pixels, their shape and everything that shapes the features (weights, preprocessing)."""
    digest = hashlib.sha256()
    settings = dict(shape=list(pixels.shape), weights=network.sha256, preprocessing=PREPROCESSING,
                    version=CACHE_VERSION)
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update(pixels.contiguous().numpy().tobytes())
    return digest.hexdigest()


def cache_path(key: str) -> Path:
    """Where the features of the image set with `key` are cached."""
    return cache_dir() / 'metrics' / f'real-{key[:32]}.npz'


def load_npz(path: Path) -> Features | None:
    """Statistics (and features, if stored) from an .npz with `mu` and `sigma`; None when it has no statistics."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if 'mu' not in data or 'sigma' not in data:
                return None
            features = data['features'] if 'features' in data else None
            return Features(data['mu'].astype(np.float64), data['sigma'].astype(np.float64), features)
    except (OSError, ValueError) as error:
        raise StylelensError(f'cannot read {path} as .npz: {error}') from None


def cached_features(pixels: torch.Tensor, network: FeatureNetwork, compute: Callable[[], Features],
                    use_cache: bool = True) -> tuple[Features, str]:
    """The real images' features from the cache when their key is there, else computed and stored; also says
    which ('hit', 'miss' when just written, 'off')."""
    if not use_cache:
        return compute(), 'off'
    path = cache_path(dataset_key(pixels, network))
    cached = distributed.from_main(lambda: load_npz(path) if path.is_file() else None)  # rank 0's cache decides
    if cached is not None and cached.features is not None:
        return cached, 'hit'
    result = compute()
    if distributed.is_main():
        path.parent.mkdir(parents=True, exist_ok=True)
        save_npz(path, mu=result.mu, sigma=result.sigma, features=result.features.astype(np.float32))
    return Features(result.mu, result.sigma, result.features), 'miss'
