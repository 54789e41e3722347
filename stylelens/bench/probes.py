"""Benchmark of the probes (fixed-seed random weights): (a) on a paper256-scale generator, the time overhead of
recording every synthesis block against a plain forward pass; (b) on an FFHQ-1024-shaped generator, the peak memory
of `stylelens activations --blocks all` against plain `stylelens generate` of the same seeds (at its default batch
and at batch 1, as activations runs), each command in a fresh process.

`run(out_dir, quick)` returns the numbers (and a Markdown table under 'markdown'); the `stylelens.bench` driver
runs it in a worker process (`worker_probes`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from stylelens.bench.timing import command_peak_rss_kib, median, seconds
from stylelens.generation import seeds_to_ws
from stylelens.loading.official_writer import dump_snapshot
from stylelens.outputs import atomic_write_text
from stylelens.probes import probe
from stylelens.vendor.stylegan2_ada.networks import Generator

SEED = 256
G_KWARGS: dict[str, Any] = dict(z_dim=512, w_dim=512, c_dim=0, img_resolution=256, img_channels=3,
                                mapping_kwargs=dict(num_layers=8),
                                synthesis_kwargs=dict(channel_base=16384, channel_max=512))
MEMORY_G_KWARGS: dict[str, Any] = dict(G_KWARGS, img_resolution=1024,
                                       synthesis_kwargs=dict(channel_base=32768, channel_max=512))  # FFHQ-1024 shape
OVERHEAD_BATCH = 4
MEMORY_SEEDS = '0-1'  # at batch 1 per seed the peak does not grow with the number of seeds
OVERHEAD_GOAL = 0.10  # recording all blocks costs at most 10 % over a plain forward
MEMORY_GOAL = 1.5     # activations --blocks all peaks at most 1.5x plain generate of the same seeds (batch 1)


def build_generator(seed: int = SEED, kwargs: dict[str, Any] | None = None) -> torch.nn.Module:
    """A generator (paper256-scale unless `kwargs`) with random weights from `seed` (toRGB toned down, as in the
    demo network)."""
    torch.manual_seed(seed)
    G = Generator(**(kwargs or G_KWARGS))
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


def commands(network: Path, work: Path) -> dict[str, list[str]]:
    """The measured processes: loading alone, `generate` (default batch, and batch 1) and `activations --blocks
    all`, for the seeds `MEMORY_SEEDS`."""
    stylelens_cmd = [sys.executable, '-m', 'stylelens']
    seeds = ['--network', str(network), '--seeds', MEMORY_SEEDS, '--device', 'cpu', '--outdir']
    return dict(
        load=[sys.executable, '-c', f'import stylelens; stylelens.load_generator({str(network)!r}, progress=False)'],
        generate=stylelens_cmd + ['generate'] + seeds + [str(work / 'generate')],
        generate_batch1=stylelens_cmd + ['generate', '--batch', '1'] + seeds + [str(work / 'generate_batch1')],
        activations=stylelens_cmd + ['activations', '--blocks', 'all'] + seeds + [str(work / 'activations')],
    )


def measure_memory(work: Path) -> dict[str, Any]:
    """Peak RSS of loading alone, of `generate` (default batch, and batch 1) and of `activations --blocks all` for
    the same seeds, each in a fresh process reading the same G_ema-only snapshot of an FFHQ-1024-shaped G."""
    network = work / 'probes_ffhq1024.pkl'
    G = build_generator(SEED, MEMORY_G_KWARGS)
    dump_snapshot(dict(G_ema=G, training_set_kwargs=dict(resolution=G.img_resolution)), network)
    params = sum(p.numel() for p in G.parameters())
    del G
    rss, seconds = {}, {}
    for mode, cmd in commands(network, work).items():
        start = time.perf_counter()
        rss[mode] = command_peak_rss_kib(cmd)
        seconds[mode] = time.perf_counter() - start
    folder = work / 'activations'
    files = sum(1 for p in folder.rglob('*') if p.is_file())
    dumped = sum(p.stat().st_size for p in folder.rglob('*.npz'))
    ratio = rss['activations'] / rss['generate_batch1']
    return dict(seeds=MEMORY_SEEDS, resolution=1024, g_params=params, load_kib=rss['load'],
                generate_kib=rss['generate'], generate_batch1_kib=rss['generate_batch1'],
                activations_kib=rss['activations'], seconds=seconds, ratio=ratio,
                ratio_vs_default_batch=rss['activations'] / rss['generate'], goal=MEMORY_GOAL,
                met=ratio <= MEMORY_GOAL, files_written=files, npz_bytes=dumped)


def markdown(results: dict[str, Any]) -> str:
    """The results as a Markdown table, for bench_probes.md and the README."""
    o, m = results['overhead'], results['memory']
    mib = 1 / 1024
    verdict = {True: 'met', False: 'NOT met'}
    return '\n'.join([
        f"Probes (random weights, seed {SEED}; {o['threads']} torch threads, CPU; 1/5/15-min load average "
        f"{' / '.join(f'{x:.1f}' for x in results['load_average_start'])} at the start, "
        f"{' / '.join(f'{x:.1f}' for x in results['load_average_end'])} at the end).",
        '',
        '| measurement | plain | with probes | ratio | goal |',
        '|---|---|---|---|---|',
        f"| paper256 `G.synthesis`, batch {o['batch']}, recording all {o['blocks']} blocks (median of "
        f"{o['runs']}) | {o['plain_seconds']:.3f} s | {o['recorded_seconds']:.3f} s | {100 * o['overhead']:+.1f} % | "
        f"≤ +{100 * o['goal']:.0f} % ({verdict[o['met']]}) |",
        f"| … of which copying the {o['blocks']} block outputs, timed alone (median of {o['runs']}) | | "
        f"{o['copy_seconds']:.3f} s | {100 * o['copy_share']:+.1f} % | |",
        f"| 1024² (FFHQ-shaped, {m['g_params'] / 1e6:.1f} M parameters) peak RSS, `activations --blocks all "
        f"--seeds {m['seeds']}` vs `generate --batch 1` (load alone: {m['load_kib'] * mib:.0f} MiB) | "
        f"{m['generate_batch1_kib'] * mib:.0f} MiB | {m['activations_kib'] * mib:.0f} MiB | {m['ratio']:.2f}x | "
        f"≤ {m['goal']:.1f}x ({verdict[m['met']]}) |",
        '',
        f"`generate --seeds {m['seeds']}` at its default batch (all seeds in one batch) peaked at "
        f"{m['generate_kib'] * mib:.0f} MiB (activations: {m['ratio_vs_default_batch']:.2f}x that). The "
        f"activations run wrote {m['files_written']} files ({m['npz_bytes'] / 2 ** 20:.0f} MiB of .npz) in "
        f"{m['seconds']['activations']:.0f} s, one seed at a time, each block streamed to disk and freed, its "
        'figures drawn from the written files after the forward pass.',
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
        results['memory'] = measure_memory(Path(work))
    results['load_average_end'] = os.getloadavg()
    results['markdown'] = markdown(results)
    atomic_write_text(out_dir / 'bench_probes.json', json.dumps(results, indent=2) + '\n')
    atomic_write_text(out_dir / 'bench_probes.md', results['markdown'] + '\n')
    return results


def worker_probes(args: argparse.Namespace) -> dict[str, Any]:
    """The probe benchmark as a `--worker probes` process (it writes its own bench_probes.json / .md too)."""
    return run(Path(args.out), quick=args.quick)
