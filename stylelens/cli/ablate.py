"""`stylelens ablate`: zero or mean-ablate the channels of a hook point one at a time; a table of metric changes."""
from __future__ import annotations

import click

from stylelens.causes.ablation import MODES
from stylelens.causes.ablation import ablate as ablate_channels
from stylelens.causes.metrics import parse_metric
from stylelens.causes.plots import bars_figure
from stylelens.causes.points import Point
from stylelens.cli.causes_options import measure_options
from stylelens.cli.loaded import open_network
from stylelens.cli.options import network_option, seeds_callback
from stylelens.cli.outfile import check_out, manifest_beside, prepare, sibling
from stylelens.generation import seeds_to_ws
from stylelens.latents import parse_int_list
from stylelens.outputs import save_csv
from stylelens.probes import resolve_name
from stylelens.progress import progress_bar

SHOWN = 10


@click.command('ablate', epilog="""\b
Examples:
  stylelens ablate --network demo --seeds 0-7 --at b8.conv1 --metric pixels --out ablate.csv
  stylelens ablate --network demo --seeds 0-7 --at b4.conv1 --channels 0-15 --mode mean \\
      --metric factor:size --out size.csv

\b
Writes ABLATE.csv (rank, channel, change, size; largest change first), ABLATE.png (a bar per channel) and
ABLATE.manifest.json. For a single score, change is the mean signed change and size the mean |change|; for a
region or pixels, size is the RMS change of the pixels.""")
@network_option
@click.option('--seeds', callback=seeds_callback, default='0-7', help='Seeds to ablate in (the table averages them).')
@click.option('--at', 'name', required=True, metavar='NAME', help='The hook point (`stylelens arch` lists them).')
@click.option('--channels', default=None, metavar='LIST', help='Channels to ablate, e.g. 0-15,20 (default: all).')
@click.option('--mode', type=click.Choice(MODES), default='zero',
              help='Set the channel to zero, or to its mean activation over --mean-seeds.')
@click.option('--mean-seeds', callback=seeds_callback, default='10000-10063', help='Seeds the mean is taken over.')
@measure_options
@click.option('--out', required=True, type=click.Path(dir_okay=False), metavar='ABLATE.csv', help='Table.')
def ablate(network: str, seeds: list[int], name: str, channels: str | None, mode: str, mean_seeds: list[int],
           metric: str, truncation_psi: float, truncation_cutoff: int | None, class_idx: str | None,
           noise_mode: str, batch_size: int, device: str, out: str) -> None:
    """Ablate every chosen channel of one hook point and tabulate the metric's change."""
    target = check_out(out, ('.csv',))
    loaded = open_network(network, device)
    G = loaded.G
    hook = resolve_name(G, name)
    chosen = parse_int_list(channels, what='channels') if channels is not None else None
    measure = parse_metric(metric, G.img_resolution, loaded.device)
    latent = dict(truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, class_idx=class_idx,
                  class_names=loaded.class_names, device=loaded.device)
    ws = seeds_to_ws(G, seeds, **latent)
    mean_ws = seeds_to_ws(G, mean_seeds, **latent) if mode == 'mean' else None
    with progress_bar(None, f'ablating {Point(hook).label}') as bar:
        result = ablate_channels(G, ws, hook, measure, channels=chosen, mode=mode, mean_ws=mean_ws,
                                 batch_size=batch_size, noise_mode=noise_mode, progress=bar.update)
    prepare(target)
    rows = result.rows()
    table = save_csv(target, rows)
    figure = bars_figure([(Point(hook).label, result.size)], f'{mode} ablation of {Point(hook).label}: size of the '
                         f'change of {metric} (seeds {len(seeds)})', sibling(target, '.png'), ylabel='|change|')
    manifest_beside(target, command='ablate', loaded=loaded, options=dict(
        seeds=seeds, at=hook, channels=channels, mode=mode, mean_seeds=mean_seeds if mode == 'mean' else None,
        metric=metric, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, class_idx=class_idx,
        noise_mode=noise_mode, batch_size=batch_size, device=str(loaded.device), out=str(target)),
        extra=dict(files=[table.name, figure.name], baseline=result.baseline, top=rows[:SHOWN]))
    click.echo(f"{'rank':>4} {'channel':>7} {'change':>10} {'size':>10}")
    for row in rows[:SHOWN]:
        click.echo(f"{row['rank']:>4} {row['channel']:>7} {row['change']:>10.4g} {row['size']:>10.4g}")
    click.echo(f'wrote {table}, {figure} and {sibling(target, ".manifest.json")}')
