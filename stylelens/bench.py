"""The stylelens benchmark: how fast `stylelens generate` is on a paper256-scale generator, and where time goes.

Run it as ``python -m stylelens.bench [--out DIR] [--quick]`` (``make bench`` writes to ``bench/results``). It

1. builds, once, a paper256-scale StyleGAN2 (fixed-seed random weights; G, D and G_ema in the official snapshot
   layout, written with `dump_snapshot`) at ``DIR/paper256.pkl``, so every timing goes through the real load path;
2. times whole ``stylelens generate --seeds 0-7`` processes (wall clock, median of N runs) in fp32 and bf16, at
   batch 1 and 8, against the official code's time on the same CPU;
3. times ``G.synthesis`` in-process (images/s, GFLOP/s from the convolution shapes, peak RSS), the generator load,
   the imports, and the steps of one generate run;
4. compares our shared-weight modulated convolution with the fused grouped-convolution formulation that the
   official code runs in eval mode, on real layers at 256x256 and 64x64;
5. runs the probe benchmark (`stylelens.bench_probes`) where it exists;
6. times `stylelens train` steps of the from-scratch DCGAN (32x32 and 64x64, batch 128) against a plain PyTorch
   training loop of the same networks, per precision (`stylelens.bench_training`).

Results go to ``DIR/bench.json`` (with machine information) and ``DIR/bench.md`` (Markdown tables for the
README, also printed on stdout); progress goes to stderr. Speed is measured here, never by timed tests.

Everything that imports torch runs in a fresh worker process (``--worker NAME``), so each measurement starts from
the same state and memory peaks belong to one configuration. Every timed run also records how much CPU *other*
processes used meanwhile (from /proc/stat); in a full run, a run disturbed by more than `CONTENDED_CPUS` is
repeated (at most as many extra runs as planned ones), and results that still include disturbed runs are marked.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

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

# --- The benchmark network: the official `paper256` configuration of train.py ---------------------------------------
NETWORK_SEED = 256
NETWORK_FILE = 'paper256.pkl'
G_KWARGS: dict[str, Any] = dict(z_dim=512, w_dim=512, c_dim=0, img_resolution=256, img_channels=3,
                                mapping_kwargs=dict(num_layers=8),
                                synthesis_kwargs=dict(channel_base=16384, channel_max=512, num_fp16_res=4,
                                                      conv_clamp=256))
D_KWARGS: dict[str, Any] = dict(c_dim=0, img_resolution=256, img_channels=3, channel_base=16384, channel_max=512,
                                num_fp16_res=4, conv_clamp=256, block_kwargs={}, mapping_kwargs={},
                                epilogue_kwargs=dict(mbstd_group_size=8))

SEEDS = '0-7'
NUM_SEEDS = 8
CONFIGS: tuple[tuple[str, int], ...] = (('fp32', 1), ('fp32', 8), ('bf16', 1), ('bf16', 8))
# Layers of the modulated-convolution comparison: a 3x3 conv at 256x256, the 2x-upsampling conv into 256x256, and
# a 3x3 conv at 64x64.
MODCONV_LAYERS = ('b256.conv1', 'b256.conv0', 'b64.conv1')
MODCONV_BATCHES = (1, 8)

# A timed run during which other processes used at least this many CPUs (on average) counts as disturbed.
CONTENDED_CPUS = 0.25


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


def log(message: str) -> None:
    """Progress line on stderr."""
    print(f'[bench {time.strftime("%H:%M:%S")}] {message}', file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    return float(statistics.median(values))


# --- Timing with a record of what else ran ------------------------------------------------------------------------

def busy_cpu_seconds() -> float | None:
    """CPU-seconds all CPUs have spent busy since boot (Linux /proc/stat), or None where unknown."""
    try:
        with open('/proc/stat') as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
        idle = ticks[3] + ticks[4]  # idle + iowait
        return (sum(ticks) - idle) / os.sysconf('SC_CLK_TCK')
    except (OSError, ValueError, IndexError):
        return None


def self_cpu_seconds() -> float:
    """User + system CPU time of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_cpu_seconds() -> float:
    """User + system CPU time of this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Runs:
    """Timed runs of one measurement: kept ones, and disturbed ones that were repeated (dropped)."""

    seconds: list[float] = field(default_factory=list)
    others: list[float | None] = field(default_factory=list)  # CPUs other processes used during each kept run
    dropped_seconds: list[float] = field(default_factory=list)
    dropped_others: list[float | None] = field(default_factory=list)

    @property
    def median(self) -> float:
        """Median seconds of the kept runs."""
        return median(self.seconds)

    @property
    def disturbed(self) -> int:
        """How many kept runs were disturbed by other processes."""
        return sum(1 for o in self.others if o is not None and o >= CONTENDED_CPUS)


def repeat(fn: Callable[[], float | None], runs: int, retry: bool,
           own_cpu: Callable[[], float] = self_cpu_seconds) -> Runs:
    """Time `fn` `runs` times (wall clock, or the seconds `fn` returns), noting other processes' CPU use meanwhile.

    `own_cpu` is the CPU time that belongs to the measured work (this process, or its children for commands). With
    `retry`, disturbed runs are dropped and repeated, at most `runs` times in all.
    """
    result = Runs()
    while len(result.seconds) < runs:
        busy0, own0, start = busy_cpu_seconds(), own_cpu(), time.perf_counter()
        reported = fn()
        wall = time.perf_counter() - start
        busy1, own1 = busy_cpu_seconds(), own_cpu()
        others = None if busy0 is None or busy1 is None else max(0.0, (busy1 - busy0 - (own1 - own0)) / wall)
        seconds = wall if reported is None else reported
        if retry and others is not None and others >= CONTENDED_CPUS and len(result.dropped_seconds) < runs:
            result.dropped_seconds.append(seconds)
            result.dropped_others.append(others)
            continue
        result.seconds.append(seconds)
        result.others.append(others)
    return result


def discard(fn: Callable[[], Any]) -> Callable[[], None]:
    """`fn` with its result dropped, for `repeat` (which reads a returned float as the time to record)."""
    def call() -> None:
        fn()
    return call


def runs_dict(runs: Runs) -> dict[str, Any]:
    """A `Runs` as JSON-ready numbers, with its median and disturbed count."""
    return dict(asdict(runs), median_seconds=runs.median, disturbed=runs.disturbed)


# ======================================================================================================================
# Workers: each runs in a fresh `python -m stylelens.bench --worker NAME` process and prints one JSON line.
# ======================================================================================================================

def rss_mib() -> float:
    """Current resident set size of this process in MiB (Linux /proc; falls back to the peak elsewhere)."""
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20
    except (OSError, ValueError, IndexError):
        return peak_rss_mib()


def peak_rss_mib() -> float:
    """Peak resident set size (`ru_maxrss`) in MiB: kilobytes on Linux, bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == 'darwin' else peak / 2 ** 10


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0: write 5 to /proc/self/clear_refs), so that `ru_maxrss`
    afterwards is the peak of what follows. False where that is not possible (the peak then includes loading)."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def apply_runtime_tuning(device: Any) -> bool:
    """Call `stylelens.devices.tune_cpu_allocator()` where it exists and the device is the CPU, so in-process numbers
    see the same allocator settings as `stylelens generate` (a hook for that tuning; False where it is absent)."""
    from stylelens import devices

    tune = getattr(devices, 'tune_cpu_allocator', None)
    if tune is None or getattr(device, 'type', str(device)) != 'cpu':
        return False
    tune()
    return True


def conv_flops_per_image(G: Any) -> dict[str, float]:
    """Convolution FLOPs of one synthesis pass, counted from the module shapes (2 FLOPs per multiply-add).

    Each conv counts 2·out·in·k·k·H·W at the resolution where it actually runs: the upsampling 3x3 convs are
    stride-2 transposed convolutions, which apply the kernel once per *input* pixel (a quarter of the count at
    output resolution, which is also given as `nominal`). toRGB 1x1 convs are included; the FIR filters, the
    mapping network and element-wise work are not.
    """
    executed = nominal = 0
    for block in (getattr(G.synthesis, f'b{res}') for res in G.synthesis.block_resolutions):
        for name in ('conv0', 'conv1'):
            layer = getattr(block, name, None)
            if layer is None:
                continue
            out_ch, in_ch, kh, kw = layer.weight.shape
            at_output = 2 * out_ch * in_ch * kh * kw * layer.resolution ** 2
            nominal += at_output
            executed += at_output // (layer.up ** 2)
        torgb = getattr(block, 'torgb', None)
        if torgb is not None:
            out_ch, in_ch, kh, kw = torgb.weight.shape
            flops = 2 * out_ch * in_ch * kh * kw * block.resolution ** 2
            nominal += flops
            executed += flops
    return dict(executed=float(executed), nominal=float(nominal))


def random_networks(G_kwargs: dict, D_kwargs: dict, seed: int, w_avg_samples: int = 4096) -> tuple:
    """G and D with seeded random weights, tuned so images are not flat: small noise strengths, toned-down toRGB
    weights, and a real w_avg (the mean of mapped samples) so truncation does something."""
    import torch

    from stylelens.vendor.stylegan2_ada.networks import Discriminator, Generator

    torch.manual_seed(seed)
    G = Generator(**G_kwargs)
    D = Discriminator(**D_kwargs)
    with torch.no_grad():
        for name, param in G.named_parameters():
            if name.endswith('noise_strength'):
                param.copy_(0.05 * torch.randn([]).abs())
            elif name.endswith('torgb.weight'):
                param.mul_(0.3)
        G.mapping.w_avg.copy_(G.mapping(torch.randn([w_avg_samples, G.z_dim]), None)[:, 0].mean(dim=0))
    return G.eval().requires_grad_(False), D.eval().requires_grad_(False)


def worker_build(args: argparse.Namespace) -> dict[str, Any]:
    """Build the paper256-scale snapshot (G, D, G_ema) from the fixed seed and write it in the official layout."""
    import copy

    from stylelens.loading.official_writer import dump_snapshot

    start = time.perf_counter()
    G, D = random_networks(G_KWARGS, D_KWARGS, NETWORK_SEED, w_avg_samples=1024)
    G_ema = copy.deepcopy(G)  # a separate copy, as in training snapshots, so the file holds three networks
    snapshot = dict(G=G, D=D, G_ema=G_ema, augment_pipe=None,
                    training_set_kwargs=dict(class_name=None, resolution=256, use_labels=False,
                                             note='stylelens benchmark network: random weights, not trained'))
    dump_snapshot(snapshot, args.network)
    return dict(seconds=time.perf_counter() - start, bytes=os.path.getsize(args.network),
                g_params=sum(p.numel() for p in G.parameters()), d_params=sum(p.numel() for p in D.parameters()))


def worker_synthesis(args: argparse.Namespace) -> dict[str, Any]:
    """Load the generator (timed), then time `G.synthesis(ws, noise_mode='const')` and record its peak memory."""
    import torch

    import stylelens
    from stylelens.devices import precision_context
    from stylelens.generation import seeds_to_ws

    device = torch.device(args.device)
    start = time.perf_counter()
    G = stylelens.load_generator(args.network, device=device, progress=False)
    load_seconds = time.perf_counter() - start
    ws = seeds_to_ws(G, list(range(args.batch)), device=device)
    tuned = apply_runtime_tuning(device)
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)

    def run() -> None:
        with torch.no_grad(), precision_context(args.precision, device):
            G.synthesis(ws, noise_mode='const')
        sync()

    gc.collect()
    baseline = rss_mib()
    peak_was_reset = reset_peak_rss()
    warmup_start = time.perf_counter()
    run()
    warmup_seconds = time.perf_counter() - warmup_start
    runs = repeat(run, args.runs, args.retry)
    peak = peak_rss_mib()
    return dict(precision=args.precision, batch=args.batch, load_seconds=load_seconds, warmup_seconds=warmup_seconds,
                **runs_dict(runs), rss_after_load_mib=baseline, peak_rss_mib=peak, peak_delta_mib=peak - baseline,
                peak_was_reset=peak_was_reset, allocator_tuned=tuned, flops=conv_flops_per_image(G),
                threads=torch.get_num_threads())


def worker_stages(args: argparse.Namespace) -> dict[str, Any]:
    """One `generate --seeds 0-7` done step by step in this fresh process, each step timed.

    Mirrors stylelens/cli/generate.py: import, open the network, map all seeds, synthesise in batches, convert and
    write the PNGs, write the manifest. The whole-process time minus the sum is interpreter start-up and click.
    """
    stages: dict[str, float] = {}
    start = time.perf_counter()
    import torch
    stages['import torch'] = time.perf_counter() - start
    start = time.perf_counter()
    from stylelens.cli.loaded import open_network
    from stylelens.devices import precision_context
    from stylelens.generation import seeds_to_ws
    from stylelens.outputs import ensure_outdir, save_png, seed_filename, to_uint8, write_manifest
    stages['import the rest of stylelens.cli.generate'] = time.perf_counter() - start

    start = time.perf_counter()
    loaded = open_network(str(args.network), args.device)
    stages['load the generator (unpickle + rebuild)'] = time.perf_counter() - start
    seeds = list(range(NUM_SEEDS))
    start = time.perf_counter()
    ws = seeds_to_ws(loaded.G, seeds, device=loaded.device)
    stages[f'mapping ({NUM_SEEDS} seeds)'] = time.perf_counter() - start
    apply_runtime_tuning(loaded.device)
    start = time.perf_counter()
    with torch.no_grad(), precision_context(args.precision, loaded.device):
        images = torch.cat([loaded.G.synthesis(ws[i:i + args.batch], noise_mode='const').float()
                            for i in range(0, NUM_SEEDS, args.batch)])
    stages[f'synthesis (batch {args.batch})'] = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix='stylelens-bench-') as tmp:
        out = ensure_outdir(Path(tmp) / 'out')
        start = time.perf_counter()
        for seed, image in zip(seeds, to_uint8(images)):
            save_png(image, out / seed_filename(seed))
        stages[f'to uint8 + write {NUM_SEEDS} PNGs'] = time.perf_counter() - start
        start = time.perf_counter()
        write_manifest(out, command='generate', options=dict(seeds=seeds), network=loaded.manifest())
        stages['manifest (network sha256, versions)'] = time.perf_counter() - start
    return dict(precision=args.precision, batch=args.batch, stages=stages)


def grouped_modulated_conv2d(x: Any, weight: Any, styles: Any, noise: Any, up: int, padding: int,
                             resample_filter: Any) -> Any:
    """Reference: the fused formulation, each sample's modulated, demodulated kernel in one grouped convolution.

    This is how the official code runs a modulated convolution in eval mode (`fused_modconv`): the batch is folded
    into the channels and the convolution (transposed, for upsampling layers) gets groups = batch. Written here
    only to be timed against ours; resampling uses our `conv2d_resample`.
    """
    from stylelens.vendor.stylegan2_ada.ops import conv2d_resample

    batch, in_ch, height, width = x.shape
    out_ch, _, kh, kw = weight.shape
    w = weight.unsqueeze(0) * styles.reshape(batch, 1, in_ch, 1, 1)  # [N, O, I, k, k]
    w = w * (w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    y = conv2d_resample(x.reshape(1, batch * in_ch, height, width), w.reshape(batch * out_ch, in_ch, kh, kw),
                        f=resample_filter, up=up, padding=padding, groups=batch, flip_weight=(up == 1))
    y = y.reshape(batch, out_ch, *y.shape[2:])
    return y + noise if noise is not None else y


def worker_modconv(args: argparse.Namespace) -> dict[str, Any]:
    """Time our `modulated_conv2d` (on NCHW and on channels_last activations) against the grouped formulation
    (on NCHW, its natural layout: it folds the batch into the channels) on real layers of the benchmark generator."""
    import torch

    import stylelens
    from stylelens.vendor.stylegan2_ada.ops import modulated_conv2d

    G = stylelens.load_generator(args.network, device='cpu', progress=False)
    apply_runtime_tuning(torch.device('cpu'))
    generator = torch.Generator().manual_seed(0)
    results = []
    with torch.no_grad():
        for layer_name in MODCONV_LAYERS:
            layer = G.synthesis.get_submodule(layer_name)
            in_res = layer.resolution // layer.up
            for batch in MODCONV_BATCHES:
                x = torch.randn([batch, layer.in_channels, in_res, in_res], generator=generator)
                x_cl = x.contiguous(memory_format=torch.channels_last)
                styles = layer.affine(torch.randn([batch, layer.w_dim], generator=generator))
                noise = layer.noise(batch, 'const', x.device)

                def ours(inputs: torch.Tensor) -> torch.Tensor:
                    return modulated_conv2d(inputs, layer.weight, styles, noise=noise, up=layer.up,
                                            padding=layer.padding, resample_filter=layer.resample_filter,
                                            flip_weight=(layer.up == 1))

                def grouped() -> torch.Tensor:
                    return grouped_modulated_conv2d(x, layer.weight, styles, noise, layer.up, layer.padding,
                                                    layer.resample_filter)

                reference = grouped()  # also the warm-up calls
                max_diff = max(float((ours(x) - reference).abs().max()), float((ours(x_cl) - reference).abs().max()))
                timings = dict(ours=repeat(discard(lambda: ours(x)), args.runs, args.retry),
                               ours_channels_last=repeat(discard(lambda: ours(x_cl)), args.runs, args.retry),
                               grouped=repeat(discard(grouped), args.runs, args.retry))
                results.append(dict(layer=layer_name, in_channels=layer.in_channels, out_channels=layer.out_channels,
                                    in_resolution=in_res, resolution=layer.resolution, up=layer.up, batch=batch,
                                    max_abs_diff=max_diff, **{k: runs_dict(v) for k, v in timings.items()}))
    return dict(results=results, threads=torch.get_num_threads())


def worker_probes(args: argparse.Namespace) -> dict[str, Any]:
    """The probe benchmark of `stylelens.bench_probes` (it writes its own bench_probes.json / .md too)."""
    from stylelens import bench_probes

    return bench_probes.run(Path(args.out), quick=args.quick)


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


WORKERS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    'build': worker_build, 'synthesis': worker_synthesis, 'stages': worker_stages, 'modconv': worker_modconv,
    'probes': worker_probes, 'mix_loop': worker_mix_loop,
}


# ======================================================================================================================
# The driver: runs the workers and the whole-process measurements, writes the results.
# ======================================================================================================================

def run_worker(name: str, network: Path | None = None, **options: Any) -> dict[str, Any]:
    """Run one worker in a fresh interpreter and return the JSON it prints on its last stdout line."""
    cmd = [sys.executable, '-m', 'stylelens.bench', '--worker', name]
    if network is not None:
        cmd += ['--network', str(network)]
    for key, value in options.items():
        flag = f'--{key.replace("_", "-")}'
        if isinstance(value, bool):
            cmd += [flag] if value else []
        else:
            cmd += [flag, str(value)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f'benchmark worker {name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ensure_network(out_dir: Path) -> tuple[Path, dict[str, Any], bool]:
    """The cached benchmark snapshot, built first if missing or built from a different configuration; also says
    whether it was just built."""
    path = out_dir / NETWORK_FILE
    sidecar = path.with_name(path.name + '.json')
    config = json.loads(json.dumps(dict(seed=NETWORK_SEED, G_kwargs=G_KWARGS, D_kwargs=D_KWARGS)))
    if path.is_file() and sidecar.is_file():
        info = json.loads(sidecar.read_text())
        if info.get('config') == config and info.get('bytes') == path.stat().st_size:
            log(f'using the cached {path}')
            return path, info, False
    log(f'building the paper256-scale snapshot (seed {NETWORK_SEED}) at {path}')
    built = run_worker('build', path)
    info = dict(config=config, **built)
    sidecar.write_text(json.dumps(info, indent=2) + '\n')
    log(f'built in {built["seconds"]:.1f} s: {built["bytes"] / 2 ** 20:.0f} MiB, G {built["g_params"] / 1e6:.1f} M '
        f'parameters, D {built["d_params"] / 1e6:.1f} M parameters')
    return path, info, True


def run_command(cmd: Sequence[str]) -> None:
    """Run a command that must succeed, discarding its output."""
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f'{" ".join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}')


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
    stylelens.cli.generate` (both timed inside the interpreter)."""
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


def machine_info() -> dict[str, Any]:
    """CPU model, cores, torch build and threads, versions, date and load, for bench.json."""
    cpu_model = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu_model = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    probe = ('import json, torch; print(json.dumps(dict(version=torch.__version__, threads=torch.get_num_threads(), '
             'interop_threads=torch.get_num_interop_threads(), mkldnn=torch.backends.mkldnn.is_available(), '
             'cpu_capability=torch.backends.cpu.get_cpu_capability())))')
    torch_info = json.loads(subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True,
                                           check=True).stdout)
    spec = importlib.util.find_spec('stylelens')
    return dict(
        cpu_model=cpu_model, logical_cpus=os.cpu_count(),
        usable_cpus=len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count(),
        torch=torch_info, python=platform.python_version(), platform=platform.platform(),
        stylelens_path=str(Path(spec.origin).parent) if spec and spec.origin else None,
        date_utc=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
        load_average=[round(x, 2) for x in os.getloadavg()] if hasattr(os, 'getloadavg') else None,
    )


# --- Markdown -----------------------------------------------------------------------------------------------------

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
        f'**Synthesis in-process**: `G.synthesis(ws, noise_mode=\'const\')` without autograd, median of '
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
        lines += ['', '**Probes** (`stylelens.bench_probes`):', '', results['probes']['markdown']]
    if results.get('training'):
        lines += ['', results['training']['markdown']]
    return '\n'.join(lines) + '\n'


# --- Orchestration ------------------------------------------------------------------------------------------------

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
    probes = None
    if importlib.util.find_spec('stylelens.bench_probes') is not None:
        log('probes (stylelens.bench_probes)')
        probes = run_worker('probes', out=out_dir, quick=mode == 'quick')
    log('training throughput: stylelens train steps vs a plain PyTorch loop (stylelens.bench_training)')
    from stylelens import bench_training  # here, not at the top: it imports this module's timing helpers
    training = bench_training.run(out_dir, quick=mode == 'quick', device=device)
    return dict(
        mode=mode, machine=machine, settings=asdict(settings), contended_cpus=CONTENDED_CPUS,
        network=dict(file=str(network), **network_info),
        official=dict(generate_seconds=OFFICIAL_GENERATE_SECONDS,
                      seconds_per_image_batch1=OFFICIAL_SECONDS_PER_IMAGE_BATCH1, source=OFFICIAL_SOURCE),
        generate=generate, mix=mix, synthesis=synthesis, load_seconds=median([r['load_seconds'] for r in synthesis]),
        imports=imports, stages=stages, modconv=modconv, probes=probes, training=training,
        load_average_end=[round(x, 2) for x in os.getloadavg()] if hasattr(os, 'getloadavg') else None,
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
        print(json.dumps(WORKERS[args.worker](args)))
        return
    settings, mode = (QUICK, 'quick') if args.quick else (FULL, 'full')
    results = run_benchmark(args.out, settings, mode, args.device)
    markdown = render_markdown(results)
    (args.out / 'bench.json').write_text(json.dumps(results, indent=2) + '\n')
    (args.out / 'bench.md').write_text(markdown)
    log(f'done in {results["bench_seconds"]:.0f} s: {args.out / "bench.json"}, {args.out / "bench.md"}')
    sys.stdout.write(markdown)


if __name__ == '__main__':
    main()
