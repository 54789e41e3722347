"""Training throughput of the from-scratch DCGAN (`stylelens train --model dcgan`) against a plain PyTorch loop.

Run it alone as ``python -m stylelens.bench.training [--out DIR] [--quick] [--explore] [--device cpu]`` (it writes
``DIR/bench_training.json`` and ``.md``); ``make bench`` runs it as one section of `stylelens.bench`. For 32x32 and
64x64 images at batch 128, with the same networks (``build_models('dcgan', resolution=R, channels=3)``, seeded) and
the same synthetic data (uniform noise in [-1, 1], no dataset), it times steady-state training steps of

* **plain**: the loop a homework would write: fp32, contiguous tensors, ``opt.zero_grad()``, BCE-with-logits on
  D(real) vs 1 and D(G(z).detach()) vs 0, then the G step on the same fake images (the PyTorch DCGAN tutorial);
* **stylelens**: the step `stylelens train` runs (`make_step` on a `Run` built as `train()` builds it), in each
  precision `train` offers (fp32, bf16 and fp16 with its loss scaler, mixed precision with channels_last, as `train`
  does); fp16 only where the device computes in fp16 (`skip_reason`: on a CPU without AVX512-FP16 / AMX-FP16 it is
  emulated and would take longer than the rest of `make bench`);
* with ``--explore`` (not part of ``make bench``), variants that `train` does not offer: bf16 without
  channels_last, channels_last alone in fp32,
  ``torch.compile`` with default options, and ``torch.compile(dynamic=False)`` at 32x32 too;

and, at 64x64 (`Settings.compile_resolutions`), the stylelens step in the precision ``--precision auto`` picks (bf16
on the CPU) with G and D wrapped in ``torch.compile(dynamic=False)``: whether it compiles, how long that takes with
an empty compile cache (reported apart), and how fast it then is.

Each case runs in a fresh process (``--worker``): build, warm-up steps (untimed: first-call and compile costs), then
timed steps, one at a time, median; images/s = batch / median step time. With the shared
`stylelens.bench.timing.repeat`, every timed step records how much CPU other processes used meanwhile, disturbed
steps are repeated in a full run (at most as many again) and results that still include some are marked.

**Equal quality**: every case starts from the same seed, weights and data, so its per-step losses are comparable
with stylelens fp32's. The reduced-precision and compiled stylelens steps draw the same latents as fp32, so the gap
between their loss curves is what precision or compilation changes; the plain loop draws other latents after its
first D step (whose loss it computes on identical inputs), so its gap is that of an equally valid fp32 run, the
yardstick. Reported: |Δ loss_d| after the first step, the largest |Δ| of loss_d and loss_g over all steps, and
each row's mean losses.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

from stylelens.bench.timing import CONTENDED_CPUS, load_average, log, repeat, runs_dict

MODEL = 'dcgan'
RESOLUTIONS = (32, 64)
BATCH = 128
CHANNELS = 3
SEED = 0
DATA_BATCHES = 4  # distinct synthetic real batches, used in turn
LR, BETAS = 2e-4, (0.5, 0.999)  # the homework's Adam, also `stylelens train`'s defaults
WORKER_TIMEOUT_S = 600  # a case (compiling included) that takes longer is reported as failed


@dataclass(frozen=True)
class Settings:
    """How hard to measure."""

    warmup_steps: int  # untimed steps first (first-call costs, compiling)
    timed_steps: int  # timed steps (median)
    retry_disturbed: bool  # repeat steps disturbed by other processes (at most as many extra steps as planned)
    compile_resolutions: tuple[int, ...]  # where the torch.compile(dynamic=False) + bf16 case runs
    explore: bool = False  # also the variants train does not offer (fp16, layouts, default compile)


FULL = Settings(warmup_steps=2, timed_steps=5, retry_disturbed=True, compile_resolutions=(64,))
QUICK = Settings(warmup_steps=1, timed_steps=2, retry_disturbed=False, compile_resolutions=())


@dataclass(frozen=True)
class Case:
    """One measured configuration: which loop, precision, layout and compilation."""

    loop: str  # 'plain' or 'stylelens'
    precision: str  # 'fp32', 'bf16' or 'fp16'
    layout: str = 'train'  # 'train' (what train() picks for the precision), 'channels_last' or 'contiguous'
    compile: str = 'none'  # 'none', 'static' (dynamic=False) or 'default' (torch.compile's default options)

    @property
    def label(self) -> str:
        """The row's name in the table, saying what differs from `stylelens train`'s own step."""
        if self.loop == 'plain':
            return 'plain PyTorch loop, fp32'
        parts = [f'stylelens step, {self.precision}']
        if self.layout != 'train':
            parts.append(self.layout.replace('_', ' '))
        if self.compile == 'static':
            parts.append('torch.compile(dynamic=False)')
        elif self.compile == 'default':
            parts.append('torch.compile()')
        return ' + '.join(parts)

    def spec(self) -> str:
        """The case as one `--worker` argument, read back by `parse`."""
        return ':'.join((self.loop, self.precision, self.layout, self.compile))

    @classmethod
    def parse(cls, text: str) -> 'Case':
        """The case a `spec` string names, for the worker process."""
        return cls(*text.split(':'))


def offered_precisions() -> list[str]:
    """The explicit precisions `stylelens train` offers (its --precision choices without 'auto'), read from where
    train takes them so that new ones get measured."""
    from stylelens.choices import TRAIN_PRECISION_CHOICES

    return [p for p in TRAIN_PRECISION_CHOICES if p != 'auto']


def auto_precision(device: str) -> str:
    """What `--precision auto` picks on this device."""
    import torch

    from stylelens.devices import resolve_precision

    return resolve_precision('auto', torch.device(device))


def skip_reason(case: Case, device: str) -> str | None:
    """Why a case is not measured on this device, or None: fp16 on a CPU without fp16 arithmetic (no AVX512-FP16 or
    AMX-FP16) runs emulated, about as slow as the rest of the bench together, and `--precision auto` never picks
    it there."""
    if case.precision != 'fp16' or not device.startswith('cpu'):
        return None
    import torch

    if torch.ops.mkldnn._is_mkldnn_fp16_supported():
        return None
    return 'skipped: this CPU has no fp16 arithmetic (AVX512-FP16 / AMX-FP16), so fp16 autocast would be emulated'


def cases_for(resolution: int, settings: Settings, device: str) -> list[Case]:
    """The cases measured at one resolution: the plain loop first (the reference), then train's precisions, then
    the compiled step in the precision `--precision auto` picks on the device (bf16 on the CPU)."""
    auto = auto_precision(device)
    cases = [Case('plain', 'fp32')] + [Case('stylelens', p) for p in offered_precisions()]
    if resolution in settings.compile_resolutions:
        cases.append(Case('stylelens', auto, compile='static'))
    if settings.explore:
        cases += [Case('stylelens', 'fp32', layout='channels_last'), Case('stylelens', 'bf16', layout='contiguous')]
        if resolution not in settings.compile_resolutions:
            cases.append(Case('stylelens', auto, compile='static'))
        cases.append(Case('stylelens', auto, compile='default'))
    return cases


# ======================================================================================================================
# The worker: one case in this (fresh) process.
# ======================================================================================================================

def synthetic_batches(resolution: int, batch: int, device: Any, count: int = DATA_BATCHES) -> list[Any]:
    """`count` fixed-seed batches of uniform noise in [-1, 1] shaped like RGB images (contiguous, on `device`)."""
    import torch

    generator = torch.Generator().manual_seed(SEED + 1)
    return [(torch.rand([batch, CHANNELS, resolution, resolution], generator=generator) * 2 - 1).to(device)
            for _ in range(count)]


def plain_loop(resolution: int, batch: int, device: Any) -> Any:
    """The homework loop: returns `step(real) -> (loss_d, loss_g)`, fp32, contiguous, BCE-with-logits."""
    import torch
    from torch import nn

    from stylelens.scratch.models import build_models

    torch.manual_seed(SEED)
    netG, netD = build_models(MODEL, resolution=resolution, channels=CHANNELS)
    netG, netD = netG.to(device), netD.to(device)
    criterion = nn.BCEWithLogitsLoss()
    optG = torch.optim.Adam(netG.parameters(), lr=LR, betas=BETAS)
    optD = torch.optim.Adam(netD.parameters(), lr=LR, betas=BETAS)
    ones = torch.ones(batch, device=device)
    zeros = torch.zeros(batch, device=device)

    def step(real: torch.Tensor) -> tuple[float, float]:
        # (1) update D: maximize log(D(x)) + log(1 - D(G(z)))
        optD.zero_grad()
        output = netD(real)[0]
        errD_real = criterion(output, ones)
        noise = torch.randn(batch, netG.z_dim, device=device)
        fake = netG(noise)
        output = netD(fake.detach())[0]
        errD_fake = criterion(output, zeros)
        errD = errD_real + errD_fake
        errD.backward()
        optD.step()
        # (2) update G: maximize log(D(G(z)))
        optG.zero_grad()
        output = netD(fake)[0]
        errG = criterion(output, ones)
        errG.backward()
        optG.step()
        return errD.item(), errG.item()

    return step


def stylelens_step(case: Case, resolution: int, batch: int, device_name: str) -> tuple[Any, dict[str, Any]]:
    """`stylelens train`'s step for `case`, its Run built as `train()` builds it (config resolved, G and D seeded and
    built by `build_networks`, optimizers by `new_run`, the step by `make_step`); returns `step(real) -> (loss_d, loss_g)`
    and what was built. Layouts and compilation that train does not offer are applied on top."""
    import torch

    from stylelens.devices import pick_device, resolve_precision
    from stylelens.scratch import train as st
    from stylelens.scratch.config import TrainConfig, build_kwargs, memory_format, resolve_config

    precision = case.precision
    config = resolve_config(TrainConfig(model=MODEL, data='synthetic', batch=batch, resolution=resolution,
                                        precision=precision, device=device_name, seed=SEED))
    device = pick_device(config.device)
    precision = resolve_precision(config.precision, device)
    dataset = SimpleNamespace(resolution=resolution, channels=CHANNELS, num_classes=0)
    kwargs = build_kwargs(config, dataset)
    layouts = dict(train=memory_format(precision), channels_last=torch.channels_last,
                   contiguous=torch.contiguous_format)
    G, D = st.build_networks(config, kwargs, device, layouts[case.layout])
    run = st.new_run(config, G, D, kwargs, torch.amp.GradScaler(device.type, enabled=precision == 'fp16'))
    step = dataclasses.replace(st.make_step(run, dataset.num_classes, device, precision),
                               memory_format=layouts[case.layout])
    if case.compile != 'none':
        options = dict(dynamic=False) if case.compile == 'static' else {}
        run.G, run.D = torch.compile(run.G, **options), torch.compile(run.D, **options)
    labels = torch.zeros(batch, dtype=torch.long)

    def call(real: torch.Tensor) -> tuple[float, float]:
        metrics = step([(real, labels)])
        return metrics['loss_d'], metrics['loss_g']

    return call, dict(precision=precision,
                      channels_last=layouts[case.layout] == torch.channels_last,
                      memory_format=str(step.memory_format))


def worker(case: Case, resolution: int, batch: int, device_name: str, warmup_steps: int, timed_steps: int,
           retry: bool) -> dict[str, Any]:
    """Build one case, run `warmup_steps` untimed and `timed_steps` timed steps; per-step losses and timings."""
    import torch

    device = torch.device(device_name)
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    start = time.perf_counter()
    if case.loop == 'plain':
        step, built = plain_loop(resolution, batch, device), dict(precision='fp32', channels_last=False)
    else:
        step, built = stylelens_step(case, resolution, batch, device_name)
    build_seconds = time.perf_counter() - start
    data = synthetic_batches(resolution, batch, device)
    losses: list[tuple[float, float]] = []

    def one_step() -> None:
        losses.append(step(data[len(losses) % len(data)]))
        sync()

    result: dict[str, Any] = dict(case=asdict(case), label=case.label, resolution=resolution, batch=batch,
                                  device=device_name, threads=torch.get_num_threads(), build_seconds=build_seconds,
                                  **built)
    warmup = []
    try:
        for _ in range(warmup_steps):
            begin = time.perf_counter()
            one_step()
            warmup.append(time.perf_counter() - begin)
        runs = repeat(one_step, timed_steps, retry)
    except Exception as error:  # a compile that fails (e.g. InductorError) is a result, not a crash of the bench
        message = ' '.join(str(error).split())
        return dict(result, ok=False, error=f'{type(error).__name__}: {message[:400]}', warmup_seconds=warmup,
                    losses=losses)
    median_seconds = runs.median
    return dict(result, ok=True, warmup_seconds=warmup, **runs_dict(runs), images_per_second=batch / median_seconds,
                first_steps_overhead_seconds=max(0.0, sum(warmup) - len(warmup) * median_seconds), losses=losses,
                finite=all(math.isfinite(x) for pair in losses for x in pair))


# ======================================================================================================================
# The driver
# ======================================================================================================================

def run_worker(case: Case, resolution: int, batch: int, device: str, settings: Settings) -> dict[str, Any]:
    """One case in a fresh interpreter; a crash or timeout comes back as a failed result."""
    cmd = [sys.executable, '-m', 'stylelens.bench.training', '--worker', case.spec(), '--resolution',
           str(resolution), '--batch', str(batch), '--device', device, '--warmup', str(settings.warmup_steps),
           '--steps', str(settings.timed_steps)] + (['--retry'] if settings.retry_disturbed else [])
    failed = dict(case=asdict(case), label=case.label, resolution=resolution, batch=batch, device=device, ok=False,
                  losses=[])
    with tempfile.TemporaryDirectory(prefix='stylelens-bench-inductor-') as cache:
        # An empty compile cache per case: what a first `train` run pays, not what an earlier bench left behind.
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired:
            return dict(failed, error=f'did not finish within {WORKER_TIMEOUT_S} s')
    if proc.returncode != 0:
        tail = ' '.join(proc.stderr.strip().splitlines()[-1:]) if proc.stderr.strip() else ''
        return dict(failed, error=f'exit {proc.returncode}: {tail[:400]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare_losses(reference: dict[str, Any], other: dict[str, Any]) -> dict[str, Any] | None:
    """How far `other`'s loss curve is from `reference`'s over their common steps: |Δ loss_d| at the first step
    (same weights and inputs: the numerical difference of one step), the largest |Δ| of loss_d and loss_g over all
    steps, and both runs' mean losses. None if either has no steps."""
    steps = min(len(reference['losses']), len(other['losses']))
    if not steps:
        return None
    pairs = list(zip(reference['losses'][:steps], other['losses'][:steps]))

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    return dict(steps=steps, first_abs_diff_loss_d=abs(pairs[0][0][0] - pairs[0][1][0]),
                max_abs_diff_loss_d=max(abs(a[0] - b[0]) for a, b in pairs),
                max_abs_diff_loss_g=max(abs(a[1] - b[1]) for a, b in pairs),
                mean_loss_d=mean([b[0] for _, b in pairs]), mean_loss_g=mean([b[1] for _, b in pairs]),
                reference_mean_loss_d=mean([a[0] for a, _ in pairs]),
                reference_mean_loss_g=mean([a[1] for a, _ in pairs]))


def summarize(results: list[dict[str, Any]]) -> None:
    """Add, in place, each row's speed ratio to the plain loop and its loss curve's distance from stylelens fp32's
    (`quality_vs_fp32`). Reduced-precision and compiled rows draw the same latents as stylelens fp32, so their
    distance is what precision or compilation changes; the plain loop draws other latents after its first D step
    (its first D loss is computed on identical inputs), so its distance is that of an equally valid fp32 run: the
    yardstick for the others."""
    plain = next((r for r in results if r['case']['loop'] == 'plain'), None)
    reference = next((r for r in results if r['case'] == asdict(Case('stylelens', 'fp32'))), None)
    for r in results:
        if r.get('ok') and plain is not None and plain.get('ok'):
            r['vs_plain'] = r['images_per_second'] / plain['images_per_second']
        if reference is not None and r is not reference and r['losses'] and reference['losses']:
            r['quality_vs_fp32'] = compare_losses(reference, r)


def run(out_dir: Path | None = None, quick: bool = False, device: str = 'cpu', explore: bool = False,
        settings: Settings | None = None) -> dict[str, Any]:
    """Measure every case at every resolution; write `bench_training.json` / `.md` into `out_dir` when given.
    Returns the numbers with the Markdown under 'markdown'."""
    started = time.perf_counter()
    settings = settings or dataclasses.replace(QUICK if quick else FULL, explore=explore)
    load_start = load_average()
    by_resolution: dict[str, list[dict[str, Any]]] = {}
    for resolution in RESOLUTIONS:
        results = []
        for case in cases_for(resolution, settings, device):
            skipped = skip_reason(case, device)
            r = (dict(case=asdict(case), label=case.label, resolution=resolution, batch=BATCH, device=device, ok=False,
                      skipped=True, error=skipped, losses=[]) if skipped else
                 run_worker(case, resolution, BATCH, device, settings))
            results.append(r)
            if r.get('ok'):
                log(f'training {resolution}x{resolution} batch {BATCH}, {case.label}: {r["images_per_second"]:.0f} '
                    f'images/s (median step {r["median_seconds"]:.3f} s, first steps +'
                    f'{r["first_steps_overhead_seconds"]:.1f} s)')
            else:
                status = '' if r.get('skipped') else 'FAILED: '
                log(f'training {resolution}x{resolution} batch {BATCH}, {case.label}: {status}{r["error"]}')
        summarize(results)
        by_resolution[str(resolution)] = results
    out = dict(model=MODEL, batch=BATCH, device=device, settings=asdict(settings), contended_cpus=CONTENDED_CPUS,
               auto_precision=auto_precision(device), results=by_resolution, load_average_start=load_start,
               load_average_end=load_average(),
               seconds=time.perf_counter() - started)
    out['markdown'] = render_markdown(out)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / 'bench_training.json').write_text(json.dumps(out, indent=2) + '\n')
        (out_dir / 'bench_training.md').write_text(out['markdown'] + '\n')
    return out


def render_markdown(out: dict[str, Any]) -> str:
    """The section's paragraph and table."""
    s = out['settings']
    retry = ' (disturbed steps were repeated first, up to as many again)' if s['retry_disturbed'] else ''
    lines = [
        f'**Training throughput**: `{out["model"]}` G + D, one D step and one G step per training step, batch '
        f'{out["batch"]}, synthetic data, on {out["device"]}; images/s = batch / median step time over '
        f'{s["timed_steps"]} steps after {s["warmup_steps"]} untimed ones, one fresh process per row. The plain loop '
        f'is the homework loop (fp32, contiguous, BCE-with-logits, the fake batch reused for the G step); stylelens '
        f'rows run `stylelens train`\'s own step (`--precision auto` is {out["auto_precision"]} here). "first steps" '
        f'is what the untimed steps took beyond steady state (compiling with an empty cache, for torch.compile). '
        f'Quality: every row starts from the same seed, weights and data; the loss curves are compared with '
        f"stylelens fp32's over all steps (|Δ loss_d| after the first step, largest |Δ loss_d| / |Δ loss_g|). "
        f'The other stylelens rows draw the same latents as fp32, so their Δ is the cost of precision or '
        f'compilation; the plain loop draws other latents after its first D step, so its Δ is that of an equally '
        f'valid fp32 run, the yardstick. * = some kept steps had other processes using ≥ {out["contended_cpus"]} '
        f'CPU{retry}.',
        '',
        '| size | loop | images/s | vs plain | median step (s) | first steps (s) | mean loss_d / loss_g '
        '| Δ vs stylelens fp32: first loss_d; max loss_d / loss_g |',
        '|---|---|---:|---:|---:|---:|---:|---:|',
    ]
    for resolution, results in out['results'].items():
        for r in results:
            size = f'{resolution}²'
            if not r.get('ok'):
                status = 'skipped' if r.get('skipped') else 'failed'
                lines.append(f'| {size} | {r["label"]} | {status} | | | | | {r.get("error", "")[:120]} |')
                continue
            star = '*' if r.get('disturbed') else ''
            ratio = f'{r["vs_plain"]:.2f}×' if 'vs_plain' in r else ''
            losses = r['losses']
            means = (f'{sum(d for d, _ in losses) / len(losses):.2f} / {sum(g for _, g in losses) / len(losses):.2f}'
                     if losses else '')
            q = r.get('quality_vs_fp32')
            if q:
                quality = (f'{q["first_abs_diff_loss_d"]:.1e}; {q["max_abs_diff_loss_d"]:.2f} / '
                           f'{q["max_abs_diff_loss_g"]:.2f}')
            else:
                quality = '(reference)' if r['case'] == asdict(Case('stylelens', 'fp32')) else ''
            lines.append(f'| {size} | {r["label"]} | {r["images_per_second"]:.0f}{star} | {ratio} | '
                         f'{r["median_seconds"]:.3f} | {r["first_steps_overhead_seconds"]:.1f} | {means} | '
                         f'{quality} |')
    return '\n'.join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the standalone run (the --worker options are internal)."""
    parser = argparse.ArgumentParser(prog='python -m stylelens.bench.training',
                                     description='Training throughput: stylelens train step vs a plain PyTorch loop.')
    parser.add_argument('--out', type=Path, default=Path('bench/results'), help='results folder')
    parser.add_argument('--quick', action='store_true', help='fewer steps, no torch.compile case')
    parser.add_argument('--explore', action='store_true',
                        help='also fp16, layouts and default torch.compile (variants train does not offer)')
    parser.add_argument('--device', default='cpu', help='torch device (default: cpu)')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    parser.add_argument('--resolution', type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument('--batch', type=int, default=BATCH, help=argparse.SUPPRESS)
    parser.add_argument('--warmup', type=int, default=FULL.warmup_steps, help=argparse.SUPPRESS)
    parser.add_argument('--steps', type=int, default=FULL.timed_steps, help=argparse.SUPPRESS)
    parser.add_argument('--retry', action='store_true', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the training benchmark alone (or, with --worker, one case) and write bench_training.json / .md."""
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(Case.parse(args.worker), args.resolution, args.batch, args.device, args.warmup,
                                args.steps, args.retry)))
        return
    out = run(args.out, quick=args.quick, device=args.device, explore=args.explore)
    log(f'training throughput done in {out["seconds"]:.0f} s: {args.out / "bench_training.json"}')
    sys.stdout.write(out['markdown'] + '\n')


if __name__ == '__main__':
    main()
