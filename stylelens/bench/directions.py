"""Benchmark of the direction and patching speed goals (fixed-seed random weights, in-process):
(a) SeFa on an FFHQ-1024-shaped StyleGAN2 generator (every convolution affine, 512-wide w), median of 7 calls;
(b) activation patching of every block of a paper256-scale generator for one pair of seeds (the clean run recorded,
the patched runs batched), median of 3.

`python -m stylelens.bench.directions [--out bench.json]` prints a Markdown table (and writes the JSON).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import torch

from stylelens.bench.timing import median, seconds
from stylelens.causes.metrics import parse_metric
from stylelens.causes.patching import patch
from stylelens.directions.sefa import sefa
from stylelens.generation import seeds_to_ws
from stylelens.outputs import atomic_write_text
from stylelens.vendor.stylegan2_ada.networks import Generator


def generator(resolution: int, channel_base: int, seed: int) -> torch.nn.Module:
    """A StyleGAN2 generator of official shape with seeded random weights, in eval mode."""
    torch.manual_seed(seed)
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
                  mapping_kwargs=dict(num_layers=8), synthesis_kwargs=dict(channel_base=channel_base,
                                                                           channel_max=512, conv_clamp=256))
    return G.eval().requires_grad_(False)


def run() -> dict[str, Any]:
    """The measurements, with the settings they ran under."""
    G = generator(1024, 32768, 1024)
    sefa(G)  # warm-up: first use of the LAPACK routines
    sefa_times, sefa_cpu = [], []
    for _ in range(7):
        cpu = time.process_time()
        sefa_times.append(seconds(lambda: sefa(G)))
        sefa_cpu.append(time.process_time() - cpu)
    rows = sum(layer.affine.weight.shape[0] for name, layer in G.synthesis.named_modules()
               if name.endswith(('conv0', 'conv1')))
    G = generator(256, 16384, 256)
    ws = seeds_to_ws(G, [1, 2])
    metric = parse_metric('pixels', 256)
    patch(G, ws[:1], ws[1:], 'blocks', metric)  # warm-up
    patch_times = [seconds(lambda: patch(G, ws[:1], ws[1:], 'blocks', metric, batch_size=8)) for _ in range(3)]
    return dict(sefa_1024=dict(median_s=median(sefa_times), runs=sefa_times, cpu_median_s=median(sefa_cpu),
                                affine_rows=rows, w_dim=512),
                patch_256_blocks=dict(median_s=median(patch_times), runs=patch_times, points=7, batch=8),
                threads=torch.get_num_threads(), torch=torch.__version__, load_average=os.getloadavg(),
                date=time.strftime('%Y-%m-%d'))


def markdown(result: dict[str, Any]) -> str:
    """The results as a Markdown table."""
    s, p = result['sefa_1024'], result['patch_256_blocks']
    load = ', '.join(f'{x:.1f}' for x in result['load_average'])
    return '\n'.join([
        '| measurement | median wall (s) | goal |', '|---|---:|---|',
        f"| SeFa, FFHQ-1024-shaped StyleGAN2 ({s['affine_rows']} affine rows x {s['w_dim']}; CPU time "
        f"{s['cpu_median_s']:.3f} s) | {s['median_s']:.3f} | < 1 s |",
        f"| patch every block (7) of a paper256-scale generator, one pair, batch {p['batch']} | {p['median_s']:.2f} "
        f"| < 60 s |", f"\n{result['threads']} torch threads, load average {load} at the end.", ''])


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=None, help='Write the numbers as JSON here.')
    args = parser.parse_args()
    measured = run()
    if args.out:
        atomic_write_text(args.out, json.dumps(measured, indent=2) + '\n')
    sys.stdout.write(markdown(measured))
