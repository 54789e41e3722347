"""`stylelens styles`: dump the S space (every modulated layer's styles) per seed; `styles rank`: rank single style
channels by a score or by a region of the image, with locality maps of the top ones.

Under torchrun both split their work by rank (seeds in `--batch` chunks, the region's probes by seed and side,
the locality maps by channel; see stylelens.causes.styles) and rank 0 writes every file, with one process's bytes."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import click
import numpy as np
import torch

from stylelens import distributed
from stylelens.causes.metrics import parse_metric
from stylelens.causes.plots import channels_figure
from stylelens.causes.styles import (
    CHUNK,
    ChannelRank,
    channel_sigmas,
    locality_maps,
    rank_by_region,
    rank_by_scores,
    seed_styles,
)
from stylelens.cli.causes_options import fixed_noise_option
from stylelens.cli.loaded import LoadedNetwork, open_network
from stylelens.cli.options import class_option, device_option, network_option, seeds_callback, truncation_options
from stylelens.cli.outfile import check_out, manifest_beside, prepare, sibling
from stylelens.directions.scores import read_scores_csv
from stylelens.errors import StylelensError
from stylelens.generation import seeds_to_ws
from stylelens.outputs import save_csv, save_npz, to_uint8
from stylelens.stylespace import StyleLayer, select_layers

SHOWN = 10


def layers_option(f: Callable) -> Callable:
    return click.option('--layers', default=None, metavar='LIST',
                        help='Layers reading these ws (indices, blocks, presets; StyleGAN3 L0-L5); default: all, '
                             'toRGB included.')(f)


@click.group('styles', invoke_without_command=True, epilog="""\b
Examples:
  stylelens styles --network demo --seeds 0-99 --out styles.npz
  stylelens styles rank --network demo --region 0,0,16,16 --out rank.csv
  stylelens styles rank --network demo --scores scores.csv --column size --out size.csv

\b
styles.npz holds one array [seeds, channels] per layer (named as in `stylelens arch`, e.g. b8.conv0), the seeds
and each layer's ws index (LAYER.ws_index).""")
@network_option
@click.option('--seeds', callback=seeds_callback, default=None, help='Seeds whose styles to dump.')
@layers_option
@truncation_options
@class_option
@device_option
@click.option('--batch', 'batch_size', type=click.IntRange(min=1), default=CHUNK, help='Seeds per mapping pass.')
@click.option('--out', type=click.Path(dir_okay=False), default=None, metavar='STYLES.npz', help='Styles file.')
@click.pass_context
def styles(ctx: click.Context, network: str, seeds: list[int] | None, layers: str | None, truncation_psi: float,
           truncation_cutoff: int | None, class_idx: str | None, device: str, batch_size: int,
           out: str | None) -> None:
    """The S space: every modulated layer's styles (its affine's output) per seed, without running synthesis."""
    if ctx.invoked_subcommand is not None:
        return
    if seeds is None or out is None:
        raise click.UsageError('styles needs --seeds and --out (or a subcommand: rank)')
    target = check_out(out, ('.npz',))
    loaded = open_network(network, device)
    G = loaded.G
    chosen = select_layers(G, layers, torgb=True)
    arrays = seed_styles(G, seeds, chosen, chunk=batch_size, truncation_psi=truncation_psi,
                         truncation_cutoff=truncation_cutoff, class_idx=class_idx, class_names=loaded.class_names,
                         device=loaded.device)
    if not distributed.is_main():
        return
    prepare(target)
    save_npz(target, seeds=np.asarray(seeds), **arrays,
             **{f'{layer.short}.ws_index': np.asarray(layer.ws_index) for layer in chosen})
    manifest_beside(target, command='styles', loaded=loaded, options=dict(
        seeds=seeds, layers=layers, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
        class_idx=class_idx, device=str(loaded.device), batch_size=batch_size, out=str(target)),
        extra=dict(layers={layer.short: dict(ws_index=layer.ws_index, channels=layer.channels, kind=layer.kind)
                           for layer in chosen}, channels=sum(layer.channels for layer in chosen)))
    click.echo(f'{len(seeds)} seeds x {sum(layer.channels for layer in chosen)} style channels in {len(chosen)} '
               f'layers; wrote {target} and {sibling(target, ".manifest.json")}')


@styles.command('rank', epilog="""\b
Examples:
  stylelens styles rank --network demo --region 0,0,16,16 --seeds 0-7 --out rank.csv
  stylelens styles rank --network demo --scores scores.csv --column size --out size.csv

\b
Writes RANK.csv (every channel, best first), RANK.png (the top channels at -/+ sigma with their locality maps)
and RANK.manifest.json.""")
@network_option
@click.option('--scores', 'scores_csv', type=click.Path(dir_okay=False), default=None, metavar='CSV',
              help='Rank by |correlation| with a score per seed (seed,score[,score2...]); its seeds are used.')
@click.option('--column', default=None, metavar='NAME', help='Which score of the CSV (default: the first).')
@click.option('--region', default=None, metavar='x0,y0,x1,y1',
              help='Rank by how much a channel changes this rectangle (pixels) more than the rest.')
@click.option('--seeds', callback=seeds_callback, default='0-7', help='Seeds for --region and the locality maps.')
@layers_option
@click.option('--top', type=click.IntRange(min=1), default=8, help='Channels shown in the figure.')
@click.option('--probes', type=click.IntRange(min=1), default=16, help='Random probes per seed (--region).')
@click.option('--sigma-seeds', type=click.IntRange(min=2), default=1000,
              help='Seeds (from 100000 on) whose styles give each channel its sigma.')
@truncation_options
@class_option
@fixed_noise_option
@click.option('--batch', 'batch_size', type=click.IntRange(min=1), default=16,
              help='Images per forward pass, and seeds per mapping pass.')
@device_option
@click.option('--out', required=True, type=click.Path(dir_okay=False), metavar='RANK.csv', help='Ranking table.')
def rank(network: str, scores_csv: str | None, column: str | None, region: str | None, seeds: list[int],
         layers: str | None, top: int, probes: int, sigma_seeds: int, truncation_psi: float,
         truncation_cutoff: int | None, class_idx: str | None, noise_mode: str, batch_size: int, device: str,
         out: str) -> None:
    """Rank single style channels by a score or by a region, with locality maps for the top ones."""
    target = check_out(out, ('.csv',))
    if (scores_csv is None) == (region is None):
        raise click.UsageError('pass exactly one of --scores CSV and --region x0,y0,x1,y1')
    loaded = open_network(network, device)
    G = loaded.G
    chosen = select_layers(G, layers, torgb=True)
    latent = dict(truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, class_idx=class_idx,
                  class_names=loaded.class_names, device=loaded.device)
    box = parse_metric(f'region:{region}', G.img_resolution).region if region is not None else None
    sigmas = channel_sigmas(G, range(100_000, 100_000 + sigma_seeds), chosen, chunk=batch_size, **latent)
    if scores_csv is not None:
        table = read_scores_csv(scores_csv)
        name = column or table.names[0]
        picked = table.pick([name])
        seeds = picked.seeds.tolist()
        ranking = rank_by_scores(G, seeds, picked.values[:, 0], chosen, chunk=batch_size, **latent)
        what = f'|r| with {name} ({scores_csv}, {len(seeds)} seeds)'
    else:
        ws = seeds_to_ws(G, seeds, **latent)
        with distributed.progress(2 * len(seeds), 'ranking style channels') as advance:
            ranking = rank_by_region(G, ws, box, chosen, sigmas, probes=probes, batch_size=batch_size,
                                     noise_mode=noise_mode, progress=advance)
        what = f'region {region}: in - out mean squared change per sigma ({len(seeds)} seeds)'
    _write(loaded, ranking, chosen, sigmas, seeds[:8], box, top, target, what, noise_mode, latent, dict(
        scores=scores_csv, column=column, region=region, seeds=seeds, layers=layers, top=top, probes=probes,
        sigma_seeds=sigma_seeds, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
        class_idx=class_idx, noise_mode=noise_mode, batch_size=batch_size, device=str(loaded.device),
        out=str(target)))


def _write(loaded: LoadedNetwork, ranking: ChannelRank, chosen: list[StyleLayer], sigmas: dict[str, torch.Tensor],
           seeds: list[int], box: tuple[int, int, int, int] | None, top: int, target: Path, what: str,
           noise_mode: str, latent: dict, options: dict) -> None:
    """The table, the figure of the top channels and the manifest; print the top rows."""
    G = loaded.G
    by_name = {layer.short: layer for layer in chosen}
    picks = [(by_name[ranking.layers[k]], int(ranking.channels[k])) for k in range(min(top, len(ranking.scores)))]
    if not picks:
        raise StylelensError('no style channels to rank')
    maps, ends = locality_maps(G, seeds_to_ws(G, seeds, **latent), picks, sigmas, noise_mode=noise_mode)
    if not distributed.is_main():
        return
    prepare(target)
    rows = ranking.rows()
    table = save_csv(target, rows)
    before, after = to_uint8(ends[:, 0]), to_uint8(ends[:, 1])
    figure = channels_figure([f'{layer.short}[{c}]' for layer, c in picks], before, after, maps,
                             f'top style channels by {what}', sibling(target, '.png'), box)
    manifest_beside(target, command='styles rank', loaded=loaded, options=options,
                    extra=dict(files=[table.name, figure.name], ranked_by=what, top=rows[:SHOWN]))
    for row in rows[:SHOWN]:
        click.echo(f"{row['rank']:>4} {row['layer']:<12} {row['channel']:>4} {row['score']:.4g}")
    click.echo(f'wrote {table}, {figure} and {sibling(target, ".manifest.json")}')
