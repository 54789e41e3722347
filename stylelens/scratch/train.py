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
import dataclasses
import functools
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from stylelens.datasets import ImageDataset
from stylelens.devices import pick_device, precision_context, resolve_precision
from stylelens.errors import StylelensError
from stylelens.loading.official_writer import dump_snapshot
from stylelens.loading.runs import RUN_CHECKPOINT, RUN_GENERATOR, RUN_SNAPSHOT, load_checkpoint, write_run_generator
from stylelens.outputs import atomic_path, ensure_outdir, save_png, write_manifest
from stylelens.progress import progress_bar
from stylelens.scratch import stylegan2
from stylelens.scratch.config import (
    CONDITIONAL,
    RESUMABLE_CHANGES,
    STYLEGAN2,
    TrainConfig,
    build_kwargs,
    load_data,
    memory_format,
    parse_lr_schedule,
    resolve_config,
)
from stylelens.scratch.fid import fid_due, fid_figure, fid_report, make_fid_scorer, measure
from stylelens.scratch.logs import epoch_means, sample_grid, write_csv, write_figures, write_gif, write_logs
from stylelens.scratch.losses import LOSSES
from stylelens.scratch.models import build_models
from stylelens.scratch.stylegan2 import StyleGAN2Step


class TrainingInterrupted(StylelensError):
    """Ctrl-C during training: a resumable checkpoint was saved first."""



def build_networks(config: TrainConfig, kwargs: dict[str, Any], device: torch.device,
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
    path = outdir / RUN_CHECKPOINT
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(run.state(), tmp)
    save_generator(run, outdir)
    if run.G_ema is not None:
        save_snapshot(run, outdir / RUN_SNAPSHOT)
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
    """Write `generator.pt`: the weights of the generator that samples show (G_ema where the model keeps one)."""
    return write_run_generator(outdir / RUN_GENERATOR, run.config.model, run.build_kwargs, run.sampler.state_dict())




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


def _is_terminal() -> bool:
    """Whether stderr is a terminal: redirected logs get the losses of each epoch's last step, not of every step."""
    return sys.stderr.isatty()


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
            bar.set_description(_label(run, metrics), refresh=False)
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
    if not resume and (outdir / RUN_CHECKPOINT).exists():
        raise StylelensError(f'{outdir} already holds a training run: pass --resume to continue it or choose '
                             f'another --outdir')
    (outdir / 'samples').mkdir(exist_ok=True)
    return outdir


def new_run(config: TrainConfig, G: nn.Module, D: nn.Module, kwargs: dict[str, Any],
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
    checkpoint = outdir / RUN_CHECKPOINT if resume else resume_from
    saved = load_checkpoint(Path(checkpoint)) if checkpoint is not None else None
    if saved is not None:
        _check_resume(config, saved['config'])
    device = pick_device(config.device)
    precision = resolve_precision(config.precision, device)
    dataset = load_data(config)
    kwargs = build_kwargs(config, dataset)
    G, D = build_networks(config, kwargs, device, memory_format(precision))
    run = new_run(config, G, D, kwargs, torch.amp.GradScaler(device.type, enabled=precision == 'fp16'))
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
    with _InterruptFlag().installed() as stop, progress_bar(steps * config.epochs, 'training', progress, initial=run.step) as bar:
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
    write_figures(run.history, config.loss, dataset, final, config.grid, config.seed, outdir)
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
