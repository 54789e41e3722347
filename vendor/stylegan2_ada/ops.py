"""The low-level operators of StyleGAN2, in plain PyTorch: FIR resampling, bias + activation, resampling
convolution and modulated convolution.

Semantics (padding order, filter flip, gains) follow the official definitions exactly, so tensors loaded from
official pickles give the same numbers; the implementation is ours and needs no compiled extension.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence, Union

import torch
import torch.nn.functional as F

Padding = Union[int, Sequence[int]]


class Activation(NamedTuple):
    func: Callable[[torch.Tensor], torch.Tensor]
    def_gain: float


ACTIVATIONS: dict[str, Activation] = {
    'linear': Activation(lambda x: x, 1.0),
    'relu': Activation(F.relu, math.sqrt(2)),
    'lrelu': Activation(lambda x: F.leaky_relu(x, 0.2), math.sqrt(2)),
    'tanh': Activation(torch.tanh, 1.0),
    'sigmoid': Activation(torch.sigmoid, 1.0),
    'elu': Activation(F.elu, 1.0),
    'selu': Activation(F.selu, 1.0),
    'softplus': Activation(F.softplus, 1.0),
    'swish': Activation(lambda x: torch.sigmoid(x) * x, math.sqrt(2)),
}


def bias_act(x: torch.Tensor, b: torch.Tensor | None = None, act: str = 'linear', gain: float | None = None,
             clamp: float | None = None, dim: int = 1) -> torch.Tensor:
    """Add a per-channel bias, apply the activation, scale by `gain` (default: the activation's own gain), clamp."""
    activation = ACTIVATIONS[act]
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.reshape(shape)
    x = activation.func(x)
    gain = activation.def_gain if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def setup_filter(f: Sequence[float] | torch.Tensor | None, normalize: bool = True, flip_filter: bool = False,
                 gain: float = 1, separable: bool | None = None) -> torch.Tensor:
    """Turn a 1-D tap list into the resampling filter buffer: the outer product (2-D) for short filters, normalized."""
    f = torch.as_tensor(1.0 if f is None else f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = f[:, None] * f[None, :]
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    return f * (gain ** (f.ndim / 2))


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    """(x, y) from an int or a 2-sequence."""
    if isinstance(value, int):
        return value, value
    x, y = value
    return int(x), int(y)


def parse_padding(padding: Padding) -> list[int]:
    """[x0, x1, y0, y1] from an int, an [x, y] pair or a 4-list."""
    if isinstance(padding, int):
        return [padding] * 4
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        return [px, px, py, py]
    return padding


def filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(width, height) of a 1-D (separable) or 2-D filter; (1, 1) for no filter."""
    if f is None:
        return 1, 1
    return int(f.shape[-1]), int(f.shape[0])


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: int | Sequence[int] = 1, down: int | Sequence[int] = 1,
              padding: Padding = 0, flip_filter: bool = False, gain: float = 1) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative = crop), convolve with the FIR filter `f`, downsample by striding.

    `flip_filter=False` means true convolution with `f` (matters for non-symmetric filters). Downsampling is
    folded into the filter convolution's stride, so no discarded outputs are computed.
    """
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    upx, upy = _pair(up)
    downx, downy = _pair(down)
    px0, px1, py0, py1 = parse_padding(padding)
    n, c, h, w = x.shape
    if upx > 1 or upy > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    f = f.to(x.dtype) * (gain ** (f.ndim / 2))
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        kernel = f[None, None].expand(c, 1, *f.shape)
        return F.conv2d(x, kernel, stride=(downy, downx), groups=c)
    x = F.conv2d(x, f[None, None, None, :].expand(c, 1, 1, -1), stride=(1, downx), groups=c)
    return F.conv2d(x, f[None, None, :, None].expand(c, 1, -1, 1), stride=(downy, 1), groups=c)


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2, padding: Padding = 0, flip_filter: bool = False,
               gain: float = 1) -> torch.Tensor:
    """Upsample by `up` with the filter centred so the output has exactly `up` times the size."""
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)
    pad = [px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2, py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=pad, flip_filter=flip_filter, gain=gain * up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2, padding: Padding = 0, flip_filter: bool = False,
                 gain: float = 1) -> torch.Tensor:
    """Low-pass filter and downsample by `down`, centred so the output has exactly 1/`down` the size."""
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)
    pad = [px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2, py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2]
    return upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter, gain=gain)


def _conv(x: torch.Tensor, w: torch.Tensor, stride: int = 1, padding: Padding = 0, groups: int = 1,
          transpose: bool = False, flip_weight: bool = True) -> torch.Tensor:
    """conv2d (correlation) or its transpose; `flip_weight=False` turns correlation into true convolution."""
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1, down: int = 1,
                    padding: Padding = 0, groups: int = 1, flip_weight: bool = True,
                    flip_filter: bool = False) -> torch.Tensor:
    """2-D convolution with optional FIR up/downsampling, ordered so each case does the least work.

    `padding` is relative to the upsampled image; 1x1 kernels resample on the cheaper side of the convolution,
    upsampling uses a strided transposed convolution followed by the filter.
    """
    out_channels, in_per_group, kh, kw = w.shape
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    pad = [px0, px1, py0, py1]

    if kw == 1 and kh == 1 and down > 1 and up == 1:
        x = upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=pad, gain=up ** 2, flip_filter=flip_filter)
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=pad, flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    if up > 1:
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
            w = w.reshape(groups * in_per_group, out_channels // groups, kh, kw)
        px0, px1, py0, py1 = px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)
        pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
        x = _conv(x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True, flip_weight=not flip_weight)
        x = upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up ** 2,
                      flip_filter=flip_filter)
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x
    if up == 1 and down == 1 and px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)
    x = upfirdn2d(x, f if up > 1 else None, up=up, padding=pad, gain=up ** 2, flip_filter=flip_filter)
    x = _conv(x, w, groups=groups, flip_weight=flip_weight)
    if down > 1:
        x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x


def demodulation_coefficients(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """1/||w'|| per sample and output channel, where w' = weight * style: [N, out_channels].

    Uses sum_i s_i^2 * sum_k W[o,i,k]^2, which avoids materialising the [N, O, I, k, k] modulated weights.
    """
    return (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, noise: torch.Tensor | None = None,
                     up: int = 1, down: int = 1, padding: Padding = 0, resample_filter: torch.Tensor | None = None,
                     demodulate: bool = True, flip_weight: bool = True) -> torch.Tensor:
    """StyleGAN2 modulated convolution, computed as scale-inputs -> one shared-weight convolution -> scale-outputs.

    Equal to convolving each sample with its own modulated (and demodulated) kernel, but it runs the whole batch
    through a single dense convolution instead of a grouped one, which is much faster on CPUs.
    """
    batch = x.shape[0]
    x = x * styles.to(x.dtype).reshape(batch, -1, 1, 1)
    x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
                        flip_weight=flip_weight)
    if demodulate:
        dcoefs = demodulation_coefficients(weight.to(styles.dtype), styles)
        x = x * dcoefs.to(x.dtype).reshape(batch, -1, 1, 1)
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


def scale_shift_lrelu(y: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, gain: float,
                      clamp: float | None) -> torch.Tensor:
    """clamp(lrelu(y * scale + shift) * gain) in three passes over `y`: one fused multiply-add, then in-place ops.

    `scale` is per sample and channel [N, C]; `shift` broadcasts to `y` (bias plus noise). Because the leaky ReLU
    is positively homogeneous, the gain (> 0) is folded into `scale` and `shift` first. In-place only when no
    gradient is recorded (autograd needs the activation's output intact).
    """
    shift = (shift * gain).to(y.dtype)
    if shift.dim() == 4 and shift.shape[-1] > 1 and y.is_contiguous(memory_format=torch.channels_last):
        shift = shift.contiguous(memory_format=torch.channels_last)
    y = torch.addcmul(shift, y, (scale * gain).to(y.dtype).reshape(y.shape[0], -1, 1, 1))
    if torch.is_grad_enabled() and y.requires_grad:
        y = F.leaky_relu(y, 0.2)
        return y.clamp(-clamp, clamp) if clamp is not None and clamp >= 0 else y
    y = F.leaky_relu_(y, 0.2)
    return y.clamp_(-clamp, clamp) if clamp is not None and clamp >= 0 else y


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each vector to unit root-mean-square along `dim`."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()
