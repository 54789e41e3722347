"""The benchmark driver: runs every measurement in order, each torch-using one in a fresh worker process, and writes
bench.json and bench.md; also the entry point of those worker processes (``--worker NAME``).
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

from stylelens.bench import training
from stylelens.bench.generate import (
    CONFIGS,
    FULL,
    OFFICIAL_GENERATE_SECONDS,
    OFFICIAL_SECONDS_PER_IMAGE_BATCH1,
    OFFICIAL_SOURCE,
    QUICK,
    Settings,
    bench_generate,
    bench_imports,
    bench_mix,
)
from stylelens.bench.network import ensure_network
from stylelens.bench.report import render_markdown
from stylelens.bench.timing import CONTENDED_CPUS, load_average, log, machine_info, median, run_worker

# Worker name -> (module, function). Looked up only in the worker process, so the driver never imports torch.
WORKERS: dict[str, tuple[str, str]] = {
    'build': ('stylelens.bench.network', 'worker_build'),
    'synthesis': ('stylelens.bench.ops', 'worker_synthesis'),
    'stages': ('stylelens.bench.generate', 'worker_stages'),
    'modconv': ('stylelens.bench.ops', 'worker_modconv'),
    'probes': ('stylelens.bench.probes', 'worker_probes'),
    'mix_loop': ('stylelens.bench.generate', 'worker_mix_loop'),
}


def worker_function(name: str) -> Callable[[argparse.Namespace], dict[str, Any]]:
    """The function a `--worker NAME` process runs, imported only then."""
    module, function = WORKERS[name]
    return getattr(importlib.import_module(module), function)


def run_benchmark(out_dir: Path, settings: Settings, mode: str, device: str) -> dict[str, Any]:
    """All measurements, in order; returns the results dict written to bench.json."""
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    log(f'{mode} run on {machine["cpu_model"]} ({machine["usable_cpus"]} CPUs, torch {machine["torch"]["version"]}, '
        f'{machine["torch"]["threads"]} threads), load average {machine["load_average"] or "unknown"}, stylelens from '
        f'{machine["stylelens_path"]}')
    network, network_info, just_built = ensure_network(out_dir)
    generate = bench_generate(network, settings, device, warmup=settings.warmup_process or just_built)
    log('style mixing: stylelens mix vs one cell at a time')
    mix = bench_mix(network, settings, device)
    synthesis = []
    for precision, batch in CONFIGS:
        r = run_worker('synthesis', network, precision=precision, batch=batch, runs=settings.synthesis_runs,
                       retry=settings.retry_disturbed, device=device)
        synthesis.append(r)
        log(f'synthesis, {precision} batch {batch}: {r["median_seconds"] / batch:.3f} s per image, peak RSS '
            f'{r["peak_rss_mib"]:.0f} MiB (+{r["peak_delta_mib"]:.0f}), load {r["load_seconds"]:.2f} s')
    log('start-up: python, import torch, import stylelens.cli.generate')
    imports = bench_imports(settings.import_runs, settings.retry_disturbed)
    log('the steps of one generate run')
    stage_runs = [run_worker('stages', network, precision='fp32', batch=8, device=device)
                  for _ in range(settings.stage_runs)]
    stages = dict(stage_runs[0], stages={name: median([r['stages'][name] for r in stage_runs])
                                         for name in stage_runs[0]['stages']}, runs=stage_runs)
    log('modulated convolution: ours vs grouped')
    modconv = run_worker('modconv', network, runs=settings.modconv_runs, retry=settings.retry_disturbed)
    log('probes (stylelens.bench.probes)')
    probes = run_worker('probes', out=out_dir, quick=mode == 'quick')
    log('training throughput: stylelens train steps vs a plain PyTorch loop (stylelens.bench.training)')
    trained = training.run(out_dir, quick=mode == 'quick', device=device)
    return dict(
        mode=mode, machine=machine, settings=asdict(settings), contended_cpus=CONTENDED_CPUS,
        network=dict(file=str(network), **network_info),
        official=dict(generate_seconds=OFFICIAL_GENERATE_SECONDS,
                      seconds_per_image_batch1=OFFICIAL_SECONDS_PER_IMAGE_BATCH1, source=OFFICIAL_SOURCE),
        generate=generate, mix=mix, synthesis=synthesis, load_seconds=median([r['load_seconds'] for r in synthesis]),
        imports=imports, stages=stages, modconv=modconv, probes=probes, training=trained,
        load_average_end=load_average(),
        bench_seconds=time.perf_counter() - started,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (the --worker options are internal)."""
    parser = argparse.ArgumentParser(prog='python -m stylelens.bench',
                                     description='Benchmark stylelens on a paper256-scale generator.')
    parser.add_argument('--out', type=Path, default=Path('bench/results'),
                        help='results folder; the benchmark network is cached here (default: bench/results)')
    parser.add_argument('--quick', action='store_true', help='fewer repetitions (under 2 minutes on 2 idle cores)')
    parser.add_argument('--device', default='cpu', help='torch device to benchmark (default: cpu)')
    parser.add_argument('--worker', choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument('--network', type=Path, help=argparse.SUPPRESS)
    parser.add_argument('--precision', default='fp32', help=argparse.SUPPRESS)
    parser.add_argument('--batch', type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument('--runs', type=int, default=5, help=argparse.SUPPRESS)
    parser.add_argument('--retry', action='store_true', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark (or, with --worker, one measurement) and write bench.json / bench.md."""
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker_function(args.worker)(args)))
        return
    settings, mode = (QUICK, 'quick') if args.quick else (FULL, 'full')
    results = run_benchmark(args.out, settings, mode, args.device)
    markdown = render_markdown(results)
    (args.out / 'bench.json').write_text(json.dumps(results, indent=2) + '\n')
    (args.out / 'bench.md').write_text(markdown)
    log(f'done in {results["bench_seconds"]:.0f} s: {args.out / "bench.json"}, {args.out / "bench.md"}')
    sys.stdout.write(markdown)
