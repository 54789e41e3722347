"""`stylelens activations`: what every block produces, per seed (G) or per image (D), as .npz files and figures."""
from __future__ import annotations

import click

from stylelens import distributed
from stylelens.activations import DTYPES, dump_activations, dump_discriminator_activations, load_images, plan_hooks
from stylelens.cli.loaded import LoadedNetwork, open_network
from stylelens.cli.options import (
    class_option,
    device_option,
    network_option,
    noise_mode_option,
    seeds_callback,
    truncation_options,
)
from stylelens.dumps import plan_dump, write_dump
from stylelens.errors import StylelensError

EPILOG = """\b
Examples:
  stylelens activations --network demo --seeds 0,1 --outdir out/act
  stylelens activations --network demo --seeds 0 --blocks b32,b64 --layers b32.conv1 --dtype float16 --outdir out/act
  stylelens activations --network demo --part D --images a.png,b.png --outdir out/act_d

\b
G writes per seed DIR/seed0000/: b32.npz (x [1,C,R,R], img [1,3,R,R]), b32.conv1.npz (out),
b32_rgb.png, b32_rgb_full.png, b32_channels.png, overview.png. D writes per image DIR/image0/: b32.npz
(x; img for skip D), b4.npz (logits), b32_channels.png. DIR/manifest.json lists everything.
"""


def _split(value: str | None) -> list[str] | None:
    """`a,b , c` -> ['a', 'b', 'c']; None stays None."""
    return None if value is None else [v.strip() for v in value.split(',') if v.strip()]


def _check_inputs(part: str, seeds: list[int] | None, images: str | None, chunk: int | None) -> None:
    """G needs --seeds, D needs --images; neither takes the other's, and only G dumps in chunks."""
    if part == 'G' and (images is not None or not seeds):
        raise StylelensError('--part G takes --seeds (e.g. 0-3), not --images; for D pass --part D --images a.png')
    if part == 'D' and (seeds is not None or not _split(images)):
        raise StylelensError('--part D takes --images a.png,b.png (image files), not --seeds')
    if part == 'D' and chunk is not None:
        raise StylelensError('--chunk dumps the seeds of G in chunks: drop it for --part D')


def _run_g(loaded: LoadedNetwork, seeds: list[int], outdir: str, common: dict, truncation_psi: float,
           truncation_cutoff: int | None, noise_mode: str) -> list[str]:
    """Per-seed dumps of G, with a progress bar (started once the request is known to be valid)."""
    plan_hooks(loaded.G, common['blocks'], common['layers'], common['class_idx'], common['class_names'])
    with distributed.progress(len(seeds), 'activations') as advance:
        return dump_activations(loaded.G, seeds, outdir, truncation_psi=truncation_psi,
                                truncation_cutoff=truncation_cutoff, noise_mode=noise_mode, progress=advance,
                                **common)


def _run_dump(loaded: LoadedNetwork, seeds: list[int], outdir: str, common: dict, chunk: int,
              **render: object) -> list[str]:
    """A chunked, resumable dump of G (no figures), resuming a killed run of the same command."""
    common = {k: v for k, v in common.items() if k != 'pngs'}
    plan = plan_dump(loaded.G, seeds, outdir, chunk_size=chunk, **common, **render)
    if plan.done and distributed.is_main():
        click.echo(f'resuming {outdir}: {len(plan.done)} of {len(plan.chunks)} chunks already there', err=True)
    with distributed.progress(len(seeds), 'dumping', initial=plan.done_seeds) as advance:
        return write_dump(plan, progress=advance)


def _run_d(loaded: LoadedNetwork, images: str, outdir: str, common: dict) -> list[str]:
    """One batch of image files through D."""
    if loaded.D is None:
        raise StylelensError('this network file holds no discriminator (D): use --part G')
    if distributed.world_size() > 1:
        raise StylelensError('--part D runs the images as one batch (minibatch-std compares them), which does not '
                             'split over processes: run it without torchrun')
    paths = _split(images)
    batch = load_images(paths, loaded.D.img_resolution, loaded.D.img_channels)
    return dump_discriminator_activations(loaded.D, batch, outdir, sources=paths, **common)


@click.command('activations', epilog=EPILOG)
@network_option
@click.option('--part', type=click.Choice(['G', 'D']), default='G', help='Generator (per seed) or discriminator '
                                                                         '(per image).')
@click.option('--seeds', default=None, callback=seeds_callback, metavar='LIST', help='G: seeds, e.g. 0-3,7.')
@click.option('--images', default=None, metavar='FILES', help="D: comma-separated image files, resized to D's "
                                                              'resolution; run as one batch (minibatch-std sees '
                                                              'them together).')
@truncation_options
@class_option
@noise_mode_option
@click.option('--blocks', default='all', metavar='LIST|all', help='Blocks to capture, e.g. b4,b8 (see `stylelens '
                                                                  'info`).')
@click.option('--layers', default=None, metavar='LIST', help='Extra hook points to save, e.g. b32.conv1,b64.torgb '
                                                             '(see `stylelens arch`).')
@click.option('--outdir', type=click.Path(file_okay=False), required=True, help='Where to write the dumps.')
@click.option('--dtype', type=click.Choice(list(DTYPES)), default='float32', help='Storage type of the .npz arrays '
                                                                                  '(float16 halves them).')
@click.option('--pngs/--no-pngs', default=True, help='Also write the PNGs and figures (or only the .npz).')
@click.option('--chunk', type=click.IntRange(min=1), default=None, metavar='N',
              help='G, many seeds: a chunked dump instead of per-seed folders (N seeds per chunk-NNNNNN/ of .npy '
                   'arrays, index.json, no figures); re-running a killed run finishes it. Read it with '
                   'stylelens.dumps.iter_dump.')
@device_option
def activations(network: str, part: str, seeds: list[int] | None, images: str | None, truncation_psi: float,
                truncation_cutoff: int | None, class_idx: str | None, noise_mode: str, blocks: str,
                layers: str | None, outdir: str, dtype: str, pngs: bool, chunk: int | None, device: str) -> None:
    """Dump every block's output (and any extra layer) per seed of G or per image of D, with figures.

    G runs one seed at a time and streams each block to disk as it is produced, so memory stays near one
    forward pass even for 1024x1024 generators.
    """
    _check_inputs(part, seeds, images, chunk)
    loaded = open_network(network, device, with_discriminator=part == 'D')
    common = dict(blocks=_split(blocks), layers=_split(layers), class_idx=class_idx,
                  class_names=loaded.class_names, dtype=DTYPES[dtype], pngs=pngs, network=loaded.manifest())
    if part == 'G' and chunk is not None:
        files = _run_dump(loaded, seeds, outdir, common, chunk, truncation_psi=truncation_psi,
                          truncation_cutoff=truncation_cutoff, noise_mode=noise_mode)
    elif part == 'G':
        files = _run_g(loaded, seeds, outdir, common, truncation_psi, truncation_cutoff, noise_mode)
    else:
        files = _run_d(loaded, images, outdir, common)
    if distributed.is_main():
        click.echo(f"wrote {len(files)} {'chunks' if chunk else 'files'} to {outdir} (see {outdir}/manifest.json)")
