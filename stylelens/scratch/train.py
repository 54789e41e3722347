"""Training loop for the from-scratch GANs: seeded, resumable, logged to CSV, with sample grids and plots.

A step is `n_critic` discriminator updates (one real batch each) followed by one generator update. Metrics go
to `steps.csv` every step and `epochs.csv` every epoch; `checkpoints/last.pt` is rewritten after every epoch
(and on Ctrl-C), holding everything needed to continue bit-for-bit: weights, optimizers, schedulers, RNG state,
the position in the epoch and the metric history, as tensors and plain data only, so `--resume` reads it with
`torch.load(weights_only=True)` and a checkpoint can be shared (`--resume-from FILE` continues someone else's run in a
new folder). Beside it `generator.pt` holds only G's weights and build options, which `--network RUN` loads.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import functools
import io
import inspect
import math
import os
import signal
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import click
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from stylelens.devices import pick_device, precision_context
from stylelens.errors import StylelensError
from stylelens.loading.registry import RUN_GENERATOR as GENERATOR
from stylelens.outputs import atomic_path, atomic_write_text, ensure_outdir, save_png, to_uint8, write_manifest
from stylelens.scratch.data import ImageDataset, load_dataset
from stylelens.scratch.fid import fid_due, fid_figure, fid_report, make_fid_scorer, measure
from stylelens.scratch.losses import LOSSES, default_loss
from stylelens.scratch import stylegan2
from stylelens.scratch.models import MODELS, build_models
from stylelens.scratch.stylegan2 import StyleGAN2Step
from stylelens.loading.official_writer import dump_snapshot
from stylelens.viz import new_figure, save_figure

OPTIMIZERS = ('adam', 'rmsprop')
STYLEGAN2 = stylegan2.MODEL
DCGAN_LR = 2e-4
DCGAN_BETAS = (0.5, 0.999)
SNAPSHOT = 'network-snapshot.pkl'
PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')
CONDITIONAL = ('acgan', 'cgan', 'acgan-cifar10-classic')
CHECKPOINT = Path('checkpoints') / 'last.pt'
GENERATOR_FORMAT = 'stylelens-scratch-generator'
GENERATOR_VERSION = 1
NETWORK_CHOICES = 'a snapshot .pkl, an http(s) URL, a registry name, or a `stylelens train` run folder'
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


class TrainingInterrupted(StylelensError):
    """Ctrl-C during training: a resumable checkpoint was saved first."""


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


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    """One-line error unless `value` is one of `choices`."""
    if value not in choices:
        raise StylelensError(f"unknown {what} {value!r}: choose one of {', '.join(choices)}")


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
    _check_choice(config.model, MODELS, 'model')
    loss = config.loss or default_loss(config.model)
    _check_choice(loss, tuple(LOSSES), 'loss')
    _check_choice(config.optimizer, OPTIMIZERS, 'optimizer')
    _check_choice(config.precision, PRECISIONS, 'precision')
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
    fixed = dict(loss=('bce', config.loss), optimizer=('adam', config.optimizer), n_critic=(1, config.n_critic),
                 g_depth=(1, config.g_depth))
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


# ------------------------------------------------------------------------------------------------ set-up

def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto`: bf16 on CPU and on CUDA where bf16 is supported, fp16 (with loss scaling) on older CUDA GPUs, fp32
    elsewhere. On CPU fp16 measured no faster than bf16 and needs loss scaling, so auto never picks it there."""
    if precision != 'auto':
        return precision
    if device.type == 'cpu' or (device.type == 'cuda' and torch.cuda.is_bf16_supported()):
        return 'bf16'
    return 'fp16' if device.type == 'cuda' else 'fp32'


def _load_data(config: TrainConfig) -> ImageDataset:
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


def _build(config: TrainConfig, kwargs: dict[str, Any], device: torch.device,
           layout: torch.memory_format) -> tuple[nn.Module, nn.Module]:
    """G and D for the dataset's shape, seeded, on `device` in fp32 (the master weights), in `layout`."""
    torch.manual_seed(config.seed)
    G, D = build_models(config.model, **kwargs)
    return G.to(device, memory_format=layout), D.to(device, memory_format=layout)


def _optimizer(config: TrainConfig, params: Iterator[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Adam with the configured betas, or RMSprop."""
    if config.optimizer == 'adam':
        return torch.optim.Adam(params, lr=lr, betas=config.betas)
    return torch.optim.RMSprop(params, lr=lr)


def _scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch learning-rate schedule: constant, step decay or cosine annealing to 0 over the run."""
    kind, step_epochs, gamma = parse_lr_schedule(config.lr_schedule)
    if kind == 'step':
        return torch.optim.lr_scheduler.StepLR(optimizer, step_epochs, gamma)
    if kind == 'cosine':
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _one_hot(labels: torch.Tensor, num_classes: int, conditional: bool) -> torch.Tensor | None:
    """One-hot labels as float32 for conditional models, None for the others."""
    return nn.functional.one_hot(labels, num_classes).float() if conditional else None


def epoch_loader(dataset: TensorDataset, config: TrainConfig, epoch: int) -> DataLoader:
    """The shuffled batches of `epoch` (1-based): its order depends only on the seed and the epoch, so a resumed
    run sees the same batches."""
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    return DataLoader(dataset, batch_size=config.batch, shuffle=True, drop_last=True, generator=generator)


# ------------------------------------------------------------------------------------------------ state

@dataclass
class Run:
    """Everything a training run holds between steps (the part of it that a checkpoint saves and restores)."""

    config: TrainConfig
    G: nn.Module
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sched_g: Any
    sched_d: Any
    epoch: int = 1
    step_in_epoch: int = 0
    step: int = 0
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    build_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    G_ema: nn.Module | None = None
    fid_history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    scaler: torch.amp.GradScaler = dataclasses.field(default_factory=lambda: torch.amp.GradScaler(enabled=False))

    @property
    def modules(self) -> tuple[str, ...]:
        """The attributes whose state_dict a checkpoint holds (the loss scaler's only when fp16 uses it)."""
        return (('G', 'D', 'opt_g', 'opt_d', 'sched_g', 'sched_d') + (('G_ema',) if self.G_ema is not None else ())
                + (('scaler',) if self.scaler.is_enabled() else ()))

    @property
    def sampler(self) -> nn.Module:
        """The generator that sample grids and exports show: the moving average where the model keeps one."""
        return self.G_ema if self.G_ema is not None else self.G

    def state(self) -> dict[str, Any]:
        """The checkpoint dict: weights, optimizer and scheduler states, RNG states, position, history, config."""
        rng = dict(cpu=torch.get_rng_state(), cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])
        return dict(**{name: getattr(self, name).state_dict() for name in self.modules}, rng=rng, epoch=self.epoch,
                    step_in_epoch=self.step_in_epoch, step=self.step, history=self.history,
                    fid_history=self.fid_history, config=dataclasses.asdict(self.config))

    def load(self, state: dict[str, Any]) -> None:
        """Restore what `state()` saved."""
        for name in self.modules:
            getattr(self, name).load_state_dict(state[name])
        torch.set_rng_state(state['rng']['cpu'])
        if state['rng']['cuda'] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['rng']['cuda'])
        self.epoch, self.step_in_epoch, self.step = state['epoch'], state['step_in_epoch'], state['step']
        self.history = state['history']
        self.fid_history = state.get('fid_history', [])


def save_checkpoint(run: Run, outdir: Path) -> Path:
    """Write `checkpoints/last.pt` and `generator.pt` atomically, so a crash never leaves a half-written file."""
    path = outdir / CHECKPOINT
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(run.state(), tmp)
    save_generator(run, outdir)
    if run.G_ema is not None:
        save_snapshot(run, outdir / SNAPSHOT)
    return path


def save_snapshot(run: Run, path: Path) -> Path:
    """An official-format network pickle (G, D, G_ema on the CPU, as StyleGAN2-ADA's own snapshots), so the run
    loads in stylelens and in NVIDIA's tools alike."""
    nets = {name: copy.deepcopy(getattr(run, name)).cpu().eval().requires_grad_(False) for name in ('G', 'D', 'G_ema')}
    for net in nets.values():
        net.to(memory_format=torch.contiguous_format)
    dump_snapshot(dict(**nets, augment_pipe=None, training_set_kwargs=dict(spec=run.config.data, step=run.step)), path)
    return path


def save_generator(run: Run, outdir: Path) -> Path:
    """Write `generator.pt`: G's weights (G_ema's where the model keeps one) (on the CPU) with the model name and build options, as plain data only."""
    state = {k: v.detach().cpu().contiguous() for k, v in run.sampler.state_dict().items()}
    payload = dict(format=GENERATOR_FORMAT, version=GENERATOR_VERSION, model=run.config.model,
                   build_kwargs=dict(run.build_kwargs), state_dict=state)
    with atomic_path(outdir / GENERATOR) as tmp:
        torch.save(payload, tmp)
    return outdir / GENERATOR


def run_generator_path(path: str | os.PathLike) -> Path:
    """The `generator.pt` of a run folder (or the file itself); a one-line error if there is none."""
    path = Path(path).expanduser()
    file = path / GENERATOR if path.is_dir() else path
    if not file.is_file():
        raise StylelensError(f'{path} is not a stylelens train run (no {GENERATOR}, written after each epoch): '
                             f'a --network is {NETWORK_CHOICES}')
    return file


def load_run_generator(path: str | os.PathLike) -> nn.Module:
    """G of a `stylelens train` run (folder or its `generator.pt`), loaded with `weights_only=True` so the file can
    hold nothing but tensors and plain data; returned on the CPU in eval mode without gradients."""
    file = run_generator_path(path)
    payload = _read_generator(file)
    G = _rebuild_generator(payload, file)
    _load_weights(G, payload, file)
    return G.eval().requires_grad_(False)


def _load_weights(G: nn.Module, payload: dict[str, Any], file: Path) -> None:
    """Put the file's tensors into the meta-device G: same names, shapes and dtypes, and nothing left unset."""
    expected = {k: v.dtype for k, v in G.state_dict().items()}
    state = payload['state_dict']
    wrong = [k for k, v in state.items() if not isinstance(v, torch.Tensor) or v.dtype != expected.get(k, v.dtype)]
    if wrong:
        raise StylelensError(f"{file}: entries of the wrong type in state_dict: {', '.join(map(str, wrong[:3]))}")
    try:
        G.load_state_dict(state, assign=True)
    except RuntimeError as error:
        raise StylelensError(f"{file}: the weights do not fit model {payload['model']!r}: "
                             f"{_one_line(error)}") from None
    if any(t.is_meta for t in [*G.parameters(), *G.buffers()]):
        raise StylelensError(f"{file}: model {payload['model']!r} has tensors that the file does not set")


def _one_line(error: BaseException) -> str:
    """An exception's message on one line, cut to 300 characters (or its type when it has none)."""
    return ' '.join(str(error).split())[:300] or type(error).__name__


def _refusal(error: BaseException) -> str:
    """Why torch's weights-only loader refused a file: the first sentence of its reason, without torch's
    boilerplate (which advises retrying with weights_only=False)."""
    boilerplate = ('Weights only load failed', 'Check the documentation')
    paragraphs = [' '.join(p.split()) for p in str(error).split('\n\n')]
    reasons = [p.removeprefix('WeightsUnpickler error: ') for p in paragraphs if p and not p.startswith(boilerplate)]
    return reasons[0].split('. ')[0].rstrip('.')[:200] if reasons else type(error).__name__


def _load_plain(file: Path, what: str) -> Any:
    """`torch.load(weights_only=True)`: tensors and plain data only, so the file can run nothing; whatever that
    loader refuses is refused in one line naming `what` the file should have been."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            return torch.load(file, map_location='cpu', weights_only=True)
    except Exception as error:  # whatever the weights-only unpickler rejects, and why, varies by torch version
        raise StylelensError(f'{file} is not a loadable {what} (torch.load with weights_only=True refused it: '
                             f'{_refusal(error)}); nothing in it was run') from None


def _read_generator(file: Path) -> dict[str, Any]:
    """The checked `generator.pt` dict; anything torch's weights-only loader refuses is refused in one line."""
    payload = _load_plain(file, 'stylelens train generator')
    if not isinstance(payload, dict) or payload.get('format') != GENERATOR_FORMAT:
        raise StylelensError(f"{file} is a torch file but not a stylelens train generator (format is not "
                             f"{GENERATOR_FORMAT!r}): a --network is {NETWORK_CHOICES}")
    if payload.get('version') != GENERATOR_VERSION:
        raise StylelensError(f"{file}: generator format version {payload.get('version')!r} is not supported "
                             f"(this stylelens reads version {GENERATOR_VERSION})")
    if payload.get('model') not in MODELS:
        raise StylelensError(f"{file}: unknown model {payload.get('model')!r} (known: {', '.join(MODELS)})")
    if not isinstance(payload.get('state_dict'), dict):
        raise StylelensError(f'{file}: no state_dict of weights in the generator file')
    return payload


def _rebuild_generator(payload: dict[str, Any], file: Path) -> nn.Module:
    """G built from the saved model name and options on the meta device: no memory (however big the options claim
    the model is) and no random numbers are spent on weights that the file replaces."""
    kwargs = payload.get('build_kwargs')
    allowed = set(inspect.signature(build_models).parameters) - {'model'}
    if not isinstance(kwargs, dict) or not set(kwargs) <= allowed:
        extra = sorted(set(kwargs) - allowed) if isinstance(kwargs, dict) else kwargs
        raise StylelensError(f'{file}: bad build_kwargs {extra!r} (allowed: {", ".join(sorted(allowed))})')
    try:
        with torch.device('meta'):
            G, _ = build_models(payload['model'], **kwargs)
    except (TypeError, ValueError) as error:
        raise StylelensError(f"{file}: cannot rebuild model {payload['model']!r} from its build_kwargs: "
                             f"{_one_line(error)}") from None
    return G


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A `last.pt` training checkpoint, read with `torch.load(weights_only=True)`: tensors and plain data only, so a
    checkpoint from elsewhere can run nothing; anything else is refused in one line."""
    if not path.is_file():
        raise StylelensError(f'no training checkpoint at {path} (start without --resume)')
    state = _load_plain(path, 'stylelens training checkpoint')
    if not isinstance(state, dict) or not isinstance(state.get('config'), dict) or 'G' not in state:
        raise StylelensError(f'{path} is a torch file but not a stylelens training checkpoint (written as '
                             f'RUN/{CHECKPOINT.as_posix()} by stylelens train)')
    return state


def _check_resume(config: TrainConfig, saved: dict[str, Any]) -> None:
    """Refuse to resume with options other than those the run was started with (only epochs and device may
    change)."""
    current = dataclasses.asdict(config)
    changed = [f'{k} ({saved[k]!r} -> {current[k]!r})' for k in current
               if k not in RESUMABLE_CHANGES and _jsonish(saved.get(k)) != _jsonish(current[k])]
    if changed:
        raise StylelensError(f"--resume with different options: {', '.join(changed)}; pass the run's options "
                             f'or a new --outdir')


def _jsonish(value: Any) -> Any:
    """Tuples as lists, so options compare equal however they were stored."""
    return list(value) if isinstance(value, (tuple, list)) else value


# ------------------------------------------------------------------------------------------------ steps

@dataclass
class Step:
    """What one training step needs besides the batches: the run, the loss, precision and label plumbing."""

    run: Run
    d_term: Callable[..., dict[str, torch.Tensor]]
    g_term: Callable[..., dict[str, torch.Tensor]]
    autocast: Callable[[], contextlib.AbstractContextManager]
    critic_autocast: Callable[[], contextlib.AbstractContextManager]
    num_classes: int
    conditional: bool
    device: torch.device
    memory_format: torch.memory_format
    scaler: torch.amp.GradScaler

    def _apply(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward and optimizer step, through the loss scaler (a pass-through unless fp16)."""
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()

    def noise(self, n: int) -> torch.Tensor:
        """Fresh latents from the global (seeded, checkpointed) RNG."""
        return torch.randn([n, self.run.G.z_dim], device=self.device)

    def d_update(self, real: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """One discriminator update on a real batch against fakes made with the same labels."""
        run = self.run
        real = real.to(self.device, memory_format=self.memory_format)
        c = _one_hot(labels.to(self.device), self.num_classes, self.conditional)
        with torch.no_grad(), self.autocast():
            fake = run.G(self.noise(len(real)), c)
        with self.critic_autocast():
            terms = self.d_term(run.D, real, fake.float(), c)
        self._apply(terms['loss_d'], run.opt_d)
        return {('aux_d' if k == 'aux' else k): float(v.detach()) for k, v in terms.items()}

    def g_update(self, labels: torch.Tensor) -> dict[str, float]:
        """One generator update (mapping generators also move their w average), with D frozen."""
        run = self.run
        c = _one_hot(labels.to(self.device), self.num_classes, self.conditional)
        kwargs = dict(update_emas=True) if hasattr(run.G, 'mapping') else {}
        run.D.requires_grad_(False)
        with self.autocast():
            terms = self.g_term(run.D, run.G(self.noise(len(labels)), c, **kwargs), c)
        self._apply(terms['loss_g'], run.opt_g)
        run.D.requires_grad_(True)
        return {('aux_g' if k == 'aux' else k): float(v.detach()) for k, v in terms.items()}

    def __call__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        """n_critic D updates (one per batch, metrics averaged) then one G update; returns the step's metrics."""
        d_metrics = [self.d_update(real, labels) for real, labels in batches]
        metrics = {k: float(np.mean([m[k] for m in d_metrics])) for k in d_metrics[0]}
        metrics.update(self.g_update(batches[-1][1]))
        return metrics


def make_step(run: Run, num_classes: int, device: torch.device, precision: str) -> Step | StyleGAN2Step:
    """The step function for this run; the WGAN-GP critic term runs outside autocast so its gradient penalty
    (a second-order gradient) stays in fp32, as does StyleGAN2's R1 penalty."""
    config = run.config
    if config.model == STYLEGAN2:
        return StyleGAN2Step(
            run.G, run.D, run.G_ema, run.opt_g, run.opt_d, functools.partial(precision_context, precision, device),
            device, memory_format(precision),
            r1_gamma=config.r1_gamma, style_mixing=config.style_mixing, ema_kimg=config.ema_kimg,
            steps_done=lambda: run.step)
    loss = LOSSES[config.loss]
    d_term = functools.partial(loss.d, gp_weight=config.gp_weight) if config.loss == 'wgan-gp' else loss.d
    autocast = functools.partial(precision_context, precision, device)
    critic_autocast = contextlib.nullcontext if config.loss == 'wgan-gp' else autocast
    return Step(run, d_term, loss.g, autocast, critic_autocast, num_classes, config.model in CONDITIONAL, device,
                memory_format(precision), run.scaler)


# ------------------------------------------------------------------------------------------------ samples

def fixed_inputs(G: nn.Module, config: TrainConfig, num_classes: int,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The grid's latents (seeded independently of training) and, for conditional models, classes 0..K-1
    cycling."""
    count = config.grid ** 2
    z = torch.randn([count, G.z_dim], generator=torch.Generator().manual_seed(config.seed)).to(device)
    labels = torch.arange(count) % max(num_classes, 1)
    return z, _one_hot(labels.to(device), num_classes, config.model in CONDITIONAL)


def tile(images: np.ndarray, cols: int) -> np.ndarray:
    """Tile uint8 NHWC images into one HWC image, `cols` per row."""
    n, h, w, c = images.shape
    rows = math.ceil(n / cols)
    padded = np.concatenate([images, np.zeros((rows * cols - n, h, w, c), np.uint8)])
    return padded.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


@torch.no_grad()
def sample_grid(G: nn.Module, z: torch.Tensor, c: torch.Tensor | None, cols: int) -> np.ndarray:
    """G's images for the fixed inputs as one uint8 grid, in eval mode and without touching the training RNG."""
    was_training = G.training
    G.eval()
    with torch.random.fork_rng(devices=[z.device] if z.device.type == 'cuda' else []):
        torch.manual_seed(0)
        images = G(z, c)
    G.train(was_training)
    return tile(to_uint8(images), cols)


def write_gif(samples: Path) -> Path:
    """`progress.gif` of the per-epoch grids `epochNNN.png`, in order, half a second each."""
    import imageio.v3 as iio

    frames = [iio.imread(path) for path in sorted(samples.glob('epoch*.png'))]
    with atomic_path(samples / 'progress.gif') as tmp:
        iio.imwrite(tmp, np.stack(frames), extension='.gif', duration=500, loop=0)
    return samples / 'progress.gif'


# ------------------------------------------------------------------------------------------------ logs

def _columns(history: list[dict[str, float]]) -> list[str]:
    """CSV columns: step and epoch first, then every metric in the order it first appeared."""
    columns = ['step', 'epoch']
    for row in history:
        columns += [k for k in row if k not in columns]
    return columns


def epoch_means(history: list[dict[str, float]]) -> list[dict[str, float]]:
    """The per-step metrics averaged over each epoch (step = the epoch's last step)."""
    means = []
    for epoch in sorted({int(row['epoch']) for row in history}):
        rows = [row for row in history if row['epoch'] == epoch]
        mean = {k: float(np.mean([r[k] for r in rows if k in r])) for k in _columns(rows)}
        means.append({**mean, 'step': rows[-1]['step'], 'epoch': epoch})
    return means


def write_csv(rows: list[dict[str, float]], path: Path) -> Path:
    """Rows as CSV with a header, atomically; integers stay integers."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_columns(rows), lineterminator='\n')
    writer.writeheader()
    writer.writerows({k: (int(v) if k in ('step', 'epoch') else repr(v)) for k, v in row.items()} for row in rows)
    return atomic_write_text(path, buffer.getvalue())


def write_logs(history: list[dict[str, float]], outdir: Path) -> None:
    """`steps.csv` and `epochs.csv` from the full history (rewritten, so a resumed run never duplicates rows)."""
    if history:
        write_csv(history, outdir / 'steps.csv')
        write_csv(epoch_means(history), outdir / 'epochs.csv')


# ------------------------------------------------------------------------------------------------ figures





def curves_figure(history: list[dict[str, float]], keys: dict[str, str], title: str, path: Path) -> Path:
    """Per-step curves of `keys` (column -> legend label) with their per-epoch means as dots."""
    fig = new_figure(8, 4)
    ax = fig.add_subplot()
    means = epoch_means(history)
    for key, label in keys.items():
        line, = ax.plot([r['step'] for r in history], [r[key] for r in history], alpha=0.4, label=label)
        ax.plot([m['step'] for m in means], [m[key] for m in means], 'o-', color=line.get_color(),
                label=f'{label} (epoch mean)')
    ax.set(xlabel='step', title=title)
    ax.legend(fontsize='small')
    return save_figure(fig, path, tight=True)


def real_vs_generated_figure(real: np.ndarray, fake: np.ndarray, path: Path) -> Path:
    """Side by side: a grid of training images and the final generated grid."""
    fig = new_figure(10, 5.3)
    for idx, (image, title) in enumerate([(real, 'real'), (fake, 'generated')], start=1):
        ax = fig.add_subplot(1, 2, idx)
        ax.imshow(image.squeeze(), cmap='gray' if image.shape[2] == 1 else None, interpolation='nearest')
        ax.set_title(title)
        ax.axis('off')
    return save_figure(fig, path, tight=True)


def write_figures(run: Run, dataset: ImageDataset, fake: np.ndarray, outdir: Path) -> None:
    """`losses.png`, `accuracy.png` (Wasserstein estimate and GP for WGAN-GP) and `real_vs_generated.png`."""
    history = run.history
    curves_figure(history, {'loss_d': 'D loss', 'loss_g': 'G loss'}, 'losses', outdir / 'losses.png')
    if run.config.loss == 'wgan-gp':
        keys, title = {'wasserstein': 'Wasserstein estimate', 'gp': 'gradient penalty'}, 'critic'
    else:
        keys, title = {'acc_real': 'D accuracy on real', 'acc_fake': 'D accuracy on fake'}, 'D accuracy'
    curves_figure(history, keys, title, outdir / 'accuracy.png')
    count = run.config.grid ** 2
    pick = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(run.config.seed))[:count]
    real = tile(to_uint8(dataset.images[pick]), run.config.grid)
    real_vs_generated_figure(real, fake, outdir / 'real_vs_generated.png')


# ------------------------------------------------------------------------------------------------ the loop

class _InterruptFlag:
    """Turns the first Ctrl-C into a flag the loop checks between steps (a second one interrupts at once)."""

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    @contextlib.contextmanager
    def installed(self) -> Iterator['_InterruptFlag']:
        """Install the handler for the block where possible (only the main thread may), then restore."""
        try:
            previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:
            yield self
            return
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


def _progress(total: int, done: int, enabled: bool) -> Any:
    """A click progress bar on stderr (or a silent stand-in), already advanced by `done` steps."""
    stream = click.get_text_stream('stderr') if enabled else io.StringIO()
    bar = click.progressbar(length=total, label='training', file=stream, show_pos=True)
    bar.update(done)
    return bar


def _is_terminal() -> bool:
    """Whether stderr is a terminal: redirected logs get one progress line per epoch instead of one per step."""
    return click.get_text_stream('stderr').isatty()


def _label(run: Run, metrics: dict[str, float]) -> str:
    """The progress label: epoch and live losses, e.g. `epoch 2/5 d=0.61 g=1.9`."""
    return f"epoch {run.epoch}/{run.config.epochs} d={metrics['loss_d']:.3g} g={metrics['loss_g']:.3g}"


def _steps_per_epoch(config: TrainConfig, num_images: int) -> int:
    """Full steps an epoch holds (each eats n_critic batches), capped by max_steps."""
    steps = num_images // config.batch // config.n_critic
    return min(steps, config.max_steps) if config.max_steps else steps


def _run_epoch(run: Run, step: Step, data: TensorDataset, steps: int, bar: Any, stop: _InterruptFlag,
               live: bool) -> None:
    """Train the rest of `run.epoch`, from `run.step_in_epoch`; on Ctrl-C return early with the position saved.
    The bar's label shows the losses of every step when `live`, else of each epoch's last step."""
    batches = iter(epoch_loader(data, run.config, run.epoch))
    for _ in range(run.step_in_epoch * run.config.n_critic):
        next(batches)
    while run.step_in_epoch < steps and not stop.requested:
        metrics = step([next(batches) for _ in range(run.config.n_critic)])
        run.step += 1
        run.step_in_epoch += 1
        run.history.append(dict(step=run.step, epoch=run.epoch, **metrics, lr_g=run.sched_g.get_last_lr()[0],
                                lr_d=run.sched_d.get_last_lr()[0]))
        if live or run.step_in_epoch == steps:
            bar.label = _label(run, metrics)
        bar.update(1)


def _finish_epoch(run: Run, outdir: Path, grid: Callable[[], np.ndarray], scorer: Any) -> None:
    """Step the schedules, write this epoch's grid, logs (and FID when due) and checkpoint, and move to the next
    epoch."""
    run.sched_g.step()
    run.sched_d.step()
    save_png(grid(), outdir / 'samples' / f'epoch{run.epoch:03d}.png')
    write_logs(run.history, outdir)
    if scorer is not None and fid_due(run.epoch, run.config.fid_every, run.config.epochs):
        run.fid_history.append(measure(scorer, run.sampler, run.epoch, run.step))
        write_csv(run.fid_history, outdir / 'fid.csv')
        fid_figure(run.fid_history, run.config.fid_num, outdir / 'fid.png')
    run.epoch += 1
    run.step_in_epoch = 0
    save_checkpoint(run, outdir)


def _prepare_outdir(outdir: Path, resume: bool) -> Path:
    """Create the run folder; starting (or continuing a shared checkpoint) over an existing run is refused instead
    of silently overwriting it."""
    outdir = ensure_outdir(outdir)
    if not resume and (outdir / CHECKPOINT).exists():
        raise StylelensError(f'{outdir} already holds a training run: pass --resume to continue it or choose '
                             f'another --outdir')
    (outdir / 'samples').mkdir(exist_ok=True)
    return outdir


def _new_run(config: TrainConfig, G: nn.Module, D: nn.Module, kwargs: dict[str, Any],
             scaler: torch.amp.GradScaler) -> Run:
    """A run at its first step: optimizers and schedules for G and D, and the options G was built with; StyleGAN2
    adds G_ema and scales D's Adam for its lazy R1."""
    opt_g = _optimizer(config, G.parameters(), config.lr)
    if config.model == STYLEGAN2:
        opt_d = stylegan2.lazy_regularised_adam(D.parameters(), config.lr_d, config.betas)
        G_ema = stylegan2.make_ema(G)
    else:
        opt_d, G_ema = _optimizer(config, D.parameters(), config.lr_d), None
    return Run(config, G, D, opt_g, opt_d, _scheduler(config, opt_g), _scheduler(config, opt_d), build_kwargs=kwargs,
               G_ema=G_ema, scaler=scaler)


def train(config: TrainConfig, outdir: str | Path, resume: bool = False, progress: bool = True,
          resume_from: str | Path | None = None) -> dict[str, Any]:
    """Train `config.model` on `config.data`, writing samples, logs, plots, checkpoints and a manifest to
    `outdir`; with `resume`, continue from its last checkpoint; with `resume_from`, continue the run whose
    checkpoint file that is, in the new folder `outdir`. Returns a summary of the run."""
    start = time.perf_counter()
    config = resolve_config(config)
    if resume and resume_from is not None:
        raise StylelensError('--resume continues the run in --outdir and --resume-from FILE a checkpoint elsewhere: '
                             'pass one of them')
    outdir = _prepare_outdir(Path(outdir), resume)
    checkpoint = outdir / CHECKPOINT if resume else resume_from
    saved = load_checkpoint(Path(checkpoint)) if checkpoint is not None else None
    if saved is not None:
        _check_resume(config, saved['config'])
    device = pick_device(config.device)
    precision = resolve_precision(config.precision, device)
    dataset = _load_data(config)
    kwargs = build_kwargs(config, dataset)
    G, D = _build(config, kwargs, device, memory_format(precision))
    run = _new_run(config, G, D, kwargs, torch.amp.GradScaler(device.type, enabled=precision == 'fp16'))
    z, c = fixed_inputs(G, config, dataset.num_classes, device)
    grid = functools.partial(sample_grid, run.sampler, z, c, config.grid)
    if saved is not None:
        run.load(saved)
    if not resume:  # a new folder starts with the grid of where training stands (epoch000 for a fresh run)
        save_png(grid(), outdir / 'samples' / f'epoch{run.epoch - 1:03d}.png')
    step = make_step(run, dataset.num_classes, device, precision)
    data = TensorDataset(dataset.images, dataset.labels)
    steps = _steps_per_epoch(config, len(dataset))
    scorer = make_fid_scorer(dataset, config.fid_num, device, config.inception) if config.fid_every else None
    with _InterruptFlag().installed() as stop, _progress(steps * config.epochs, run.step, progress) as bar:
        while run.epoch <= config.epochs:
            _run_epoch(run, step, data, steps, bar, stop, progress and _is_terminal())
            if stop.requested:
                break
            _finish_epoch(run, outdir, grid, scorer)
    if stop.requested:
        _interrupted(run, outdir)
    final = grid()
    save_png(final, outdir / 'samples' / 'final.png')
    write_gif(outdir / 'samples')
    write_logs(run.history, outdir)
    write_figures(run, dataset, final, outdir)
    summary = _summary(run, dataset, device, precision, time.perf_counter() - start)
    write_manifest(outdir, command='train', options=dataclasses.asdict(config), extra=summary)
    return summary


def _interrupted(run: Run, outdir: Path) -> None:
    """Save a mid-epoch checkpoint and stop with a one-line message saying how to continue."""
    save_checkpoint(run, outdir)
    write_logs(run.history, outdir)
    raise TrainingInterrupted(f'interrupted at step {run.step} (epoch {run.epoch}); checkpoint saved: rerun the '
                              f'same command with --resume to continue')


def _summary(run: Run, dataset: ImageDataset, device: torch.device, precision: str,
             wall_time: float) -> dict[str, Any]:
    """What the run did: steps, epochs, data, device, precision, wall time, the last epoch's mean metrics and the
    FID report (None without --fid-every)."""
    means = epoch_means(run.history)
    return dict(steps=run.step, epochs=run.config.epochs,
                dataset=dict(spec=dataset.spec, images=len(dataset), resolution=dataset.resolution,
                             channels=dataset.channels, classes=dataset.num_classes),
                device=str(device), precision=precision, wall_time_s=round(wall_time, 3),
                final_metrics=means[-1] if means else {}, fid=fid_report(run.fid_history))
