"""Projection speed: steps per second of `stylelens.projection.project` (NVIDIA's projector.py algorithm) on the
paper256-scale benchmark generator, on one device, each case in a fresh process: W with the LPIPS loss in fp32 and
bf16, W+ with LPIPS, and W with the pixel loss. Given a patched NVIDIA checkout, its own `projector.project()` runs
side by side on the same network file, with the same VGG16 arithmetic (see `OFFICIAL_SNIPPET`).

The VGG16 weights are seeded random ones (speed does not depend on their values; NVIDIA's vgg16.pt is not needed).
Steps per second count only steps after `WARMUP_STEPS` (the first ones create oneDNN kernels); the setup (W
statistics from 10,000 mapped samples, copies) is reported apart. `run(network, out_dir, quick)` returns the numbers
with a Markdown table under 'markdown'; `python -m stylelens.bench.projection --network FILE` runs it alone.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from stylelens.bench.official import Checkout, check_checkout
from stylelens.bench.timing import busy_cpu_seconds, load_average, log, median, run_json, self_cpu_seconds

WARMUP_STEPS = 3
TIMED_STEPS = {True: 5, False: 15}  # quick, full
VGG_SEED = 16
TARGET_SEED = 0
GOAL = 2.0  # per step, against NVIDIA's projector on the same CPU (issue 16)


@dataclass(frozen=True)
class Case:
    """One measured configuration: the space, the loss and the precision."""

    space: str
    loss: str
    precision: str

    @property
    def label(self) -> str:
        return f'{self.space.upper()}, {self.loss}, {self.precision}'


CASES = (Case('w', 'lpips', 'fp32'), Case('w', 'lpips', 'bf16'), Case('w+', 'lpips', 'fp32'),
         Case('w', 'mse', 'fp32'))
SIDE_BY_SIDE_CASES = CASES[:2]  # what `make bench` runs: NVIDIA's setting, in both precisions


def random_vgg16(seed: int = VGG_SEED) -> Any:
    """Our VGG16 feature network with seeded He-scaled weights and LPIPS weights in [0, 1)."""
    import torch

    from stylelens.projection.perceptual import VGG16Features

    gen = torch.Generator().manual_seed(seed)
    model = VGG16Features()
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            scale = (2 / tensor[0].numel()) ** 0.5 if name.endswith('weight') else 0.1
            tensor.copy_(torch.randn(tensor.shape, generator=gen) * scale)
        for weight in model.lpips_weights():
            weight.copy_(torch.rand(weight.shape, generator=gen))
    return model.eval().requires_grad_(False)


def target_image(G: Any) -> Any:
    """The generator's own image of `TARGET_SEED` (const noise), uint8 [H, W, C]: something it can approach."""
    from stylelens.generation import seeds_to_ws, synthesize
    from stylelens.outputs import to_uint8

    return to_uint8(synthesize(G, seeds_to_ws(G, [TARGET_SEED])))[0]


def measure_case(network: Path, case: Case, steps: int, device_name: str) -> dict[str, Any]:
    """Project with `case` for WARMUP_STEPS + `steps` steps in this process; steps per second over the timed ones."""
    import torch

    from stylelens.bench.timing import apply_runtime_tuning, peak_rss_mib
    from stylelens.devices import pick_device
    from stylelens.loading.network import load_generator
    from stylelens.projection.objectives import make_objective
    from stylelens.projection.projector import ProjectionSettings, project

    device = pick_device(device_name)
    G = load_generator(network, device=device)
    apply_runtime_tuning(device)
    target = target_image(G)
    features = random_vgg16() if case.loss != 'mse' else None
    objective = make_objective(case.loss, target, features, device)
    settings = ProjectionSettings(steps=WARMUP_STEPS + steps, space=case.space, precision=case.precision)
    busy, own = busy_cpu_seconds(), self_cpu_seconds()
    result = project(G, objective, settings)
    timed = result.step_seconds[WARMUP_STEPS:]
    wall = result.setup_seconds + sum(result.step_seconds)
    busy_after = busy_cpu_seconds()
    others = None if busy is None or busy_after is None else \
        max(0.0, (busy_after - busy - (self_cpu_seconds() - own)) / wall)
    return dict(case=asdict(case), steps=len(timed), steps_per_second=len(timed) / sum(timed),
                median_step_seconds=median(timed), first_steps_seconds=result.step_seconds[:WARMUP_STEPS],
                setup_seconds=result.setup_seconds, final_dist=result.history['dist'][-1],
                threads=torch.get_num_threads(), peak_rss_mib=peak_rss_mib(), other_cpus=others)


# Runs in an official checkout (its folder first on sys.path) with a JSON config as argv[1]: NVIDIA's project() on
# the network file, projecting the network's own image of TARGET_SEED, with two substitutions that bench.md states.
# (1) vgg16.pt is never opened: `torch.jit.load` returns stylelens's VGG16 with the benchmark's random weights,
# called as projector.py calls vgg16.pt (images in [0, 255], returning the LPIPS embedding). (2) G.synthesis gets
# force_fp32=True, as the shared CPU patch does for generate.py (fp16 on a CPU is ~200x slower). Each step makes
# one synthesis call; the calls are timestamped.
OFFICIAL_SNIPPET = r"""
import contextlib, copy, json, sys, time, types
sys.path.insert(0, '.')
import numpy as np, torch
import legacy, projector
from stylelens.bench.projection import random_vgg16
from stylelens.projection.perceptual import PerceptualDistance

cfg = json.loads(sys.argv[1])
with open(cfg['network'], 'rb') as f:
    G = legacy.load_network_pkl(f)['G_ema'].requires_grad_(False)

class VGG(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.distance = PerceptualDistance(random_vgg16(), learned=True)

    def forward(self, img, resize_images=False, return_lpips=True):
        return self.distance.embed(img / 127.5 - 1)

stamps = []

def timed_copy(G, *args):
    G = copy.deepcopy(G, *args)
    forward = G.synthesis.forward
    def timed(*a, **k):
        stamps.append(time.perf_counter())
        return forward(*a, **dict(k, force_fp32=True))
    G.synthesis.forward = timed
    return G

projector.dnnlib.util.open_url = lambda url, *a, **k: contextlib.nullcontext(url)
projector.torch.jit.load = lambda f, *a, **k: VGG()
projector.copy = types.SimpleNamespace(deepcopy=timed_copy)  # projector.py's own `copy` only
with torch.no_grad():
    ws = G.mapping(torch.from_numpy(np.random.RandomState(cfg['target_seed']).randn(1, G.z_dim)), None)
    target = (G.synthesis(ws, noise_mode='const', force_fp32=True)[0] * 127.5 + 128).clamp(0, 255).to(torch.uint8)
start = time.perf_counter()
projector.project(G, target, num_steps=cfg['steps'], device=torch.device('cpu'))
stamps.append(time.perf_counter())
steps = [b - a for a, b in zip(stamps, stamps[1:])]
timed = steps[cfg['warmup']:]
print(json.dumps(dict(steps=len(timed), steps_per_second=len(timed) / sum(timed), step_seconds=timed,
                      first_steps_seconds=steps[:cfg['warmup']], setup_seconds=stamps[0] - start,
                      threads=torch.get_num_threads())))
"""


def measure_official(checkout: Checkout, network: Path, steps: int) -> dict[str, Any]:
    """NVIDIA's projector.project() in the checkout (W, LPIPS, fp32), WARMUP_STEPS + `steps` steps."""
    config = dict(network=str(Path(network).resolve()), steps=WARMUP_STEPS + steps, warmup=WARMUP_STEPS,
                  target_seed=TARGET_SEED)
    out = run_json([sys.executable, '-c', OFFICIAL_SNIPPET, json.dumps(config)],
                   f"NVIDIA's projector in {checkout.path}", cwd=checkout.path)
    out['median_step_seconds'] = median(out.pop('step_seconds'))
    return dict(out, case=asdict(CASES[0]), implementation='NVIDIA projector.py')


def _child(network: Path, case: Case, steps: int, device: str) -> dict[str, Any]:
    """`measure_case` in a fresh interpreter (this module's --case mode), so each case owns its start-up state."""
    cmd = [sys.executable, '-m', 'stylelens.bench.projection', '--network', str(network), '--case',
           f'{case.space}:{case.loss}:{case.precision}', '--steps', str(steps), '--device', device]
    return run_json(cmd, f'projection benchmark case {case.label}')


def run(network: Path, out_dir: Path, quick: bool = False, device: str = 'cpu', official: Checkout | None = None,
        cases: Sequence[Case] = CASES) -> dict[str, Any]:
    """Each of `cases` in its own process (and NVIDIA's projector beside the first when `official` is given); writes
    `bench_projection.json` / `.md` into `out_dir` and returns the numbers with the table under 'markdown'."""
    from stylelens.outputs import atomic_write_text

    steps = TIMED_STEPS[quick]
    results: dict[str, Any] = dict(network=str(network), device=device, warmup_steps=WARMUP_STEPS, quick=quick,
                                   load_average_start=load_average(), cases=[], official=None)
    for case in cases:
        log(f'projection: {case.label}, {WARMUP_STEPS} + {steps} steps')
        results['cases'].append(dict(_child(network, case, steps, device), implementation='stylelens'))
    if official is not None:
        log("projection: NVIDIA's projector.py (W, lpips, fp32)")
        results['official'] = measure_official(official, network, steps)
    results['load_average_end'] = load_average()
    results['markdown'] = markdown(results)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / 'bench_projection.json', json.dumps(results, indent=2) + '\n')
    atomic_write_text(out_dir / 'bench_projection.md', results['markdown'] + '\n')
    return results


def markdown(results: dict[str, Any]) -> str:
    """The results as a Markdown table, with the ratio to NVIDIA's projector where it ran."""
    official = results.get('official')
    rows = [('NVIDIA projector.py', official)] if official else []
    rows += [(f"stylelens, {Case(**r['case']).label}", r) for r in results['cases']]
    lines = [f"Projection on `{Path(results['network']).name}` ({results['device']}, "
             f"{results['cases'][0]['threads']} torch threads), steps per second over "
             f"{results['cases'][0]['steps']} steps after {results['warmup_steps']} warm-up steps, one process per "
             f"row; VGG16 with seeded random weights. Load average at start / end: {results['load_average_start']} / "
             f"{results['load_average_end']}.", '',
             '| run | steps/s | median step (s) | first steps (s) | setup (s) | vs NVIDIA |',
             '|---|---:|---:|---:|---:|---:|']
    for label, r in rows:
        comparable = official and r['case']['space'] == 'w' and r['case']['loss'] == 'lpips'  # NVIDIA's setting
        ratio = f"{r['steps_per_second'] / official['steps_per_second']:.2f}×" if comparable else '—'
        first = ', '.join(f'{s:.2f}' for s in r['first_steps_seconds'])
        lines.append(f"| {label} | {r['steps_per_second']:.2f} | {r['median_step_seconds']:.3f} | {first} | "
                     f"{r['setup_seconds']:.1f} | {ratio} |")
    if official:
        ratios = {r['case']['precision']: r['steps_per_second'] / official['steps_per_second']
                  for r in results['cases'] if r['case']['space'] == 'w' and r['case']['loss'] == 'lpips'}
        met = ', '.join(f"{p}: {x:.2f}× ({'met' if x >= GOAL else 'not met'})" for p, x in ratios.items())
        lines += ['', f"Goal ≥ {GOAL:.0f}× per step in W with LPIPS: {met}. NVIDIA's "
                  "side ran with force_fp32=True and stylelens's VGG16 in place of vgg16.pt (same arithmetic, same "
                  'random weights), so the ratio measures the generator and the loop.']
    return '\n'.join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Options: the network, --quick, --device, --official DIR, --out; --case/--steps run one case (internal)."""
    parser = argparse.ArgumentParser(prog='python -m stylelens.bench.projection',
                                     description='Projection steps per second on the benchmark network.')
    parser.add_argument('--network', type=Path, required=True, help='network file (e.g. bench/results/paper256.pkl)')
    parser.add_argument('--out', type=Path, default=Path('bench/results'), help='results folder')
    parser.add_argument('--quick', action='store_true', help=f'{TIMED_STEPS[True]} timed steps instead of '
                        f'{TIMED_STEPS[False]}')
    parser.add_argument('--device', default='cpu', help='torch device (default: cpu)')
    parser.add_argument('--official', metavar='DIR', help='a patched NVlabs/stylegan2-ada-pytorch checkout whose '
                        'legacy loader reads --network (i.e. the network was built with its classes)')
    parser.add_argument('--case', help=argparse.SUPPRESS)
    parser.add_argument('--steps', type=int, default=TIMED_STEPS[False], help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the projection benchmark alone (or, with --case, one case in this process, printing its JSON)."""
    args = parse_args(argv)
    if args.case:
        print(json.dumps(measure_case(args.network, Case(*args.case.split(':')), args.steps, args.device)))
        return
    official = check_checkout(args.official, 'stylegan2-ada-pytorch') if args.official else None
    results = run(args.network, args.out, quick=args.quick, device=args.device, official=official)
    sys.stdout.write(results['markdown'] + '\n')


if __name__ == '__main__':
    main()
