"""`stylelens convert`: a network as a rosinality checkpoint, a stylelens safetensors file or an official pickle."""
from __future__ import annotations

from pathlib import Path

import click

from stylelens.cli.options import network_option
from stylelens.loading.convert import TARGETS, convert_network
from stylelens.outputs import write_manifest

EPILOG = """\b
Examples:
  stylelens convert --network ffhq --to rosinality --out ffhq-rosinality.pt
  stylelens convert --network stylegan2-ffhq-config-f.pt --to official --out ffhq.pkl
  stylelens convert --network ffhq --to official --official-source ~/src/stylegan2-ada-pytorch --out ffhq.pkl
  stylelens convert --network ffhq --to safetensors --out ffhq.safetensors
"""


@click.command('convert', epilog=EPILOG)
@network_option
@click.option('--to', 'to', type=click.Choice(TARGETS), required=True,
              help='rosinality: a stylegan2-pytorch checkpoint (g_ema, latent_avg, g, d); safetensors: weights and '
                   'build options; official: a StyleGAN2-ADA snapshot pickle.')
@click.option('--out', type=click.Path(dir_okay=False), required=True,
              help='The file to write (.pt for rosinality, .safetensors, .pkl); a manifest is written beside it.')
@click.option('--official-source', type=click.Path(exists=True, file_okay=False), default=None,
              help="With --to official: your checkout of NVIDIA's code, whose training/networks.py is embedded as "
                   'the module source (stylelens ships none; without it a stub that raises is embedded).')
def convert(network: str, to: str, out: str, official_source: str | None) -> None:
    """Convert a network to another format, printing what was mapped; lossy conversions are refused."""
    conversion, source = convert_network(network, to, out, official_source)
    target = Path(out).expanduser()
    for line in conversion.lines:
        click.echo(line)
    manifest = dict(name=source.entry.name if source.entry else None, path=str(source.path), url=source.url,
                    sha256=source.sha256)
    write_manifest(target.parent, name=f'{target.stem}.manifest.json', command='convert', network=manifest,
                   options=dict(to=to, out=str(target), official_source=official_source),
                   extra=dict(file=target.name, report=conversion.lines, **conversion.details))
    click.echo(f'wrote {target} ({to})')
