"""`stylelens mix` and `stylelens mix-study`: style-mixing grids, several donors, and depth studies."""
from __future__ import annotations

from pathlib import Path

import click
import torch

from stylelens import distributed
from stylelens.cli.loaded import LoadedNetwork, open_network
from stylelens.cli.options import network_option, render_options
from stylelens.errors import StylelensError
from stylelens.mixing import (
    DonorMix,
    MixGrid,
    block_owned,
    block_reads,
    count_renders,
    grid_image,
    labelled_grid,
    mix_donors,
    parse_layers,
    render_grids,
    styles_caption,
)
from stylelens.outputs import ensure_outdir, save_png, save_pngs, write_manifest
from stylelens.sources import Source, resolve_sources
from stylelens.viz import labelled_grids_figure
from stylelens.walks import save_strip

MIX_EPILOG = """\b
Examples:
  stylelens mix --network demo --rows 85,100,75 --cols 55,821 --styles 0-6 --outdir out/mix
  stylelens mix --network demo --rows 1,2 --cols 3,w:proj.npz --blocks b4,b8 --labels --outdir out/mix
  stylelens mix --network demo --base 85 --source b4,b8=seed:12 --source b32-b64=seed:7 --outdir out/donors
"""
STUDY_EPILOG = """\b
Example:
  stylelens mix-study --network demo --rows 1,2,3 --cols 4,5 \\
      --block-sets "b4;b8;b4,b8;b8,b16;b32,b64" --outdir out/study
"""


def _selection(styles: str | None, blocks: str | None, preset: str | None) -> str:
    """The one layer spec given (--styles, --blocks or --preset); official default 0-6."""
    given = [v for v in (styles, blocks, preset) if v is not None]
    if len(given) > 1:
        raise StylelensError('give only one of --styles, --blocks and --preset')
    return given[0] if given else '0-6'


def _sources(loaded: LoadedNetwork, spec: str, options: dict) -> list[Source]:
    """--rows/--cols items as labelled ws, with the verb's truncation and class."""
    return resolve_sources(loaded.G, spec, truncation_psi=options['truncation_psi'],
                           truncation_cutoff=options['truncation_cutoff'], class_idx=options['class_idx'],
                           class_names=loaded.class_names)


def _render(loaded: LoadedNetwork, row_sources: list[Source], col_sources: list[Source],
            style_sets: list[list[int]], options: dict, batch_size: int) -> list[MixGrid]:
    """One grid per style set, rendered under the progress bar of `mix` and `mix-study` (its one call site)."""
    row_labels, col_labels = [s.label for s in row_sources], [s.label for s in col_sources]
    total = count_renders(row_labels, col_labels, len(style_sets))
    with distributed.progress(total, 'mixing') as advance:
        return render_grids(loaded.G, torch.stack([s.ws for s in row_sources]),
                            torch.stack([s.ws for s in col_sources]), style_sets, row_labels=row_labels,
                            col_labels=col_labels, noise_mode=options['noise_mode'], batch_size=batch_size,
                            precision=options['precision'], progress=advance)


def _write_grid_files(out: Path, grid: MixGrid) -> list[str]:
    """grid.png, `{row}-{col}.png` for every cell and `{src}-{src}.png` for every source, as style_mixing.py."""
    files = {'grid.png': grid_image(grid)}
    for label, image in list(zip(grid.row_labels, grid.rows)) + list(zip(grid.col_labels, grid.cols)):
        files[f'{label}-{label}.png'] = image
    for r, row in enumerate(grid.row_labels):
        for c, col in enumerate(grid.col_labels):
            files[f'{row}-{col}.png'] = grid.cells[r, c]
    save_pngs({out / name: image.numpy() for name, image in files.items()})
    return list(files)


def _write_donor_files(out: Path, mixed: DonorMix) -> dict:
    """base.png, `donor{i}_{label}.png` per donor, mix.png and strip.png (all side by side); the manifest's extra."""
    names = ['base.png'] + [f'donor{i}_{d.label}.png' for i, d in enumerate(mixed.donors)] + ['mix.png']
    for name, image in zip(names, mixed.images):
        save_png(image, out / name)
    save_strip(mixed.images, out / 'strip.png')
    return dict(files=names + ['strip.png'], base=mixed.base,
                donors=[dict(source=d.label, ws_indices=d.layers) for d in mixed.donors])


@click.command('mix', epilog=MIX_EPILOG)
@network_option
@click.option('--rows', default=None, metavar='LIST', help='Row sources: seeds and w:FILE items, e.g. 85,100,w:a.npz.')
@click.option('--cols', default=None, metavar='LIST', help='Column sources (they donate the chosen styles).')
@click.option('--styles', default=None, metavar='LIST', help='ws indices the columns supply, e.g. 0-6 (default).')
@click.option('--blocks', default=None, metavar='LIST', help='Blocks the columns supply, e.g. b4,b8 or b128-b1024.')
@click.option('--preset', type=click.Choice(['coarse', 'middle', 'fine']), default=None,
              help='Block group the columns supply (see README for each resolution).')
@click.option('--base', default=None, metavar='SOURCE', help='Donor mode: the latent the donors mix into.')
@click.option('--source', 'donor_specs', multiple=True, metavar='LAYERS=SOURCE',
              help='Donor mode: layers and their source, e.g. b4,b8=seed:12 or b128-b1024=w:proj.npz.')
@render_options
@click.option('--outdir', type=click.Path(file_okay=False), default=None, help='Where to write the grid (required).')
@click.option('--labels', is_flag=True, help='Also write grid_labeled.png with seed and block captions.')
@click.option('--show-map', is_flag=True, help='Print which ws indices every block owns and reads, then exit.')
def mix(network: str, rows: str | None, cols: str | None, styles: str | None, blocks: str | None,
        preset: str | None, base: str | None, donor_specs: tuple[str, ...], outdir: str | None, labels: bool,
        show_map: bool, device: str, batch_size: int, **options) -> None:
    """Style mixing. Grid mode: each cell is its row's latent with the chosen styles from its column (as
    NVIDIA's style_mixing.py). Donor mode (--base/--source): several donors, each with its own layers."""
    loaded = open_network(network, device)
    if show_map:
        reads, owned_by = block_reads(loaded.G), block_owned(loaded.G)
        width = max(7, *(len(name) + 1 for name in owned_by))
        for name, owned in owned_by.items():
            click.echo(f"{name:<{width}} owns ws {','.join(map(str, owned)):<10} "
                       f"reads ws {','.join(map(str, reads[name]))}")
        return
    if outdir is None:
        raise click.UsageError("Missing option '--outdir'.")
    out = Path(outdir)  # created once the inputs have been checked, so bad input leaves nothing behind
    manifest_options = dict(rows=rows, cols=cols, styles=styles, blocks=blocks, preset=preset, base=base,
                            sources=list(donor_specs), batch_size=batch_size, device=str(loaded.device), **options)
    if base is not None or donor_specs:
        if base is None or not donor_specs or rows or cols:
            raise StylelensError('donor mode needs --base and at least one --source, and no --rows/--cols')
        mixed = mix_donors(loaded.G, base, donor_specs, truncation_psi=options['truncation_psi'],
                           truncation_cutoff=options['truncation_cutoff'], class_idx=options['class_idx'],
                           class_names=loaded.class_names, noise_mode=options['noise_mode'],
                           precision=options['precision'])
        extra = _write_donor_files(ensure_outdir(out), mixed)
    else:
        if not rows or not cols:
            raise StylelensError('give --rows and --cols (grid mode) or --base and --source (donor mode)')
        spec = _selection(styles, blocks, preset)
        indices = parse_layers(loaded.G, spec)
        row_sources, col_sources = _sources(loaded, rows, options), _sources(loaded, cols, options)
        grid = _render(loaded, row_sources, col_sources, [indices], options, batch_size)[0]
        files = _write_grid_files(ensure_outdir(out), grid)
        if labels:
            labelled_grids_figure([labelled_grid(grid, styles_caption(loaded.G, spec, indices))],
                                  out / 'grid_labeled.png', 'rows: base latents · columns: style donors')
            files.append('grid_labeled.png')
        extra = dict(files=files, ws_indices=indices)
    write_manifest(out, command='mix', options=manifest_options, network=loaded.manifest(), extra=extra)
    click.echo(f'wrote {len(extra["files"])} images to {out}')


@click.command('mix-study', epilog=STUDY_EPILOG)
@network_option
@click.option('--rows', required=True, metavar='LIST', help='Row sources: seeds and w:FILE items.')
@click.option('--cols', required=True, metavar='LIST', help='Column sources (they donate the block set).')
@click.option('--block-sets', required=True, metavar='SETS',
              help='Semicolon-separated layer specs, one grid each, e.g. "b4;b8;b4,b8;b128-b1024;fine".')
@render_options
@click.option('--outdir', type=click.Path(file_okay=False), required=True, help='Where to write the study.')
def mix_study(network: str, rows: str, cols: str, block_sets: str, outdir: str, device: str, batch_size: int,
              **options) -> None:
    """Which depth controls what: one mixing grid per block set, plus study.png stacking them with captions."""
    loaded = open_network(network, device)
    specs = [s.strip() for s in block_sets.split(';')]
    if not all(specs):
        raise StylelensError(f'empty block set in {block_sets!r}: separate sets with ";" like "b4;b8;b4,b8"')
    style_sets = [parse_layers(loaded.G, spec) for spec in specs]
    row_sources, col_sources = _sources(loaded, rows, options), _sources(loaded, cols, options)
    out = ensure_outdir(outdir)
    grids = _render(loaded, row_sources, col_sources, style_sets, options, batch_size)
    if not distributed.is_main():  # under torchrun: every rank rendered its share, rank 0 writes the study
        return
    files = []
    for k, (spec, grid) in enumerate(zip(specs, grids)):
        folder = ensure_outdir(out / f"set{k}_{spec.replace(',', '+')}")
        files += [f'{folder.name}/{name}' for name in _write_grid_files(folder, grid)]
    panels = [labelled_grid(grid, styles_caption(loaded.G, spec, idx))
              for grid, spec, idx in zip(grids, specs, style_sets)]
    labelled_grids_figure(panels, out / 'study.png', 'columns donate the block set; rows keep the rest')
    manifest_options = dict(rows=rows, cols=cols, block_sets=specs, batch_size=batch_size,
                            device=str(loaded.device), **options)
    write_manifest(out, command='mix-study', options=manifest_options, network=loaded.manifest(),
                   extra=dict(files=files + ['study.png'], ws_indices=style_sets))
    click.echo(f'wrote {len(specs)} grids and study.png to {out}')
