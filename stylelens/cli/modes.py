"""``stylelens modes``: which classes a generator covers, judged by a trained classifier."""
from __future__ import annotations

from pathlib import Path

import click

from stylelens.choices import DEVICE_CHOICES
from stylelens.cli.loaded import open_network
from stylelens.devices import pick_device
from stylelens.errors import StylelensError
from stylelens.outputs import ensure_outdir, write_manifest


@click.command('modes', epilog="""\b
Example:
  stylelens modes --network demo --classifier runs/classifier/classifier.pt \\
      --data cifar10:data/cifar-10-python.tar.gz --num 1000 --outdir out/modes
  stylelens modes --run runs/dog/network.pkl --classifier runs/classifier/classifier.pt \\
      --data cifar10:data/cifar-10-python.tar.gz:dog --outdir out/modes-dog

\b
DIR gets modes.png (generated vs data share per class, with KL, JS and TV in the title), mode_samples.png
(samples per predicted class) and manifest.json (histograms, divergences, missing modes, diversity).
Diversity is the mean pairwise distance of classifier features over the samples divided by the same over
the data's test images: about 1 is real-like, near 0 is collapse.""")
@click.option('--network', default=None, metavar='NAME|PATH|URL', help='Generator to score (registry name, path, URL).')
@click.option('--run', 'run', default=None, metavar='RUN', help='Same as --network for now.')
@click.option('--classifier', 'classifier_path', required=True, type=click.Path(dir_okay=False, path_type=Path),
              metavar='PATH', help='classifier.pt from `stylelens classifier train`.')
@click.option('--data', 'data', default=None, metavar='SPEC',
              help='Labeled data whose class distribution is the reference.  [default: uniform]')
@click.option('--num', type=click.IntRange(min=1), default=1000, help='Samples to generate.')
@click.option('--seed', type=int, default=0, help='Seeds the latents.')
@click.option('--batch', type=click.IntRange(min=1), default=64, help='Samples per forward pass.')
@click.option('--class', 'class_idx', type=click.IntRange(min=0), default=None, metavar='INDEX',
              help='Conditional generators: sample only this class.  [default: cycle through all]')
@click.option('--device', default='auto', metavar='|'.join(DEVICE_CHOICES), help='auto = cuda, then mps, then cpu.')
@click.option('--outdir', required=True, type=click.Path(file_okay=False, path_type=Path), metavar='DIR',
              help='Output folder.')
def modes(network: str | None, run: str | None, classifier_path: Path, data: str | None, num: int, seed: int,
          batch: int, class_idx: int | None, device: str, outdir: Path) -> None:
    """Classify generated samples and compare their class histogram with the data's: divergences, missing modes
    and feature diversity."""
    from stylelens.datasets import load_dataset
    from stylelens.scratch.classifier import load_classifier, mode_report, write_mode_figures

    name = _network_name(network, run)
    classifier = load_classifier(classifier_path, pick_device(device))
    loaded = open_network(name, device)
    labels = load_dataset(data, 'train').labels if data else None
    report = mode_report(loaded.G, classifier, num, seed=seed, batch=batch, class_idx=class_idx,
                         reference_labels=labels)
    outdir = ensure_outdir(outdir)
    write_mode_figures(report, outdir)
    summary = {k: v for k, v in report.items() if k != 'samples'}
    options = dict(network=name, classifier=classifier_path, data=data, num=num, seed=seed, batch=batch,
                   class_idx=class_idx, device=device)
    write_manifest(outdir, command='modes', options=options, network=loaded.manifest(), extra=summary)
    click.echo(f"JS {report['js']:.4f} bits, KL {report['kl']:.4f} bits, TV {report['tv']:.4f}, missing modes "
               f"{report['missing_modes']}/{report['reference_classes']}, diversity {report['diversity']:.3f}; "
               f"outputs in {outdir}")


def _network_name(network: str | None, run: str | None) -> str:
    """The one generator named by --network or --run."""
    if (network is None) == (run is None):
        raise StylelensError('give exactly one of --network or --run')
    return network or run
