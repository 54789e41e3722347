"""Benchmark of the probes on a paper256-scale generator (fixed-seed random weights): (a) the time overhead of
recording every synthesis block against a plain forward pass, (b) the peak memory of `stylelens activations
--blocks all` for 8 seeds against a plain batch-8 forward pass, each in a fresh process.

`run(out_dir, quick)` returns the numbers (and a Markdown table under 'markdown'); the `stylelens.bench` driver
runs it in a worker process (`worker_probes`).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from stylelens.bench.timing import median, run_command, seconds
from stylelens.generation import seeds_to_ws, synthesize
from stylelens.loading.network import load_generator
from stylelens.loading.official_writer import dump_snapshot
from stylelens.outputs import atomic_write_text
from stylelens.probes import probe
from stylelens.vendor.stylegan2_ada.networks import Generator

SEED = 256
G_KWARGS: dict[str, Any] = dict(z_dim=512, w_dim=512, c_dim=0, img_resolution=256, img_channels=3,
                                mapping_kwargs=dict(num_layers=8),
                                synthesis_kwargs=dict(channel_base=16384, channel_max=512))
OVERHEAD_BATCH = 4
MEMORY_SEEDS = '0-7'
OVERHEAD_GOAL = 0.10  # recording all blocks costs at most 10 % over a plain forward
MEMORY_GOAL = 1.5     # activations --blocks all peaks at most 1.5x a plain forward of the same 8 seeds


def build_generator(seed: int = SEED) -> torch.nn.Module:
    """The paper256-scale generator with random weights from `seed` (toRGB toned down, as in the demo network)."""
    torch.manual_seed(seed)
    G = Generator(**G_KWARGS)
    with torch.no_grad():
        for name, param in G.named_parameters():
            if name.endswith('torgb.weight'):
                param.mul_(0.3)
    return G.eval().requires_grad_(False)


def measure_overhead(G: torch.nn.Module, runs: int) -> dict[str, Any]:
    """Median seconds of `G.synthesis` at batch 4, plain and while a probe records every block (copies kept on the
    CPU, as `run_with_cache` does); the two are interleaved after one warm-up call each."""
    ws = seeds_to_ws(G, list(range(OVERHEAD_BATCH)))
    blocks = [f'synthesis.{name}' for name in G.synthesis.block_ws_ranges()]

    def plain() -> None:
        with torch.no_grad():
            G.synthesis(ws, noise_mode='const')

    def recorded() -> None:
        with probe(G, blocks), torch.no_grad():
            G.synthesis(ws, noise_mode='const')

    plain(), recorded()
    times: dict[str, list[float]] = {'plain': [], 'recorded': []}
    for _ in range(runs):
        times['plain'].append(seconds(plain))
        times['recorded'].append(seconds(recorded))
    plain_s, recorded_s = median(times['plain']), median(times['recorded'])
    copy_s = _copy_seconds(G, ws, blocks, runs)
    return dict(batch=OVERHEAD_BATCH, runs=runs, blocks=len(blocks), threads=torch.get_num_threads(),
                plain_seconds=plain_s, recorded_seconds=recorded_s, overhead=recorded_s / plain_s - 1,
                copy_seconds=copy_s, copy_share=copy_s / plain_s,
                goal=OVERHEAD_GOAL, met=recorded_s / plain_s - 1 <= OVERHEAD_GOAL)


def _copy_seconds(G: torch.nn.Module, ws: torch.Tensor, blocks: list[str], runs: int) -> float:
    """Median seconds to copy every recorded block output once: the work a probe adds to a forward pass, timed
    alone so that it can be read apart from the noise of whole forward passes on a busy machine."""
    with probe(G, blocks) as cache, torch.no_grad():
        G.synthesis(ws, noise_mode='const')
    tensors = [t for value in cache.values() for t in value.values() if t is not None]
    return median([seconds(lambda: [t.clone() for t in tensors]) for _ in range(runs)])


def child(mode: str, network: str, outdir: str) -> None:
    """Run one workload from this (fresh) process and print its peak RSS in KiB as JSON: 'load' (import and load
    only) and 'plain' (one batch-8 forward of seeds 0-7) run here; 'activations' runs the real command,
    `python -m stylelens activations --blocks all`, as this process's only child and reports that child's peak."""
    import resource

    if mode == 'activations':
        run_command([sys.executable, '-m', 'stylelens', 'activations', '--network', network, '--seeds', MEMORY_SEEDS,
                     '--blocks', 'all', '--device', 'cpu', '--outdir', outdir])
        maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    else:
        G = load_generator(network, progress=False)
        if mode == 'plain':
            synthesize(G, seeds_to_ws(G, list(range(8))), noise_mode='const')
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(dict(mode=mode, maxrss_kib=maxrss)))


def _child_rss(mode: str, network: Path, outdir: Path) -> int:
    """Peak RSS (KiB) of one `child` workload in a fresh interpreter."""
    code = f'from stylelens.bench.probes import child; child({mode!r}, {str(network)!r}, {str(outdir)!r})'
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f'bench probes child {mode!r} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])['maxrss_kib']


def measure_memory(G: torch.nn.Module, work: Path) -> dict[str, Any]:
    """Peak RSS of loading alone, of a plain batch-8 forward, and of `activations --blocks all` for 8 seeds,
    each in a fresh process reading the same G_ema-only snapshot."""
    network = work / 'probes_paper256.pkl'
    dump_snapshot(dict(G_ema=G, training_set_kwargs=dict(resolution=256)), network)
    rss = {mode: _child_rss(mode, network, work / 'activations') for mode in ('load', 'plain', 'activations')}
    files = sum(1 for p in (work / 'activations').rglob('*') if p.is_file())
    dumped = sum(p.stat().st_size for p in (work / 'activations').rglob('*.npz'))
    ratio = rss['activations'] / rss['plain']
    return dict(seeds=MEMORY_SEEDS, load_kib=rss['load'], plain_kib=rss['plain'], activations_kib=rss['activations'],
                ratio=ratio, goal=MEMORY_GOAL, met=ratio <= MEMORY_GOAL, files_written=files, npz_bytes=dumped)


def markdown(results: dict[str, Any]) -> str:
    """The results as a Markdown table, for bench_probes.md and the README."""
    o, m = results['overhead'], results['memory']
    mib = 1 / 1024
    verdict = {True: 'met', False: 'NOT met'}
    return '\n'.join([
        f"Probes on a paper256-scale generator (random weights, seed {SEED}; {o['threads']} torch threads, CPU; "
        f"1/5/15-min load average {' / '.join(f'{x:.1f}' for x in results['load_average_start'])} at the start, "
        f"{' / '.join(f'{x:.1f}' for x in results['load_average_end'])} at the end).",
        '',
        '| measurement | plain | with probes | ratio | goal |',
        '|---|---|---|---|---|',
        f"| `G.synthesis`, batch {o['batch']}, recording all {o['blocks']} blocks (median of {o['runs']}) | "
        f"{o['plain_seconds']:.3f} s | {o['recorded_seconds']:.3f} s | {100 * o['overhead']:+.1f} % | "
        f"≤ +{100 * o['goal']:.0f} % ({verdict[o['met']]}) |",
        f"| … of which copying the {o['blocks']} block outputs, timed alone (median of {o['runs']}) | | "
        f"{o['copy_seconds']:.3f} s | {100 * o['copy_share']:+.1f} % | |",
        f"| peak RSS, `activations --blocks all --seeds {m['seeds']}` vs one batch-8 forward (load alone: "
        f"{m['load_kib'] * mib:.0f} MiB) | {m['plain_kib'] * mib:.0f} MiB | {m['activations_kib'] * mib:.0f} MiB | "
        f"{m['ratio']:.2f}x | ≤ {m['goal']:.1f}x ({verdict[m['met']]}) |",
        '',
        f"Peak above loading alone: plain forward +{(m['plain_kib'] - m['load_kib']) * mib:.0f} MiB, activations "
        f"+{(m['activations_kib'] - m['load_kib']) * mib:.0f} MiB. The activations run wrote {m['files_written']} "
        f"files ({m['npz_bytes'] / 2 ** 20:.0f} MiB of .npz), one seed at a time, each block streamed to disk.",
    ])


def run(out_dir: Path, quick: bool) -> dict[str, Any]:
    """Measure both, write `bench_probes.json` and `bench_probes.md` into `out_dir`, and return the numbers with
    the Markdown table under 'markdown'. `quick` takes 3 timed runs instead of 7."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    G = build_generator()
    results: dict[str, Any] = dict(network=dict(seed=SEED, **G_KWARGS), quick=quick,
                                   load_average_start=os.getloadavg(), overhead=measure_overhead(G, 3 if quick else 7))
    with tempfile.TemporaryDirectory(dir=out_dir, prefix='.bench_probes-') as work:
        results['memory'] = measure_memory(G, Path(work))
    results['load_average_end'] = os.getloadavg()
    results['markdown'] = markdown(results)
    atomic_write_text(out_dir / 'bench_probes.json', json.dumps(results, indent=2) + '\n')
    atomic_write_text(out_dir / 'bench_probes.md', results['markdown'] + '\n')
    return results


def worker_probes(args: argparse.Namespace) -> dict[str, Any]:
    """The probe benchmark as a `--worker probes` process (it writes its own bench_probes.json / .md too)."""
    return run(Path(args.out), quick=args.quick)
