"""`stylelens info`: what a network is, block by block."""
from __future__ import annotations

import json

import click

from stylelens.cli.loaded import open_network
from stylelens.cli.options import network_option
from stylelens.summary import network_summary


def _format(summary: dict, header: list[str]) -> str:
    """Human-readable summary: header lines, dims, one row per synthesis block, parameter counts."""
    p = summary['parameters']
    lines = header + [
        f"resolution      {summary['img_resolution']}x{summary['img_resolution']}, {summary['img_channels']} channels",
        f"z_dim / w_dim   {summary['z_dim']} / {summary['w_dim']}",
        f"c_dim           {summary['c_dim']}" + (' (conditional)' if summary['c_dim'] else ' (unconditional)'),
        f"num_ws          {summary['num_ws']}",
        f"mapping layers  {summary['mapping_layers']}",
        f"architecture    G {summary['architecture']}, D {summary['discriminator_architecture'] or '-'}",
        '',
        f"{'block':<7}{'res':>6}{'in':>6}{'out':>6}  {'layers':<20}ws indices",
    ]
    for b in summary['blocks']:
        lines.append(f"{b['name']:<7}{b['resolution']:>6}{b['in_channels']:>6}{b['out_channels']:>6}  "
                     f"{','.join(b['layers']):<20}{','.join(map(str, b['ws_indices']))}")
    lines += ['', f"parameters      G {p['G']:,} (mapping {p['mapping']:,}, synthesis {p['synthesis']:,})"
                  + (f", D {p['D']:,}" if p['D'] is not None else '')]
    return '\n'.join(lines)


@click.command('info', epilog='Example: stylelens info --network ffhq --json')
@network_option
@click.option('--json', 'as_json', is_flag=True, help='Print JSON instead of a table.')
def info(network: str, as_json: bool) -> None:
    """Summarise a network: dims, synthesis blocks with their ws indices, parameter counts."""
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
