"""`stylelens metrics`: FID, KID and IS of a generator (or a folder of images) against real data."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from stylelens.choices import DEVICE_CHOICES
from stylelens.datasets import SPLITS


@click.command('metrics', epilog="""\b
Examples:
  stylelens metrics --metric fid,kid,is --real cifar10:data/cifar-10-python.tar.gz --fake runs/cifar \\
      --out out/metrics.json
  stylelens metrics --metric fid --real cifar10:data/cifar-10-python.tar.gz --split test --fake cifar10 \\
      --num 10000
  stylelens metrics --metric is --fake out/generate

\b
--fake is a `stylelens train` run folder, a network (registry name, .pkl, URL) or a folder of images.
Fakes use seeds SEED .. SEED+NUM-1 (z as NVIDIA's generate.py), truncation 1, random noise seeded per batch,
classes cycling with the seed. --real is a data spec (all images of the split), a folder of images, or an .npz
of images or of statistics (mu, sigma; enough for FID only). Real features are cached under the stylelens cache,
keyed by the sha256 of the pixels and the settings, so the second run skips them.

\b
The Inception weights are pytorch-fid's pt_inception-2015-12-05-6726825d.pth, downloaded and checksummed on
first use (or --inception PATH). Images are resized to 299 as pytorch-fid does, so FIDs match pytorch-fid's
and are close to, not identical with, TensorFlow's and NVIDIA's (which resize and scale slightly differently).
FID falls as NUM grows: compare only scores with the same NUM and real set (CIFAR-10 papers: 50,000 fakes vs
the 50,000 train images).""")
@click.option('--metric', 'metrics', default='fid', show_default=True, metavar='LIST',
              help='Comma-separated: fid, kid, is.')
@click.option('--real', default=None, metavar='SPEC|DIR|NPZ', help='Real data (needed for fid and kid).')
@click.option('--fake', required=True, metavar='RUN|DIR|NETWORK', help='What to score.')
@click.option('--num', type=click.IntRange(min=2), default=50_000, show_default=True,
              help='Fakes to generate (a folder gives at most this many).')
@click.option('--num-real', type=click.IntRange(min=2), default=None, help='Use only the first N real images.  '
              '[default: all]')
@click.option('--split', type=click.Choice(SPLITS), default='train', show_default=True,
              help='Split of a dataset spec given as --real.')
@click.option('--batch', type=click.IntRange(min=1), default=50, show_default=True, help='Images per Inception pass.')
@click.option('--seed', type=click.IntRange(min=0), default=0, show_default=True,
              help='First fake seed; also seeds the KID subsets.')
@click.option('--device', type=click.Choice(DEVICE_CHOICES), default='auto', show_default=True,
              help='auto = cuda, then mps, then cpu.')
@click.option('--inception', type=click.Path(dir_okay=False, path_type=Path), default=None, metavar='PATH',
              help='Inception weight file.  [default: download to the stylelens cache]')
@click.option('--kid-subsets', type=click.IntRange(min=1), default=100, show_default=True, help='KID subsets.')
@click.option('--kid-subset-size', type=click.IntRange(min=2), default=1000, show_default=True,
              help='KID subset size (smaller if fewer images).')
@click.option('--is-splits', type=click.IntRange(min=1), default=10, show_default=True, help='IS splits.')
@click.option('--no-cache', is_flag=True, help='Compute the real features even if cached, and do not store them.')
@click.option('--out', type=click.Path(dir_okay=False, path_type=Path), default=None, metavar='FILE.json',
              help='Write the scores with options, versions and inputs (a manifest) to this file.')
def metrics(metrics: str, real: str | None, fake: str, num: int, num_real: int | None, split: str, batch: int,
            seed: int, device: str, inception: Path | None, kid_subsets: int, kid_subset_size: int, is_splits: int,
            no_cache: bool, out: Path | None) -> None:
    """Score generated images: FID and KID against real data, IS on their own."""
    from stylelens import distributed
    from stylelens.devices import tune_cpu_allocator
    from stylelens.metrics.api import compute_metrics
    from stylelens.outputs import ensure_outdir, write_manifest

    tune_cpu_allocator()
    results = compute_metrics(metrics, real=real, fake=fake, num=num, num_real=num_real, split=split, batch=batch,
                              seed=seed, device=device, inception=inception, kid_subsets=kid_subsets,
                              kid_subset_size=kid_subset_size, is_splits=is_splits, cache=not no_cache)
    if not distributed.is_main():
        return
    if not results['inception']['official']:
        click.echo(f"note: Inception weights {results['inception']['sha256'][:12]}... are not pytorch-fid's file; "
                   f"these scores do not compare with published ones", err=True)
    if out is not None:
        options = dict(metrics=metrics, real=real, fake=fake, num=num, num_real=num_real, split=split, batch=batch,
                       seed=seed, device=device, inception=inception, kid_subsets=kid_subsets,
                       kid_subset_size=kid_subset_size, is_splits=is_splits, no_cache=no_cache)
        write_manifest(ensure_outdir(out.parent), name=out.name, command='metrics',
                       options=options, network=results['fake']['network'], extra=results)
    click.echo(summary(results) + (f'; written to {out}' if out else ''))


def summary(results: dict[str, Any]) -> str:
    """One line: each score, then how many fakes and reals it compared."""
    parts = []
    if 'fid' in results:
        parts.append(f"FID {results['fid']:.4f}")
    if 'kid' in results:
        parts.append(f"KID {results['kid']['mean']:.6f} ± {results['kid']['std']:.6f}")
    if 'is' in results:
        parts.append(f"IS {results['is']['mean']:.4f} ± {results['is']['std']:.4f}")
    real = results['real']
    versus = f" vs {real['num']:,} real" if real and real['num'] else ' vs given statistics' if real else ''
    return f"{', '.join(parts)} ({results['num_fake']:,} fake{versus})"
