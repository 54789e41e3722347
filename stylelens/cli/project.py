"""`stylelens project`: find the w (or W+ ws) whose image matches a photo, with NVIDIA's projector.py algorithm."""
from __future__ import annotations

import math

import click

from stylelens.choices import PRECISION_CHOICES
from stylelens.cli.loaded import open_network
from stylelens.cli.options import class_option, device_option, network_option
from stylelens.projection.job import VIDEO_FORMATS, ProjectionRequest, run_projection
from stylelens.projection.objectives import LOSSES
from stylelens.projection.projector import SPACES, ProjectionSettings

PROJECT_EPILOG = """\b
Examples:
  stylelens project --network ffhq --target face.jpg --outdir out/proj
  stylelens project --network demo --target shape.png --loss mse --steps 300 --outdir out/proj
  stylelens mix --network demo --rows w:out/proj/projected_w.npz --cols 1,2 --styles 0-3 --outdir out/mix
\b
The target is centre-cropped to a square (the shorter side) and resized to the network resolution with Lanczos
filtering, as NVIDIA's projector.py does. A grayscale photo is used for an RGB network as is; other channel
mismatches (RGBA for RGB, colour for grayscale) are refused.
"""


@click.command('project', epilog=PROJECT_EPILOG)
@network_option
@click.option('--target', required=True, type=click.Path(dir_okay=False), metavar='IMAGE',
              help='The image to project (PNG, JPEG, ...).')
@click.option('--space', type=click.Choice(SPACES), default='w',
              help='w: one w for every layer (projector.py); w+: one w per ws index (closer fits, less editable).')
@click.option('--steps', type=click.IntRange(min=1), default=1000, help='Optimisation steps.')
@click.option('--loss', type=click.Choice(LOSSES), default='lpips',
              help="lpips: NVIDIA's VGG16 LPIPS (projector.py); vgg: the same features, unweighted; mse: pixels.")
@click.option('--seed', type=int, default=303, help='Seed of the initial noise maps and the w noise.')
@class_option
@device_option
@click.option('--precision', type=click.Choice(PRECISION_CHOICES), default='fp32',
              help='bf16: autocast the optimisation steps (faster on CPUs with bf16); proj.png is rendered in fp32.')
@click.option('--vgg', type=click.Path(dir_okay=False), default=None, metavar='PATH',
              help="NVIDIA's vgg16.pt (read without running it); default: the registry's, downloaded and cached.")
@click.option('--video', type=click.Choice(VIDEO_FORMATS), default='gif',
              help='Progress video of target | projection (mp4 needs imageio-ffmpeg).')
@click.option('--outdir', type=click.Path(file_okay=False), required=True,
              help='Where to write projected_w.npz, proj.png, target.png, the video, loss curve and distances.')
def project(network: str, target: str, space: str, steps: int, loss: str, seed: int, class_idx: str | None,
            device: str, precision: str, vgg: str | None, video: str, outdir: str) -> None:
    """Project an image into W (or W+): optimise w from the mean of 10,000 mapped samples with Adam, a learning-rate
    ramp, w noise and regularised noise maps (NVIDIA's projector.py and its defaults), then write the result."""
    loaded = open_network(network, device)
    request = ProjectionRequest(target=target, loss=loss, class_idx=class_idx, vgg=vgg, video=video,
                                settings=ProjectionSettings(steps=steps, space=space, seed=seed, precision=precision))
    summary = run_projection(loaded.G, request, outdir, network=loaded.manifest(), class_names=loaded.class_names)
    d = summary['distances']
    perceptual = f", LPIPS {d['lpips']:.4f}" if d.get('lpips') is not None else ''
    psnr_text = 'inf' if math.isinf(d['psnr_db']) else f"{d['psnr_db']:.2f}"
    click.echo(f"wrote {outdir}/projected_w.npz and proj.png: PSNR {psnr_text} dB, SSIM {d['ssim']:.4f}{perceptual} "
               f"({summary['timing']['steps_per_second']:.1f} steps/s)")
