"""`stylelens serve`: the browser explorer (stylelens.serve) on a local port, with an access token off loopback."""
from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import click

from stylelens.cli.options import device_option, precision_option

SERVE_PACKAGES = ('fastapi', 'uvicorn')
INSTALL_HINT = "stylelens serve needs FastAPI and uvicorn: pip install 'stylelens[serve]'"


@click.command('serve', epilog="""\b
Examples:
  stylelens serve --network demo
  stylelens serve --network demo --network ffhq --wdir runs/proj --directions sefa.npz
  stylelens serve --network paper256.pkl --host 0.0.0.0 --port 8080     # prints a URL with an access token""")
@click.option('--network', 'networks', multiple=True, default=('demo',), metavar='NAME|PATH|URL',
              help='Network(s) the page may open, the first at start (registry names are always allowed).')
@click.option('--port', type=click.IntRange(1, 65535), default=8000, help='Port to listen on.')
@click.option('--host', default='127.0.0.1', help='Address to bind; anything but loopback requires the access '
                                                  'token printed at start-up.')
@click.option('--wdir', type=click.Path(exists=True, file_okay=False), default=None,
              help='Folder of W files (.npz/.npy, e.g. projected_w.npz) the page offers as latents.')
@click.option('--directions', 'direction_files', multiple=True, type=click.Path(exists=True, dir_okay=False),
              metavar='DIRS.npz', help='Direction file(s) (`stylelens directions`) offered as sliders.')
@click.option('--outdir', type=click.Path(file_okay=False), default='out/serve',
              help='Where snapshots and uploaded W files go.')
@device_option
@precision_option
def serve(networks: tuple[str, ...], port: int, host: str, wdir: str | None, direction_files: tuple[str, ...],
          outdir: str, device: str, precision: str) -> None:
    """Explore a network in the browser: latents, style mixing, activations and spectra, directions, StyleGAN3
    translate/rotate, and snapshots written as the equivalent CLI commands."""
    if any(importlib.util.find_spec(name) is None for name in SERVE_PACKAGES):
        raise click.ClickException(INSTALL_HINT)
    from stylelens.serve.app import access_token, run_server
    from stylelens.serve.explorer import Explorer, ExplorerConfig

    config = ExplorerConfig(list(networks), Path(wdir).resolve() if wdir else None,
                            [Path(p) for p in direction_files], Path(outdir).resolve(), device, precision)
    explorer = Explorer(config)
    explorer.renderer(networks[0])  # a network that does not open fails here, in one line, before listening
    token = access_token(host)
    shown = socket.gethostname() if host in ('0.0.0.0', '::') else f'[{host}]' if ':' in host else host
    url = f'http://{shown}:{port}/' + (f'?token={token}' if token else '')
    click.echo(f'stylelens serve: {networks[0]} at {url}  (snapshots in {config.outdir}; Ctrl-C stops)')
    if token:
        click.echo('the access token is required on every request: share the URL only with people you trust')
    run_server(explorer, host, port, token)
