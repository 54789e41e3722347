"""`stylelens interpolate`: walk between seeds in Z or W, written as a GIF, an MP4 or a PNG strip, with a manifest."""
from __future__ import annotations

import click

from stylelens.cli.loaded import open_network
from stylelens.cli.options import network_option, render_options, seeds_callback
from stylelens.errors import StylelensError
from stylelens.latents import class_to_c
from stylelens.outputs import ensure_outdir, write_manifest
from stylelens.progress import progress_bar
from stylelens.walks import RenderOptions, check_walk_path, strip_columns, walk_manifest_name
from stylelens.walks import interpolate as write_interpolation


@click.command('interpolate', epilog='Example: stylelens interpolate --network demo --seeds 1,2,3 --space w '
                                     '--frames 60 --loop --out walk.gif --compare')
@network_option
@click.option('--seeds', required=True, callback=seeds_callback, metavar='LIST',
              help='Keyframe seeds, visited in order, e.g. 1,2,3 (at least 2).')
@click.option('--space', type=click.Choice(['z', 'w']), default='z',
              help='Interpolate z (then map every frame) or w (map the seeds, then interpolate).')
@click.option('--slerp/--lerp', 'slerp', default=None,
              help='Spherical or linear interpolation; default: slerp in Z (Gaussian shell), lerp in W.')
@click.option('--frames', type=click.IntRange(min=2), default=60, help='Frames in the whole walk.')
@click.option('--loop', is_flag=True, help='Return to the first seed (for a seamlessly looping GIF).')
@click.option('--fps', type=click.FloatRange(min=0, min_open=True), default=30.0, help='Frames per second.')
@render_options
@click.option('--out', required=True, type=click.Path(dir_okay=False),
              help='walk.gif, walk.mp4 (needs imageio-ffmpeg) or strip.png (at most 16 evenly spaced frames).')
@click.option('--compare', is_flag=True, help='Also write <stem>_z_vs_w.png: the Z and W walks as two rows.')
def interpolate(network: str, seeds: list[int], space: str, slerp: bool | None, frames: int, loop: bool, fps: float,
                truncation_psi: float, truncation_cutoff: int | None, class_idx: str | None, noise_mode: str,
                batch_size: int, device: str, precision: str, out: str, compare: bool) -> None:
    """Walk through seeds in Z or W, every frame rendered in batches; writes <stem>.manifest.json beside --out."""
    target = check_walk_path(out)
    if len(seeds) < 2:
        raise StylelensError(f'--seeds needs at least 2 seeds to interpolate between (got {len(seeds)})')
    loaded = open_network(network, device)
    class_to_c(class_idx, loaded.G.c_dim, 0, loaded.class_names)  # a missing or bad --class fails before any output
    ensure_outdir(target.parent)
    rendered = len(strip_columns(frames)) if target.suffix.lower() == '.png' else frames
    rendered += len(strip_columns(frames)) if compare else 0
    with progress_bar(rendered, 'rendering') as bar:
        render = RenderOptions(noise_mode, batch_size, precision, bar.update, noise_seed=seeds[0])
        summary = write_interpolation(loaded.G, seeds, target, space=space, slerp=slerp, frames=frames, loop=loop,
                                      fps=fps, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                                      class_idx=class_idx, class_names=loaded.class_names, compare=compare,
                                      render=render)
    options = dict(seeds=seeds, space=space, slerp=summary['slerp'], frames=frames, loop=loop, fps=fps,
                   truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, class_idx=class_idx,
                   noise_mode=noise_mode, batch_size=batch_size, device=str(loaded.device), precision=precision,
                   out=str(target), compare=compare)
    manifest = walk_manifest_name(target)
    write_manifest(target.parent, command='interpolate', options=options, network=loaded.manifest(),
                   extra=summary, name=manifest)
    click.echo(f"wrote {', '.join(str(target.parent / name) for name in summary['files'])} and "
               f'{target.parent / manifest}')
