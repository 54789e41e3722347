"""The known-factor benchmark written out: a JSON of every number, Markdown tables and one figure."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from stylelens.directions.benchmark import BenchmarkResult
from stylelens.outputs import atomic_write_text, to_jsonable
from stylelens.viz import DIVERGING, new_figure, save_figure

METHOD_NAMES = {'pca': 'PCA (GANSpace)', 'sefa': 'SeFa', 'supervised': 'supervised (InterFaceGAN)',
                'random': 'random'}


def to_json(result: BenchmarkResult, regressor_metrics: dict) -> dict:
    """Every number of the result as plain JSON data."""
    return to_jsonable(dict(
        factors=result.factors, settings=dataclasses.asdict(result.settings), normaliser=result.normaliser,
        best={method: {f: dataclasses.asdict(b) for f, b in by_factor.items()} for method, by_factor in
              result.best.items()},
        patching=dict(layers=result.patch_layers, recovered=result.patching, pairs=result.patch_pairs),
        summary=summary(result), regressor=regressor_metrics))


def summary(result: BenchmarkResult) -> dict[str, dict[str, float]]:
    """Per method: mean |r|, mean reach and mean leakage of its best directions over the factors."""
    return {method: dict(mean_r=float(np.mean([b.r for b in by.values()])),
                         mean_reach=float(np.mean([b.reach for b in by.values()])),
                         mean_leakage=float(np.mean([b.leakage for b in by.values()])))
            for method, by in result.best.items()}


def _top_layers(result: BenchmarkResult, f: int, count: int = 2) -> str:
    """The style layers that recover most of factor f, e.g. `b4.conv1 0.91, b16.conv0 0.12`."""
    order = np.argsort(-result.patching[f])[:count]
    return ', '.join(f'{result.patch_layers[k].removesuffix(".affine")} {result.patching[f, k]:.2f}' for k in order)


def markdown(result: BenchmarkResult, regressor_metrics: dict) -> str:
    """Two tables (directions per factor and method; patching per factor) and the per-method means."""
    methods = list(result.best)
    s = result.settings
    lines = [f'Best direction per factor: |r| / reach / leakage (the factor it leaks into most). {s.seeds} seeds, '
             f'{s.steps} steps in ±{s.span:g}σ of W, top {s.num} directions per method (supervised: one per '
             f'regressor column, fitted on {s.train_seeds} seeds).', '',
             '| factor | ' + ' | '.join(METHOD_NAMES.get(m, m) for m in methods) + ' |',
             '|---|' + '---|' * len(methods)]
    for name in result.factors:
        cells = [f'{b.r:.2f} / {b.reach:.2f} / {b.leakage:.2f} ({b.leaks_into})'
                 for b in (result.best[m][name] for m in methods)]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    means = summary(result)
    lines.append('| **mean** | ' + ' | '.join(f"**{means[m]['mean_r']:.2f} / {means[m]['mean_reach']:.2f} / "
                                              f"{means[m]['mean_leakage']:.2f}**" for m in methods) + ' |')
    lines += ['', f'Activation patching of every style layer, {s.pairs} pairs of seeds: the layers recovering most '
              f'of each factor (share recovered, mean over the pairs where the factor differs).', '',
              '| factor | pairs | top layers |', '|---|---:|---|']
    for f, name in enumerate(result.factors):
        lines.append(f'| {name} | {result.patch_pairs[name]} | {_top_layers(result, f)} |')
    if regressor_metrics:
        shown = ', '.join(f'{k} {v:.3g}' for k, v in regressor_metrics.items() if isinstance(v, float))
        lines += ['', f'Factor regressor (test split of the drawn shapes): {shown}.']
    return '\n'.join(lines) + '\n'


def figure(result: BenchmarkResult, path: str | os.PathLike) -> Path:
    """Heat maps: reach and leakage of each method's best direction per factor (its |r| written in the reach
    cells); the share patching recovers per factor and style layer."""
    methods = list(result.best)
    reach = np.array([[result.best[m][f].reach for f in result.factors] for m in methods])
    r = np.array([[result.best[m][f].r for f in result.factors] for m in methods])
    leak = np.array([[result.best[m][f].leakage for f in result.factors] for m in methods])
    fig = new_figure(18, 5.2)
    axes = fig.subplots(1, 3, gridspec_kw=dict(width_ratios=[1, 1, 1]))
    top = max(2.0, float(reach.max()))
    panels = ((reach, 'reach of the best direction (1 = two random images apart); |r| below', 'viridis', top,
               lambda i, j: f'{reach[i, j]:.2f}\n{r[i, j]:.2f}'),
              (leak, 'leakage (share of its effect on other factors)', 'magma_r', 1.0,
               lambda i, j: f'{leak[i, j]:.2f}'))
    for ax, (values, title, cmap, vmax, text) in zip(axes, panels):
        shown = ax.imshow(values, cmap=cmap, vmin=0, vmax=vmax, aspect='auto')
        ax.set_xticks(range(len(result.factors)), result.factors, rotation=60, ha='right', fontsize=8)
        ax.set_yticks(range(len(methods)), [METHOD_NAMES.get(m, m) for m in methods], fontsize=8)
        for (i, j), value in np.ndenumerate(values):
            dark = (value / vmax > 0.5) if cmap.endswith('_r') else (value / vmax < 0.5)
            ax.text(j, i, text(i, j), ha='center', va='center', fontsize=7, color='white' if dark else 'black')
        ax.set_title(title, fontsize=9)
        fig.colorbar(shown, ax=ax, fraction=0.046)
    layers = [name.removesuffix('.affine') for name in result.patch_layers]
    limit = max(1.0, float(np.abs(result.patching).max()))
    shown = axes[2].imshow(result.patching, cmap=DIVERGING, vmin=-limit, vmax=limit, aspect='auto')
    axes[2].set_xticks(range(len(layers)), layers, rotation=60, ha='right', fontsize=8)
    axes[2].set_yticks(range(len(result.factors)), result.factors, fontsize=8)
    axes[2].set_title('patching one style layer: share of the factor recovered', fontsize=9)
    fig.colorbar(shown, ax=axes[2], fraction=0.046)
    return save_figure(fig, path, tight=True)


def write_report(result: BenchmarkResult, outdir: str | os.PathLike, regressor_metrics: dict) -> list[Path]:
    """benchmark.json, benchmark.md and benchmark.png in `outdir` (which must exist)."""
    out = Path(outdir)
    data = json.dumps(to_json(result, regressor_metrics), indent=2, allow_nan=False) + '\n'
    return [atomic_write_text(out / 'benchmark.json', data),
            atomic_write_text(out / 'benchmark.md', markdown(result, regressor_metrics)),
            figure(result, out / 'benchmark.png')]
