"""StyleGAN3's run-time operators in plain PyTorch: modulated convolution and the filtered leaky ReLU.

The filtered leaky ReLU follows the official definition step by step (bias, zero-insertion upsampling, padding,
FIR filter with gain up², leaky ReLU with gain, clamp, FIR filter, decimation), but computes it the cheap way:
upsampling is a strided depthwise transposed convolution (no multiplications with inserted zeros; in bf16 on CPUs,
where that kernel is slow, zeros are inserted and a plain depthwise convolution runs instead), decimation a
strided depthwise convolution (no discarded outputs), separable filters run one axis at a time, and on CPU the
activations stay channels_last, where oneDNN's depthwise kernels are fastest.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..stylegan2_ada.ops import layout_of


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     padding: int = 0, input_gain: torch.Tensor | None = None,
                     bias: torch.Tensor | None = None) -> torch.Tensor:
    """StyleGAN3 modulated convolution (weight and styles pre-normalised when demodulating), plus `bias`.

    A single sample convolves with its modulated (and demodulated) kernel, the bias fused into the convolution,
    as the official code does. A batch is computed as scale-inputs -> one shared-weight convolution for the
    whole batch -> scale-outputs, which equals convolving each sample with its own kernel; the demodulation
    and the bias are then applied in one fused pass over the output.
    """
    batch = x.shape[0]
    if demodulate:
        weight = weight * weight.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    scale = styles if input_gain is None else styles * input_gain
    dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt() if demodulate else None
    bias = bias.to(x.dtype) if bias is not None else None
    if batch == 1:
        factor = scale[0].reshape(1, -1, 1, 1)
        if dcoefs is not None:
            factor = factor * dcoefs[0].reshape(-1, 1, 1, 1)
        return F.conv2d(x, (weight * factor).to(x.dtype), bias=bias, padding=padding)
    y = F.conv2d(x * scale.to(x.dtype).reshape(batch, -1, 1, 1), weight.to(x.dtype), padding=padding)
    if dcoefs is not None:
        shift = bias.reshape(1, -1, 1, 1) if bias is not None else torch.zeros((), dtype=y.dtype, device=y.device)
        return torch.addcmul(shift, y, dcoefs.to(y.dtype).reshape(batch, -1, 1, 1))
    return y + bias.reshape(1, -1, 1, 1) if bias is not None else y


def _depthwise(f: torch.Tensor, channels: int, axis: int | None, dtype: torch.dtype) -> torch.Tensor:
    """A filter as a depthwise weight [C, 1, kh, kw]: along W (axis -1), along H (axis -2), or 2-D (None)."""
    f = f.to(dtype)
    if axis is None:
        return f[None, None].expand(channels, 1, *f.shape)
    shape = (channels, 1, 1, f.numel()) if axis == -1 else (channels, 1, f.numel(), 1)
    return f.reshape(shape[1:]).expand(shape)


def _crop(x: torch.Tensor, axis: int, lo: int, hi: int) -> torch.Tensor:
    """Remove `lo` samples from the start and `hi` from the end of `axis` (-1 or -2; negative values pad zeros)."""
    if lo == 0 and hi == 0:
        return x
    if lo >= 0 and hi >= 0:
        return x.narrow(axis, lo, x.shape[axis] - lo - hi)
    pad = [-lo, -hi, 0, 0] if axis == -1 else [0, 0, -lo, -hi]
    return F.pad(x, pad)


def _upsample_pass(x: torch.Tensor, weight: torch.Tensor, up: int, pads: dict[int, tuple[int, int]]) -> torch.Tensor:
    """Zero-insertion upsampling along the axes of `pads`, padding (negative = crop), true convolution.

    A stride-`up` transposed convolution yields the full convolution of the zero-inserted signal; the padding
    only decides which of its samples are kept: with K taps the output starts K - 1 - pad_lo samples in and
    stops K - up - pad_hi samples before the end. The common part of both crops is the transposed convolution's
    own padding, so it is never computed.
    """
    if x.dtype != torch.float32 and x.device.type == 'cpu':
        return _upsample_pass_zeros(x, weight, up, pads)
    crops = {axis: (weight.shape[axis] - 1 - lo, weight.shape[axis] - up - hi) for axis, (lo, hi) in pads.items()}
    common = {axis: max(min(crop), 0) for axis, crop in crops.items()}
    x = F.conv_transpose2d(x, weight, stride=[up if a in pads else 1 for a in (-2, -1)],
                           padding=[common.get(a, 0) for a in (-2, -1)], groups=x.shape[1])
    for axis, (lo, hi) in crops.items():
        x = _crop(x, axis, lo - common[axis], hi - common[axis])
    return x


def _upsample_pass_zeros(x: torch.Tensor, weight: torch.Tensor, up: int,
                         pads: dict[int, tuple[int, int]]) -> torch.Tensor:
    """`_upsample_pass` as the definition states it: zeros inserted and padded in one buffer, then a plain depthwise
    convolution. It multiplies the inserted zeros too, yet on CPUs it is ~5x faster than oneDNN's bf16 transposed
    depthwise convolution, which has no fast kernel."""
    shape, index = list(x.shape), [slice(None)] * x.dim()
    for axis, (lo, hi) in pads.items():
        length = x.shape[axis] * up
        shape[axis] = length + max(lo, 0) + max(hi, 0)
        index[axis] = slice(max(lo, 0), max(lo, 0) + length, up)
    z = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=layout_of(x)).zero_()
    z[tuple(index)] = x
    for axis, (lo, hi) in pads.items():
        z = _crop(z, axis, max(-lo, 0), max(-hi, 0))
    return F.conv2d(z, weight.flip([2, 3]), groups=x.shape[1])


def _upsample(x: torch.Tensor, f: torch.Tensor, up: int, padding: tuple[int, int, int, int],
              gain: float) -> torch.Tensor:
    """upfirdn2d's upsampling half: insert zeros, pad [x0, x1, y0, y1], convolve with `f` times `gain`."""
    channels = x.shape[1]
    pads = {-1: padding[:2], -2: padding[2:]}
    if f.ndim == 2:
        return _upsample_pass(x, _depthwise(f * gain, channels, None, x.dtype), up, pads)
    f = f * gain ** 0.5
    for axis in (-1, -2):
        x = _upsample_pass(x, _depthwise(f, channels, axis, x.dtype), up, {axis: pads[axis]})
    return x


def _downsample(x: torch.Tensor, f: torch.Tensor, down: int) -> torch.Tensor:
    """True convolution with `f` (no padding), keeping every `down`-th sample: a strided depthwise convolution."""
    channels = x.shape[1]
    flipped = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        return F.conv2d(x, _depthwise(flipped, channels, None, x.dtype), stride=down, groups=channels)
    x = F.conv2d(x, _depthwise(flipped, channels, -1, x.dtype), stride=(1, down), groups=channels)
    return F.conv2d(x, _depthwise(flipped, channels, -2, x.dtype), stride=(down, 1), groups=channels)


def filtered_lrelu(x: torch.Tensor, fu: torch.Tensor | None = None, fd: torch.Tensor | None = None,
                   b: torch.Tensor | None = None, up: int = 1, down: int = 1, padding: Sequence[int] = (0, 0, 0, 0),
                   gain: float = 2 ** 0.5, slope: float = 0.2, clamp: float | None = None) -> torch.Tensor:
    """Bias, upsample (`fu`, gain up²), leaky ReLU times `gain`, clamp, downsample (`fd`), as StyleGAN3 defines it.

    `padding` is [x0, x1, y0, y1] relative to the upsampled image; filters are 1-D (separable), 2-D or None
    (identity). The activation's gain is applied with the upsampling filter (leaky ReLU commutes with a positive
    gain), and the activation and clamp run in place when no gradient is recorded.
    """
    px0, px1, py0, py1 = (int(p) for p in padding)
    if b is not None:
        x = x + b.to(x.dtype).reshape(1, -1, 1, 1)
    if fu is None and up == 1:
        x = _crop(_crop(x, -1, -px0, -px1), -2, -py0, -py1)
        x = x * gain if gain != 1 or b is None else x  # a fresh tensor either way: the in-place steps below
    else:
        fu = fu if fu is not None else torch.ones([1], device=x.device)
        x = _upsample(x, fu, up, (px0, px1, py0, py1), gain * up * up)
    in_place = not (torch.is_grad_enabled() and x.requires_grad)
    if slope != 1:
        x = F.leaky_relu_(x, slope) if in_place else F.leaky_relu(x, slope)
    if clamp is not None and clamp >= 0:
        x = x.clamp_(-clamp, clamp) if in_place else x.clamp(-clamp, clamp)
    if fd is not None or down > 1:
        x = _downsample(x, fd if fd is not None else torch.ones([1], device=x.device), down)
    return x
