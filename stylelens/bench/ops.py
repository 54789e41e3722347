"""In-process operator benchmarks: `G.synthesis` speed against its convolution FLOPs (the roofline view) with its
peak memory, and our shared-weight modulated convolution against the fused grouped form the official code runs.
"""
from __future__ import annotations

import argparse
import gc
import time
from typing import Any

from stylelens.bench.timing import (
    Runs,
    apply_runtime_tuning,
    discard,
    peak_rss_mib,
    repeat,
    reset_peak_rss,
    rss_mib,
    runs_dict,
)

# Layers of the modulated-convolution comparison: a 3x3 conv at 256x256, the 2x-upsampling conv into 256x256, and
# a 3x3 conv at 64x64.
MODCONV_LAYERS = ('b256.conv1', 'b256.conv0', 'b64.conv1')
MODCONV_BATCHES = (1, 8)


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


def worker_synthesis(args: argparse.Namespace) -> dict[str, Any]:
    """Load the generator (timed), record the peak memory of a first `G.synthesis(ws, noise_mode='const')`, then
    time synthesis calls in alternation with roofline passes (the same convolutions alone, `bench.roofline`)."""
    import torch

    import stylelens
    from stylelens.bench.roofline import Roofline, synthesis_convolutions
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
    peak = peak_rss_mib()
    roofline = Roofline(synthesis_convolutions(G), args.batch, args.precision) if device.type == 'cpu' else None
    runs, rounds = Runs(), []
    for _ in range(args.runs):
        one = repeat(run, 1, args.retry)
        runs.seconds += one.seconds
        runs.others += one.others
        runs.dropped_seconds += one.dropped_seconds
        if roofline is not None:
            rounds.append(roofline.measure())
    return dict(precision=args.precision, batch=args.batch, load_seconds=load_seconds, warmup_seconds=warmup_seconds,
                **runs_dict(runs), rss_after_load_mib=baseline, peak_rss_mib=peak, peak_delta_mib=peak - baseline,
                peak_was_reset=peak_was_reset, allocator_tuned=tuned, flops=conv_flops_per_image(G),
                threads=torch.get_num_threads(), roofline=roofline.summary(rounds) if roofline else None)


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
