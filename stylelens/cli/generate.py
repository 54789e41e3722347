"""`stylelens generate`: images for seeds with the official conventions, batched, with a manifest."""
from __future__ import annotations

import click
import numpy as np

from stylelens import distributed
from stylelens.cli.loaded import open_network
from stylelens.cli.options import network_option, render_options, seeds_callback
from stylelens.errors import StylelensError
from stylelens.generation import generate_images
from stylelens.input_transform import with_input_transform
from stylelens.latents import class_to_c, save_ws_file
from stylelens.outputs import ensure_outdir, save_pngs, seed_filename, write_manifest


def _vec2_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, float] | None:
    """Parse `X,Y` (e.g. `0.3,1`) into two floats, turning errors into click usage errors."""
    if value is None:
        return None
    try:
        x, y = (float(v) for v in value.split(','))
    except ValueError:
        raise click.BadParameter(f'expected X,Y such as 0.3,1 (got {value!r})') from None
    return x, y


@click.command('generate', epilog='Example: stylelens generate --network demo --seeds 0-7,12 --trunc 0.7 '
                                  '--outdir out/generate')
@network_option
@click.option('--seeds', required=True, callback=seeds_callback, metavar='LIST', help='Seeds, e.g. 0-7,12.')
@render_options
@click.option('--outdir', type=click.Path(file_okay=False), required=True, help='Where to write seedNNNN.png.')
@click.option('--save-ws', is_flag=True, help='Also write ws.npz (the ws of every seed, with the seeds).')
@click.option('--translate', callback=_vec2_callback, metavar='X,Y',
              help='StyleGAN3 only: translate the image by X,Y image widths (gen_images.py --translate).')
@click.option('--rotate', type=float, default=None, metavar='DEG',
              help='StyleGAN3 only: rotate the image by DEG degrees (gen_images.py --rotate).')
def generate(network: str, seeds: list[int], truncation_psi: float, truncation_cutoff: int | None,
             class_idx: str | None, noise_mode: str, batch_size: int, device: str, precision: str, outdir: str,
             save_ws: bool, translate: tuple[float, float] | None, rotate: float | None) -> None:
    """Generate one PNG per seed (z = RandomState(seed).randn, as NVIDIA's generate.py; with --translate or
    --rotate, the StyleGAN3 input transform of gen_images.py replaces the stored one)."""
    loaded = open_network(network, device)
    class_to_c(class_idx, loaded.G.c_dim, 0, loaded.class_names)  # a missing or bad --class fails before any output
    G = loaded.G
    if translate is not None or rotate is not None:
        G = with_input_transform(G, translate or (0.0, 0.0), rotate or 0.0)
    if noise_mode == 'random' and distributed.world_size() > 1:
        raise StylelensError('--noise-mode random draws one noise stream through the batches in order, so it cannot '
                             'be split over processes: use const or none under torchrun, or run in one process')
    out = ensure_outdir(outdir)
    share = distributed.shard(range(-(-len(seeds) // batch_size)))
    batches = generate_images(G, seeds, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                              class_idx=class_idx, class_names=loaded.class_names, noise_mode=noise_mode,
                              batch_size=batch_size, precision=precision, batches=share)
    my_ws = []
    with distributed.progress(len(seeds), 'generating') as advance:
        for batch in batches:
            save_pngs({out / seed_filename(seed): image for seed, image in zip(batch.seeds, batch.images)})
            my_ws.append(batch.ws)
            advance(len(batch.seeds))
    all_ws = distributed.gather_to_main(my_ws) if save_ws else []
    if not distributed.is_main():
        return
    if save_ws:
        save_ws_file(out / 'ws.npz', np.concatenate(all_ws), seeds=np.asarray(seeds))
    options = dict(seeds=seeds, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                   class_idx=class_idx, noise_mode=noise_mode, batch_size=batch_size, device=str(loaded.device),
                   precision=precision, save_ws=save_ws, translate=translate, rotate=rotate)
    write_manifest(out, command='generate', options=options, network=loaded.manifest(),
                   extra=dict(files=[seed_filename(s) for s in seeds] + (['ws.npz'] if save_ws else [])))
    click.echo(f'wrote {len(seeds)} images to {out}')
