"""The report: bench.md, the README-ready Markdown of bench.json, one short paragraph and table per measurement."""
from __future__ import annotations

from typing import Any

from stylelens.bench.generate import (
    MIX_COLS,
    MIX_ROWS,
    MIX_STYLES,
    OFFICIAL_GENERATE_SECONDS,
    OFFICIAL_MIX_SECONDS,
    OFFICIAL_SECONDS_PER_IMAGE_BATCH1,
)
from stylelens.bench.timing import CONTENDED_CPUS


def fmt(value: float, digits: int = 2) -> str:
    """A number with fixed decimals."""
    return f'{value:.{digits}f}'


def mark(runs: dict[str, Any]) -> str:
    """'*' where some kept runs were disturbed by other processes."""
    return '*' if runs.get('disturbed') else ''


def render_markdown(results: dict[str, Any]) -> str:
    """The README-ready Markdown: one short paragraph and table per measurement."""
    m, s = results['machine'], results['settings']
    load = ' / '.join(', '.join(f'{x:.1f}' for x in la) for la in (m['load_average'], results['load_average_end'])
                      if la)
    lines = [
        f'paper256-scale StyleGAN2 generator (256², z = w = 512, 8 mapping layers, channel_base 16384, '
        f'{results["network"]["g_params"] / 1e6:.1f} M parameters, random weights), {results["mode"]} run of '
        f'`python -m stylelens.bench` on {m["cpu_model"]} ({m["usable_cpus"]} CPUs), torch {m["torch"]["version"]} '
        f'({m["torch"]["threads"]} threads, {m["torch"]["cpu_capability"]}), Python {m["python"]}, '
        f'{m["date_utc"][:10]}. Load average (1/5/15 min) at start / end: {load}. * = some kept runs had other '
        f'processes using ≥ {CONTENDED_CPUS} CPU'
        + (' (disturbed runs were repeated first, up to as many again).' if s['retry_disturbed'] else '.'),
        '',
        f'**Whole process**: `stylelens generate --network paper256.pkl --seeds 0-7 --device cpu` (8 PNGs), wall '
        f'clock, median of {s["process_runs"]} runs. Official: {OFFICIAL_GENERATE_SECONDS} s (NVIDIA generate.py on '
        f'the same CPU, fp32).',
        '',
        '| precision | batch | median (s) | min – max (s) | vs official |',
        '|---|---:|---:|---:|---:|',
    ]
    for r in results['generate']:
        lines.append(f'| {r["precision"]} | {r["batch"]} | {fmt(r["median_seconds"])}{mark(r)} | '
                     f'{fmt(min(r["seconds"]))} – {fmt(max(r["seconds"]))} | '
                     f'{fmt(r["speedup_vs_official"])}× faster |')
    flops = results['synthesis'][0]['flops']
    lines += [
        '',
        f"**Synthesis in-process**: `G.synthesis(ws, noise_mode='const')` without autograd, median of "
        f'{s["synthesis_runs"]} calls after a warm-up, one fresh process per row. GFLOP/s count '
        f'{flops["executed"] / 1e9:.1f} GFLOP per image: the convolution FLOPs from the module shapes, '
        f'2·out·in·k²·H·W at the resolution where each conv runs ({flops["nominal"] / 1e9:.1f} GFLOP if the '
        f'stride-2 transposed convs were counted at output resolution). Peak RSS is `ru_maxrss` while synthesising; '
        f'Δ is above the RSS with the generator loaded. Official: {OFFICIAL_SECONDS_PER_IMAGE_BATCH1} s per image '
        f'at batch 1.',
        '',
        '| precision | batch | s per call | s per image | images/s | GFLOP/s | peak RSS (MiB) | Δ RSS (MiB) |',
        '|---|---:|---:|---:|---:|---:|---:|---:|',
    ]
    for r in results['synthesis']:
        per_image = r['median_seconds'] / r['batch']
        lines.append(f'| {r["precision"]} | {r["batch"]} | {fmt(r["median_seconds"], 3)}{mark(r)} | '
                     f'{fmt(per_image, 3)} | {fmt(1 / per_image)} | {fmt(flops["executed"] / per_image / 1e9, 0)} | '
                     f'{fmt(r["peak_rss_mib"], 0)} | {fmt(r["peak_delta_mib"], 0)} |')
    lines += [
        '',
        f'**Start-up**: fresh interpreters, median of {s["import_runs"]}. Loading is '
        f'`stylelens.load_generator(\'paper256.pkl\')` (G_ema out of a {results["network"]["bytes"] / 2 ** 20:.0f} '
        f'MiB G + D + G_ema snapshot), median over the synthesis processes.',
        '',
        '| step | median (s) |',
        '|---|---:|',
    ]
    for name, r in results['imports'].items():
        lines.append(f'| {name} | {fmt(r["median_seconds"], 3)}{mark(r)} |')
    lines.append(f'| `load_generator(\'paper256.pkl\')` | {fmt(results["load_seconds"], 3)} |')
    stages = results['stages']
    lines += [
        '',
        f'**Where one generate run goes**: its steps ({stages["precision"]}, batch {stages["batch"]}) timed one by '
        f'one in a fresh process, median of {s["stage_runs"]}; the whole-process time beyond their sum is '
        f'interpreter start-up, click and exit.',
        '',
        '| step | s |',
        '|---|---:|',
    ]
    for name, seconds in stages['stages'].items():
        lines.append(f'| {name} | {fmt(seconds)} |')
    lines.append(f'| **sum** | **{fmt(sum(stages["stages"].values()))}** |')
    lines += [
        '',
        '**Modulated convolution**: ours (scale the inputs by the styles, one shared-weight convolution for the '
        'whole batch, scale the outputs by the demodulation coefficients), on NCHW and on channels_last '
        'activations, against the fused form the official code runs in eval mode (per-sample modulated kernels in '
        'one grouped convolution, groups = batch; NCHW, as it folds the batch into the channels), fp32, median of '
        f'{s["modconv_runs"]} calls; the largest difference between the outputs as a check.',
        '',
        '| layer | batch | ours, NCHW (ms) | ours, channels_last (ms) | grouped (ms) | grouped / best ours '
        '| max abs diff |',
        '|---|---:|---:|---:|---:|---:|---:|',
    ]
    for r in results['modconv']['results']:
        size = (f'{r["in_resolution"]}² → {r["resolution"]}² (2× up)' if r['up'] > 1 else f'{r["resolution"]}²')
        what = f'{r["layer"]}: {r["in_channels"]}→{r["out_channels"]}, {size}'
        ours, ours_cl, grouped = r['ours'], r['ours_channels_last'], r['grouped']
        best = min(ours['median_seconds'], ours_cl['median_seconds'])
        lines.append(f'| {what} | {r["batch"]} | {fmt(ours["median_seconds"] * 1e3, 1)}{mark(ours)} | '
                     f'{fmt(ours_cl["median_seconds"] * 1e3, 1)}{mark(ours_cl)} | '
                     f'{fmt(grouped["median_seconds"] * 1e3, 1)}{mark(grouped)} | '
                     f'{fmt(grouped["median_seconds"] / best)}× | {r["max_abs_diff"]:.1e} |')
    mix = results['mix']
    lines += [
        '',
        f'**Style mixing**: whole-process `stylelens mix --rows {MIX_ROWS} --cols {MIX_COLS} --styles {MIX_STYLES}` '
        f'(6 sources + 9 cells, batch 8) against a one-cell-at-a-time loop with the same networks (each source and '
        f'cell its own batch-1 forward, as style_mixing.py does), median of {s["process_runs"]}. Official '
        f'style_mixing.py: {OFFICIAL_MIX_SECONDS} s on the same CPU.',
        '',
        '| run | median (s) | vs one-at-a-time loop | vs official |',
        '|---|---:|---:|---:|',
        f'| one-cell-at-a-time loop, fp32 | {fmt(mix["loop_fp32"]["median_seconds"])}{mark(mix["loop_fp32"])} | 1.00× '
        f'| {fmt(OFFICIAL_MIX_SECONDS / mix["loop_fp32"]["median_seconds"])}× faster |',
    ]
    for name, label in (('mix_fp32', '`stylelens mix`, fp32'), ('mix_bf16', '`stylelens mix --precision bf16`')):
        r = mix[name]
        lines.append(f'| {label} | {fmt(r["median_seconds"])}{mark(r)} | {fmt(r["speedup_vs_loop"])}× faster | '
                     f'{fmt(r["speedup_vs_official"])}× faster |')
    if results.get('probes'):
        lines += ['', '**Probes** (`stylelens.bench.probes`):', '', results['probes']['markdown']]
    if results.get('training'):
        lines += ['', results['training']['markdown']]
    return '\n'.join(lines) + '\n'
