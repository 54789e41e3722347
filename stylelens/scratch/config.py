"""The options of a training run: `TrainConfig`, their parsing and checks, and the defaults each model fills in."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from stylelens.choices import TRAIN_PRECISION_CHOICES, check_choice
from stylelens.datasets import ImageDataset, load_dataset
from stylelens.errors import StylelensError
from stylelens.scratch import stylegan2
from stylelens.scratch.losses import accepted_losses, default_loss
from stylelens.scratch.models import MODELS

OPTIMIZERS = ('adam', 'rmsprop')
STYLEGAN2 = stylegan2.MODEL
DCGAN_LR = 2e-4
DCGAN_BETAS = (0.5, 0.999)
CONDITIONAL = ('acgan', 'cgan', 'acgan-cifar10-classic')
RESUMABLE_CHANGES = ('epochs', 'device', 'fid_every', 'fid_num', 'inception')
_SCHEDULE_EXAMPLE = 'none, cosine or step:EPOCHS:GAMMA (e.g. step:15:0.1)'


@dataclass
class TrainConfig:
    """Every option of a training run; `None` fields take the model's defaults (see `resolve_config`)."""

    model: str
    data: str
    loss: str | None = None
    epochs: int = 25
    batch: int = 128
    lr: float | None = None
    lr_d: float | None = None
    betas: tuple[float, float] | None = None
    optimizer: str = 'adam'
    lr_schedule: str = 'none'
    n_critic: int | None = None
    gp_weight: float = 10.0
    seed: int = 0
    resolution: int = 32
    d_norm: str | None = None
    map_depth: int = 4
    g_depth: int = 1
    g_width: int = 64
    d_width: int = 64
    precision: str = 'auto'
    device: str = 'auto'
    grid: int = 8
    max_steps: int | None = None
    r1_gamma: float | None = None
    ema_kimg: float | None = None
    style_mixing: float = 0.9
    fid_every: int = 0
    fid_num: int = 5000
    inception: str | None = None



# ------------------------------------------------------------------------------------------------ options

def parse_betas(text: str) -> tuple[float, float]:
    """`0.5,0.999` -> (0.5, 0.999): Adam's two coefficients."""
    try:
        betas = tuple(float(p) for p in text.split(','))
    except ValueError:
        betas = ()
    return check_betas(betas, text)


def check_betas(betas: tuple[float, ...], text: str | None = None) -> tuple[float, float]:
    """`betas` if they are two numbers in [0, 1), else a one-line error quoting what the user typed."""
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        shown = text if text is not None else ','.join(map(str, betas))
        raise StylelensError(f'bad --betas {shown!r}: give two numbers in [0, 1) separated by a comma, e.g. 0.5,0.999')
    return float(betas[0]), float(betas[1])


def parse_lr_schedule(text: str) -> tuple[str, int, float]:
    """`none` / `cosine` / `step:E:G` -> (kind, step epochs, gamma); anything else is a one-line error."""
    if text in ('none', 'cosine'):
        return text, 0, 1.0
    parts = text.split(':')
    try:
        kind, epochs, gamma = parts[0], int(parts[1]), float(parts[2])
    except (IndexError, ValueError):
        kind, epochs, gamma = '', 0, 0.0
    if kind != 'step' or len(parts) != 3 or epochs < 1 or not 0 < gamma <= 1:
        raise StylelensError(f'bad --lr-schedule {text!r}: use {_SCHEDULE_EXAMPLE}')
    return kind, epochs, gamma


def _check_positive(config: TrainConfig) -> None:
    """Counts and rates must be positive."""
    for name in ('epochs', 'batch', 'lr', 'lr_d', 'n_critic', 'g_depth', 'g_width', 'd_width', 'grid', 'max_steps',
                 'ema_kimg'):
        value = getattr(config, name)
        if value is not None and not value > 0:
            raise StylelensError(f'--{name.replace("_", "-")} must be positive (got {value})')
    if config.r1_gamma is not None and config.r1_gamma < 0:
        raise StylelensError(f'--r1-gamma must be 0 or more (got {config.r1_gamma})')
    if config.fid_every < 0 or config.fid_num < 2:
        raise StylelensError(f'--fid-every must be 0 (off) or more and --fid-num at least 2 (got {config.fid_every} '
                             f'and {config.fid_num})')


def resolve_config(config: TrainConfig) -> TrainConfig:
    """A checked copy with the defaults filled in: the model's loss, learning rate and betas (StyleGAN2's for
    stylegan2-small, DCGAN's otherwise), n_critic 5 for WGAN-GP (else 1), lr_d = lr."""
    check_choice(config.model, MODELS, 'model')
    loss = config.loss or default_loss(config.model)
    check_choice(loss, accepted_losses(config.model), f'loss for {config.model}')
    check_choice(config.optimizer, OPTIMIZERS, 'optimizer')
    check_choice(config.precision, TRAIN_PRECISION_CHOICES, 'precision')
    parse_lr_schedule(config.lr_schedule)
    stylegan = config.model == STYLEGAN2
    lr = config.lr or (stylegan2.DEFAULT_LR if stylegan else DCGAN_LR)
    betas = config.betas or (stylegan2.DEFAULT_BETAS if stylegan else DCGAN_BETAS)
    resolved = dataclasses.replace(config, loss=loss, betas=check_betas(tuple(betas)), lr=lr,
                                   n_critic=config.n_critic or (5 if loss == 'wgan-gp' else 1),
                                   lr_d=config.lr_d or lr)
    _check_positive(resolved)
    if loss == 'wgan-gp' and config.d_norm == 'batch':
        raise StylelensError('--loss wgan-gp with --d-norm batch: the gradient penalty is taken per sample and batch '
                             'norm couples the samples; choose layer, instance, spectral or none')
    if stylegan:
        _check_stylegan2(resolved)
        resolved = dataclasses.replace(
            resolved, r1_gamma=stylegan2.auto_r1_gamma(config.resolution, config.batch)
            if config.r1_gamma is None else config.r1_gamma,
            ema_kimg=config.ema_kimg or stylegan2.auto_ema_kimg(config.batch))
    elif config.r1_gamma is not None or config.ema_kimg is not None:
        raise StylelensError(f'--r1-gamma and --ema-kimg are options of {STYLEGAN2}, not of {config.model}')
    return resolved


def _check_stylegan2(config: TrainConfig) -> None:
    """stylegan2-small trains as StyleGAN2 does: Adam, the non-saturating loss, one D step per G step, batches
    that minibatch-std groups of 4 divide, and no extra G layers (its depth follows the resolution)."""
    fixed = dict(optimizer=('adam', config.optimizer), n_critic=(1, config.n_critic), g_depth=(1, config.g_depth))
    wrong = [f'--{k.replace("_", "-")} {got} (it needs {want})' for k, (want, got) in fixed.items() if want != got]
    if wrong:
        raise StylelensError(f"{STYLEGAN2} does not take {', '.join(wrong)}")
    if config.precision == 'fp16':
        raise StylelensError(f'{STYLEGAN2} trains in --precision fp32 or bf16 (fp16 would need the activation clamping '
                             f'and loss scaling it does not do)')
    if config.batch % 4:
        raise StylelensError(f'{STYLEGAN2} needs --batch divisible by 4 (minibatch-std groups), got {config.batch}')
    if not 0 <= config.style_mixing <= 1:
        raise StylelensError(f'--style-mixing is a probability from 0 to 1, got {config.style_mixing}')



def load_data(config: TrainConfig) -> ImageDataset:
    """The training images at the configured resolution, refusing too few images or unlabeled conditional data."""
    channels = 3 if config.model == 'acgan-cifar10-classic' else None
    dataset = load_dataset(config.data, 'train', config.resolution, channels)
    if len(dataset) < config.batch * config.n_critic:
        raise StylelensError(f'{config.data} has {len(dataset)} images, fewer than one step needs '
                             f'(--batch {config.batch} x --n-critic {config.n_critic})')
    if config.model in CONDITIONAL and not dataset.num_classes:
        raise StylelensError(f'model {config.model} is conditional: --data must have labels (not folder:)')
    return dataset


def build_kwargs(config: TrainConfig, dataset: ImageDataset) -> dict[str, Any]:
    """The `build_models` keyword arguments of this run (saved in `generator.pt` to rebuild G). Any model trained
    with the WGAN-GP loss gets a layer-norm critic unless told otherwise (e.g. a conditional WGAN-GP)."""
    d_norm = config.d_norm or ('layer' if config.loss == 'wgan-gp' else None)
    return dict(resolution=dataset.resolution, channels=dataset.channels, num_classes=dataset.num_classes,
                g_channels=config.g_width, d_channels=config.d_width, d_norm=d_norm,
                map_depth=config.map_depth, g_extra_layers=config.g_depth - 1)


def memory_format(precision: str) -> torch.memory_format:
    """channels_last for mixed precision (measured faster on CPU, see README), the default layout for fp32."""
    return torch.contiguous_format if precision == 'fp32' else torch.channels_last
