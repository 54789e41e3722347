"""`stylelens arch`: the module tree with output shapes, parameter counts and trainable flags."""
from __future__ import annotations

import dataclasses
import json

import click

from stylelens.architecture import format_rows, module_rows
from stylelens.cli.loaded import open_network
from stylelens.cli.options import network_option

PARTS = ('G', 'D', 'mapping', 'synthesis')


@click.command('arch', epilog='Example: stylelens arch --network demo --part synthesis --depth 2')
@network_option
@click.option('--part', type=click.Choice(PARTS), default='G', help='Which network (or part of G) to print.')
@click.option('--depth', type=click.IntRange(min=0), default=None, help='Deepest level to show (default: all).')
@click.option('--json', 'as_json', is_flag=True, help='Print JSON rows instead of the tree.')
def arch(network: str, part: str, depth: int | None, as_json: bool) -> None:
    """Print the module tree: every hook point with its output shape (batch 1), parameters and trainable flag."""
    loaded = open_network(network, 'cpu', with_discriminator=part == 'D')
    if part == 'D' and loaded.D is None:
        raise click.ClickException('this network file holds no discriminator (D)')
    net = {'G': loaded.G, 'D': loaded.D, 'mapping': loaded.G.mapping, 'synthesis': loaded.G.synthesis}[part]
    rows = module_rows(net, part, depth)
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
    else:
        click.echo(format_rows(rows))
