"""`stylelens patch`: activation patching — which hook points carry what makes the clean image differ from the
corrupt one."""
from __future__ import annotations

import click

from stylelens.causes.metrics import parse_metric
from stylelens.causes.patching import patch as patch_points
from stylelens.causes.plots import patch_figure
from stylelens.causes.points import parse_at
from stylelens.cli.causes_options import at_option, measure_options, one_latent
from stylelens.cli.loaded import open_network
from stylelens.cli.options import network_option
from stylelens.cli.outfile import check_out, manifest_beside, prepare, sibling
from stylelens.outputs import save_csv
from stylelens.progress import progress_bar


@click.command('patch', epilog="""\b
Examples:
  stylelens patch --network demo --clean 1 --corrupt 2 --at blocks --metric pixels --out patch.png
  stylelens patch --network demo --clean 1 --corrupt 2 --at styles --metric factor:size --out size.png
  stylelens patch --network demo --clean 1 --corrupt 2 --at channels:b8.conv1 --metric region:0,0,16,16 \\
      --out region.png

\b
Every hook point is patched alone (one row of a batch each), and all of them together once: for --at blocks
that run gives back the clean image exactly (its largest pixel difference goes to the manifest). Writes
PATCH.png (clean, corrupt, heat map of the share recovered), PATCH.csv and PATCH.manifest.json.""")
@network_option
@click.option('--clean', required=True, metavar='SEED|w:FILE', help='The input whose activations are patched in.')
@click.option('--corrupt', required=True, metavar='SEED|w:FILE', help='The input that is run and patched.')
@at_option()
@measure_options
@click.option('--out', required=True, type=click.Path(dir_okay=False), metavar='PATCH.png', help='Heat map figure.')
def patch(network: str, clean: str, corrupt: str, at: str, metric: str, truncation_psi: float,
          truncation_cutoff: int | None, class_idx: str | None, noise_mode: str, batch_size: int, device: str,
          out: str) -> None:
    """Patch each hook point's activation from the clean run into the corrupt run and measure the recovery."""
    target = check_out(out, ('.png',))
    loaded = open_network(network, device)
    G = loaded.G
    latent = dict(truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, class_idx=class_idx,
                  class_names=loaded.class_names)
    clean_ws = one_latent(G, clean, '--clean', **latent)
    corrupt_ws = one_latent(G, corrupt, '--corrupt', **latent)
    spec = parse_at(G, at)
    chosen = parse_metric(metric, G.img_resolution, loaded.device)
    with progress_bar(None, 'patching') as bar:
        result = patch_points(G, clean_ws, corrupt_ws, spec, chosen, noise_mode=noise_mode, batch_size=batch_size,
                              progress=bar.update)
    prepare(target)
    table = save_csv(sibling(target, '.csv'), result.rows())
    title = f'patching {spec.spec}: share of {metric} recovered (clean {clean}, corrupt {corrupt})'
    figure = patch_figure([p.label for p in result.points], result.recovered, result.clean_image,
                          result.corrupt_image, title, target, chosen.region, spec.per_channel)
    best = int(result.recovered.argmax())
    manifest_beside(target, command='patch', loaded=loaded, options=dict(
        clean=clean, corrupt=corrupt, at=at, metric=metric, truncation_psi=truncation_psi,
        truncation_cutoff=truncation_cutoff, class_idx=class_idx, noise_mode=noise_mode, batch_size=batch_size,
        device=str(loaded.device), out=str(target)), extra=dict(
        files=[figure.name, table.name], points=len(result.points), best=result.points[best].label,
        best_recovered=float(result.recovered[best]), all_at_once_max_abs_diff=result.all_at_once_max_diff))
    click.echo(f'{len(result.points)} points; most recovered: {result.points[best].label} '
               f'({result.recovered[best]:.3f}); all together: max |Δ| from clean {result.all_at_once_max_diff:.3g}')
    click.echo(f'wrote {figure}, {table} and {sibling(target, ".manifest.json")}')
