"""The roofline: how fast this machine runs the benchmark network's own convolutions, alone, in fp32 and bf16, on
NCHW and channels_last tensors, at batch 1 and 8. Every other figure of the bench is reported as a fraction of it.

Each distinct convolution of `G.synthesis` (the 3x3 convs, the stride-2 transposed 3x3 convs of the upsampling
layers at their input resolution, the 1x1 toRGB convs) is timed as a plain `F.conv2d` / `F.conv_transpose2d` on
random tensors with the weight prepared once in the input's layout. The roofline time of a pass is the sum over the
layers of the faster layout; no modulation, FIR filter, bias, noise or activation is in it, so a synthesis pass
cannot be faster and its fraction says how much of its time goes to anything but convolution arithmetic. The
synthesis worker (`stylelens.bench.ops`) times roofline passes in alternation with its synthesis calls.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Any, NamedTuple

from stylelens.bench.timing import median

LAYOUTS = ('nchw', 'channels_last')


class ConvShape(NamedTuple):
    """One convolution as synthesis runs it: transposed (stride 2) or plain, channels, kernel, input resolution."""

    transposed: bool
    in_channels: int
    out_channels: int
    kernel: int
    resolution: int  # of the input

    def flops(self, batch: int) -> int:
        """2 FLOPs per multiply-add, counted where the kernel is applied (the input pixels for a transposed conv)."""
        return 2 * self.out_channels * self.in_channels * self.kernel ** 2 * self.resolution ** 2 * batch

    def label(self) -> str:
        """E.g. '3x3 512→256 at 32² (transposed, 2× up)'."""
        kind = ' (transposed, 2× up)' if self.transposed else ''
        return f'{self.kernel}x{self.kernel} {self.in_channels}→{self.out_channels} at {self.resolution}²{kind}'


def synthesis_convolutions(G: Any) -> Counter:
    """How often each convolution shape runs in one `G.synthesis` pass (from the module shapes)."""
    shapes: Counter = Counter()
    for res in G.synthesis.block_resolutions:
        block = getattr(G.synthesis, f'b{res}')
        for name in ('conv0', 'conv1', 'torgb'):
            layer = getattr(block, name, None)
            if layer is None:
                continue
            out_ch, in_ch, k, _ = layer.weight.shape
            up = getattr(layer, 'up', 1)
            shapes[ConvShape(up > 1, in_ch, out_ch, k, res // up)] += 1
    return shapes


class Roofline:
    """Every distinct convolution of one synthesis pass at one batch size and dtype, inputs and weights prepared in
    both layouts; `measure()` runs each once and returns its seconds, so rounds can alternate with synthesis calls
    and both see the same machine."""

    def __init__(self, shapes: Counter, batch: int, dtype: str) -> None:
        import torch

        self.shapes, self.batch, self.dtype = shapes, batch, dtype
        torch_dtype = dict(fp32=torch.float32, bf16=torch.bfloat16)[dtype]
        generator = torch.Generator().manual_seed(0)
        self.tensors = {}
        for shape in shapes:
            x = torch.randn([batch, shape.in_channels, shape.resolution, shape.resolution], generator=generator)
            w = torch.randn(([shape.in_channels, shape.out_channels] if shape.transposed else
                             [shape.out_channels, shape.in_channels]) + [shape.kernel] * 2, generator=generator)
            for layout in LAYOUTS:
                fmt = torch.channels_last if layout == 'channels_last' else torch.contiguous_format
                self.tensors[shape, layout] = (x.to(torch_dtype).contiguous(memory_format=fmt),
                                               w.to(torch_dtype).contiguous(memory_format=fmt))
        self.measure()  # warm-up: oneDNN picks and caches its kernels on the first call of each shape

    def measure(self) -> dict[tuple[ConvShape, str], float]:
        """Seconds of one call of every convolution in every layout."""
        import torch
        import torch.nn.functional as F

        seconds = {}
        with torch.no_grad():
            for (shape, layout), (x, w) in self.tensors.items():
                start = time.perf_counter()
                if shape.transposed:
                    F.conv_transpose2d(x, w, stride=2)
                else:
                    F.conv2d(x, w, padding=shape.kernel // 2)
                seconds[shape, layout] = time.perf_counter() - start
        return seconds

    def summary(self, rounds: list[dict[tuple[ConvShape, str], float]]) -> dict[str, Any]:
        """Per layer the median seconds in each layout; for the pass the roofline seconds per image (faster layout
        per layer), its GFLOP/s, the GFLOP/s with every layer in one layout, and the best single layer's GFLOP/s."""
        layers = []
        for shape, count in self.shapes.items():
            row = dict(shape=shape._asdict(), label=shape.label(), count=count, flops=shape.flops(self.batch))
            for layout in LAYOUTS:
                row[layout] = median([r[shape, layout] for r in rounds])
            layers.append(row)
        flops = sum(r['flops'] * r['count'] for r in layers)
        per_layout = {layout: sum(r[layout] * r['count'] for r in layers) for layout in LAYOUTS}
        best = sum(min(r[layout] for layout in LAYOUTS) * r['count'] for r in layers)
        return dict(dtype=self.dtype, batch=self.batch, rounds=len(rounds), flops_per_image=flops / self.batch,
                    seconds_per_image=best / self.batch, gflops=flops / best / 1e9,
                    gflops_by_layout={k: flops / v / 1e9 for k, v in per_layout.items()},
                    best_layer_gflops=max(r['flops'] / min(r[layout] for layout in LAYOUTS) / 1e9 for r in layers),
                    layers=layers)


def collect(synthesis: list[dict[str, Any]]) -> dict[str, Any]:
    """The roofline entries the synthesis workers measured, by '{dtype} batch {N}'."""
    return {'summary': {f'{r["precision"]} batch {r["batch"]}': r['roofline'] for r in synthesis
                        if r.get('roofline')}}


def fraction(roofline: dict[str, Any] | None, dtype: str, batch: int, seconds_per_image: float) -> float | None:
    """The share of `seconds_per_image` that the roofline's convolutions alone would take (None if not measured)."""
    if not roofline:
        return None
    entry = roofline['summary'].get(f'{dtype} batch {batch}')
    return entry['seconds_per_image'] / seconds_per_image if entry else None
