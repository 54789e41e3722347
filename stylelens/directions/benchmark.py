"""The known-factor benchmark: how well each method's best direction for a factor moves that factor and only it,
and which layers activation patching finds for each factor, on a generator of the procedural shapes (the
embedded demo network), read by the shipped factor regressor.

Directions: each method's top `num` directions (supervised: one per regressor column, fitted on `train_seeds`
other seeds; random: a floor) move `seeds` seeds over `steps` values in [-span, span] standard deviations of W,
on their own layers. Per direction and factor, with readouts r(t):
  reach  mean over seeds of max_t d(r(t), r(0)), divided by the mean d between two random images (1 = as far as
         two random images are apart); d is |Δ| for linear factors, the wrapped angle for angles and the total
         variation distance of the kind probabilities
  r      mean over seeds of the Pearson correlation between t and the factor (angles unwrapped along t; the
         kind: the largest |r| over its three probabilities)
A method's best direction for a factor maximises |r| x reach; reported are its |r|, its reach, and its leakage,
the share of its total reach that goes to other factors (0: it moves only the target), with the factor it leaks
into most. The turn of a circle is undefined: seeds where a circle appears are left out of the turn's numbers.

Patching: for `pairs` pairs of seeds, every style layer (affine output) of the corrupt seed is patched from the
clean one, one at a time; per factor the share recovered (see stylelens.causes.metrics) is averaged over the pairs
whose factor differs by at least half the random-pair distance.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from stylelens.causes.metrics import recovered
from stylelens.causes.patching import record, run_patched
from stylelens.causes.points import Point, parse_at
from stylelens.directions.format import DirectionSet, make_set
from stylelens.directions.pca import WPCA, pca_set, w_pca
from stylelens.directions.scores import SeedScores
from stylelens.directions.sefa import sefa
from stylelens.directions.supervised import supervised_directions
from stylelens.errors import StylelensError
from stylelens.factors.model import FACTORS, KIND_OF, FactorRegressor, Readout
from stylelens.generation import seeds_to_ws
from stylelens.traversal import shift_ws

METHODS = ('pca', 'sefa', 'supervised', 'random')
CIRCLE = 0          # index of 'circle' in the kind probabilities
Progress = Callable[[int], object]


@dataclass
class Settings:
    """What the benchmark measures on: seed ranges, counts and the traversal."""

    num: int = 16
    seeds: int = 32
    steps: int = 7
    span: float = 2.0
    train_seeds: int = 1000
    pairs: int = 16
    norm_seeds: int = 256
    pca_samples: int = 10_000
    batch_size: int = 64
    eval_start: int = 100_000
    norm_start: int = 200_000
    pair_start: int = 300_000


@dataclass
class Best:
    """A method's best direction for one factor."""

    label: str
    r: float
    reach: float
    leakage: float
    leaks_into: str


@dataclass
class BenchmarkResult:
    """Per method and factor the best direction; per factor and style layer the share patching recovers."""

    factors: list[str]
    best: dict[str, dict[str, Best]]
    patch_layers: list[str]
    patching: np.ndarray
    patch_pairs: dict[str, int]
    normaliser: dict[str, float]
    sets: dict[str, DirectionSet] = field(default_factory=dict)
    settings: Settings = field(default_factory=Settings)


def readouts(G: torch.nn.Module, regressor: FactorRegressor, ws: torch.Tensor, batch_size: int,
             progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Every factor of the images of ws [M, num_ws, w_dim]: kind probabilities [M, 3], others [M]."""
    parts = []
    with torch.no_grad():
        for start in range(0, len(ws), batch_size):
            images = G.synthesis(ws[start:start + batch_size], noise_mode='const').float()
            parts.append(_arrays(regressor.read(images)))
            if progress is not None:
                progress(len(images))
    return {name: np.concatenate([p[name] for p in parts]) for name in FACTORS}


def _arrays(readout: Readout) -> dict[str, np.ndarray]:
    """A Readout as numpy arrays by factor name."""
    out = {'kind': readout.kind.double().cpu().numpy()}
    out.update({k: v.double().cpu().numpy() for k, v in {**readout.linear, **readout.angles}.items()})
    return out


def distance(name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image distance of a factor: total variation (kind), wrapped angle (angles) or |Δ| (linear)."""
    if KIND_OF[name] == 'categorical':
        return 0.5 * np.abs(a - b).sum(-1)
    if KIND_OF[name] == 'circular':
        return np.abs(np.angle(np.exp(1j * (a - b))))
    return np.abs(a - b)


def _circle(kind: np.ndarray) -> np.ndarray:
    """Where the regressor sees a circle (probability over one half)."""
    return kind[..., CIRCLE] > 0.5


def normaliser(reads: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean distance of each factor between random pairs of images (neighbours in a list of independent seeds)."""
    rolled = {name: np.roll(values, 1, axis=0) for name, values in reads.items()}
    keep = ~(_circle(reads['kind']) | _circle(rolled['kind']))
    result = {}
    for name in FACTORS:
        d = distance(name, reads[name], rolled[name])
        result[name] = float(np.mean(d[keep] if name == 'rotation' else d))
    return result


def _pearson(t: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Pearson correlation of t [S] with every row of values [N, S] (0 for constant rows)."""
    x = t - t.mean()
    y = values - values.mean(axis=1, keepdims=True)
    denom = np.sqrt((x ** 2).sum() * (y ** 2).sum(axis=1))
    return np.where(denom > 1e-12, (y * x).sum(axis=1) / np.where(denom > 1e-12, denom, 1), 0.0)


def direction_scores(reads: dict[str, np.ndarray], values: np.ndarray, norm: dict[str, float]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(reach [F], r [F]) of one direction from readouts [N, S, ...] along the traversal values [S]."""
    centre = len(values) // 2
    circles = _circle(reads['kind']).any(axis=1)
    reach, corr = [], []
    for name in FACTORS:
        series = reads[name]
        d = distance(name, series, series[:, centre:centre + 1]).max(axis=1)
        if KIND_OF[name] == 'categorical':
            r = max(abs(float(_pearson(values, series[..., c]).mean())) for c in range(series.shape[-1]))
        else:
            line = np.unwrap(series, axis=1) if KIND_OF[name] == 'circular' else series
            per_seed = _pearson(values, line)
            if name == 'rotation':
                per_seed, d = per_seed[~circles], d[~circles]
            r = abs(float(per_seed.mean())) if len(per_seed) else 0.0
        reach.append(float(d.mean()) / norm[name] if len(d) and norm[name] > 0 else 0.0)
        corr.append(r)
    return np.array(reach), np.array(corr)


def best_directions(dirs: DirectionSet, reach: np.ndarray, corr: np.ndarray) -> dict[str, Best]:
    """Per factor, the direction with the largest |r| x reach, and its leakage."""
    best = {}
    for f, name in enumerate(FACTORS):
        k = int(np.argmax(corr[:, f] * reach[:, f]))
        others = [g for g in range(len(FACTORS)) if g != f]
        total = reach[k].sum()
        leak = float(reach[k, others].sum() / total) if total > 0 else 1.0
        worst = FACTORS[others[int(np.argmax(reach[k, others]))]]
        best[name] = Best(dirs.labels[k], float(corr[k, f]), float(reach[k, f]), leak, worst)
    return best


def random_set(G: torch.nn.Module, num: int, seed: int = 0) -> DirectionSet:
    """`num` random unit directions moving every ws: the floor any method should beat."""
    vectors = np.random.RandomState(seed).randn(num, G.w_dim)
    return make_set(vectors, np.ones((num, G.num_ws), bool), method='random', options=dict(seed=seed, num=num),
                    scores=np.zeros(num), score_name='none', labels=[f'random:{k}' for k in range(num)])


def _sets(G: torch.nn.Module, regressor: FactorRegressor, pca: WPCA, settings: Settings, methods: tuple[str, ...],
          sha: str | None, progress: Progress | None) -> dict[str, DirectionSet]:
    """The direction sets of the chosen methods (supervised: fitted on the regressor's columns)."""
    sets = {}
    for method in methods:
        if method == 'pca':
            sets[method] = pca_set(pca, G.num_ws, dict(samples=settings.pca_samples, seed=0), sha, settings.num)
        elif method == 'sefa':
            sets[method] = sefa(G, num=settings.num, network_sha256=sha)
        elif method == 'random':
            sets[method] = random_set(G, settings.num)
        elif method == 'supervised':
            seeds = list(range(settings.train_seeds))
            ws = seeds_to_ws(G, seeds, device=_device(G))
            with torch.no_grad():
                columns = [regressor.read(G.synthesis(ws[i:i + settings.batch_size], noise_mode='const').float())
                           .columns() for i in range(0, len(ws), settings.batch_size)]
            names = list(columns[0])
            values = np.stack([torch.cat([c[n] for c in columns]).double().cpu().numpy() for n in names], axis=1)
            if progress is not None:
                progress(len(seeds))
            scores = SeedScores(np.asarray(seeds), names, values, 'factor regressor')
            sets[method] = supervised_directions(ws[:, 0].double().cpu().numpy(), scores, num_ws=G.num_ws,
                                                 network_sha256=sha)
        else:
            raise StylelensError(f"unknown method {method!r}: choose from {', '.join(METHODS)}")
    return sets


def _device(G: torch.nn.Module) -> torch.device:
    """The device G's parameters live on."""
    return next(G.parameters()).device


def patch_factors(G: torch.nn.Module, regressor: FactorRegressor, clean_ws: torch.Tensor, corrupt_ws: torch.Tensor,
                  norm: dict[str, float], batch_size: int = 16, progress: Progress | None = None
                  ) -> tuple[list[str], np.ndarray, dict[str, int]]:
    """Per factor and style layer the mean share recovered over the informative pairs, and the pair counts."""
    spec = parse_at(G, 'styles')
    points = [Point(name) for name in spec.names]
    sums = np.zeros((len(FACTORS), len(points)))
    counts = dict.fromkeys(FACTORS, 0)
    for clean, corrupt in zip(clean_ws, corrupt_ws):
        clean_image, recorded = record(G, clean[None], spec.names)
        with torch.no_grad():
            images = torch.cat([clean_image, G.synthesis(corrupt[None], noise_mode='const').float(),
                                run_patched(G, corrupt[None], [[p] for p in points], recorded, batch_size=batch_size)])
            readout = regressor.read(images)
        ends = _arrays(readout)
        for f, name in enumerate(FACTORS):
            apart = distance(name, ends[name][0], ends[name][1])
            if apart < 0.5 * norm[name] or (name == 'rotation' and _circle(ends['kind']).any()):
                continue
            phi = readout.features(name).double()
            sums[f] += recovered(phi[2:], phi[:1], phi[1:2]).cpu().numpy()
            counts[name] += 1
        if progress is not None:
            progress(1)
    means = sums / np.maximum(np.array([counts[name] for name in FACTORS]), 1)[:, None]
    return [p.label for p in points], means, counts


def run_benchmark(G: torch.nn.Module, regressor: FactorRegressor, *, settings: Settings | None = None,
                  methods: tuple[str, ...] = METHODS, network_sha256: str | None = None,
                  progress: Progress | None = None) -> BenchmarkResult:
    """Score every method's directions and patch every style layer on the known factors (see the docstring)."""
    settings = settings or Settings()
    if settings.steps < 3 or settings.steps % 2 == 0:
        raise StylelensError(f'--steps {settings.steps} must be odd and at least 3 (the middle step is the seed)')
    device = _device(G)
    regressor.net.to(device)
    norm = normaliser(readouts(G, regressor, seeds_to_ws(G, range(settings.norm_start, settings.norm_start +
                                                                   settings.norm_seeds), device=device),
                               settings.batch_size))
    pca = w_pca(G, settings.pca_samples, network_sha256=network_sha256)
    sets = _sets(G, regressor, pca, settings, methods, network_sha256, progress)
    ws = seeds_to_ws(G, range(settings.eval_start, settings.eval_start + settings.seeds), device=device)
    values = np.linspace(-settings.span, settings.span, settings.steps)
    best = {}
    for method, dirs in sets.items():
        reach, corr = np.zeros((len(dirs), len(FACTORS))), np.zeros((len(dirs), len(FACTORS)))
        for k in range(len(dirs)):
            vector = dirs.directions[k] * pca.std_along(dirs.directions[k])
            moved = shift_ws(G, ws, vector, values.tolist(), dirs.layer_indices(k))
            flat = readouts(G, regressor, moved.reshape(-1, *ws.shape[1:]), settings.batch_size, progress)
            reads = {name: v.reshape(len(ws), len(values), *v.shape[1:]) for name, v in flat.items()}
            reach[k], corr[k] = direction_scores(reads, values, norm)
        best[method] = best_directions(dirs, reach, corr)
    pairs = seeds_to_ws(G, range(settings.pair_start, settings.pair_start + 2 * settings.pairs), device=device)
    layers, patching, counts = patch_factors(G, regressor, pairs[0::2], pairs[1::2], norm, progress=progress)
    return BenchmarkResult(list(FACTORS), best, layers, patching, counts, norm, sets, settings)
