"""``stylelens networks``: show which networks ``--network`` knows by name and which are already on disk."""
from __future__ import annotations

import dataclasses
import json

import click

from stylelens.loading.download import cached_path, known_hashes
from stylelens.loading.registry import RegistryEntry, list_entries


def _status(entry: RegistryEntry) -> dict:
    """Registry facts plus local state: where the file is or would be cached, whether it is there, digest known."""
    path = entry.local_path() if entry.embedded else cached_path(entry.url or entry.name)
    recorded = known_hashes().get(entry.url or '', {}).get('sha256')
    return {**dataclasses.asdict(entry), 'local_path': str(path), 'cached': path.is_file(),
            'sha256_known': bool(entry.sha256 or recorded)}


def _cell(value: object) -> str:
    return '-' if value is None else 'yes' if value is True else 'no' if value is False else str(value)


@click.command('networks', epilog="""\b
Examples:
  stylelens networks
  stylelens networks --json | python -m json.tool

Any NAME can be given to a command's --network option (e.g. --network ffhq);
a file path or an http(s) URL works there too.""")
@click.option('--json', 'as_json', is_flag=True, help='Print a JSON list (all registry fields plus local state).')
def networks(as_json: bool) -> None:
    """List the networks known by name: resolution, label size, whether cached, whether a sha256 is known.

    A '-' resolution or c_dim means the value is read from the network when it is loaded (embedded entries).
    """
    rows = [_status(e) for e in list_entries()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    header = ('NAME', 'RES', 'C_DIM', 'KIND', 'FORMAT', 'CACHED', 'SHA256', 'DESCRIPTION')
    keys = ('name', 'resolution', 'c_dim', 'kind', 'format', 'cached', 'sha256_known')
    table = [header] + [(*(_cell(r[k]) for k in keys), r['description'] + (' [community]' if r['community'] else ''))
                        for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(len(keys))]
    for t in table:
        click.echo('  '.join(c.ljust(w) for c, w in zip(t, widths)) + '  ' + t[-1])
