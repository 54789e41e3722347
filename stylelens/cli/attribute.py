"""`stylelens attribute`: gradient × activation or integrated gradients of a metric onto channels of hook points."""
from __future__ import annotations

import click
import numpy as np

from stylelens.causes.attribution import METHODS
from stylelens.causes.attribution import attribute as attribute_channels
from stylelens.causes.metrics import parse_metric
from stylelens.causes.plots import bars_figure
from stylelens.causes.points import Point, parse_at
from stylelens.cli.causes_options import at_option, measure_options, one_latent
from stylelens.cli.loaded import open_network
from stylelens.cli.options import network_option
from stylelens.cli.outfile import check_out, manifest_beside, prepare, sibling
from stylelens.errors import StylelensError
from stylelens.outputs import save_csv, save_npz
from stylelens.progress import progress_bar


@click.command('attribute', epilog="""\b
Examples:
  stylelens attribute --network demo --input 1 --at layers --metric region:0,0,16,16 --out attr.png
  stylelens attribute --network demo --input 1 --baseline 2 --at styles --method ig --metric factor:hue \\
      --out hue.png

\b
Writes ATTR.png (one bar chart per hook point: a bar per channel), ATTR.npz (per hook point LABEL:
LABEL.channels [C] and, for feature maps, LABEL.positions [H, W]), ATTR.csv and ATTR.manifest.json.""")
@network_option
@click.option('--input', 'input_spec', required=True, metavar='SEED|w:FILE', help='The input to explain.')
@click.option('--baseline', default=None, metavar='SEED|w:FILE',
              help='Reference input: integrated gradients start from its activations (else zero), and a vector '
                   'metric is projected on the baseline-to-input difference.')
@at_option('layers')
@click.option('--method', type=click.Choice(METHODS), default='grad-x-act',
              help='Gradient × activation (one backward pass) or integrated gradients (--steps passes per point).')
@click.option('--steps', type=click.IntRange(min=1), default=32, help='Integrated-gradients path points.')
@measure_options
@click.option('--out', required=True, type=click.Path(dir_okay=False), metavar='ATTR.png', help='Figure.')
def attribute(network: str, input_spec: str, baseline: str | None, at: str, method: str, steps: int, metric: str,
              truncation_psi: float, truncation_cutoff: int | None, class_idx: str | None, noise_mode: str,
              batch_size: int, device: str, out: str) -> None:
    """Attribute a metric of one image to every channel of each hook point."""
    target = check_out(out, ('.png',))
    loaded = open_network(network, device)
    G = loaded.G
    latent = dict(truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, class_idx=class_idx,
                  class_names=loaded.class_names)
    ws = one_latent(G, input_spec, '--input', **latent)
    base = one_latent(G, baseline, '--baseline', **latent) if baseline is not None else None
    spec = parse_at(G, at)
    if spec.per_channel:
        raise StylelensError(f"--at '{at}': attribution is per channel already; name the hook point itself")
    chosen = parse_metric(metric, G.img_resolution, loaded.device)
    with progress_bar(len(spec.names), f'attributing ({method})') as bar:
        results = attribute_channels(G, ws, spec.names, chosen, method=method, baseline_ws=base, steps=steps,
                                     batch_size=batch_size, noise_mode=noise_mode, progress=bar.update)
    prepare(target)
    labels = [Point(result.name).label for result in results]
    arrays = {f'{label}.channels': result.channels for label, result in zip(labels, results)}
    arrays.update({f'{label}.positions': result.positions for label, result in zip(labels, results)
                   if result.positions is not None})
    npz = save_npz(sibling(target, '.npz'), **arrays)
    table = save_csv(sibling(target, '.csv'), [dict(point=label, channel=c, attribution=float(v))
                                                for label, result in zip(labels, results)
                                                for c, v in enumerate(result.channels)])
    title = f'{method} of {metric} · input {input_spec}' + (f' · baseline {baseline}' if baseline else '')
    figure = bars_figure([(label, result.channels) for label, result in zip(labels, results)], title, target)
    totals = {label: result.total for label, result in zip(labels, results)}
    deltas = {label: result.delta for label, result in zip(labels, results) if result.delta is not None}
    manifest_beside(target, command='attribute', loaded=loaded, options=dict(
        input=input_spec, baseline=baseline, at=at, method=method, steps=steps, metric=metric,
        truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, class_idx=class_idx,
        noise_mode=noise_mode, batch_size=batch_size, device=str(loaded.device), out=str(target)),
        extra=dict(files=[figure.name, npz.name, table.name], totals=totals, deltas=deltas))
    for label, result in zip(labels, results):
        top = int(np.abs(result.channels).argmax())
        check = f'  (metric change {result.delta:+.4g})' if result.delta is not None else ''
        click.echo(f'  {label:<22} total {result.total:+.4g}{check}  strongest channel {top} '
                   f'({result.channels[top]:+.4g})')
    click.echo(f'wrote {figure}, {npz}, {table} and {sibling(target, ".manifest.json")}')
