"""`stylelens weights`: print, plot or dump one layer's tensors, or every tensor of G or D.

Each output file gets a manifest beside it named `<stem>.manifest.json` (`w.npy` -> `w.manifest.json`), so several
outputs can share a folder without overwriting each other's record.
"""
from __future__ import annotations

from pathlib import Path

import click
import torch

from stylelens.cli.loaded import LoadedNetwork, open_network
from stylelens.cli.options import network_option
from stylelens.errors import StylelensError
from stylelens.outputs import ensure_outdir, write_manifest
from stylelens.weights import dump_all, layer_report, save_layer

EPILOG = """\b
Examples:
  stylelens weights --network demo --layer synthesis.b64.conv1 --png conv1.png
  stylelens weights --network demo --layer b64.conv1 --param bias --print
  stylelens weights --network demo --part D --layer b32.conv0 --out d_conv0.npy
  stylelens weights --network demo --all --out all.npz     # also writes all.index.json
"""


def manifest_path(output: Path) -> Path:
    """The manifest beside an output file: `dir/w.npy` -> `dir/w.manifest.json`."""
    return output.with_name(f'{output.stem}.manifest.json')


def write_manifests(outputs: list[Path], **manifest: object) -> list[Path]:
    """`<stem>.manifest.json` beside each output asked for, listing every file written."""
    targets = dict.fromkeys(manifest_path(p) for p in outputs)
    return [write_manifest(t.parent, name=t.name, **manifest) for t in targets]


def _output(path: str | None, suffixes: tuple[str, ...], option: str) -> Path | None:
    """An output path with one of the allowed suffixes (its folder is made only when something is written); None when
    not asked for."""
    if path is None:
        return None
    out = Path(path)
    if out.suffix not in suffixes:
        raise StylelensError(f"{option} {path!r}: expected a file ending in {' or '.join(suffixes)}")
    return out


def _make_folders(*outputs: Path | None) -> None:
    """Create the folders of the outputs about to be written, once the inputs have been checked."""
    for path in outputs:
        if path is not None:
            ensure_outdir(path.parent)


def _network(loaded: LoadedNetwork, part: str) -> torch.nn.Module:
    """G (G_ema) or D of the loaded file."""
    if part == 'D' and loaded.D is None:
        raise StylelensError('this network file holds no discriminator (D): use --part G')
    return loaded.D if part == 'D' else loaded.G


def _check_mode(layer: str | None, dump_all_tensors: bool, out: str | None, param: str | None, png: str | None,
                full: bool) -> None:
    """Exactly one of --layer and --all; --all needs --out and takes no per-layer options."""
    if (layer is None) == (not dump_all_tensors):
        raise StylelensError('pass either --layer NAME (one layer) or --all --out FILE.npz (every tensor)')
    if dump_all_tensors and (out is None or param or png or full):
        raise StylelensError('--all needs --out FILE.npz and takes no --param, --png or --print')


@click.command('weights', epilog=EPILOG)
@network_option
@click.option('--layer', default=None, metavar='NAME', help='Module name, e.g. synthesis.b64.conv1 or b64.conv1.')
@click.option('--param', default=None, metavar='NAME', help="Which of the layer's tensors (default: weight).")
@click.option('--part', type=click.Choice(['G', 'D']), default='G', help='Generator (G_ema) or discriminator.')
@click.option('--print', 'full', is_flag=True,
              help="Print every value (default: numpy's summary, the middle elided with ...).")
@click.option('--out', default=None, metavar='FILE', help='Save the tensor (.npy, or .npz keyed by its name, e.g. '
                                                          "'weight'); with --all, every tensor (.npz keyed by "
                                                          'dotted name, plus <stem>.index.json).')
@click.option('--png', default=None, metavar='FILE.png', help='Plot: kernel grid (or heatmap/bars) + histogram.')
@click.option('--all', 'dump_all_tensors', is_flag=True, help='Dump the whole state_dict to --out.')
def weights(network: str, layer: str | None, param: str | None, part: str, full: bool, out: str | None,
            png: str | None, dump_all_tensors: bool) -> None:
    """Print a layer's tensor (shape, statistics, values), plot it, save it; or dump every tensor to one .npz.

    Each output gets <stem>.manifest.json beside it.
    """
    _check_mode(layer, dump_all_tensors, out, param, png, full)
    out_path = _output(out, ('.npz',) if dump_all_tensors else ('.npy', '.npz'), '--out')
    png_path = _output(png, ('.png',), '--png')
    loaded = open_network(network, 'cpu', with_discriminator=part == 'D')
    net = _network(loaded, part)
    if dump_all_tensors:
        _make_folders(out_path)
        written = list(dump_all(net, out_path))
        click.echo(f'wrote {len(net.state_dict())} tensors to {written[0]} (index: {written[1]})')
    else:
        text, chosen = layer_report(net, layer, param, needs_tensor=bool(out_path or png_path or full),
                                    full=full)
        click.echo(text)
        _make_folders(out_path, png_path)
        written = save_layer(net, chosen, out_path, png_path, f'{part}: ') if chosen else []
    if written:
        options = dict(layer=layer, param=param, part=part, print=full, out=out, png=png, all=dump_all_tensors)
        write_manifests([p for p in (out_path, png_path) if p], command='weights', options=options,
                        network=loaded.manifest(), extra=dict(files=[str(p) for p in written]))
