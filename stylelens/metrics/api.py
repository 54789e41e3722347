"""FID, KID and IS end to end: `compute_metrics` for one comparison, `FIDScorer` for scoring a generator again
and again (every few epochs) against the same real data."""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from stylelens import distributed
from stylelens.devices import pick_device
from stylelens.errors import StylelensError
from stylelens.metrics.features import Features, cached_features, extract
from stylelens.metrics.inception import FeatureNetwork, load_inception
from stylelens.metrics.inputs import FakeData, RealData, batches_of, load_real, open_fake, sampled_batches
from stylelens.metrics.scores import (
    IS_SPLITS,
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    psd_sqrt,
)

METRICS = ('fid', 'kid', 'is')


def parse_metrics(value: str | Sequence[str]) -> tuple[str, ...]:
    """'fid,kid,is' (any order, any case) -> ('fid', 'kid', 'is'); an unknown name is refused with the choices."""
    names = [n.strip().lower() for n in (value.split(',') if isinstance(value, str) else value) if n.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise StylelensError(f"unknown metric {', '.join(unknown) or repr(value)} (choices: {', '.join(METRICS)}, "
                             f"comma-separated, e.g. fid,kid)")
    return tuple(m for m in METRICS if m in names)


def real_features(real: RealData, network: FeatureNetwork, *, batch: int = 50, progress: bool = True,
                  cache: bool = True) -> tuple[Features, str]:
    """Features of the real images (from the cache when these exact pixels were seen before), or the statistics
    given; the second value says where they came from: 'hit', 'miss', 'off' or 'given'."""
    if real.precomputed is not None:
        return real.precomputed, 'given'
    pixels = real.pixels
    return cached_features(pixels, network, lambda: extract(network, batches_of(pixels, batch), len(pixels),
                                                            label='real images', progress=progress), cache)


def fake_features(fake: FakeData, network: FeatureNetwork, *, num: int, batch: int = 50, seed: int = 0,
                  progress: bool = True) -> Features:
    """Features and logits of `num` fakes: seeds seed .. seed+num-1 of a sampler, or the first `num` images of a
    folder (all of them if it has fewer)."""
    if fake.pixels is not None:
        pixels = fake.pixels[:num]
        return extract(network, batches_of(pixels, batch), len(pixels), label='fake images', progress=progress)
    return extract(network, sampled_batches(fake.sampler, num, batch, seed), num, label='fake images',
                   progress=progress)


def _uses_real(metrics: Sequence[str]) -> bool:
    return 'fid' in metrics or 'kid' in metrics


def _require_real(metrics: Sequence[str], real: Any) -> None:
    if real is None and _uses_real(metrics):
        raise StylelensError('FID and KID compare with real data: pass --real (a data spec, folder or .npz)')


def score(metrics: Sequence[str], real: Features | None, fake: Features, *, real_name: str = 'the real data',
          kid_subsets: int = KID_SUBSETS, kid_subset_size: int = KID_SUBSET_SIZE, is_splits: int = IS_SPLITS,
          seed: int = 0) -> dict[str, Any]:
    """The requested metrics from features: {'fid': float, 'kid': {'mean', 'std'}, 'is': {'mean', 'std'}}."""
    results: dict[str, Any] = {}
    _require_real(metrics, real)
    if 'fid' in metrics:
        results['fid'] = frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma)
    if 'kid' in metrics:
        if real.features is None:
            raise StylelensError(f"KID needs the real images' features, and {real_name} holds only statistics (mu, "
                                 f'sigma): pass the images, or a stylelens metrics cache .npz (it stores features)')
        mean, std = kernel_inception_distance(real.features, fake.features, subsets=kid_subsets,
                                              subset_size=kid_subset_size, seed=seed)
        results['kid'] = dict(mean=mean, std=std, subsets=kid_subsets,
                              subset_size=min(kid_subset_size, len(real.features), len(fake.features)))
    if 'is' in metrics:
        mean, std = inception_score(fake.logits, is_splits)
        results['is'] = dict(mean=mean, std=std, splits=is_splits)
    return results


def compute_metrics(metrics: str | Sequence[str] = 'fid', *, real: Any = None, fake: Any, num: int = 50_000,
                    num_real: int | None = None, split: str = 'train', batch: int = 50, seed: int = 0,
                    device: str | torch.device = 'auto', inception: str | os.PathLike | None = None,
                    kid_subsets: int = KID_SUBSETS, kid_subset_size: int = KID_SUBSET_SIZE,
                    is_splits: int = IS_SPLITS, progress: bool = True, cache: bool = True) -> dict[str, Any]:
    """Compare fakes with real data: `real` as `load_real` takes it (spec, folder, .npz, dataset, tensor), `fake`
    as `open_fake` does (run folder, network, image folder, generator module, `sample(n, first_seed)`).

    Returns the scores (see `score`) with what was compared: counts, the cache outcome, the Inception weights
    (under torchrun on rank 0; the other ranks get {}).
    """
    chosen = parse_metrics(metrics)
    if num < 1 or batch < 1:
        raise StylelensError(f'--num and --batch must be positive (got {num} and {batch})')
    _require_real(chosen, real)
    torch_device = pick_device(str(device))
    network = distributed.in_turn(lambda: load_inception(inception, device=torch_device, progress=progress))
    real_data = load_real(real, split=split, num=num_real) if _uses_real(chosen) else None
    fake_data = distributed.in_turn(lambda: open_fake(fake, torch_device, progress=progress))
    real_feats, cache_state = (real_features(real_data, network, batch=batch, progress=progress, cache=cache)
                               if real_data is not None else (None, None))
    fake_feats = fake_features(fake_data, network, num=num, batch=batch, seed=seed, progress=progress)
    if not distributed.is_main():
        return {}  # rank 0 holds every feature and scores them
    results = score(chosen, real_feats, fake_feats, real_name=real_data.description if real_data else '',
                    kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, is_splits=is_splits, seed=seed)
    results['num_fake'] = fake_feats.count
    results['real'] = None if real_data is None else dict(source=real_data.description, cache=cache_state,
                                                          num=real_feats.count)
    results['fake'] = dict(source=fake_data.description, seeds=[seed, seed + num - 1] if fake_data.sampler else None,
                           network=fake_data.network or None)
    results['inception'] = network.describe()
    return results


class FIDScorer:
    """FID of a generator against fixed real data, meant to run every few epochs: the Inception network and the
    real statistics are prepared once (the statistics also cached on disk), each `score` only samples fakes.

    Example::

        scorer = FIDScorer('cifar10:data/cifar-10-python.tar.gz', num=5000, device='cuda')
        fid = scorer.score(G)                    # an nn.Module G(z, c) or a StyleGAN-like G
        fid = scorer.score(lambda n, seed: ...)  # or any sample(n, first_seed) -> NCHW uint8 / [-1, 1] floats

    FID depends on `num` (it is biased upwards for small samples): compare only scores made with the same `num`.
    """

    def __init__(self, real: Any, *, num: int = 10_000, batch: int = 50, seed: int = 0,
                 device: str | torch.device = 'auto', inception: str | os.PathLike | None = None,
                 num_real: int | None = None, split: str = 'train', progress: bool = False, cache: bool = True):
        if num < 2 or batch < 1:
            raise StylelensError(f'FIDScorer needs num >= 2 and batch >= 1 (got {num} and {batch})')
        self.num, self.batch, self.seed, self.progress = num, batch, seed, progress
        self.network = load_inception(inception, device=pick_device(str(device)), progress=progress)
        real_data = load_real(real, split=split, num=num_real)
        self.real, self.real_cache = real_features(real_data, self.network, batch=batch, progress=progress,
                                                   cache=cache)
        self._sqrt_sigma: np.ndarray | None = None  # sqrt of the real covariance, made by the first score

    def score(self, generator: Any) -> float:
        """FID of `num` fakes (seeds seed .. seed+num-1) from a generator module, a sampler, or anything `--fake`
        accepts. A module is sampled in eval mode and put back in the mode it was in."""
        fake_data = open_fake(generator, self.network.device, progress=self.progress)
        fake = fake_features(fake_data, self.network, num=self.num, batch=self.batch, seed=self.seed,
                             progress=self.progress)
        if self._sqrt_sigma is None:
            self._sqrt_sigma = psd_sqrt(self.real.sigma)
        return frechet_distance(self.real.mu, self.real.sigma, fake.mu, fake.sigma, sqrt_sigma1=self._sqrt_sigma)
