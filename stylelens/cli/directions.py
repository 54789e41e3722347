"""`stylelens directions pca|sefa|supervised|benchmark`: find directions in W and write them in the one direction
format (with a figure and a manifest), or score every method on the demo network's known factors.

Under torchrun, pca, sefa and supervised split their work by rank: PCA's W samples and supervised's seeds (mapped
and scored in batches) are dealt round-robin, the fit runs on rank 0 (SeFa's closed form too, the others idle),
and the figure's rows are dealt again; rank 0 writes every file. benchmark is refused."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import click

from stylelens import distributed
from stylelens.cli.loaded import LoadedNetwork, open_network
from stylelens.cli.options import class_option, device_option, network_option, seeds_callback
from stylelens.cli.outfile import check_out, manifest_beside, prepare, sibling
from stylelens.cli.ranks import check_sharded
from stylelens.directions.benchmark import METHODS, Settings, run_benchmark
from stylelens.directions.benchmark_report import markdown, summary, write_report
from stylelens.directions.figure import direction_figure
from stylelens.directions.format import DirectionSet, save_directions
from stylelens.directions.pca import pca_set, w_pca
from stylelens.directions.scores import read_scores_csv
from stylelens.directions.sefa import sefa
from stylelens.directions.supervised import scored_latents, supervised_directions
from stylelens.errors import StylelensError
from stylelens.factors.model import load_regressor
from stylelens.mixing import parse_layers
from stylelens.outputs import write_manifest
from stylelens.progress import progress_bar
from stylelens.scorers import load_scorer

SHOWN = 12


@click.group('directions', epilog="""\b
Examples:
  stylelens directions sefa --network demo --num 16 --out sefa.npz
  stylelens directions pca --network demo --layers b4 --out pca.npz
  stylelens directions supervised --network demo --classifier factors --seeds 0-1999 --targets size --out size.npz
  stylelens directions benchmark --network demo --outdir bench
  stylelens traverse --network demo --seed 5 --direction sefa.npz:0 --out walk.png""")
@click.pass_context
def directions(ctx: click.Context) -> None:
    """Find directions in W (PCA, SeFa, supervised boundaries), all in one file format that `traverse` reads."""
    check_sharded(f'directions {ctx.invoked_subcommand}')


def common_options(f: Callable) -> Callable:
    """--network, --layers, --num, --out, the figure's seed, --device: shared by every method."""
    for option in reversed((
        network_option,
        click.option('--layers', default=None, metavar='LIST',
                     help='ws the directions move (and, for SeFa, whose affines are factorised): indices (0-6), '
                          'blocks (b4,b8 or b8-b32), StyleGAN3 layers (L0-L5) or presets; default: all.'),
        click.option('--num', type=click.IntRange(min=1), default=None, help='Keep the K strongest directions.'),
        click.option('--out', required=True, type=click.Path(dir_okay=False), metavar='DIRS.npz',
                     help='Direction file; DIRS.png (figure) and DIRS.manifest.json go beside it.'),
        click.option('--figure-seed', type=click.IntRange(0, 2**32 - 1), default=0,
                     help='Seed moved along the top directions in the figure.'),
        click.option('--figure-rows', type=click.IntRange(min=0), default=6,
                     help='Directions shown in the figure (5 images each; 0: no figure).'),
        click.option('--pca-samples', type=click.IntRange(min=2), default=10_000,
                     help='Mapped samples for sigma of W along each direction (the figure; cached).'),
        device_option)):
        f = option(f)
    return f


def _finish(loaded: LoadedNetwork, dirs: DirectionSet, target: Path, command: str, options: dict,
            figure: tuple[int, int, int]) -> None:
    """Write the direction file, its figure (seed, rows, PCA samples for sigma) and its manifest; print the
    strongest directions. Under torchrun every rank renders its share of the figure; rank 0 writes and prints."""
    G = loaded.G
    seed, rows, pca_samples = figure
    if distributed.is_main():
        save_directions(prepare(target), dirs)
    files = [target.name]
    if rows:
        pca = w_pca(G, pca_samples, network_sha256=loaded.source.sha256)
        files.append(direction_figure(G, dirs, pca, sibling(target, '.png'), seed=seed, rows=rows, steps=5).name)
    if not distributed.is_main():
        return
    manifest_beside(target, command=f'directions {command}', options=dict(options, out=str(target),
                    figure_seed=seed, figure_rows=rows, pca_samples=pca_samples), loaded=loaded,
                    extra=dict(files=files, count=len(dirs), labels=dirs.labels, scores=dirs.scores,
                               score_name=dirs.score_name))
    click.echo(f'{len(dirs)} {dirs.method} directions ({dirs.score_name}):')
    extra = dirs.extras.get('correlation')
    for k in range(min(SHOWN, len(dirs))):
        note = f'   held-out r {extra[k]:+.3f}' if extra is not None else ''
        click.echo(f'  {k:3d}  {dirs.labels[k]:<16} {dirs.scores[k]:.4g}{note}')
    click.echo(f"wrote {', '.join(str(target.with_name(name)) for name in files)} and "
               f'{sibling(target, ".manifest.json")}')


def _layers(loaded: LoadedNetwork, layers: str | None) -> list[int] | None:
    """--layers as ws indices (None: all)."""
    try:
        return None if layers is None else parse_layers(loaded.G, layers)
    except StylelensError as err:
        raise StylelensError(f"bad --layers '{layers}': {err}") from None


@directions.command('pca', epilog="""\b
Example:
  stylelens directions pca --network demo --num 16 --layers b4 --out pca.npz""")
@common_options
@click.option('--samples', type=click.IntRange(min=2), default=10_000, help='Mapped samples the PCA is fitted on.')
@click.option('--seed', type=click.IntRange(0, 2**32 - 1), default=0, help='Seeds the sampled z.')
def pca(network: str, layers: str | None, num: int | None, out: str, figure_seed: int, figure_rows: int,
        pca_samples: int, device: str, samples: int, seed: int) -> None:
    """Principal directions of W (GANSpace), strongest first, scored by their explained variance ratio."""
    target = check_out(out, ('.npz',))
    loaded = open_network(network, device)
    indices = _layers(loaded, layers)
    fitted = w_pca(loaded.G, samples, seed, network_sha256=loaded.source.sha256)
    options = dict(samples=samples, seed=seed, layers=layers, num=num)
    dirs = pca_set(fitted, loaded.G.num_ws, options, loaded.source.sha256, num, indices)
    _finish(loaded, dirs, target, 'pca', options, (figure_seed, figure_rows, pca_samples))


@directions.command('sefa', epilog="""\b
Example:
  stylelens directions sefa --network demo --num 16 --out sefa.npz
  stylelens directions sefa --network ffhq --layers 0-5 --normalize --out ffhq-coarse.npz""")
@common_options
@click.option('--normalize', is_flag=True, help="Unit-normalise every style channel's weights first (the SeFa "
                                                "authors' code); default: as rosinality's closed-form factorization.")
@click.option('--torgb', is_flag=True, help='Factorise the toRGB affines too (default: convolution layers only).')
def sefa_command(network: str, layers: str | None, num: int | None, out: str, figure_seed: int, figure_rows: int,
                 pca_samples: int, device: str, normalize: bool, torgb: bool) -> None:
    """Closed-form factorisation (SeFa): right singular vectors of the stacked style affine weights."""
    target = check_out(out, ('.npz',))
    loaded = open_network(network, device)
    dirs = distributed.from_main(lambda: sefa(loaded.G, layers, num=num, normalize=normalize, torgb=torgb,
                                              network_sha256=loaded.source.sha256))  # milliseconds: rank 0 alone
    _finish(loaded, dirs, target, 'sefa', dict(layers=layers, num=num, normalize=normalize, torgb=torgb),
            (figure_seed, figure_rows, pca_samples))


@directions.command('supervised', epilog="""\b
Examples:
  stylelens directions supervised --network demo --scores scores.csv --out dirs.npz
  stylelens directions supervised --network demo --classifier factors --seeds 0-1999 --targets size,x \\
      --condition y --out size.npz
  stylelens directions supervised --network demo --classifier factors --seeds 0-1999 --targets hue_cos \\
      --space w+ --out hue-per-layer.npz

\b
scores.csv: one row per seed, `seed,score[,score2...]`, with an optional header naming the scores.""")
@common_options
@click.option('--scores', 'scores_csv', type=click.Path(dir_okay=False), default=None, metavar='CSV',
              help='Scores per seed: seed,score[,score2...].')
@click.option('--classifier', default=None, metavar='FILE|factors',
              help='Score generated images instead: a `stylelens classifier train` classifier.pt (class logits) or '
                   'factors (the shipped shapes factor regressor); read weights-only.')
@click.option('--seeds', callback=seeds_callback, default='0-999', help='Seeds to score with --classifier.')
@click.option('--targets', default=None, metavar='NAMES', help='Scores to find directions for (default: all).')
@click.option('--condition', default=None, metavar='NAMES',
              help='Scores to keep fixed: their directions are projected out of every target direction.')
@click.option('--space', type=click.Choice(['w', 'w+']), default='w',
              help='w: one boundary in W; w+: one per ws index, each from independently mixed latents.')
@click.option('--ratio', type=click.FloatRange(0, 0.5, min_open=True), default=0.2,
              help='Share of seeds taken from each end of the scores as positive and negative examples.')
@click.option('--holdout', type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.3,
              help='Share of seeds kept out of fitting, for the reported accuracy.')
@click.option('--batch', 'batch_size', type=click.IntRange(min=1), default=32,
              help='Seeds mapped and images scored per forward pass.')
@class_option
def supervised(network: str, layers: str | None, num: int | None, out: str, figure_seed: int, figure_rows: int,
               pca_samples: int, device: str, scores_csv: str | None, classifier: str | None, seeds: list[int],
               targets: str | None, condition: str | None, space: str, ratio: float, holdout: float, batch_size: int,
               class_idx: str | None) -> None:
    """Linear boundaries (InterFaceGAN) from scores per seed, with held-out accuracy; optionally conditional."""
    target = check_out(out, ('.npz',))
    if (scores_csv is None) == (classifier is None):
        raise click.UsageError('pass exactly one of --scores CSV and --classifier FILE|factors')
    loaded = open_network(network, device)
    G = loaded.G
    indices = _layers(loaded, layers)
    table = read_scores_csv(scores_csv) if scores_csv else None
    scorer = load_scorer(classifier, loaded.device) if classifier else None
    names = _names(targets)
    conditions = _names(condition) or []
    available = table.names if table is not None else scorer.names
    unknown = [name for name in [*(names or []), *conditions] if name not in available]
    if unknown:
        source = table.source if table is not None else scorer.source
        raise StylelensError(f"{source} has no score {unknown[0]!r}: choose from {', '.join(available)}")
    latents, scores = scored_latents(G, scores=table, scorer=scorer, seeds=seeds, per_layer=space == 'w+',
                                     batch_size=batch_size, class_idx=class_idx, class_names=loaded.class_names)
    options = dict(scores_csv=scores_csv, classifier=classifier, seeds=None if table else seeds, layers=layers,
                   num=num, class_idx=class_idx)
    dirs = distributed.from_main(lambda: supervised_directions(
        latents, scores, num_ws=G.num_ws, targets=names, condition=conditions, layers=indices, ratio=ratio,
        holdout=holdout, options=options, network_sha256=loaded.source.sha256))  # the fit, on rank 0 alone
    _finish(loaded, dirs.subset(num or len(dirs)), target, 'supervised', dirs.options,
            (figure_seed, figure_rows, pca_samples))


def _names(text: str | None) -> list[str] | None:
    """`a,b` -> ['a', 'b']; None stays None."""
    return None if text is None else [name.strip() for name in text.split(',') if name.strip()]


@directions.command('benchmark', epilog="""\b
Example:
  stylelens directions benchmark --network demo --outdir bench

\b
DIR gets benchmark.md (the tables), benchmark.json (every number), benchmark.png (heat maps), each method's
direction file (pca.npz, sefa.npz, supervised.npz, random.npz) and manifest.json. Needs a generator of the
procedural shapes (the demo network, or a `stylelens train --data shapes:N` run): the factors are read off its
images by the shipped factor regressor.""")
@network_option
@click.option('--methods', default=','.join(METHODS), metavar='LIST', help='Methods to score.')
@click.option('--num', type=click.IntRange(min=1), default=12, help='Directions per method (not supervised).')
@click.option('--seeds', 'seed_count', type=click.IntRange(min=2), default=24, help='Seeds moved along each.')
@click.option('--steps', type=click.IntRange(min=3), default=5, help='Odd number of values in ±--span.')
@click.option('--span', type=click.FloatRange(min=0, min_open=True), default=2.0, help='σ of W moved each way.')
@click.option('--train-seeds', type=click.IntRange(min=20), default=1000, help='Seeds the supervised fit uses.')
@click.option('--pairs', type=click.IntRange(min=1), default=16, help='Seed pairs for patching.')
@click.option('--regressor', default=None, type=click.Path(dir_okay=False), metavar='FILE',
              help='Factor regressor (default: the shipped checkpoints/factor-regressor.pt).')
@click.option('--batch', 'batch_size', type=click.IntRange(min=1), default=64, help='Images per forward pass.')
@device_option
@click.option('--outdir', required=True, type=click.Path(file_okay=False, path_type=Path), metavar='DIR',
              help='Output folder.')
def benchmark(network: str, methods: str, num: int, seed_count: int, steps: int, span: float, train_seeds: int,
              pairs: int, regressor: str | None, batch_size: int, device: str, outdir: Path) -> None:
    """Score PCA, SeFa, supervised and random directions, and patching, on the demo network's known factors."""
    chosen = tuple(_names(methods) or ())
    unknown = [m for m in chosen if m not in METHODS]
    if unknown or not chosen:
        raise StylelensError(f"unknown method {unknown[0] if unknown else '(none)'!r}: choose from "
                             f"{', '.join(METHODS)}")
    if steps % 2 == 0:
        raise StylelensError(f'--steps {steps} must be odd (the middle step is the seed itself)')
    if outdir.exists() and not outdir.is_dir():
        raise StylelensError(f"output directory '{outdir}' is an existing file: pass a directory path")
    loaded = open_network(network, device)
    if loaded.G.img_channels != 3:
        raise StylelensError('the factor regressor reads RGB images; this network makes '
                             f'{loaded.G.img_channels}-channel ones')
    reader = load_regressor(regressor)
    settings = Settings(num=num, seeds=seed_count, steps=steps, span=span, train_seeds=train_seeds, pairs=pairs,
                        batch_size=batch_size)
    with progress_bar(None, 'benchmark (images)') as bar:
        result = run_benchmark(loaded.G, reader, settings=settings, methods=chosen,
                               network_sha256=loaded.source.sha256, progress=bar.update)
    outdir = prepare(outdir / 'benchmark.md').parent
    files = [save_directions(outdir / f'{method}.npz', dirs) for method, dirs in result.sets.items()]
    files += write_report(result, outdir, reader.metrics)
    write_manifest(outdir, command='directions benchmark', network=loaded.manifest(), options=dict(
        methods=list(chosen), regressor=regressor or 'checkpoints/factor-regressor.pt', device=str(loaded.device),
        **dataclasses.asdict(settings)), extra=dict(files=[f.name for f in files], summary=summary(result)))
    click.echo(markdown(result, reader.metrics))
    click.echo(f"wrote {', '.join(f.name for f in files)} and manifest.json to {outdir}")
