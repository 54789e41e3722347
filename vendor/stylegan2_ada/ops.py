"""The low-level operators of StyleGAN2, in plain PyTorch: FIR resampling, bias + activation, resampling
convolution and modulated convolution.

Semantics (padding order, filter flip, gains) follow the official definitions exactly, so tensors loaded from
official pickles give the same numbers; the implementation is ours and needs no compiled extension.
"""
from __future__ import annotations

import math
import weakref
from typing import Callable, Hashable, NamedTuple, Sequence, Union

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


def init_randn(shape: list[int], divide_by: float = 1) -> torch.Tensor:
    """`torch.randn(shape) / divide_by` (the same numbers from the same seed), left undrawn on the meta device: the
    loader builds networks there first, and any draw or arithmetic on meta tensors imports sympy, torch's symbolic
    shapes and torch._dynamo (about 1 s of start-up)."""
    tensor = torch.empty(shape)
    return tensor if tensor.is_meta else tensor.normal_() / divide_by


def hooked(module: torch.nn.Module) -> bool:
    """Whether any hook (on `module`, a sub-module, or global) could see its intermediate tensors."""
    from torch.nn.modules import module as torch_module

    return bool(torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks
                or any(m._forward_hooks or m._forward_pre_hooks for m in module.modules()))


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
    """Turn a 1-D tap list into the resampling filter buffer: the outer product (2-D) for short filters, normalized.

    Computed on the CPU even inside a `torch.device('meta')` block (the loader's dry build), where arithmetic would
    import torch._dynamo (about 1 s of start-up); the loaded buffer replaces it anyway.
    """
    device = f.device if isinstance(f, torch.Tensor) else 'cpu'
    f = torch.as_tensor(1.0 if f is None else f, dtype=torch.float32, device=device)
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
    folded into the filter convolution's stride, so no discarded outputs are computed; upsampling with a 2-D filter
    runs as a strided transposed convolution (polyphase: no zeros are inserted or multiplied), and symmetric
    padding is left to the convolution, so neither makes a padded copy.
    """
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    upx, upy = _pair(up)
    downx, downy = _pair(down)
    px0, px1, py0, py1 = parse_padding(padding)
    n, c, h, w = x.shape
    f = f.to(x.dtype) * (gain ** (f.ndim / 2))
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))  # from here on, f is correlated with the (upsampled, padded) input
    if (upx > 1 or upy > 1) and f.ndim == 2:
        y = _upsample_polyphase(x, f, upx, upy, downx, downy, [px0, px1, py0, py1])
        if y is not None:
            return y
    if upx > 1 or upy > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)
    conv_padding = [0, 0]
    if px0 == px1 >= 0 and py0 == py1 >= 0:
        conv_padding = [py0, px0]
    else:
        x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
        x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    if f.ndim == 2:
        kernel = f[None, None].expand(c, 1, *f.shape)
        return F.conv2d(x, kernel, stride=(downy, downx), padding=conv_padding, groups=c)
    x = F.conv2d(x, f[None, None, None, :].expand(c, 1, 1, -1), stride=(1, downx), padding=[0, conv_padding[1]],
                 groups=c)
    return F.conv2d(x, f[None, None, :, None].expand(c, 1, -1, 1), stride=(downy, 1), padding=[conv_padding[0], 0],
                    groups=c)


def _upsample_polyphase(x: torch.Tensor, f: torch.Tensor, upx: int, upy: int, downx: int, downy: int,
                        padding: list[int]) -> torch.Tensor | None:
    """Zero insertion, padding and the 2-D filter `f` (correlation form) as one depthwise transposed convolution
    with stride `up`, or None where the padding is outside what a transposed convolution can express.

    Correlating the zero-stuffed, p0-padded signal with f of K taps equals a transposed convolution of the signal
    with f flipped, padding K - 1 - p0 and output padding p1 - p0 + up - 1 (which must lie in [0, up)).
    """
    if downx > 1 or downy > 1:
        return None
    px0, px1, py0, py1 = padding
    kh, kw = f.shape
    pad_x, pad_y = kw - 1 - px0, kh - 1 - py0
    extra_x, extra_y = px1 - px0 + upx - 1, py1 - py0 + upy - 1
    if min(pad_x, pad_y) < 0 or not (0 <= extra_x < upx and 0 <= extra_y < upy):
        return None
    c = x.shape[1]
    kernel = f.flip([0, 1])[None, None].expand(c, 1, kh, kw)
    return F.conv_transpose2d(x, kernel, stride=(upy, upx), padding=(pad_y, pad_x), output_padding=(extra_y, extra_x),
                              groups=c)


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
                    flip_filter: bool = False, transposed_weight: bool = False) -> torch.Tensor:
    """2-D convolution with optional FIR up/downsampling, ordered so each case does the least work.

    `padding` is relative to the upsampled image; 1x1 kernels resample on the cheaper side of the convolution,
    upsampling uses a strided transposed convolution followed by the filter. `transposed_weight` says that `w` (for
    `up > 1`, `groups == 1`) is already laid out [in, out, k, k] as the transposed convolution takes it.
    """
    if transposed_weight:
        w = w.transpose(0, 1)  # a view; undone below without a copy
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
            w = w.transpose(0, 1)  # back to the prepared layout where `transposed_weight`
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


# Tensors derived from parameters (a weight in another dtype or layout, its squared norms, bias plus constant noise),
# kept per source tensor (by identity: tensors compare element-wise) for as long as it lives and stays unchanged.
_DERIVED: dict[int, tuple[weakref.ref, dict]] = {}


def derived(sources: tuple[torch.Tensor, ...], key: Hashable, build: Callable[[], torch.Tensor]) -> torch.Tensor:
    """`build()`, remembered under `key` until one of `sources` changes (in place, new storage, dtype or device), so
    inference pays for casts, layout copies and constant sums once per network, not once per call. While autograd
    records a graph through a source (training), it is built every time."""
    if any(t.is_inference() for t in sources) or (torch.is_grad_enabled() and any(t.requires_grad for t in sources)):
        return build()  # inference tensors keep no version counter to tell a change by
    stamp = tuple((t._version, t.data_ptr(), t.dtype, t.device) for t in sources)
    owner = sources[0]
    entry = _DERIVED.get(id(owner))
    if entry is None or entry[0]() is not owner:
        entry = _DERIVED[id(owner)] = (weakref.ref(owner), {})
        weakref.finalize(owner, _DERIVED.pop, id(owner), None)
    cache = entry[1]
    hit = cache.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    value = build()
    cache[key] = (stamp, value)
    return value


def layout_of(x: torch.Tensor) -> torch.memory_format:
    """channels_last if `x` is stored that way (and not also plainly contiguous), else contiguous."""
    cl = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if cl else torch.contiguous_format


def conv_weight(weight: torch.Tensor, x: torch.Tensor, transposed: bool = False) -> torch.Tensor:
    """`weight` as the convolution of `x` takes it: x's dtype and memory format, [in, out, k, k] if `transposed`
    (for `conv2d_resample(..., transposed_weight=True)`); cached, since oneDNN would otherwise copy it every call."""
    fmt = layout_of(x)

    def build() -> torch.Tensor:
        w = weight.transpose(0, 1) if transposed else weight
        return w.to(x.dtype).contiguous(memory_format=fmt)

    return derived((weight,), ('conv', x.dtype, fmt, transposed), build)


def weight_energy(weight: torch.Tensor) -> torch.Tensor:
    """sum_k W[o, i, k]^2 as [in, out] (cached): the demodulation's only use of the weight."""
    return derived((weight,), 'energy', lambda: weight.square().sum(dim=[2, 3]).t().contiguous())


def styled_1x1(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution of each sample with its own style-scaled kernel, as one batched matrix product: the
    activations are read once, never scaled in a pass of their own (toRGB). Works on NCHW and channels_last x."""
    n, c, h, w = x.shape
    kernels = weight[:, :, 0, 0].to(x.dtype)[None] * styles.to(x.dtype)[:, None, :]  # [N, out, in]
    if layout_of(x) == torch.channels_last:
        y = torch.bmm(x.permute(0, 2, 3, 1).reshape(n, h * w, c), kernels.transpose(1, 2))
        return y.reshape(n, h, w, -1).permute(0, 3, 1, 2)
    return torch.bmm(kernels, x.reshape(n, c, h * w)).reshape(n, -1, h, w)


def modulate(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, transposed: bool = False,
             private: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The modulation of a StyleGAN2 layer: (input, kernel, demodulation coefficients [N, out] or None) to convolve.

    A batch scales its inputs by the styles (in place where `private`: no one else reads `x`) for one shared-weight
    convolution whose outputs the coefficients then scale; a single sample whose activations outnumber the weights
    gets its kernel modulated and demodulated instead, as the official fused form does (no pass over x, None),
    unless autograd records the styles (projection): then a gradient for the modulated kernel would cost a second
    convolution, while scaling x costs one elementwise pass. `weight` is the raw parameter; the returned kernel is `conv_weight`'s ([in, out, k, k] if `transposed`).
    """
    kernel = conv_weight(weight, x, transposed)
    dcoefs = (styles.square() @ weight_energy(weight).to(styles.dtype) + 1e-8).rsqrt()
    styles_recorded = torch.is_grad_enabled() and styles.requires_grad
    if x.shape[0] == 1 and kernel.numel() < x.numel() and not styles_recorded:
        s, d = styles[0].to(x.dtype), dcoefs[0].to(x.dtype)
        scale = s[:, None] * d[None, :] if transposed else d[:, None] * s[None, :]
        return x, kernel * scale[:, :, None, None], None
    styles = styles.to(x.dtype).reshape(x.shape[0], -1, 1, 1)
    return (x.mul_(styles) if private and not torch.is_grad_enabled() else x * styles), kernel, dcoefs


# A layer whose bias + constant noise holds more elements than this (per sample) adds them in two steps instead of
# keeping their sum: 2^22 floats (16 MiB) keeps every sum of a 256² network and none of the largest at 1024².
SHIFT_CACHE_ELEMENTS = 2 ** 22


def layer_shift(layer: torch.nn.Module, y: torch.Tensor, noise_mode: str,
                gain: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What a SynthesisLayer adds to its convolution's output, times `gain`, in y's dtype and layout: (bias + noise,
    None), the sum kept between calls for 'const' and 'none' noise; for large layers with constant noise (bias,
    noise), added in two steps rather than kept as one [1, C, H, W] sum."""
    def build(noise: torch.Tensor | None) -> torch.Tensor:
        shift = layer.bias.reshape(1, -1, 1, 1) + (noise if noise is not None else 0)
        fmt = layout_of(y) if shift.shape[-1] > 1 else torch.contiguous_format
        return (shift * gain).to(y.dtype).contiguous(memory_format=fmt)

    if noise_mode == 'random' or not layer.use_noise:
        return build(layer.noise(y.shape[0], noise_mode, y.device)), None
    large = noise_mode == 'const' and y[0].numel() > SHIFT_CACHE_ELEMENTS
    noise = (layer.noise(1, noise_mode, y.device) * gain).to(y.dtype) if large else None
    kept = 'none' if large else noise_mode
    sources = (layer.bias, layer.noise_const, layer.noise_strength)
    return derived(sources, ('shift', kept, gain, y.dtype, layout_of(y)),
                   lambda: build(layer.noise(1, kept, y.device))), noise


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


def scale_shift_lrelu(y: torch.Tensor, scale: torch.Tensor | None, shift: torch.Tensor, gain: float,
                      clamp: float | None) -> torch.Tensor:
    """clamp(lrelu(y * scale + shift) * gain) in three passes over `y`: one fused multiply-add, then in-place ops.

    `scale` is per sample and channel [N, C] (None: 1); `shift` broadcasts to `y` (bias plus noise). Because the
    leaky ReLU is positively homogeneous, the gain (> 0) is folded into `scale` and `shift` first.
    """
    shift = (shift * gain).to(y.dtype)
    if shift.dim() == 4 and shift.shape[-1] > 1 and layout_of(y) == torch.channels_last:
        shift = shift.contiguous(memory_format=torch.channels_last)
    return shifted_lrelu(y, None if scale is None else scale * gain, shift, gain, clamp)


def shifted_lrelu(y: torch.Tensor, scale: torch.Tensor | None, shift: torch.Tensor, gain: float,
                  clamp: float | None, noise: torch.Tensor | None = None, overwrite: bool = False) -> torch.Tensor:
    """`scale_shift_lrelu` with `scale` and `shift` already multiplied by the gain, `shift` in y's dtype and layout
    (as `SynthesisLayer` keeps it cached), and `noise` (times the gain) added in a pass of its own where given.
    With `overwrite` (y is a convolution's fresh output), y itself receives the result. In-place only when no
    gradient is recorded (autograd needs the activation's output intact)."""
    recording = torch.is_grad_enabled() and y.requires_grad
    scale = None if scale is None else scale.to(y.dtype).reshape(y.shape[0], -1, 1, 1)
    out = y if overwrite and not recording and shift.shape[0] <= y.shape[0] else None  # one pass, no new memory
    if scale is None:
        y = torch.add(shift, y, alpha=gain, out=out)
    else:
        y = torch.addcmul(shift, y, scale, out=out)
    if recording:
        y = F.leaky_relu(y if noise is None else y + noise, 0.2)
        return y.clamp(-clamp, clamp) if clamp is not None and clamp >= 0 else y
    y = F.leaky_relu_(y if noise is None else y.add_(noise), 0.2)
    return y.clamp_(-clamp, clamp) if clamp is not None and clamp >= 0 else y


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each vector to unit root-mean-square along `dim`."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()
