"""``stylelens data``: fetch the official training sets of the from-scratch GANs and inspect a ``--data`` spec."""
from __future__ import annotations

from pathlib import Path

import click

from stylelens.datasets import CHANNELS, DATASETS, SPLITS, ImageDataset, dataset_source, download_dataset, load_dataset


@click.group('data', epilog="""\b
Examples:
  stylelens data download cifar10
  stylelens data info cifar10:~/.cache/stylelens/data/cifar10/cifar-10-python.tar.gz:dog""")
def data() -> None:
    """Download CIFAR-10, MNIST or Fashion-MNIST, and show what a --data spec selects.

    \b
    A --data spec is KIND:PATH[:CLASSES]:
      cifar10:PATH        PATH = cifar-10-python.tar.gz or its extracted folder
      mnist:PATH          PATH = folder of the official IDX files (.gz or not)
      fashion-mnist:PATH  same layout as mnist
      folder:PATH         every .png/.jpg under PATH, unlabeled
    CLASSES: comma-separated names or indices, e.g. dog or 3,5.
    """


@data.command('download', short_help="Download a dataset's official files (checksummed, resumable).", epilog="""\b
Examples:
  stylelens data download cifar10
  stylelens data download mnist --dest data/mnist
  stylelens data download fashion-mnist --url https://my-mirror.example/fashion-mnist/

Downloads resume where they stopped; every file is checked against its published MD5.""")
@click.argument('name', metavar='NAME', type=click.Choice(list(DATASETS), case_sensitive=False))
@click.option('--dest', type=click.Path(file_okay=False, path_type=Path), default=None,
              help='Folder to put the files in.  [default: <cache>/data/NAME]')
@click.option('--url', 'mirror', metavar='BASE_URL', default=None,
              help='Mirror to fetch from instead of the official site: a base URL holding the same file names.')
def download(name: str, dest: Path | None, mirror: str | None) -> None:
    """Download dataset NAME (cifar10, mnist, fashion-mnist) and print the --data spec that reads it."""
    paths = download_dataset(name, dest, mirror=mirror)
    for path in paths:
        click.echo(f'{path}  ({path.stat().st_size:,} bytes)')
    click.echo(f'Use it with: --data {dataset_source(name).spec_for(paths[0].parent)}')


def _summary(dataset: ImageDataset) -> list[tuple[str, str]]:
    """Label/value rows describing a loaded dataset."""
    counts = dataset.class_counts()
    classes = (f'{dataset.num_classes} ({len(counts)} present)' if dataset.num_classes else 'none (unlabeled)')
    return [('data', dataset.spec), ('split', dataset.split), ('images', f'{len(dataset):,}'),
            ('resolution', f'{dataset.resolution}x{dataset.resolution}'), ('channels', str(dataset.channels)),
            ('classes', classes)]


@data.command('info', short_help='Show what a --data spec selects: counts per class, size, channels.', epilog="""\b
Examples:
  stylelens data info cifar10:data/cifar-10-python.tar.gz:dog
  stylelens data info mnist:data/mnist:3,5 --split test
  stylelens data info folder:my_images --resolution 64""")
@click.argument('spec', metavar='SPEC')
@click.option('--split', type=click.Choice(SPLITS), default='train', show_default=True, help='Which split to read.')
@click.option('--resolution', type=int, default=None, help='Resize to this size (as training would).')
@click.option('--channels', type=click.Choice([str(c) for c in CHANNELS]), default=None,
              help='Convert to 1 (grayscale) or 3 (RGB) channels.')
def info(spec: str, split: str, resolution: int | None, channels: str | None) -> None:
    """Load SPEC (a --data value) and print its image count per class, resolution and channels."""
    dataset = load_dataset(spec, split=split, resolution=resolution, channels=int(channels) if channels else None)
    for label, value in _summary(dataset):
        click.echo(f'{label:<11} {value}')
    counts = dataset.class_counts()
    for index, name in enumerate(dataset.class_names):
        if name in counts:
            click.echo(f'  {index:>2} {name:<12} {counts[name]:>7,}')
