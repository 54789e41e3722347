"""``stylelens classifier``: train an image classifier on labeled data, for mode-coverage reports of generators."""
from __future__ import annotations

from pathlib import Path

import click

from stylelens.choices import CLASSIFIER_PRECISION_CHOICES, DEVICE_CHOICES
from stylelens.scratch.classifier import ARCHS, train_classifier


@click.group('classifier', epilog="""\b
Example:
  stylelens classifier train --data cifar10:data/cifar-10-python.tar.gz --epochs 10 --outdir runs/classifier""")
def classifier() -> None:
    """Train a classifier whose predictions and features score generators (see `stylelens modes`)."""


@classifier.command('train', epilog="""\b
Example:
  stylelens classifier train --data cifar10:data/cifar-10-python.tar.gz --epochs 10 --outdir runs/classifier
  stylelens classifier train --data mnist:data/mnist --resolution 28 --arch small-cnn --outdir runs/mnist-clf

\b
DIR gets classifier.pt (loadable with torch.load(weights_only=True)), confusion.png and manifest.json.""")
@click.option('--data', 'data', required=True, metavar='SPEC', help='KIND:PATH[:CLASSES] of labeled data.')
@click.option('--epochs', type=click.IntRange(min=1), default=10, help='Passes over the training split.')
@click.option('--batch', type=click.IntRange(min=1), default=128, help='Images per batch.')
@click.option('--lr', type=click.FloatRange(min=0, min_open=True), default=2e-4, help='Adam learning rate.')
@click.option('--seed', type=int, default=0, help='Seeds the weights and the batch order.')
@click.option('--resolution', type=int, default=32, help='Classify at this image size (28, 32, 64, ...).')
@click.option('--arch', default='discriminator', metavar='|'.join(ARCHS),
              help='The DCGAN discriminator with a class head, or a small CNN.')
@click.option('--width', type=click.IntRange(min=1), default=64, help='Base channel count.')
@click.option('--max-steps', type=click.IntRange(min=1), default=None,
              help='Cut every epoch to at most N steps (quick trials and tests).')
@click.option('--precision', default='auto', metavar='|'.join(CLASSIFIER_PRECISION_CHOICES),
              help='auto = bf16 on CPU and bf16-capable CUDA, else fp32.')
@click.option('--device', default='auto', metavar='|'.join(DEVICE_CHOICES), help='auto = cuda, then mps, then cpu.')
@click.option('--outdir', required=True, type=click.Path(file_okay=False, path_type=Path), metavar='DIR',
              help='Output folder.')
def train(data: str, epochs: int, batch: int, lr: float, seed: int, resolution: int, arch: str, width: int,
          max_steps: int | None, precision: str, device: str, outdir: Path) -> None:
    """Train a classifier on the train split and report its accuracy on the test split."""
    summary = train_classifier(data, outdir, epochs=epochs, batch=batch, lr=lr, seed=seed, resolution=resolution,
                               arch=arch, max_steps=max_steps, width=width, device=device, precision=precision)
    click.echo(f"test accuracy {summary['test_accuracy']:.4f} on {summary['test_images']} images "
               f"({summary['device']}, {summary['wall_time_s']:.1f} s); outputs in {outdir}")
