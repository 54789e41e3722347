"""`stylelens info`: what a network is, block by block (StyleGAN2) or layer by layer (StyleGAN3)."""
from __future__ import annotations

import json

import click

from stylelens.cli.loaded import open_network
from stylelens.cli.options import network_option
from stylelens.summary import network_summary


def _block_rows(summary: dict) -> list[str]:
    """StyleGAN2: one row per synthesis block with its resolution, channels, layers and ws indices."""
    lines = [f"{'block':<7}{'res':>6}{'in':>6}{'out':>6}  {'layers':<20}ws indices"]
    for b in summary['blocks']:
        lines.append(f"{b['name']:<7}{b['resolution']:>6}{b['in_channels']:>6}{b['out_channels']:>6}  "
                     f"{','.join(b['layers']):<20}{','.join(map(str, b['ws_indices']))}")
    return lines


def _dash(value: object) -> object:
    """A table cell: '-' for values a row does not have."""
    return '-' if value is None else value


def _layer_rows(summary: dict) -> list[str]:
    """StyleGAN3: one row per layer (Fourier input first) with its ws index, size, sampling rate and cutoff."""
    lines = [f"{'layer':<12}{'ws':>4}{'size':>6}{'rate':>7}{'cutoff':>9}{'in':>6}{'out':>6}{'up':>4}{'down':>5}  kind"]
    for row in summary['layers']:
        lines.append(f"{row['name']:<12}{row['ws_index']:>4}{row['size']:>6}{row['sampling_rate']:>7g}"
                     f"{row['cutoff']:>9.3f}{_dash(row['in_channels']):>6}{row['out_channels']:>6}"
                     f"{_dash(row['up']):>4}{_dash(row['down']):>5}  {row['kind']}")
    lines.append(f"output scale    {summary['output_scale']:g}")
    return lines


def _format(summary: dict, header: list[str]) -> str:
    """Human-readable summary: header lines, dims, one row per synthesis block or layer, parameter counts."""
    p = summary['parameters']
    lines = header + [
        f"resolution      {summary['img_resolution']}x{summary['img_resolution']}, {summary['img_channels']} channels",
        f"z_dim / w_dim   {summary['z_dim']} / {summary['w_dim']}",
        f"c_dim           {summary['c_dim']}" + (' (conditional)' if summary['c_dim'] else ' (unconditional)'),
        f"num_ws          {summary['num_ws']}",
        f"mapping layers  {summary['mapping_layers']}",
        f"architecture    G {summary['architecture']}, D {summary['discriminator_architecture'] or '-'}",
        '',
    ]
    lines += _layer_rows(summary) if summary['kind'] == 'stylegan3' else _block_rows(summary)
    lines += ['', f"parameters      G {p['G']:,} (mapping {p['mapping']:,}, synthesis {p['synthesis']:,})"
                  + (f", D {p['D']:,}" if p['D'] is not None else '')]
    return '\n'.join(lines)


@click.command('info', epilog='Example: stylelens info --network ffhq --json')
@network_option
@click.option('--json', 'as_json', is_flag=True, help='Print JSON instead of a table.')
def info(network: str, as_json: bool) -> None:
    """Summarise a network: dims, synthesis blocks or layers with their ws indices, parameter counts."""
    loaded = open_network(network, 'cpu', with_discriminator=True)
    summary = network_summary(loaded.G, loaded.D)
    summary['network'] = loaded.manifest()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    header = [f"network         {summary['network']['name'] or loaded.source.path}",
              f'file            {loaded.source.path}']
    if loaded.source.entry and loaded.source.entry.description:
        header.append(f'about           {loaded.source.entry.description}')
    click.echo(_format(summary, header))
