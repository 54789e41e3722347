"""Alias-free StyleGAN3 generator (configs T and R), written to be read in one sitting.

Module tree, parameter and buffer names mirror the official `training.networks_stylegan3`, so an official
`state_dict` loads with no renaming: `mapping.fc{i}`, `synthesis.input` (Fourier features), the layers
`synthesis.L{i}_{size}_{channels}` (the last one is ToRGB). Every module records its constructor arguments as
official snapshots do. Computation is float32 on every device (the official fp16 layers are a CUDA speed trick
whose CPU counterpart is `force_fp32=True`).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..stylegan2_ada import networks as sg2
from ..stylegan2_ada.networks import records_init
from ..stylegan2_ada.ops import init_randn, normalize_2nd_moment
from .filters import design_lowpass_filter
from .ops import filtered_lrelu, modulated_conv2d

NOISE_MODES = ('random', 'const', 'none')


@records_init
class FullyConnectedLayer(sg2.FullyConnectedLayer):
    """Dense layer with equalized learning rate; StyleGAN3's variant also sets the initial weight scale and a
    per-feature initial bias."""

    def __init__(self, in_features: int, out_features: int, activation: str = 'linear', bias: bool = True,
                 lr_multiplier: float = 1, weight_init: float = 1, bias_init: Any = 0):
        super().__init__(in_features, out_features, bias=bias, activation=activation, lr_multiplier=lr_multiplier)
        if self.weight.is_meta:  # the loader's dry build: no initial values needed
            return
        with torch.no_grad():
            self.weight.mul_(weight_init)
            if self.bias is not None:
                initial = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features])
                self.bias.copy_(torch.as_tensor(initial / lr_multiplier))


@records_init
class MappingNetwork(torch.nn.Module):
    """z (and the class label c) -> w, broadcast to `num_ws` copies; tracks the average w for truncation."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, num_layers: int = 2,
                 lr_multiplier: float = 0.01, w_avg_beta: float = 0.998):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        self.embed = FullyConnectedLayer(c_dim, w_dim) if c_dim > 0 else None
        features = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation='lrelu',
                                        lr_multiplier=lr_multiplier)
            setattr(self, f'fc{idx}', layer)
        self.register_buffer('w_avg', torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, update_emas: bool = False) -> torch.Tensor:
        """Map to ws [N, num_ws, w_dim], truncated towards `w_avg` on the first `truncation_cutoff` (default all)."""
        x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f'fc{idx}')(x)
        if update_emas:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x[:, :cutoff] = self.w_avg.lerp(x[:, :cutoff], truncation_psi)
        return x

    def extra_repr(self) -> str:
        return f'z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}'


@records_init
class SynthesisInput(torch.nn.Module):
    """Fourier features: sinusoids of random frequencies (within `bandwidth`) sampled on a grid, rotated and
    translated per sample by an affine of w, then by the user `transform` (inverse, wrt. the image), and mixed
    by a learned channel matrix."""

    def __init__(self, w_dim: int, channels: int, size: int | list[int], sampling_rate: float, bandwidth: float):
        super().__init__()
        self.w_dim = w_dim
        self.channels = channels
        self.size = np.broadcast_to(np.asarray(size), [2])
        self.sampling_rate = sampling_rate
        self.bandwidth = bandwidth
        freqs, phases, transform = init_randn([channels, 2]), torch.empty([channels]), torch.empty([3, 3])
        if not freqs.is_meta:  # initial values, skipped by the loader's dry build (meta draws import dynamo)
            radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
            freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth  # uniform on the disc
            phases, transform = phases.uniform_() - 0.5, torch.eye(3, 3)
        self.weight = torch.nn.Parameter(init_randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer('transform', transform)
        self.register_buffer('freqs', freqs)
        self.register_buffer('phases', phases)

    def sample_transforms(self, w: torch.Tensor) -> torch.Tensor:
        """Per-sample 3x3 inverse transforms [N, 3, 3]: the rotation and translation predicted from w, then the
        user `transform`."""
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        cos, sin, tx, ty = t.unbind(dim=1)
        zero, one = torch.zeros_like(cos), torch.ones_like(cos)
        rotation = torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], dim=1).reshape(-1, 3, 3)
        translation = torch.stack([one, zero, -tx, zero, one, -ty, zero, zero, one], dim=1).reshape(-1, 3, 3)
        return rotation @ translation @ self.transform.unsqueeze(0)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """w [N, w_dim] -> features [N, channels, height, width] (channels_last in memory)."""
        transforms = self.sample_transforms(w)
        phases = self.phases.unsqueeze(0) + (self.freqs.unsqueeze(0) @ transforms[:, :2, 2:]).squeeze(2)
        freqs = self.freqs.unsqueeze(0) @ transforms[:, :2, :2]
        in_band = (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)
        amplitudes = (1 - in_band).clamp(0, 1)
        width, height = int(self.size[0]), int(self.size[1])
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = 0.5 * width / self.sampling_rate
        theta[1, 1] = 0.5 * height / self.sampling_rate
        grid = F.affine_grid(theta.unsqueeze(0), [1, 1, height, width], align_corners=False)
        x = grid.reshape(1, height * width, 2) @ freqs.transpose(1, 2)  # [N, H*W, C]
        x = torch.sin((x + phases.unsqueeze(1)) * (2 * math.pi)) * amplitudes.unsqueeze(1)
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.reshape(-1, height, width, self.channels).permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return (f'w_dim={self.w_dim}, channels={self.channels}, size={[int(s) for s in self.size]}, '
                f'sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}')


@records_init
class SynthesisLayer(torch.nn.Module):
    """One layer: modulated convolution, then the filtered leaky ReLU (upsample, activate, low-pass, downsample)
    that keeps the signal alias-free at the layer's sampling rate; the last layer is ToRGB (1x1, linear)."""

    def __init__(self, w_dim: int, is_torgb: bool, is_critically_sampled: bool, use_fp16: bool,
                 in_channels: int, out_channels: int, in_size: int | list[int], out_size: int | list[int],
                 in_sampling_rate: float, out_sampling_rate: float, in_cutoff: float, out_cutoff: float,
                 in_half_width: float, out_half_width: float, conv_kernel: int = 3, filter_size: int = 6,
                 lrelu_upsampling: int = 2, use_radial_filters: bool = False, conv_clamp: float | None = 256,
                 magnitude_ema_beta: float = 0.999):
        super().__init__()
        self.w_dim = w_dim
        self.is_torgb = is_torgb
        self.is_critically_sampled = is_critically_sampled
        self.use_fp16 = use_fp16
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = np.broadcast_to(np.asarray(in_size), [2])
        self.out_size = np.broadcast_to(np.asarray(out_size), [2])
        self.in_sampling_rate = in_sampling_rate
        self.out_sampling_rate = out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff = in_cutoff
        self.out_cutoff = out_cutoff
        self.in_half_width = in_half_width
        self.out_half_width = out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(init_randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer('magnitude_ema', torch.ones([]))

        self.up_factor = _rate_ratio(self.tmp_sampling_rate, in_sampling_rate)
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.register_buffer('up_filter', design_lowpass_filter(
            self.up_taps, in_cutoff, in_half_width * 2, self.tmp_sampling_rate))
        self.down_factor = _rate_ratio(self.tmp_sampling_rate, out_sampling_rate)
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer('down_filter', design_lowpass_filter(
            self.down_taps, out_cutoff, out_half_width * 2, self.tmp_sampling_rate, radial=self.down_radial))

        # Pad so that the output has out_size samples, centred as in the paper's symmetric convention (App. C.3).
        pad_total = (self.out_size - 1) * self.down_factor + 1
        pad_total = pad_total - (self.in_size + self.conv_kernel - 1) * self.up_factor
        pad_total = pad_total + self.up_taps + self.down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        self.padding = [int(pad_lo[0]), int(pad_hi[0]), int(pad_lo[1]), int(pad_hi[1])]

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = 'random', force_fp32: bool = False,
                update_emas: bool = False) -> torch.Tensor:
        """x [N, in_channels, *in_size] and w [N, w_dim] -> [N, out_channels, *out_size]; StyleGAN3 has no noise
        inputs, so `noise_mode` is only checked, and `force_fp32` is accepted for the official signature."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {', '.join(NOISE_MODES)} (got {noise_mode!r})")
        if update_emas:
            magnitude = x.detach().to(torch.float32).square().mean()
            self.magnitude_ema.copy_(magnitude.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / math.sqrt(self.in_channels * self.conv_kernel ** 2))
        x = modulated_conv2d(x, self.weight, styles, demodulate=not self.is_torgb, padding=self.conv_kernel - 1,
                             input_gain=self.magnitude_ema.rsqrt(), bias=self.bias)
        return filtered_lrelu(x, self.up_filter, self.down_filter, up=self.up_factor, down=self.down_factor,
                              padding=self.padding, gain=1 if self.is_torgb else math.sqrt(2),
                              slope=1 if self.is_torgb else 0.2, clamp=self.conv_clamp)

    def extra_repr(self) -> str:
        return (f'w_dim={self.w_dim}, is_torgb={self.is_torgb}, is_critically_sampled={self.is_critically_sampled}, '
                f'in_sampling_rate={self.in_sampling_rate:g}, out_sampling_rate={self.out_sampling_rate:g}, '
                f'in_cutoff={self.in_cutoff:g}, out_cutoff={self.out_cutoff:g}, '
                f'in_size={[int(s) for s in self.in_size]}, out_size={[int(s) for s in self.out_size]}, '
                f'in_channels={self.in_channels}, out_channels={self.out_channels}')


def _rate_ratio(high: float, low: float) -> int:
    """The integer resampling factor between two sampling rates (refuses rates that are not multiples)."""
    factor = int(np.rint(high / low))
    if low * factor != high:
        raise ValueError(f'sampling rate {high:g} is not an integer multiple of {low:g}')
    return factor


def layer_geometry(img_resolution: int, img_channels: int, channel_base: int, channel_max: int, num_layers: int,
                   num_critical: int, first_cutoff: float, first_stopband: float, last_stopband_rel: float,
                   margin_size: int) -> dict[str, np.ndarray]:
    """Per layer (input features first, ToRGB last): cutoff, stopband, sampling rate, transition half width,
    size and channels, from geometric progressions between the first layer and the critically sampled end."""
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    sizes = sampling_rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    return dict(cutoffs=cutoffs, stopbands=stopbands, sampling_rates=sampling_rates, half_widths=half_widths,
                sizes=sizes, channels=channels)


@records_init
class SynthesisNetwork(torch.nn.Module):
    """ws -> image: Fourier features (reads ws[0]), then layers L0 ... L{num_layers} (layer k reads ws[k+1]);
    the output is scaled by `output_scale`."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                 first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3, margin_size: int = 10,
                 output_scale: float = 0.25, num_fp16_res: int = 4, **layer_kwargs: Any):
        super().__init__()
        self.w_dim = w_dim
        self.num_ws = num_layers + 2
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_layers = num_layers
        self.num_critical = num_critical
        self.margin_size = margin_size
        self.output_scale = output_scale
        self.num_fp16_res = num_fp16_res
        geo = layer_geometry(img_resolution, img_channels, channel_base, channel_max, num_layers, num_critical,
                             first_cutoff, first_stopband, last_stopband_rel, margin_size)
        rates, cutoffs, half_widths = geo['sampling_rates'], geo['cutoffs'], geo['half_widths']
        sizes, channels = geo['sizes'], geo['channels']
        self.input = SynthesisInput(w_dim=w_dim, channels=int(channels[0]), size=int(sizes[0]),
                                    sampling_rate=rates[0], bandwidth=cutoffs[0])
        self.layer_names = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(
                w_dim=w_dim, is_torgb=idx == num_layers, is_critically_sampled=idx >= num_layers - num_critical,
                use_fp16=bool(rates[idx] * 2 ** num_fp16_res > img_resolution),
                in_channels=int(channels[prev]), out_channels=int(channels[idx]),
                in_size=int(sizes[prev]), out_size=int(sizes[idx]),
                in_sampling_rate=int(rates[prev]), out_sampling_rate=int(rates[idx]),
                in_cutoff=cutoffs[prev], out_cutoff=cutoffs[idx],
                in_half_width=half_widths[prev], out_half_width=half_widths[idx], **layer_kwargs)
            name = f'L{idx}_{layer.out_size[0]}_{layer.out_channels}'
            setattr(self, name, layer)
            self.layer_names.append(name)

    def layer_ws_indices(self) -> dict[str, int]:
        """The ws index each part reads: {'input': 0, 'L0_36_512': 1, ..., last ToRGB: num_ws - 1}."""
        return {'input': 0, **{name: idx + 1 for idx, name in enumerate(self.layer_names)}}

    def forward(self, ws: torch.Tensor, **layer_kwargs: Any) -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R] (float32); `layer_kwargs` go to every layer
        (noise_mode, force_fp32, update_emas)."""
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f'ws must have shape [N, {self.num_ws}, {self.w_dim}] (got {list(ws.shape)})')
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0])
        for name, w in zip(self.layer_names, ws[1:]):
            x = getattr(self, name)(x, w, **layer_kwargs)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(torch.float32).contiguous()

    def extra_repr(self) -> str:
        return (f'w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, '
                f'img_channels={self.img_channels}, num_layers={self.num_layers}, num_critical={self.num_critical}, '
                f'margin_size={self.margin_size}, num_fp16_res={self.num_fp16_res}')


@records_init
class Generator(torch.nn.Module):
    """z, c -> image: `mapping` then `synthesis`, with the official attributes and call signatures."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: dict | None = None, **synthesis_kwargs: Any):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **(mapping_kwargs or {}))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, update_emas: bool = False, **synthesis_kwargs: Any) -> torch.Tensor:
        """z [N, z_dim], c [N, c_dim] -> images [N, img_channels, R, R], nominally in [-1, 1]."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)
