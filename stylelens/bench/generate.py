"""Whole-process generation and style mixing, side by side with NVIDIA's scripts when a checkout is given:
`stylelens generate` / `mix` and `generate.py` / `style_mixing.py` as fresh processes timed in alternation, the
imports they pay, and the steps of one generate run timed one by one.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from stylelens.bench.official import Checkout, build_official_network, png_differences, stylelens_can_load
from stylelens.bench.timing import (
    alternate,
    apply_runtime_tuning,
    children_cpu_seconds,
    log,
    repeat,
    run_command,
    runs_dict,
)

MIX_ROWS, MIX_COLS, MIX_STYLES = '0,1,2', '3,4,5', '0-6'

SEEDS = '0-7'
NUM_SEEDS = 8
SG3_SEEDS = '0-3'
CONFIGS: tuple[tuple[str, int], ...] = (('fp32', 1), ('fp32', 8), ('bf16', 1), ('bf16', 8))


@dataclass(frozen=True)
class Settings:
    """How hard to measure: repetitions of each measurement (`--quick` lowers them)."""

    process_runs: int  # whole-process runs per command (median), after one untimed round of all of them
    synthesis_runs: int  # timed G.synthesis calls per configuration (each followed by a roofline pass), after one
    #                      warm-up call
    import_runs: int  # fresh interpreters per import measurement
    stage_runs: int  # step-by-step generate runs (median per step)
    modconv_runs: int  # timed calls per modulated-convolution case, after one warm-up call
    retry_disturbed: bool  # repeat runs disturbed by other processes (at most as many extra runs as planned)


FULL = Settings(process_runs=4, synthesis_runs=5, import_runs=3, stage_runs=3, modconv_runs=5,
                retry_disturbed=True)
QUICK = Settings(process_runs=2, synthesis_runs=2, import_runs=2, stage_runs=1, modconv_runs=2,
                 retry_disturbed=False)


# --- Workers (each in a fresh `python -m stylelens.bench --worker NAME` process) ----------------------------------

def worker_stages(args: argparse.Namespace) -> dict[str, Any]:
    """One `generate --seeds 0-7` done step by step in this fresh process, each step timed.

    Mirrors stylelens/cli/generate.py with the library calls it makes: import, read the snapshot's records (tensors
    left undecoded), decode G_ema's tensors, build and fill the modules, map all seeds, synthesise in batches,
    convert and write the PNGs, write the manifest. The whole-process time minus the sum is interpreter start-up,
    click and exit.
    """
    stages: dict[str, float] = {}
    start = time.perf_counter()
    import torch
    stages['import torch'] = time.perf_counter() - start
    start = time.perf_counter()
    import click  # noqa: F401  (the library modules the generate verb imports, and click; never stylelens.cli)

    import stylelens.distributed  # noqa: F401
    import stylelens.input_transform  # noqa: F401
    from stylelens.devices import pick_device, precision_context, tune_cpu_allocator
    from stylelens.generation import seeds_to_ws
    from stylelens.loading.network import resolve
    from stylelens.loading.rebuild import rebuild
    from stylelens.loading.records import materialize_tensors
    from stylelens.loading.safe_pickle import load_snapshot
    from stylelens.outputs import ensure_outdir, save_pngs, seed_filename, to_uint8, write_manifest
    stages['import click and the library modules of the generate verb'] = time.perf_counter() - start

    start = time.perf_counter()
    device = pick_device(args.device)
    source = resolve(str(args.network))
    record = load_snapshot(source.path, lazy_tensors=True)['G_ema']
    stages['read the snapshot records (restricted unpickler, tensors lazy)'] = time.perf_counter() - start
    start = time.perf_counter()
    materialize_tensors(record)
    stages["decode G_ema's tensors only"] = time.perf_counter() - start
    start = time.perf_counter()
    G = rebuild(record, 'G_ema').to(device)
    tune_cpu_allocator()
    stages['build the modules (meta device), check, fill'] = time.perf_counter() - start
    seeds = list(range(NUM_SEEDS))
    start = time.perf_counter()
    ws = seeds_to_ws(G, seeds, device=device)
    stages[f'mapping ({NUM_SEEDS} seeds)'] = time.perf_counter() - start
    apply_runtime_tuning(device)
    start = time.perf_counter()
    with torch.no_grad(), precision_context(args.precision, device):
        images = torch.cat([G.synthesis(ws[i:i + args.batch], noise_mode='const').float()
                            for i in range(0, NUM_SEEDS, args.batch)])
    stages[f'synthesis (batch {args.batch}, first call in the process)'] = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix='stylelens-bench-') as tmp:
        out = ensure_outdir(Path(tmp) / 'out')
        start = time.perf_counter()
        save_pngs({out / seed_filename(seed): image for seed, image in zip(seeds, to_uint8(images))})
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
            outdir = Path(args.outdir or tmp)
            outdir.mkdir(parents=True, exist_ok=True)
            for name, w in jobs.items():
                save_png(to_uint8(G.synthesis(w[None], noise_mode='const'))[0], outdir / f'{name}.png')
    return dict(images=len(jobs), checksum=float(np.float64(len(jobs))))


# --- Whole-process measurements (run by the driver) ---------------------------------------------------------------

@dataclass
class Command:
    """One whole-process command of a side-by-side measurement: argv (its `--outdir` appended per run), folder."""

    argv: list[str]
    cwd: Path | None = None


def alternate_commands(commands: dict[str, Command], settings: Settings, work: Path) -> tuple[dict[str, Any], dict]:
    """One untimed round, then `settings.process_runs` timed rounds of every command in turn (a, b, c, a, ...), each
    run writing to a fresh output folder; returns the runs per name and the last output folder of each."""
    counter = iter(range(10 ** 9))
    last: dict[str, Path] = {}

    def runner(name: str) -> Callable[[], None]:
        def run() -> None:
            outdir = work / f'{name.replace(" ", "_")}-{next(counter)}'
            run_command(commands[name].argv + ['--outdir', str(outdir)], cwd=commands[name].cwd)
            last[name] = outdir
        return run

    fns = {name: runner(name) for name in commands}
    log(f'whole process: one untimed round of {", ".join(commands)}')
    for fn in fns.values():
        fn()
    runs = alternate(fns, settings.process_runs, settings.retry_disturbed)
    return {name: runs_dict(r) for name, r in runs.items()}, last


def stylelens_command(verb: str, network: Path, device: str, precision: str, batch: int,
                      seeds: str = SEEDS) -> Command:
    """`python -m stylelens VERB` on the benchmark network with the bench's seeds (generate) or grid (mix)."""
    argv = [sys.executable, '-m', 'stylelens', verb, '--network', str(network)]
    argv += ['--seeds', seeds] if verb == 'generate' else ['--rows', MIX_ROWS, '--cols', MIX_COLS, '--styles',
                                                            MIX_STYLES]
    return Command(argv + ['--device', device, '--precision', precision, '--batch', str(batch)])


def official_command(checkout: Checkout, script: str, network: Path, seeds: str = SEEDS) -> Command:
    """NVIDIA's `generate.py` / `gen_images.py` (seeds) or `style_mixing.py` (grid), run in its checkout."""
    argv = checkout.script(script) + ['--network', str(network.resolve())]  # it runs in the checkout's folder
    argv += (['--rows', MIX_ROWS, '--cols', MIX_COLS, '--styles', MIX_STYLES] if script == 'style_mixing.py'
             else ['--seeds', seeds])
    return Command(argv, cwd=checkout.path)


def compare_outputs(last: dict[str, Path], names: list[str]) -> dict[str, Any]:
    """uint8 differences of every stylelens run's PNGs from the official run's (same file names)."""
    if 'official' not in last:
        return {}
    return {name: png_differences(last['official'], folder, names) for name, folder in last.items()
            if name != 'official'}


def with_ratios(runs: dict[str, Any], reference: str, key: str) -> dict[str, Any]:
    """Add `key` = reference median / own median to every entry, where the reference was measured."""
    if reference in runs:
        for r in runs.values():
            r[key] = runs[reference]['median_seconds'] / r['median_seconds']
    return runs


def bench_generate(network: Path, settings: Settings, device: str,
                   official: Checkout | None = None) -> dict[str, Any]:
    """Whole-process `stylelens generate --seeds 0-7` for each precision and batch size, in alternation with NVIDIA's
    `generate.py` (one seed at a time, fp32) when a checkout is given; its PNGs are compared with ours."""
    commands = {'official': official_command(official, 'generate.py', network)} if official else {}
    for precision, batch in CONFIGS:
        commands[f'{precision} batch {batch}'] = stylelens_command('generate', network, device, precision, batch)
    with tempfile.TemporaryDirectory(prefix='stylelens-bench-') as tmp:
        runs, last = alternate_commands(commands, settings, Path(tmp))
        images = compare_outputs(last, [f'seed{seed:04d}.png' for seed in range(NUM_SEEDS)])
    for name, r in runs.items():
        log(f'whole process, {name}: median {r["median_seconds"]:.2f} s '
            f'({", ".join(f"{s:.2f}" for s in r["seconds"])})')
    return dict(runs=with_ratios(runs, 'official', 'speedup_vs_official'), images_vs_official=images,
                configs=[list(c) for c in CONFIGS])


def bench_mix(network: Path, settings: Settings, device: str, official: Checkout | None = None) -> dict[str, Any]:
    """Whole-process `stylelens mix` for a 3x3 grid (fp32 and bf16, batch 8), the one-cell-at-a-time loop
    (`worker_mix_loop`) and, with a checkout, NVIDIA's `style_mixing.py`, in alternation; grids compared."""
    commands = {'official': official_command(official, 'style_mixing.py', network)} if official else {}
    commands['loop_fp32'] = Command([sys.executable, '-m', 'stylelens.bench', '--worker', 'mix_loop', '--network',
                                     str(network)])
    commands['mix_fp32'] = stylelens_command('mix', network, device, 'fp32', 8)
    commands['mix_bf16'] = stylelens_command('mix', network, device, 'bf16', 8)
    cells = [f'{r}-{c}.png' for r in MIX_ROWS.split(',') for c in MIX_COLS.split(',')]
    with tempfile.TemporaryDirectory(prefix='stylelens-bench-mix-') as tmp:
        runs, last = alternate_commands(commands, settings, Path(tmp))
        last.pop('loop_fp32', None)
        images = compare_outputs(last, cells + ['grid.png'])
    for name, r in runs.items():
        log(f'mix 3x3, {name}: median {r["median_seconds"]:.2f} s')
    with_ratios(runs, 'loop_fp32', 'speedup_vs_loop')
    return dict(runs=with_ratios(runs, 'official', 'speedup_vs_official'), images_vs_official=images)


def bench_imports(runs: int, retry: bool) -> dict[str, dict[str, Any]]:
    """Fresh-interpreter times: start-up alone (`python -c pass`, wall clock), `import torch` and the imports of the
    generate and mix verbs (timed inside the interpreter, which is what a user's command pays)."""
    snippet = 'import time; t = time.perf_counter(); import {0}; print(time.perf_counter() - t)'

    def timed_import(module: str) -> float:
        proc = subprocess.run([sys.executable, '-c', snippet.format(module)], capture_output=True, text=True,
                              check=True)
        return float(proc.stdout.strip().splitlines()[-1])

    results = {'python start-up (`python -c pass`)': repeat(lambda: run_command([sys.executable, '-c', 'pass']),
                                                            runs, retry, own_cpu=children_cpu_seconds)}
    for module in ('torch', 'stylelens.cli.generate', 'stylelens.cli.mix'):
        results[f'`import {module}`'] = repeat(lambda: timed_import(module), runs, retry, own_cpu=children_cpu_seconds)
    return {name: runs_dict(r) for name, r in results.items()}


def bench_stylegan3(out_dir: Path, checkout: Checkout, settings: Settings, device: str) -> dict[str, Any]:
    """NVIDIA's `gen_images.py` against `stylelens generate` (seeds 0-3, at most 3 rounds: NVIDIA's CPU reference ops
    take seconds per image) on a StyleGAN3-T network built with the stylegan3 checkout's classes, in alternation;
    skipped with the loader's one-line reason while stylelens cannot load it."""
    from stylelens.bench.network import NETWORK_SEED, SG3_D_KWARGS, SG3_G_KWARGS, SG3_NETWORK_FILE

    network, seeds = out_dir / SG3_NETWORK_FILE, SG3_SEEDS
    info = build_official_network(checkout, network, SG3_G_KWARGS, SG3_D_KWARGS, NETWORK_SEED,
                                  'training.networks_stylegan3', 'training.networks_stylegan2')
    refused = stylelens_can_load(network)
    if refused is not None:
        log(f'StyleGAN3: skipped, stylelens does not load {network.name} yet: {refused}')
        return dict(network=info, skipped=refused)
    commands = {'official': official_command(checkout, 'gen_images.py', network, seeds)}
    for precision, batch in (('fp32', 1), ('fp32', 8), ('bf16', 8)):  # batch 1: one image at a time, as NVIDIA
        commands[f'{precision} batch {batch}'] = stylelens_command('generate', network, device, precision, batch,
                                                                   seeds)
    with tempfile.TemporaryDirectory(prefix='stylelens-bench-sg3-') as tmp:
        runs, last = alternate_commands(commands, replace(settings, process_runs=min(settings.process_runs, 3)),
                                        Path(tmp))
        images = compare_outputs(last, [f'seed{seed:04d}.png' for seed in range(int(seeds.split('-')[1]) + 1)])
    for name, r in runs.items():
        log(f'StyleGAN3 whole process, {name}: median {r["median_seconds"]:.2f} s')
    return dict(network=info, seeds=seeds, runs=with_ratios(runs, 'official', 'speedup_vs_official'),
                images_vs_official=images)
