"""Supervised directions (InterFaceGAN, Shen et al. 2020): the normal of a linear boundary that separates latents
with high scores from latents with low ones.

Per score, the seeds are split into a training and a held-out part; in each part the top and bottom `ratio` of
the scores are the positive and negative examples. An L2-regularised logistic regression on the training examples
gives the boundary; its unit normal, pointing to higher scores, is the direction. Reported per direction: the
accuracy on the held-out examples and the correlation between the latents' projection on the normal and the raw
score over every held-out seed. Conditional directions (`condition`) have the normals of other scores projected
out, so moving along them leaves those scores as they are, to first order.

In W every seed has one w. In W+ (`fit_per_layer`) every ws index has its own independent w, and one boundary is
fitted per index: its held-out accuracy says how much that layer alone decides the score.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from stylelens import distributed
from stylelens.directions.format import DirectionSet, make_set
from stylelens.directions.scores import SeedScores, score_images
from stylelens.errors import StylelensError
from stylelens.generation import seeds_to_ws
from stylelens.scorers import Scorer

MIN_SEEDS = 20
L2 = 1e-2
NEWTON_STEPS = 50


@dataclass
class Boundary:
    """A unit normal [D] pointing to higher scores, its held-out accuracy and held-out correlation."""

    normal: np.ndarray
    accuracy: float
    correlation: float


def fit_boundary(latents: np.ndarray, score: np.ndarray, *, ratio: float = 0.2, holdout: float = 0.3,
                 seed: int = 0) -> Boundary:
    """The boundary between the top and bottom `ratio` of `score` over latents [N, D], evaluated on a held-out
    `holdout` share of the seeds (split by RandomState(seed))."""
    count = len(score)
    order = np.random.RandomState(seed).permutation(count)
    cut = int(round(count * (1 - holdout)))
    train, test = order[:cut], order[cut:]
    x_train, y_train = _extremes(latents[train], score[train], ratio)
    x_test, y_test = _extremes(latents[test], score[test], ratio)
    if len(np.unique(y_train)) < 2 or len(y_test) < 2:
        raise StylelensError(f'too few distinct scores to fit a boundary from {count} seeds (ratio {ratio}, holdout '
                             f'{holdout}): pass more seeds or a larger --ratio')
    mean, spread = x_train.mean(axis=0), x_train.std() + 1e-12
    weights, bias = _logistic(torch.from_numpy((x_train - mean) / spread), torch.from_numpy(y_train))
    accuracy = float((((x_test - mean) / spread @ weights + bias > 0) == (y_test > 0)).mean())
    projection = latents[test] @ weights
    correlation = float(np.corrcoef(projection, score[test])[0, 1]) if np.std(score[test]) > 0 else 0.0
    return Boundary(weights / np.linalg.norm(weights), accuracy, correlation)


def _extremes(latents: np.ndarray, score: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """The top and bottom `ratio` of the samples by score, labelled 1 and 0 (at least one of each)."""
    take = max(1, int(len(score) * ratio))
    order = np.argsort(score, kind='stable')
    pick = np.concatenate([order[:take], order[-take:]])
    return latents[pick], np.concatenate([np.zeros(take), np.ones(take)])


def _logistic(x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, float]:
    """Weights and bias of an L2-regularised logistic regression (the bias not regularised), by Newton's method
    with step halving, in float64: deterministic and quick for a few hundred dimensions."""
    features = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    penalty = torch.full((features.shape[1],), L2, dtype=x.dtype)
    penalty[-1] = 0
    theta = torch.zeros(features.shape[1], dtype=x.dtype)

    def loss(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.softplus(features @ t).mean() - (y * (features @ t)).mean() + (
            penalty * t.square()).sum() / 2

    for _ in range(NEWTON_STEPS):
        p = torch.sigmoid(features @ theta)
        grad = features.T @ (p - y) / len(y) + penalty * theta
        hessian = (features.T * (p * (1 - p))) @ features / len(y) + torch.diag(penalty + 1e-10)
        step = torch.linalg.solve(hessian, grad)
        size, current = 1.0, loss(theta)
        while loss(theta - size * step) > current and size > 1e-6:
            size /= 2
        theta = theta - size * step
        if float(step.abs().max()) * size < 1e-10:
            break
    return theta[:-1].numpy(), float(theta[-1])


def orthogonalize(normal: np.ndarray, conditions: np.ndarray) -> np.ndarray:
    """`normal` with the span of the condition normals [M, D] projected out, made unit again."""
    if len(conditions) == 0:
        return normal
    basis, _ = np.linalg.qr(conditions.T)
    rest = normal - basis @ (basis.T @ normal)
    norm = np.linalg.norm(rest)
    if norm < 1e-6:
        raise StylelensError('a direction lies in the span of its conditions: nothing is left after '
                             'orthogonalisation; drop a condition')
    return rest / norm


def supervised_directions(latents: np.ndarray, scores: SeedScores, *, num_ws: int, targets: Sequence[str] | None = None,
                          condition: Sequence[str] = (), layers: Sequence[int] | None = None, ratio: float = 0.2,
                          holdout: float = 0.3, seed: int = 0, options: dict | None = None,
                          network_sha256: str | None = None) -> DirectionSet:
    """One direction per target score from latents [N, w_dim] (W) or [N, num_ws, w_dim] (W+, one per target and
    ws index), conditioned on the `condition` scores; W directions move `layers` (default all)."""
    _check(latents, scores, ratio, holdout)
    names = list(targets) if targets is not None else [n for n in scores.names if n not in condition]
    scores.pick([*names, *condition])  # unknown names fail here, before any fitting
    per_layer = latents.ndim == 3
    groups = range(latents.shape[1]) if per_layer else [None]
    vectors, masks, accuracy, correlation, labels = [], [], [], [], []
    for layer in groups:
        x = latents[:, layer] if per_layer else latents
        fitted = {name: fit_boundary(x, scores.values[:, scores.names.index(name)], ratio=ratio, holdout=holdout,
                                     seed=seed) for name in dict.fromkeys([*names, *condition])}
        for name in names:
            others = np.array([fitted[c].normal for c in condition if c != name]).reshape(-1, x.shape[1])
            vectors.append(orthogonalize(fitted[name].normal, others))
            mask = np.zeros(num_ws, bool)
            mask[[layer] if per_layer else (list(range(num_ws)) if layers is None else list(layers))] = True
            masks.append(mask)
            accuracy.append(fitted[name].accuracy)
            correlation.append(fitted[name].correlation)
            labels.append(f'{name}@{layer}' if per_layer else name)
    settings = dict(options or {}, ratio=ratio, holdout=holdout, split_seed=seed, targets=names,
                    condition=list(condition), space='w+' if per_layer else 'w', scores=scores.source,
                    seeds=len(scores.seeds))
    return make_set(np.array(vectors), np.array(masks), method='supervised', options=settings, scores=accuracy,
                    score_name='held-out accuracy', labels=labels, network_sha256=network_sha256,
                    extras=dict(correlation=np.array(correlation)))


def _check(latents: np.ndarray, scores: SeedScores, ratio: float, holdout: float) -> None:
    """One-line errors for too few seeds and ratios outside (0, 0.5] and (0, 1)."""
    if len(latents) != len(scores.seeds):
        raise StylelensError(f'{len(latents)} latents for {len(scores.seeds)} scored seeds')
    if len(latents) < MIN_SEEDS:
        raise StylelensError(f'{scores.source} scores {len(latents)} seeds: a boundary needs at least {MIN_SEEDS}')
    if not 0 < ratio <= 0.5:
        raise StylelensError(f'--ratio {ratio} must be in (0, 0.5]: the share of seeds taken from each end')
    if not 0 < holdout < 1:
        raise StylelensError(f'--holdout {holdout} must be in (0, 1): the share of seeds kept for evaluation')


def scored_latents(G: torch.nn.Module, *, scores: SeedScores | None = None, scorer: Scorer | None = None,
                   seeds: Sequence[int] = (), per_layer: bool = False, mix_seed: int = 0, batch_size: int = 32,
                   class_idx: int | str | None = None, class_names: Sequence[str] | None = None
                   ) -> tuple[np.ndarray, SeedScores]:
    """Latents and their scores: the seeds of a scores CSV mapped to W, or `seeds` mapped and their images scored
    by `scorer`; per layer (W+), every ws index takes its w from another seed (a permutation per index, from
    RandomState(mix_seed)), and the mixed latents' images are scored. Seeds are mapped and images scored
    `batch_size` at a time; under torchrun each rank takes the batches `shard` deals it and every rank gets all
    the latents and scores, in seed order."""
    if scores is not None:
        if per_layer:
            raise StylelensError('W+ boundaries need images of mixed latents scored by a classifier: pass '
                                 '--classifier instead of --scores')
        ws = _mapped(G, scores.seeds.tolist(), batch_size, class_idx, class_names)
        return ws[:, 0].double().cpu().numpy(), scores
    if scorer is None or len(seeds) < MIN_SEEDS:
        raise StylelensError(f'supervised directions need --scores CSV, or --classifier with at least {MIN_SEEDS} '
                             f'--seeds')
    ws = _mapped(G, list(seeds), batch_size, class_idx, class_names)
    if per_layer:
        rng = np.random.RandomState(mix_seed)
        picks = [np.arange(len(seeds))] + [rng.permutation(len(seeds)) for _ in range(1, G.num_ws)]
        ws = torch.stack([ws[torch.from_numpy(pick), k] for k, pick in enumerate(picks)], dim=1)
    values = score_images(scorer, ws, G, batch_size=batch_size)
    measured = SeedScores(np.asarray(seeds, dtype=np.int64), list(scorer.names), values, scorer.source)
    latents = ws.double().cpu().numpy()
    return (latents if per_layer else latents[:, 0]), measured


def _mapped(G: torch.nn.Module, seeds: list[int], batch_size: int, class_idx: int | str | None,
            class_names: Sequence[str] | None) -> torch.Tensor:
    """ws [N, num_ws, w_dim] of `seeds`, mapped `batch_size` at a time (each rank its share), on every rank."""
    device = next(G.parameters()).device
    mine = [seeds_to_ws(G, seeds[start:start + batch_size], class_idx=class_idx, class_names=class_names,
                        device=device).cpu() for start in distributed.shard(range(0, len(seeds), batch_size))]
    return torch.cat(distributed.gather_shards(mine)).to(device)
