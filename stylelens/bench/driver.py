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

from stylelens.bench import projection, training
from stylelens.bench.generate import (
    CONFIGS,
    FULL,
    QUICK,
    Settings,
    bench_generate,
    bench_imports,
    bench_mix,
    bench_stylegan3,
)
from stylelens.bench.network import D_KWARGS, G_KWARGS, NETWORK_SEED, OFFICIAL_NETWORK_FILE, ensure_network
from stylelens.bench.official import Checkout, CheckoutError, build_official_network, check_checkout
from stylelens.bench.report import render_markdown
from stylelens.bench.roofline import collect
from stylelens.bench.timing import CONTENDED_CPUS, load_average, log, machine_info, median, run_output, run_worker

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


def benchmark_network(out_dir: Path, official: Checkout | None) -> tuple[Path, dict[str, Any]]:
    """The paper256-scale snapshot every measurement reads: built with NVIDIA's classes when a checkout is given (so
    both sides read the same file), else with stylelens's own."""
    if official is None:
        network, info, _ = ensure_network(out_dir)
        return network, dict(info, built_by='stylelens (vendor networks, stylelens.bench.network)')
    info = build_official_network(official, out_dir / OFFICIAL_NETWORK_FILE, G_KWARGS, D_KWARGS, NETWORK_SEED,
                                  'training.networks', 'training.networks')
    return Path(info['file']), dict(info, built_by=f"NVIDIA's training.networks ({official.path}, {official.commit})")


def run_benchmark(out_dir: Path, settings: Settings, mode: str, device: str, official: Checkout | None = None,
                  stylegan3: Checkout | None = None) -> dict[str, Any]:
    """All measurements, in order; returns the results dict written to bench.json."""
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    log(f'{mode} run on {machine["cpu_model"]} ({machine["usable_cpus"]} CPUs, {machine["bf16_units"]}, torch '
        f'{machine["torch"]["version"]}, {machine["torch"]["threads"]} threads), load average '
        f'{machine["load_average"] or "unknown"}, stylelens from {machine["stylelens_path"]}')
    if official is None:
        log("no OFFICIAL checkout given: absolute figures only, no ratio to NVIDIA's code is measured")
    network, network_info = benchmark_network(out_dir, official)
    log('whole process: stylelens generate' + (' vs NVIDIA generate.py' if official else ''))
    generate = bench_generate(network, settings, device, official)
    log('style mixing: stylelens mix vs one cell at a time' + (' vs NVIDIA style_mixing.py' if official else ''))
    mix = bench_mix(network, settings, device, official)
    sg3 = bench_stylegan3(out_dir, stylegan3, settings, device) if stylegan3 else None
    synthesis = []
    for precision, batch in CONFIGS:
        r = run_worker('synthesis', network, precision=precision, batch=batch, runs=settings.synthesis_runs,
                       retry=settings.retry_disturbed, device=device)
        synthesis.append(r)
        roof = r.get('roofline') or {}
        log(f'synthesis, {precision} batch {batch}: {r["median_seconds"] / batch:.3f} s per image'
            + (f' ({100 * roof["seconds_per_image"] * batch / r["median_seconds"]:.0f} % of the roofline, '
               f'{roof["gflops"]:.0f} GFLOP/s)' if roof else '')
            + f', peak RSS {r["peak_rss_mib"]:.0f} MiB (+{r["peak_delta_mib"]:.0f}), load {r["load_seconds"]:.2f} s')
    log('start-up: python, import torch, import the verbs')
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
    log('projection steps: stylelens project' + (" vs NVIDIA's projector.py" if official else '')
        + ' (stylelens.bench.projection)')
    projected = projection.run(network, out_dir, quick=True, device=device, official=official,
                               cases=projection.SIDE_BY_SIDE_CASES)
    log('directions and patching (stylelens.bench.directions)')
    directions = run_module('stylelens.bench.directions', out_dir / 'bench_directions.json')
    log('training throughput: stylelens train steps vs a plain PyTorch loop (stylelens.bench.training)')
    trained = training.run(out_dir, quick=mode == 'quick', device=device)
    return dict(
        mode=mode, machine=machine, settings=asdict(settings), contended_cpus=CONTENDED_CPUS,
        network=dict(network_info, file=str(network)),
        official=dict(checkout=str(official.path), commit=official.commit) if official else None,
        stylegan3=sg3, roofline=collect(synthesis), generate=generate, mix=mix, synthesis=synthesis,
        load_seconds=median([r['load_seconds'] for r in synthesis]), imports=imports, stages=stages,
        modconv=modconv, probes=probes, projection=projected, directions=directions, training=trained,
        load_average_end=load_average(),
        bench_seconds=time.perf_counter() - started,
    )


def run_module(module: str, out: Path) -> dict[str, Any]:
    """`python -m MODULE --out OUT` in a fresh process (its Markdown table on stdout); returns OUT's numbers with
    that table under 'markdown'."""
    table = run_output([sys.executable, '-m', module, '--out', str(out)], module)
    return dict(json.loads(out.read_text()), markdown=table.strip())


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (the --worker options are internal)."""
    parser = argparse.ArgumentParser(prog='python -m stylelens.bench',
                                     description='Benchmark stylelens on a paper256-scale generator.')
    parser.add_argument('--out', type=Path, default=Path('bench/results'),
                        help='results folder; the benchmark network is cached here (default: bench/results)')
    parser.add_argument('--quick', action='store_true', help='fewer repetitions (under 2 minutes on 2 idle cores)')
    parser.add_argument('--device', default='cpu', help='torch device to benchmark (default: cpu)')
    parser.add_argument('--official', metavar='DIR', help='a checkout of NVlabs/stylegan2-ada-pytorch (d72cc7d) with '
                        "../shared/official's CPU patch: time its generate.py and style_mixing.py side by side")
    parser.add_argument('--stylegan3', metavar='DIR', help='a checkout of NVlabs/stylegan3 (c233a91) with its CPU '
                        'patch: time its gen_images.py side by side on a StyleGAN3-T network')
    parser.add_argument('--worker', choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument('--network', type=Path, help=argparse.SUPPRESS)
    parser.add_argument('--precision', default='fp32', help=argparse.SUPPRESS)
    parser.add_argument('--batch', type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument('--runs', type=int, default=5, help=argparse.SUPPRESS)
    parser.add_argument('--retry', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--outdir', type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark (or, with --worker, one measurement) and write bench.json / bench.md."""
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker_function(args.worker)(args)))
        return
    settings, mode = (QUICK, 'quick') if args.quick else (FULL, 'full')
    try:
        official = check_checkout(args.official, 'stylegan2-ada-pytorch') if args.official else None
        stylegan3 = check_checkout(args.stylegan3, 'stylegan3') if args.stylegan3 else None
    except CheckoutError as err:
        sys.exit(f'stylelens.bench: {err}')
    results = run_benchmark(args.out.resolve(), settings, mode, args.device, official, stylegan3)
    markdown = render_markdown(results)
    (args.out / 'bench.json').write_text(json.dumps(results, indent=2) + '\n')
    (args.out / 'bench.md').write_text(markdown)
    log(f'done in {results["bench_seconds"]:.0f} s: {args.out / "bench.json"}, {args.out / "bench.md"}')
    sys.stdout.write(markdown)
