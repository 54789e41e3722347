"""The report: bench.md, the README-ready Markdown of bench.json, one short paragraph and table per measurement."""
from __future__ import annotations

from typing import Any

from stylelens.bench.generate import MIX_COLS, MIX_ROWS, MIX_STYLES, NUM_SEEDS
from stylelens.bench.roofline import fraction
from stylelens.bench.timing import CONTENDED_CPUS

# The goals of issue 14: in-process synthesis as a share of the roofline, whole process against NVIDIA's scripts.
SYNTHESIS_GOALS = {'fp32': 0.85, 'bf16': 0.50}
PROCESS_GOALS = {('generate', 'fp32'): 1.5, ('mix', 'fp32'): 2.0, ('generate', 'bf16'): 2.0, ('mix', 'bf16'): 2.8}
SG3_GOAL = 2.0  # StyleGAN3-T per image at batch 1 against gen_images.py (issue 13)
MIX_IMAGES = len(MIX_ROWS.split(',')) * len(MIX_COLS.split(',')) + len(set(MIX_ROWS.split(',') + MIX_COLS.split(',')))


def fmt(value: float | None, digits: int = 2) -> str:
    """A number with fixed decimals ('' for None)."""
    return '' if value is None else f'{value:.{digits}f}'


def pct(value: float | None) -> str:
    """A share as a whole percentage ('' for None)."""
    return '' if value is None else f'{100 * value:.0f} %'


def mark(runs: dict[str, Any]) -> str:
    """'*' where some kept runs were disturbed by other processes."""
    return '*' if runs.get('disturbed') else ''


def verdict(value: float | None, goal: float) -> str:
    """'met' / 'NOT met' against a lower bound ('not measured' for None)."""
    return 'not measured' if value is None else ('met' if value >= goal else 'NOT met')


def ratio(r: dict[str, Any], key: str = 'speedup_vs_official') -> str:
    """'2.10× faster' (or 'slower') from a ratio key, '' where none was measured."""
    value = r.get(key)
    if value is None:
        return ''
    return f'{value:.2f}× faster' if value >= 1 else f'{1 / value:.2f}× slower'


def header(results: dict[str, Any]) -> list[str]:
    """Machine, network, date, load and whether NVIDIA's code ran alongside."""
    m, s, net = results['machine'], results['settings'], results['network']
    load = ' / '.join(', '.join(f'{x:.1f}' for x in la) for la in (m['load_average'], results['load_average_end'])
                      if la)
    official = results.get('official')
    side = (f"NVIDIA's scripts ran side by side from {official['checkout']} (commit {official['commit']} with the CPU "
            f'patch: device cpu, force_fp32), in alternation with ours, same machine, same run.' if official else
            "No official checkout was given (`make bench OFFICIAL=DIR`): absolute figures only, **no ratio to "
            "NVIDIA's code was measured**.")
    return [
        f'paper256-scale StyleGAN2 generator (256², z = w = 512, 8 mapping layers, channel_base 16384, '
        f'{net["g_params"] / 1e6:.1f} M parameters, random weights, built by {net["built_by"]}), {results["mode"]} '
        f'run of `python -m stylelens.bench` on {m["cpu_model"]} ({m["usable_cpus"]} CPUs; flags '
        f'{", ".join(m.get("cpu_flags") or ["unknown"])}; {m.get("bf16_units", "")}), torch {m["torch"]["version"]} '
        f'({m["torch"]["threads"]} threads, {m["torch"]["cpu_capability"]}), Python {m["python"]}, '
        f'{m["date_utc"][:10]}, {results["bench_seconds"] / 60:.1f} minutes. Load average (1/5/15 min) at start / '
        f'end: {load}. * = some kept runs had other processes using ≥ {CONTENDED_CPUS} CPU'
        + (' (disturbed runs were repeated first, up to as many again).' if s['retry_disturbed'] else '.'),
        '', side,
    ]


def roofline_section(results: dict[str, Any]) -> list[str]:
    """The machine's convolution throughput at the network's own layer shapes."""
    roof = results.get('roofline')
    if not roof:
        return []
    lines = [
        '', "**Roofline**: the network's own convolutions alone (every 3x3, stride-2 transposed 3x3 and 1x1 toRGB of "
        'one synthesis pass, plain `F.conv2d` / `F.conv_transpose2d`, weights prepared once), timed in the synthesis '
        'worker after each synthesis call, median per layer; the roofline time takes the faster layout per layer. '
        'Every "share of roofline" below is roofline time / measured time: what convolution arithmetic alone would '
        'have taken.', '',
        '| dtype | batch | roofline (s per image) | GFLOP/s | all NCHW | all channels_last | best single layer |',
        '|---|---:|---:|---:|---:|---:|---:|',
    ]
    for r in roof['summary'].values():
        by = r['gflops_by_layout']
        lines.append(f'| {r["dtype"]} | {r["batch"]} | {fmt(r["seconds_per_image"], 3)} | {fmt(r["gflops"], 0)} | '
                     f'{fmt(by["nchw"], 0)} | {fmt(by["channels_last"], 0)} | {fmt(r["best_layer_gflops"], 0)} |')
    return lines


def generate_section(results: dict[str, Any]) -> list[str]:
    """Whole-process generate, ours in each precision and batch size, and NVIDIA's generate.py."""
    g, s, roof = results['generate'], results['settings'], results.get('roofline')
    lines = [
        '', '**Whole process**: `stylelens generate --network NET --seeds 0-7 --device cpu --precision P --batch B` '
        '(8 PNGs)' + (" and NVIDIA's `generate.py --network NET --seeds 0-7` (one seed at a time, fp32)"
                       if 'official' in g['runs'] else '')
        + f', wall clock, median of {s["process_runs"]} runs in alternation after one untimed round. Share of '
        'roofline: 8 images × the roofline time per image at that precision and batch / wall time.', '',
        '| run | median (s) | min – max (s) | vs official | share of roofline |',
        '|---|---:|---:|---:|---:|',
    ]
    for name, r in g['runs'].items():
        precision, batch = ('fp32', 1) if name == 'official' else (name.split()[0], int(name.split()[-1]))
        label = 'NVIDIA generate.py, fp32' if name == 'official' else f'stylelens generate, {name}'
        share = fraction(roof, precision, batch, r['median_seconds'] / NUM_SEEDS)
        lines.append(f'| {label} | {fmt(r["median_seconds"])}{mark(r)} | {fmt(min(r["seconds"]))} – '
                     f'{fmt(max(r["seconds"]))} | {"(reference)" if name == "official" else ratio(r)} | '
                     f'{pct(share)} |')
    lines += images_line(g.get('images_vs_official'))
    return lines


def images_line(images: dict[str, Any] | None) -> list[str]:
    """One line on how far our PNGs are from the official ones."""
    if not images:
        return []
    parts = [f'{name}: max {d["max"]}, mean {d["mean"]:.2f}, 99th pct {d["p99"]:.0f}' for name, d in images.items()
             if d]
    return ['', f"PNGs vs NVIDIA's (uint8 levels, last run of each): {'; '.join(parts)}."] if parts else []


def mix_section(results: dict[str, Any]) -> list[str]:
    """Whole-process style mixing: ours, the one-cell-at-a-time loop, NVIDIA's style_mixing.py."""
    mix, s, roof = results['mix'], results['settings'], results.get('roofline')
    labels = dict(official='NVIDIA style_mixing.py, fp32', loop_fp32='one-cell-at-a-time loop (ours), fp32',
                  mix_fp32='`stylelens mix`, fp32', mix_bf16='`stylelens mix --precision bf16`')
    lines = [
        '', f'**Style mixing**: whole-process `--rows {MIX_ROWS} --cols {MIX_COLS} --styles {MIX_STYLES}` '
        f'({MIX_IMAGES} images: 6 sources + 9 cells; `stylelens mix` at batch 8; the loop renders each source and '
        f'cell at batch 1 as style_mixing.py does), median of {s["process_runs"]} runs in alternation.', '',
        '| run | median (s) | vs one-at-a-time loop | vs official | share of roofline |',
        '|---|---:|---:|---:|---:|',
    ]
    for name, r in mix['runs'].items():
        precision, batch = ('bf16' if name.endswith('bf16') else 'fp32'), (8 if name.startswith('mix') else 1)
        share = fraction(roof, precision, batch, r['median_seconds'] / MIX_IMAGES)
        lines.append(f'| {labels[name]} | {fmt(r["median_seconds"])}{mark(r)} | {ratio(r, "speedup_vs_loop")} | '
                     f'{"(reference)" if name == "official" else ratio(r)} | {pct(share)} |')
    return lines + images_line(mix.get('images_vs_official'))


def stylegan3_section(results: dict[str, Any]) -> list[str]:
    """NVIDIA's gen_images.py against ours on a StyleGAN3-T network, or why it was skipped."""
    sg3 = results.get('stylegan3')
    if not sg3:
        return ['', '**StyleGAN3**: not run (no `STYLEGAN3=DIR` checkout given).']
    if sg3.get('skipped'):
        return ['', f"**StyleGAN3**: skipped: stylelens does not load the StyleGAN3-T network built with NVIDIA's "
                    f'code yet ({sg3["skipped"]}).']
    lines = ['', '**StyleGAN3-T** (128², channel_base 8192, channel_max 256, built with the stylegan3 checkout): '
                 'NVIDIA `gen_images.py --seeds 0-3` (one image at a time) against `stylelens generate --seeds 0-3 '
                 '--batch B`, whole process, in alternation.', '', '| run | median (s) | vs official |', '|---|---:|---:|']
    for name, r in sg3['runs'].items():
        label = 'NVIDIA gen_images.py, fp32' if name == 'official' else f'stylelens generate, {name}'
        lines.append(f'| {label} | {fmt(r["median_seconds"])}{mark(r)} | '
                     f'{"(reference)" if name == "official" else ratio(r)} |')
    return lines + images_line(sg3.get('images_vs_official'))


def synthesis_section(results: dict[str, Any]) -> list[str]:
    """In-process synthesis: speed, GFLOP/s, share of the roofline, memory."""
    s, roof = results['settings'], results.get('roofline')
    flops = results['synthesis'][0]['flops']
    lines = [
        '', f"**Synthesis in-process**: `G.synthesis(ws, noise_mode='const')` without autograd, median of "
        f'{s["synthesis_runs"]} calls after a warm-up, one fresh process per row. GFLOP/s count '
        f'{flops["executed"] / 1e9:.1f} GFLOP per image (the convolution FLOPs where each conv runs; '
        f'{flops["nominal"] / 1e9:.1f} if the stride-2 transposed convs were counted at output resolution). Goals: '
        f'≥ {pct(SYNTHESIS_GOALS["fp32"])} of the roofline in fp32, ≥ {pct(SYNTHESIS_GOALS["bf16"])} in bf16. Peak '
        'RSS is `ru_maxrss` while synthesising; Δ is above the RSS with the generator loaded.', '',
        '| precision | batch | s per call | s per image | images/s | GFLOP/s | share of roofline | peak RSS (MiB) '
        '| Δ RSS (MiB) |',
        '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ]
    for r in results['synthesis']:
        per_image = r['median_seconds'] / r['batch']
        share = fraction(roof, r['precision'], r['batch'], per_image)
        lines.append(f'| {r["precision"]} | {r["batch"]} | {fmt(r["median_seconds"], 3)}{mark(r)} | '
                     f'{fmt(per_image, 3)} | {fmt(1 / per_image)} | {fmt(flops["executed"] / per_image / 1e9, 0)} | '
                     f'{pct(share)} ({verdict(share, SYNTHESIS_GOALS[r["precision"]])}) | '
                     f'{fmt(r["peak_rss_mib"], 0)} | {fmt(r["peak_delta_mib"], 0)} |')
    return lines


def startup_section(results: dict[str, Any]) -> list[str]:
    """Fresh-interpreter imports and the steps of one generate run."""
    s, stages = results['settings'], results['stages']
    lines = ['', f'**Start-up**: fresh interpreters, median of {s["import_runs"]}.', '', '| step | median (s) |',
             '|---|---:|']
    for name, r in results['imports'].items():
        lines.append(f'| {name} | {fmt(r["median_seconds"], 3)}{mark(r)} |')
    lines += [
        '', f'**Where one generate run goes**: its steps ({stages["precision"]}, batch {stages["batch"]}) timed one '
        f'by one in a fresh process, median of {s["stage_runs"]}; the whole-process time beyond their sum is '
        'interpreter start-up, click and exit.', '', '| step | s |', '|---|---:|',
    ]
    for name, seconds in stages['stages'].items():
        lines.append(f'| {name} | {fmt(seconds)} |')
    lines.append(f'| **sum** | **{fmt(sum(stages["stages"].values()))}** |')
    return lines


def modconv_section(results: dict[str, Any]) -> list[str]:
    """Our shared-weight modulated convolution against the grouped form."""
    lines = [
        '', '**Modulated convolution**: ours (scale the inputs by the styles, one shared-weight convolution for the '
        'whole batch, scale the outputs by the demodulation coefficients), on NCHW and on channels_last '
        'activations, against the fused form the official code runs in eval mode (per-sample modulated kernels in '
        'one grouped convolution, groups = batch; NCHW, as it folds the batch into the channels), fp32, median of '
        f'{results["settings"]["modconv_runs"]} calls; the largest difference between the outputs as a check.', '',
        '| layer | batch | ours, NCHW (ms) | ours, channels_last (ms) | grouped (ms) | grouped / best ours '
        '| max abs diff |',
        '|---|---:|---:|---:|---:|---:|---:|',
    ]
    for r in results['modconv']['results']:
        size = f'{r["in_resolution"]}² → {r["resolution"]}² (2× up)' if r['up'] > 1 else f'{r["resolution"]}²'
        ours, ours_cl, grouped = r['ours'], r['ours_channels_last'], r['grouped']
        best = min(ours['median_seconds'], ours_cl['median_seconds'])
        lines.append(f'| {r["layer"]}: {r["in_channels"]}→{r["out_channels"]}, {size} | {r["batch"]} | '
                     f'{fmt(ours["median_seconds"] * 1e3, 1)}{mark(ours)} | '
                     f'{fmt(ours_cl["median_seconds"] * 1e3, 1)}{mark(ours_cl)} | '
                     f'{fmt(grouped["median_seconds"] * 1e3, 1)}{mark(grouped)} | '
                     f'{fmt(grouped["median_seconds"] / best)}× | {r["max_abs_diff"]:.1e} |')
    return lines


def goals_section(results: dict[str, Any]) -> list[str]:
    """Every goal of the issue with its measured value and verdict on this machine."""
    roof, units = results.get('roofline'), results['machine'].get('bf16_units', '')
    lines = ['', '**Goals on this machine**:', '']
    for r in results['synthesis']:
        share = fraction(roof, r['precision'], r['batch'], r['median_seconds'] / r['batch'])
        lines.append(f'- synthesis {r["precision"]} batch {r["batch"]}: {pct(share)} of the roofline (goal ≥ '
                     f'{pct(SYNTHESIS_GOALS[r["precision"]])}): {verdict(share, SYNTHESIS_GOALS[r["precision"]])}')
    runs = dict(generate=results['generate']['runs'], mix=results['mix']['runs'])
    keys = {('generate', 'fp32'): 'fp32 batch 8', ('generate', 'bf16'): 'bf16 batch 8', ('mix', 'fp32'): 'mix_fp32',
            ('mix', 'bf16'): 'mix_bf16'}
    for (verb, precision), goal in PROCESS_GOALS.items():
        value = runs[verb].get(keys[verb, precision], {}).get('speedup_vs_official')
        note = f' (bf16 goals are set for CPUs with bf16 matrix units; this one has {units})' if precision == 'bf16' \
            else ''
        lines.append(f'- whole-process {verb} {precision} vs NVIDIA: '
                     f'{"no ratio measured" if value is None else f"{value:.2f}×"} (goal ≥ {goal}×): '
                     f'{verdict(value, goal)}{note}')
    sg3 = (results.get('stylegan3') or {}).get('runs', {}).get('fp32 batch 1', {}).get('speedup_vs_official')
    lines.append(f'- StyleGAN3-T fp32 batch 1 vs gen_images.py: '
                 f'{"no ratio measured" if sg3 is None else f"{sg3:.2f}×"} (goal ≥ {SG3_GOAL}×, issue 13): '
                 f'{verdict(sg3, SG3_GOAL)}')
    return lines


def render_markdown(results: dict[str, Any]) -> str:
    """The README-ready Markdown: one short paragraph and table per measurement."""
    lines = header(results)
    for section in (roofline_section, generate_section, mix_section, stylegan3_section, synthesis_section,
                    startup_section, modconv_section, goals_section):
        lines += section(results)
    if results.get('probes'):
        lines += ['', '**Probes** (`stylelens.bench.probes`):', '', results['probes']['markdown']]
    if results.get('projection'):
        lines += ['', '**Projection** (`stylelens.bench.projection`; `python -m stylelens.bench.projection` adds W+ '
                  'and the pixel loss):', '', results['projection']['markdown']]
    if results.get('directions'):
        lines += ['', '**Directions and patching** (`stylelens.bench.directions`):', '',
                  results['directions']['markdown']]
    if results.get('training'):
        lines += ['', results['training']['markdown']]
    return '\n'.join(lines) + '\n'
