"""``stylelens train``: train a GAN from scratch (DCGAN, mapping-DCGAN, WGAN-GP, ACGAN, cGAN, a small StyleGAN2) on a
``--data`` spec."""
from __future__ import annotations

from pathlib import Path

import click

from stylelens.choices import DEVICE_CHOICES, TRAIN_PRECISION_CHOICES
from stylelens.scratch.config import OPTIMIZERS, TrainConfig, parse_betas
from stylelens.scratch.losses import LOSSES
from stylelens.scratch.models import D_NORMS, MODELS
from stylelens.scratch.train import train as run_training


@click.command('train', epilog="""\b
Example:
  stylelens train --model dcgan --data cifar10:data/cifar-10-python.tar.gz:dog --epochs 25 --outdir runs/dog
  stylelens train --model wgan-gp --data cifar10:data/cifar-10-python.tar.gz --n-critic 5 --outdir runs/wgan
  stylelens train --model dcgan --data cifar10:data/cifar-10-python.tar.gz:dog --epochs 30 --outdir runs/dog --resume
  stylelens train --model stylegan2-small --data shapes:50000 --g-width 32 --d-width 32 --batch 32 --outdir runs/sg2

\b
RUN gets samples/epochNNN.png, samples/final.png, samples/progress.gif, steps.csv, epochs.csv, losses.png,
accuracy.png, real_vs_generated.png, checkpoints/last.pt and manifest.json (stylegan2-small runs also
network-snapshot.pkl, an official-format pickle). Ctrl-C saves a checkpoint first.""")
@click.option('--model', required=True, metavar='|'.join(MODELS), help='Which GAN to train.')
@click.option('--data', 'data', required=True, metavar='SPEC', help='KIND:PATH[:CLASSES], see `stylelens data --help`.')
@click.option('--loss', default=None, metavar='|'.join(LOSSES), help="Objective.  [default: the model's own]")
@click.option('--epochs', type=click.IntRange(min=1), default=25, help='Passes over the data.')
@click.option('--batch', type=click.IntRange(min=1), default=128, help='Images per batch.')
@click.option('--lr', type=click.FloatRange(min=0, min_open=True), default=None,
              help='Generator learning rate.  [default: 2e-4, stylegan2-small 0.0025]')
@click.option('--lr-d', type=click.FloatRange(min=0, min_open=True), default=None,
              help='Discriminator learning rate.  [default: --lr]')
@click.option('--betas', default=None, help="Adam's beta1,beta2.  [default: 0.5,0.999, stylegan2-small 0,0.99]")
@click.option('--optimizer', default='adam', metavar='|'.join(OPTIMIZERS), help='Optimizer of G and D.')
@click.option('--lr-schedule', default='none', metavar='none|step:E:G|cosine',
              help='Per-epoch schedule: constant, times G every E epochs, or cosine to 0.')
@click.option('--n-critic', type=click.IntRange(min=1), default=None,
              help='D updates per G update.  [default: 5 for wgan-gp, else 1]')
@click.option('--gp-weight', type=click.FloatRange(min=0), default=10.0, help='WGAN-GP gradient penalty weight.')
@click.option('--resolution', type=int, default=32, help='Train at this image size (28, 32, 64, ...).')
@click.option('--d-norm', default=None, metavar='|'.join(D_NORMS),
              help='D normalization.  [default: batch, layer for wgan-gp]')
@click.option('--map-depth', type=click.IntRange(min=1), default=4, help='Mapping network layers (mapping-dcgan).')
@click.option('--g-depth', type=click.IntRange(min=1), default=1,
              help='Conv layers per G resolution (1 = classic DCGAN; each more adds a 3x3 conv).')
@click.option('--g-width', type=click.IntRange(min=1), default=64, help='G base channel count.')
@click.option('--d-width', type=click.IntRange(min=1), default=64, help='D base channel count.')
@click.option('--grid', type=click.IntRange(min=1), default=8, help='Sample grids are GRID x GRID images.')
@click.option('--seed', type=int, default=0, help='Seeds weights, data order, noise and the sample grid.')
@click.option('--precision', default='auto', metavar='|'.join(TRAIN_PRECISION_CHOICES),
              help='auto = bf16 on CPU and bf16-capable CUDA, fp16 on other CUDA GPUs, else fp32.')
@click.option('--device', default='auto', metavar='|'.join(DEVICE_CHOICES), help='auto = cuda, then mps, then cpu.')
@click.option('--max-steps', type=click.IntRange(min=1), default=None,
              help='Cut every epoch to at most N steps (quick trials and tests).')
@click.option('--r1-gamma', type=click.FloatRange(min=0), default=None,
              help='stylegan2-small: R1 weight.  [default: 0.0002 * resolution^2 / batch]')
@click.option('--ema-kimg', type=click.FloatRange(min=0, min_open=True), default=None,
              help='stylegan2-small: G_ema half-life in thousands of images.  [default: batch * 10 / 32]')
@click.option('--style-mixing', type=click.FloatRange(0, 1), default=0.9,
              help='stylegan2-small: probability of style-mixing regularisation.')
@click.option('--fid-every', type=click.IntRange(min=0), default=0,
              help='Measure FID against the training set every K epochs and after the last (0 = off).')
@click.option('--fid-num', type=click.IntRange(min=2), default=5000, show_default=True,
              help='Generated images per FID (compare runs only at equal counts).')
@click.option('--inception', default=None, type=click.Path(dir_okay=False), metavar='PATH',
              help="FID Inception weights file.  [default: the registry's, downloaded once]")
@click.option('--outdir', required=True, type=click.Path(file_okay=False, path_type=Path), metavar='RUN',
              help='Run folder.')
@click.option('--resume', is_flag=True, help='Continue the run in RUN from its last checkpoint.')
@click.option('--resume-from', type=click.Path(dir_okay=False, path_type=Path), default=None, metavar='FILE',
              help='Continue the run whose checkpoint (last.pt) FILE is, in the new folder RUN.')
def train(model: str, data: str, loss: str | None, epochs: int, batch: int, lr: float, lr_d: float | None,
          betas: str | None, optimizer: str, lr_schedule: str, n_critic: int | None, gp_weight: float,
          resolution: int, d_norm: str | None, map_depth: int, g_depth: int, g_width: int, d_width: int, grid: int,
          seed: int, precision: str, device: str, max_steps: int | None, r1_gamma: float | None,
          ema_kimg: float | None, style_mixing: float, fid_every: int, fid_num: int, inception: str | None,
          outdir: Path, resume: bool, resume_from: Path | None) -> None:
    """Train a GAN from scratch, with sample grids per epoch, CSV logs, plots and resumable checkpoints."""
    config = TrainConfig(model=model, data=data, loss=loss, epochs=epochs, batch=batch, lr=lr, lr_d=lr_d,
                         betas=parse_betas(betas) if betas else None, optimizer=optimizer, lr_schedule=lr_schedule,
                         n_critic=n_critic, gp_weight=gp_weight, seed=seed, resolution=resolution, d_norm=d_norm,
                         map_depth=map_depth, g_depth=g_depth, g_width=g_width, d_width=d_width, precision=precision,
                         device=device, grid=grid, max_steps=max_steps, r1_gamma=r1_gamma, ema_kimg=ema_kimg,
                         style_mixing=style_mixing, fid_every=fid_every, fid_num=fid_num, inception=inception)
    summary = run_training(config, outdir, resume=resume, resume_from=resume_from)
    metrics = summary['final_metrics']
    click.echo(f"{summary['steps']} steps on {summary['device']} ({summary['precision']}) in "
               f"{summary['wall_time_s']:.1f} s; last epoch d={metrics.get('loss_d', float('nan')):.4g} "
               f"g={metrics.get('loss_g', float('nan')):.4g}; outputs in {outdir}")
    if summary['fid']:
        fid = summary['fid']
        click.echo(f"FID ({fid_num} samples): min {fid['min']:.2f} (epoch {fid['best_epoch']}), mean {fid['mean']:.2f}, "
                   f"max {fid['max']:.2f}, last {fid['last']:.2f}; per epoch in {outdir / 'fid.csv'}")
