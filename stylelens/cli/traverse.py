"""`stylelens traverse`: move one seed along a W direction (PCA, random, a direction file's entry or an array)."""
from __future__ import annotations

import math

import click
import torch

from stylelens.cli.loaded import open_network
from stylelens.cli.options import network_option, render_options
from stylelens.directions.spec import direction_from_spec
from stylelens.errors import StylelensError
from stylelens.latents import class_to_c
from stylelens.mixing import parse_layers
from stylelens.outputs import ensure_outdir, write_manifest
from stylelens.progress import progress_bar
from stylelens.traversal import traversal_values
from stylelens.walks import RenderOptions, check_walk_path, walk_manifest_name
from stylelens.walks import traverse as write_traversal


def range_callback(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, float]:
    """Parse `-3,3` into (low, high) finite floats."""
    parts = value.split(',')
    try:
        low, high = (float(part) for part in parts)
    except ValueError:
        raise click.BadParameter(f"'{value}': expected two numbers LOW,HIGH such as -3,3") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise click.BadParameter(f"'{value}': expected two finite numbers LOW,HIGH such as -3,3")
    return low, high


def layer_indices(G: torch.nn.Module, layers: str | None) -> list[int] | None:
    """--layers as ws indices (stylelens.mixing's block map, shared with `mix`); None moves every ws."""
    if layers is None:
        return None
    try:
        return parse_layers(G, layers)
    except StylelensError as err:
        raise StylelensError(f"bad --layers '{layers}': {err}") from None


@click.command('traverse', epilog='Example: stylelens traverse --network demo --seed 5 --direction pca:0 '
                                  '--range -3,3 --steps 9 --layers b4,b8 --out strip.png')
@network_option
@click.option('--seed', type=click.IntRange(0, 2**32 - 1), required=True, help='The seed to move.')
@click.option('--direction', required=True, metavar='pca:K|random:S|DIRS.npz:K|FILE',
              help='K-th principal direction of W, a random unit direction from seed S, entry K of a direction '
                   'file (`stylelens directions`; moves its own layers unless --layers), or a .npy/.npz holding '
                   '[w_dim] or [num_ws, w_dim].')
@click.option('--range', 'value_range', default='-3,3', callback=range_callback, metavar='LOW,HIGH',
              help='Values to move by: standard deviations of W along the direction (a per-layer file: multiples '
                   'of the stored offset).')
@click.option('--steps', type=click.IntRange(min=1), default=9, help='Frames, evenly spaced over --range.')
@click.option('--layers', default=None, metavar='LIST',
              help='Move only these ws: indices (0-6), blocks (b4,b8 or b8-b32: the ws each block owns, as in '
                   '`mix`) or presets (coarse, middle, fine); default: all (a direction file: its layers).')
@click.option('--pca-samples', type=click.IntRange(min=2), default=10_000,
              help='Mapped samples for the PCA of W and for sigma along the direction (cached per network).')
@click.option('--fps', type=click.FloatRange(min=0, min_open=True), default=10.0, help='Frames per second (GIF/MP4).')
@render_options
@click.option('--out', required=True, type=click.Path(dir_okay=False),
              help='strip.png (labelled figure), walk.gif or walk.mp4 (needs imageio-ffmpeg).')
def traverse(network: str, seed: int, direction: str, value_range: tuple[float, float], steps: int,
             layers: str | None, pca_samples: int, truncation_psi: float, truncation_cutoff: int | None,
             class_idx: str | None, noise_mode: str, fps: float, batch_size: int, device: str, precision: str,
             out: str) -> None:
    """Move one seed's w along a direction, value * sigma * direction; writes <stem>.manifest.json beside --out."""
    target = check_walk_path(out)
    loaded = open_network(network, device)
    G = loaded.G
    class_to_c(class_idx, G.c_dim, 0, loaded.class_names)  # a missing or bad --class fails before any output
    indices = layer_indices(G, layers)
    values = traversal_values(value_range, steps)
    chosen = direction_from_spec(G, direction, num_samples=pca_samples, class_idx=class_idx,
                                 class_names=loaded.class_names, network_sha256=loaded.source.sha256)
    indices = chosen.layers if indices is None else indices
    if chosen.found_on and loaded.source.sha256 and chosen.found_on != loaded.source.sha256:
        click.echo(f'warning: {direction} was found on another network file (sha256 {chosen.found_on[:12]}...)',
                   err=True)
    ensure_outdir(target.parent)
    with progress_bar(steps, 'rendering') as bar:
        render = RenderOptions(noise_mode, batch_size, precision, bar.update, noise_seed=seed)
        summary = write_traversal(G, seed, chosen, target, values=values, layers=indices, layers_label=layers,
                                  fps=fps, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                                  class_idx=class_idx, class_names=loaded.class_names, render=render)
    options = dict(seed=seed, direction=direction, range=list(value_range), steps=steps, layers=layers,
                   pca_samples=pca_samples, pca_seed=0, truncation_psi=truncation_psi,
                   truncation_cutoff=truncation_cutoff, class_idx=class_idx, noise_mode=noise_mode, fps=fps,
                   batch_size=batch_size, device=str(loaded.device), precision=precision, out=str(target))
    extra = dict(summary, direction=chosen.label, explained_variance_ratio=chosen.explained_variance_ratio,
                 direction_found_on=chosen.found_on)
    manifest = walk_manifest_name(target)
    write_manifest(target.parent, command='traverse', options=options, network=loaded.manifest(), extra=extra,
                   name=manifest)
    click.echo(f'wrote {target} and {target.parent / manifest}')
