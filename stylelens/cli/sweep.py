"""``stylelens sweep``: one `train` run per setting of a grid of comma lists, scored and ranked."""
from __future__ import annotations

from pathlib import Path

import click

from stylelens.cli.train import train as train_command
from stylelens.scratch.config import TrainConfig, parse_betas
from stylelens.scratch.sweep import SWEPT, option_name, parse_list, split_grid

# train's own options, single-valued here; the swept ones take comma lists instead.
SHARED_OPTIONS = [p for p in train_command.params if p.name not in (*SWEPT, 'outdir', 'resume', 'resume_from')]


def _swept_options(f):
    """A comma-list option per swept TrainConfig field."""
    for field, (what, _, example) in reversed(SWEPT.items()):
        f = click.option(f'--{option_name(field)}', field, default=None, metavar='LIST',
                         help=f"Comma list, each {what} (e.g. {example}).  [default: train's]")(f)
    return f


@click.command('sweep', epilog="""\b
Example:
  stylelens sweep --model dcgan --data cifar10:data/cifar-10-python.tar.gz:dog --epochs 5 \\
      --lr 5e-5,1e-4,2e-4,5e-4 --optimizer adam,rmsprop --classifier runs/classifier/classifier.pt --outdir runs/sweep

\b
SWEEP gets one run folder per setting (e.g. lr=2e-4_optimizer=adam/), results.csv, results.md, scores.png,
scores_per_epoch.png (per-epoch losses) and manifest.json. Finished runs are skipped, so rerun to continue.
The score, classifier_js, is the JS divergence (bits, lower is better) between the classes the classifier sees
in 1000 samples of the final G and the data's classes. It is not an FID. With --fid-every K the runs measure FID
and the sweep ranks by the final FID instead (plus fid_per_epoch.png).""")
@_swept_options
@click.option('--classifier', 'classifier_path', default=None, type=click.Path(dir_okay=False, path_type=Path),
              metavar='PATH', help='classifier.pt from `stylelens classifier train`, to score and rank the runs.')
@click.option('--num', type=click.IntRange(min=1), default=1000, help='Samples per run for the classifier score.')
@click.option('--outdir', required=True, type=click.Path(file_okay=False, path_type=Path), metavar='SWEEP',
              help='Sweep folder.')
def sweep(outdir: Path, classifier_path: Path | None, num: int, **options: str | None) -> None:
    """Train one run per setting of the comma lists (LR, optimizer, depths, widths) and name the best."""
    from stylelens.scratch.sweep import make_scorer
    from stylelens.scratch.sweep import sweep as run_sweep

    lists = {field: parse_list(field, text) for field in SWEPT if (text := options.pop(field)) is not None}
    fixed, grid = split_grid(lists)
    betas = parse_betas(options['betas']) if options['betas'] else None
    base = TrainConfig(**{**options, **fixed, 'betas': betas})
    scorer = make_scorer(classifier_path, base.data, num, base.device) if classifier_path else None
    result = run_sweep(base, grid, outdir, scorer, echo=click.echo)
    click.echo(f"{len(result['rows'])} runs; table in {outdir / 'results.md'}")
    best, name = result['best'], result['score_name']
    if best is None:
        click.echo('no score: pass --classifier to rank runs')
    else:
        note = '' if name == 'fid' else '; not an FID'
        click.echo(f"best: {best['setting']} ({name} {best[name]:.4g}, lower is better{note})")


sweep.params[:0] = SHARED_OPTIONS
