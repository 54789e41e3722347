"""Whole-process generation and style mixing against the official scripts: `stylelens generate` and `stylelens mix`
as fresh processes, the imports they pay, and the steps of one generate run timed one by one.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stylelens.bench.timing import apply_runtime_tuning, children_cpu_seconds, log, repeat, run_command, runs_dict

# --- The official anchor ------------------------------------------------------------------------------------------
# NVIDIA's own scripts on this 2-core CPU, on a random-init paper256-scale generator (device switched to CPU,
# force_fp32=True). Source: the oracle measurements, shared/oracle/README.md, section "How fast the official code
# is on this 2-core CPU (the speed anchor)".
OFFICIAL_GENERATE_SECONDS = 4.8  # `generate.py --seeds 0-7`, whole process, median of 5
OFFICIAL_SECONDS_PER_IMAGE_BATCH1 = 0.31  # the same run, per image at batch 1
OFFICIAL_SOURCE = ('NVIDIA stylegan2-ada-pytorch generate.py --seeds 0-7 on this CPU, paper256-scale random-init G, '
                   'force_fp32, whole process, median of 5 (shared/oracle/README.md, "the speed anchor")')
OFFICIAL_MIX_SECONDS = 7.0  # `style_mixing.py --rows 0,1,2 --cols 3,4,5 --styles 0-6`, whole process, median of 4
MIX_ROWS, MIX_COLS, MIX_STYLES = '0,1,2', '3,4,5', '0-6'

SEEDS = '0-7'
NUM_SEEDS = 8
CONFIGS: tuple[tuple[str, int], ...] = (('fp32', 1), ('fp32', 8), ('bf16', 1), ('bf16', 8))


@dataclass(frozen=True)
class Settings:
    """How hard to measure: repetitions of each measurement (`--quick` lowers them)."""

    process_runs: int  # whole-process generate runs per configuration (median)
    warmup_process: bool  # one untimed generate run first (always done right after building the network)
    synthesis_runs: int  # timed G.synthesis calls per configuration, after one warm-up call
    import_runs: int  # fresh interpreters per import measurement
    stage_runs: int  # step-by-step generate runs (median per step)
    modconv_runs: int  # timed calls per modulated-convolution case, after one warm-up call
    retry_disturbed: bool  # repeat runs disturbed by other processes (at most as many extra runs as planned)


FULL = Settings(process_runs=5, warmup_process=True, synthesis_runs=5, import_runs=5, stage_runs=3, modconv_runs=7,
                retry_disturbed=True)
QUICK = Settings(process_runs=2, warmup_process=False, synthesis_runs=2, import_runs=2, stage_runs=1, modconv_runs=2,
                 retry_disturbed=False)


# --- Workers (each in a fresh `python -m stylelens.bench --worker NAME` process) ----------------------------------

def worker_stages(args: argparse.Namespace) -> dict[str, Any]:
    """One `generate --seeds 0-7` done step by step in this fresh process, each step timed.

    Mirrors stylelens/cli/generate.py with the library calls it makes: import, open the network, map all seeds,
    synthesise in batches, convert and write the PNGs, write the manifest. The whole-process time minus the sum is
    interpreter start-up and click.
    """
    stages: dict[str, float] = {}
    start = time.perf_counter()
    import torch
    stages['import torch'] = time.perf_counter() - start
    start = time.perf_counter()
    import click  # noqa: F401  (the generate verb's process imports it too)

    from stylelens.devices import pick_device, precision_context, tune_cpu_allocator
    from stylelens.generation import seeds_to_ws
    from stylelens.loading.network import load_generator, resolve
    from stylelens.outputs import ensure_outdir, save_png, seed_filename, to_uint8, write_manifest
    stages['import the rest of stylelens.cli.generate'] = time.perf_counter() - start

    start = time.perf_counter()
    device = pick_device(args.device)
    source = resolve(str(args.network))
    G = load_generator(source, device=device)
    tune_cpu_allocator()
    stages['load the generator (unpickle + rebuild)'] = time.perf_counter() - start
    seeds = list(range(NUM_SEEDS))
    start = time.perf_counter()
    ws = seeds_to_ws(G, seeds, device=device)
    stages[f'mapping ({NUM_SEEDS} seeds)'] = time.perf_counter() - start
    apply_runtime_tuning(device)
    start = time.perf_counter()
    with torch.no_grad(), precision_context(args.precision, device):
        images = torch.cat([G.synthesis(ws[i:i + args.batch], noise_mode='const').float()
                            for i in range(0, NUM_SEEDS, args.batch)])
    stages[f'synthesis (batch {args.batch})'] = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix='stylelens-bench-') as tmp:
        out = ensure_outdir(Path(tmp) / 'out')
        start = time.perf_counter()
        for seed, image in zip(seeds, to_uint8(images)):
            save_png(image, out / seed_filename(seed))
        stages[f'to uint8 + write {NUM_SEEDS} PNGs'] = time.perf_counter() - start
        start = time.perf_counter()
        entry = source.entry
        network = dict(name=entry.name if entry else None, path=str(source.path), url=source.url,
                       sha256=source.sha256, description=entry.description if entry else None)
        write_manifest(out, command='generate', options=dict(seeds=seeds), network=network)
        stages['manifest (network sha256, versions)'] = time.perf_counter() - start
    return dict(precision=args.precision, batch=args.batch, stages=stages)


def worker_mix_loop(args: argparse.Namespace) -> dict[str, Any]:
    """The one-cell-at-a-time approach with our networks: map the sources, then synthesize each source and each
    cell in its own batch-1 forward pass, writing each PNG (timed as a whole process by the caller)."""
    import numpy as np
    import torch

    from stylelens import load_generator
    from stylelens.latents import parse_int_list, seeds_to_z
    from stylelens.outputs import save_png, to_uint8

    G = load_generator(args.network)
    rows, cols = parse_int_list(MIX_ROWS), parse_int_list(MIX_COLS)
    styles = parse_int_list(MIX_STYLES, what='styles')
    seeds = list(dict.fromkeys(rows + cols))
    with torch.no_grad():
        ws = dict(zip(seeds, G.mapping(torch.from_numpy(seeds_to_z(seeds, G.z_dim)), None)))
        jobs = {f'{s}-{s}': ws[s] for s in seeds}
        for row in rows:
            for col in cols:
                w = ws[row].clone()
                w[styles] = ws[col][styles]
                jobs[f'{row}-{col}'] = w
        with tempfile.TemporaryDirectory(prefix='stylelens-mixloop-') as tmp:
            for name, w in jobs.items():
                save_png(to_uint8(G.synthesis(w[None], noise_mode='const'))[0], Path(tmp) / f'{name}.png')
    return dict(images=len(jobs), checksum=float(np.float64(len(jobs))))


# --- Whole-process measurements (run by the driver) ---------------------------------------------------------------

def bench_generate(network: Path, settings: Settings, device: str, warmup: bool) -> list[dict[str, Any]]:
    """Whole-process `stylelens generate --seeds 0-7` for each precision and batch size (fresh outdir per run),
    after one untimed run if `warmup` (page cache, the network's remembered sha256)."""
    results = []
    with tempfile.TemporaryDirectory(prefix='stylelens-bench-') as tmp:
        counter = iter(range(10 ** 9))

        def command(precision: str, batch: int) -> list[str]:
            return [sys.executable, '-m', 'stylelens', 'generate', '--network', str(network), '--seeds', SEEDS,
                    '--device', device, '--precision', precision, '--batch', str(batch),
                    '--outdir', str(Path(tmp) / f'run{next(counter)}')]

        if warmup:
            log('whole process: one untimed warm-up run')
            run_command(command('fp32', 8))
        for precision, batch in CONFIGS:
            runs = repeat(lambda: run_command(command(precision, batch)), settings.process_runs,
                          settings.retry_disturbed, own_cpu=children_cpu_seconds)
            results.append(dict(precision=precision, batch=batch, **runs_dict(runs),
                                speedup_vs_official=OFFICIAL_GENERATE_SECONDS / runs.median))
            log(f'whole process, {precision} batch {batch}: median {runs.median:.2f} s '
                f'({", ".join(f"{s:.2f}" for s in runs.seconds)}'
                f'{f"; {len(runs.dropped_seconds)} disturbed runs repeated" if runs.dropped_seconds else ""})')
    return results


def bench_mix(network: Path, settings: Settings, device: str) -> dict[str, Any]:
    """Whole-process `stylelens mix` for a 3x3 grid (fp32 and bf16, batch 8) against the one-cell-at-a-time loop
    (`worker_mix_loop`) in the same run, and against the official style_mixing.py anchor."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix='stylelens-bench-mix-') as tmp:
        counter = iter(range(10 ** 9))

        def mix(precision: str) -> list[str]:
            return [sys.executable, '-m', 'stylelens', 'mix', '--network', str(network), '--rows', MIX_ROWS,
                    '--cols', MIX_COLS, '--styles', MIX_STYLES, '--device', device, '--precision', precision,
                    '--batch', '8', '--outdir', str(Path(tmp) / f'mix{next(counter)}')]

        loop = [sys.executable, '-m', 'stylelens.bench', '--worker', 'mix_loop', '--network', str(network)]
        for name, cmd in (('loop_fp32', loop), ('mix_fp32', mix('fp32')), ('mix_bf16', mix('bf16'))):
            runs = repeat(lambda: run_command(cmd), settings.process_runs, settings.retry_disturbed,
                          own_cpu=children_cpu_seconds)
            results[name] = runs_dict(runs)
            log(f'mix 3x3, {name}: median {runs.median:.2f} s')
    for name in ('mix_fp32', 'mix_bf16'):
        results[name]['speedup_vs_loop'] = results['loop_fp32']['median_seconds'] / results[name]['median_seconds']
        results[name]['speedup_vs_official'] = OFFICIAL_MIX_SECONDS / results[name]['median_seconds']
    return results


def bench_imports(runs: int, retry: bool) -> dict[str, dict[str, Any]]:
    """Fresh-interpreter times: start-up alone (`python -c pass`, wall clock), `import torch` and `import
    stylelens.cli.generate` (both timed inside the interpreter, which is what a user's command pays)."""
    snippet = 'import time; t = time.perf_counter(); import {0}; print(time.perf_counter() - t)'

    def timed_import(module: str) -> float:
        proc = subprocess.run([sys.executable, '-c', snippet.format(module)], capture_output=True, text=True,
                              check=True)
        return float(proc.stdout.strip().splitlines()[-1])

    results = {'python start-up (`python -c pass`)': repeat(lambda: run_command([sys.executable, '-c', 'pass']),
                                                            runs, retry, own_cpu=children_cpu_seconds)}
    for module in ('torch', 'stylelens.cli.generate'):
        results[f'`import {module}`'] = repeat(lambda: timed_import(module), runs, retry, own_cpu=children_cpu_seconds)
    return {name: runs_dict(r) for name, r in results.items()}
