"""StyleGAN2-ADA generator and discriminator, written to be read in one sitting.

Module tree, parameter names and buffer names mirror the official networks (both the stylegan2-ada-pytorch
`training.networks` and the stylegan3 `training.networks_stylegan2` flavours), so an official `state_dict`
loads with no renaming. Every module records its constructor arguments in `_init_args` / `_init_kwargs`, as
official snapshots do, so networks can be written back in the snapshot layout.

Computation is always in the dtype of the input (float32 unless the caller autocasts): the official fp16
blocks are a CUDA speed trick whose CPU counterpart is `force_fp32=True`, which is what these modules do.
"""
from __future__ import annotations

import copy
import functools
import math
from typing import Any, Iterator

import torch

from .ops import (
    ACTIVATIONS,
    bias_act,
    conv2d_resample,
    derived,
    downsample2d,
    hooked,
    init_randn,
    layer_shift,
    modulate,
    modulated_conv2d,
    normalize_2nd_moment,
    setup_filter,
    shifted_lrelu,
    styled_1x1,
    upsample2d,
)

DEFAULT_FILTER = (1, 3, 3, 1)


def activation_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last on CPU, where oneDNN's convolutions (and the 2x upsampling especially) run much faster on it."""
    return torch.channels_last if x.device.type == 'cpu' else torch.contiguous_format


def records_init(cls: type) -> type:
    """Class decorator: keep deep copies of the constructor's arguments, as official snapshots record them."""
    original_init = cls.__init__

    @functools.wraps(original_init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        init_args, init_kwargs = copy.deepcopy(args), copy.deepcopy(kwargs)
        original_init(self, *args, **kwargs)
        self._init_args = init_args
        self._init_kwargs = init_kwargs

    cls.__init__ = __init__
    return cls


@records_init
class FullyConnectedLayer(torch.nn.Module):
    """Dense layer with equalized learning rate: weights stored at N(0, 1/lr_mul²), scaled at run time."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = 'linear',
                 lr_multiplier: float = 1, bias_init: float = 0):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(init_randn([out_features, in_features], divide_by=lr_multiplier))
        self.bias = torch.nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # the scaled weight and bias are kept between calls
        w = derived((self.weight,), ('fc', x.dtype), lambda: self.weight.to(x.dtype) * self.weight_gain)
        b = None if self.bias is None else derived((self.bias,), ('fc', x.dtype),
                                                   lambda: self.bias.to(x.dtype) * self.bias_gain)
        if self.activation == 'linear' and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f'in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}'


@records_init
class Conv2dLayer(torch.nn.Module):
    """Convolution with equalized learning rate, optional FIR up/downsampling, bias, activation and clamping."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = 'linear', up: int = 1, down: int = 1, resample_filter=DEFAULT_FILTER,
                 conv_clamp: float | None = None, channels_last: bool = False, trainable: bool = True):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.act_gain = ACTIVATIONS[activation].def_gain
        weight = init_randn([out_channels, in_channels, kernel_size, kernel_size])
        bias_value = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = torch.nn.Parameter(weight)
            self.bias = torch.nn.Parameter(bias_value) if bias_value is not None else None
        else:
            self.register_buffer('weight', weight)
            if bias_value is not None:
                self.register_buffer('bias', bias_value)
            else:
                self.bias = None

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = conv2d_resample(x, w, f=self.resample_filter, up=self.up, down=self.down, padding=self.padding,
                            flip_weight=(self.up == 1))
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, out_channels={self.out_channels}, activation={self.activation}, '
                f'up={self.up}, down={self.down}')


@records_init
class MappingNetwork(torch.nn.Module):
    """z (and the class label c) -> w, broadcast to `num_ws` copies; tracks the average w for truncation."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int | None, num_layers: int = 8,
                 embed_features: int | None = None, layer_features: int | None = None, activation: str = 'lrelu',
                 lr_multiplier: float = 0.01, w_avg_beta: float | None = 0.995):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        embed_features = 0 if c_dim == 0 else (w_dim if embed_features is None else embed_features)
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                        lr_multiplier=lr_multiplier)
            setattr(self, f'fc{idx}', layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer('w_avg', torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor | None, c: torch.Tensor | None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, update_emas: bool = False) -> torch.Tensor:
        """Map to w ([N, num_ws, w_dim] when num_ws is set). `w_avg` moves only if `update_emas` is True."""
        x = None
        if self.z_dim > 0:
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f'fc{idx}')(x)
        if update_emas and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if self.w_avg_beta is None:
                raise ValueError('truncation needs w_avg, which this mapping network does not track')
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x

    def extra_repr(self) -> str:
        return f'z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}'


@records_init
class SynthesisLayer(torch.nn.Module):
    """One modulated 3x3 convolution of the synthesis network: style from w, optional 2x upsampling, noise."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = 'lrelu', resample_filter=DEFAULT_FILTER,
                 conv_clamp: float | None = None, channels_last: bool = False):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = ACTIVATIONS[activation].def_gain
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(init_randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer('noise_const', init_randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def noise(self, batch: int, noise_mode: str, device: torch.device) -> torch.Tensor | None:
        """The per-pixel noise to add: fresh (`random`), the stored buffer (`const`), or none."""
        if not self.use_noise or noise_mode == 'none':
            return None
        if noise_mode == 'random':
            return torch.randn([batch, 1, self.resolution, self.resolution], device=device) * self.noise_strength
        if noise_mode == 'const':
            return self.noise_const * self.noise_strength
        raise ValueError(f'noise_mode must be one of random, const, none (got {noise_mode!r})')

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = 'random', gain: float = 1,
                fused_modconv: bool | None = None, private: bool = False) -> torch.Tensor:
        """Modulate (`ops.modulate`: the inputs of a batch, the kernel of one large sample), convolve, demodulate,
        add noise and bias, activate, clamp. `fused_modconv` is accepted for call compatibility."""
        x, weight, dcoefs = modulate(x, self.weight, self.affine(w), transposed=self.up > 1, private=private)
        y = conv2d_resample(x, weight, f=self.resample_filter, up=self.up, padding=self.padding,
                            flip_weight=(self.up == 1), transposed_weight=self.up > 1)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        if self.activation == 'lrelu':
            gain = self.act_gain * gain
            shift, noise = layer_shift(self, y, noise_mode, gain)
            return shifted_lrelu(y, None if dcoefs is None else dcoefs * gain, shift, gain, clamp, noise=noise,
                                 overwrite=True)
        noise = self.noise(x.shape[0], noise_mode, x.device)
        if dcoefs is not None:
            y = y * dcoefs.to(y.dtype).reshape(y.shape[0], -1, 1, 1)
        if noise is not None:
            y = y + noise.to(y.dtype)
        return bias_act(y, self.bias.to(y.dtype), act=self.activation, gain=self.act_gain * gain, clamp=clamp)

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, out_channels={self.out_channels}, w_dim={self.w_dim}, '
                f'resolution={self.resolution}, up={self.up}, activation={self.activation}')


@records_init
class ToRGBLayer(torch.nn.Module):
    """Modulated 1x1 convolution (no demodulation) from features to image channels."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: float | None = None, channels_last: bool = False):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(init_randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool | None = None) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = (styled_1x1(x, self.weight, styles) if self.weight.shape[-1] == 1 else
             modulated_conv2d(x, self.weight, styles, demodulate=False))
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)

    def extra_repr(self) -> str:
        return f'in_channels={self.in_channels}, out_channels={self.out_channels}, w_dim={self.w_dim}'


@records_init
class SynthesisBlock(torch.nn.Module):
    """One resolution of the synthesis network: (const or 2x-upsampling conv0) -> conv1 -> toRGB.

    Returns `(x, img)`: the feature map and the running RGB image (None for non-last blocks of `orig`/`resnet`).
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = 'skip', resample_filter=DEFAULT_FILTER,
                 conv_clamp: float | None = None, use_fp16: bool = False, fp16_channels_last: bool = False,
                 fused_modconv_default: Any = True, **layer_kwargs: Any):
        if architecture not in ('orig', 'skip', 'resnet'):
            raise ValueError(f'architecture must be one of orig, skip, resnet (got {architecture!r})')
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.fused_modconv_default = fused_modconv_default
        self.register_buffer('resample_filter', setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = torch.nn.Parameter(init_randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp,
                                        channels_last=self.channels_last, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                    conv_clamp=conv_clamp, channels_last=self.channels_last, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == 'skip':
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                                    channels_last=self.channels_last)
            self.num_torgb += 1
        if in_channels != 0 and architecture == 'resnet':
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter, channels_last=self.channels_last)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, noise_mode: str = 'random',
                force_fp32: bool = True, fused_modconv: bool | None = None, update_emas: bool = False,
                private: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`ws` holds this block's w vectors [N, num_conv + num_torgb, w_dim]; the last one feeds toRGB."""
        x = self.features(x, ws, noise_mode, private)
        return x, self.rgb(x, img, ws)

    def features(self, x: torch.Tensor | None, ws: torch.Tensor, noise_mode: str = 'random',
                 private: bool = False) -> torch.Tensor:
        """The feature path: (const or conv0) -> conv1 (+ resnet skip); reads the first `num_conv` ws. `private`
        (from `SynthesisNetwork.forward` only): no one else reads `x`, so the convolutions may scale it in place."""
        w_iter: Iterator[torch.Tensor] = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.to(ws.dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        x = x.contiguous(memory_format=activation_format(x))
        if self.in_channels == 0:
            return self.conv1(x, next(w_iter), noise_mode=noise_mode, private=private)
        if self.architecture == 'resnet':
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode)
            return y + self.conv1(x, next(w_iter), noise_mode=noise_mode, gain=math.sqrt(0.5), private=private)
        x = self.conv0(x, next(w_iter), noise_mode=noise_mode, private=private)
        return self.conv1(x, next(w_iter), noise_mode=noise_mode, private=private)

    def rgb(self, x: torch.Tensor, img: torch.Tensor | None, ws: torch.Tensor) -> torch.Tensor | None:
        """The image path: upsample the incoming image and add this block's toRGB of `x` (reads the last ws)."""
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == 'skip':
            y = self.torgb(x, ws[:, self.num_conv]).to(torch.float32)
            img = img + y if img is not None else y
        return img

    def extra_repr(self) -> str:
        return f'resolution={self.resolution}, architecture={self.architecture}'


@records_init
class SynthesisNetwork(torch.nn.Module):
    """ws -> image through blocks b4, b8, ..., b{img_resolution}; each block consumes a window of ws."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 0, **block_kwargs: Any):
        super().__init__()
        log2 = int(math.log2(img_resolution))
        if img_resolution != 2 ** log2 or img_resolution < 4:
            raise ValueError(f'img_resolution must be a power of two >= 4 (got {img_resolution})')
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = log2
        self.img_channels = img_channels
        self.num_fp16_res = num_fp16_res
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            is_last = res == img_resolution
            block = SynthesisBlock(channels[res // 2] if res > 4 else 0, channels[res], w_dim=w_dim, resolution=res,
                                   img_channels=img_channels, is_last=is_last, use_fp16=res >= fp16_resolution,
                                   **block_kwargs)
            self.num_ws += block.num_conv + (block.num_torgb if is_last else 0)
            setattr(self, f'b{res}', block)

    def block_ws_ranges(self) -> dict[str, range]:
        """The ws indices each block reads, e.g. {'b4': range(0, 2), 'b8': range(1, 4), ...}.

        A block's toRGB shares its index with the next block's first convolution.
        """
        ranges, start = {}, 0
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            ranges[f'b{res}'] = range(start, start + block.num_conv + block.num_torgb)
            start += block.num_conv
        return ranges

    def forward(self, ws: torch.Tensor, noise_mode: str = 'random', **block_kwargs: Any) -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R], nominally in [-1, 1]."""
        x = img = None
        private = not torch.is_grad_enabled() and not hooked(self)  # no autograd or hook sees the feature maps
        for name, idx in self.block_ws_ranges().items():
            block_ws = ws.narrow(1, idx.start, len(idx))
            x, img = getattr(self, name)(x, img, block_ws, noise_mode=noise_mode, private=private, **block_kwargs)
        return img

    def extra_repr(self) -> str:
        return (f'w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, '
                f'img_channels={self.img_channels}, num_fp16_res={self.num_fp16_res}')


@records_init
class Generator(torch.nn.Module):
    """z, c -> image: `mapping` then `synthesis`, with the official attributes and call signatures.

    Synthesis options come either as `synthesis_kwargs={...}` (stylegan2-ada-pytorch) or as keyword
    arguments (stylegan3 repository); both are accepted.
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: dict | None = None, synthesis_kwargs: dict | None = None, **more_synthesis_kwargs: Any):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        synthesis_options = {**(synthesis_kwargs or {}), **more_synthesis_kwargs}
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_options)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **(mapping_kwargs or {}))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, update_emas: bool = False, **synthesis_kwargs: Any) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, **synthesis_kwargs)


@records_init
class DiscriminatorBlock(torch.nn.Module):
    """One resolution of the discriminator: (fromRGB) -> conv0 -> conv1 with 2x downsampling (+ resnet skip)."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int, img_channels: int,
                 first_layer_idx: int, architecture: str = 'resnet', activation: str = 'lrelu',
                 resample_filter=DEFAULT_FILTER, conv_clamp: float | None = None, use_fp16: bool = False,
                 fp16_channels_last: bool = False, freeze_layers: int = 0):
        if in_channels not in (0, tmp_channels):
            raise ValueError('in_channels must be 0 or tmp_channels')
        if architecture not in ('orig', 'skip', 'resnet'):
            raise ValueError(f'architecture must be one of orig, skip, resnet (got {architecture!r})')
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer('resample_filter', setup_filter(resample_filter))
        self.num_layers = 0

        def trainable() -> bool:
            layer_idx = first_layer_idx + self.num_layers
            self.num_layers += 1
            return layer_idx >= freeze_layers

        common = dict(activation=activation, conv_clamp=conv_clamp, channels_last=self.channels_last)
        if in_channels == 0 or architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, trainable=trainable(), **common)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, trainable=trainable(), **common)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, down=2, trainable=trainable(),
                                 resample_filter=resample_filter, **common)
        if architecture == 'resnet':
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                                    trainable=trainable(), resample_filter=resample_filter,
                                    channels_last=self.channels_last)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None,
                force_fp32: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.in_channels == 0 or self.architecture == 'skip':
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == 'skip' else None
        if self.architecture == 'resnet':
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=math.sqrt(0.5))
            x = y + x
        else:
            x = self.conv1(self.conv0(x))
        return x, img

    def extra_repr(self) -> str:
        return f'resolution={self.resolution}, architecture={self.architecture}'


@records_init
class MinibatchStdLayer(torch.nn.Module):
    """Append the standard deviation across groups of samples as extra feature maps (a diversity signal for D)."""

    def __init__(self, group_size: int | None, num_channels: int = 1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        group = min(self.group_size, n) if self.group_size is not None else n
        if n % group:
            raise ValueError(f'minibatch-std needs a batch divisible by its group size {group} (got {n})')
        f = self.num_channels
        y = x.reshape(group, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])
        y = y.reshape(-1, f, 1, 1).repeat(group, 1, h, w)
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f'group_size={self.group_size}, num_channels={self.num_channels}'


@records_init
class DiscriminatorEpilogue(torch.nn.Module):
    """The 4x4 head of D: minibatch-std, conv, fc, output (projected onto the class embedding if conditional)."""

    def __init__(self, in_channels: int, cmap_dim: int, resolution: int, img_channels: int,
                 architecture: str = 'resnet', mbstd_group_size: int | None = 4, mbstd_num_channels: int = 1,
                 activation: str = 'lrelu', conv_clamp: float | None = None):
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture
        if architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation,
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution ** 2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: torch.Tensor, img: torch.Tensor | None, cmap: torch.Tensor | None,
                force_fp32: bool = True) -> torch.Tensor:
        x = x.to(torch.float32)
        if self.architecture == 'skip':
            x = x + self.fromrgb(img.to(torch.float32))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.out(self.fc(self.conv(x).flatten(1)))
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x

    def extra_repr(self) -> str:
        return f'resolution={self.resolution}, architecture={self.architecture}'


@records_init
class Discriminator(torch.nn.Module):
    """image, c -> realness logit [N, 1], through blocks b{R} ... b8 and the epilogue b4."""

    def __init__(self, c_dim: int, img_resolution: int, img_channels: int, architecture: str = 'resnet',
                 channel_base: int = 32768, channel_max: int = 512, num_fp16_res: int = 0,
                 conv_clamp: float | None = None, cmap_dim: int | None = None, block_kwargs: dict | None = None,
                 mapping_kwargs: dict | None = None, epilogue_kwargs: dict | None = None):
        super().__init__()
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(self.img_resolution_log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0
        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        layer_idx = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(channels[res] if res < img_resolution else 0, channels[res], channels[res // 2],
                                       resolution=res, first_layer_idx=layer_idx, use_fp16=res >= fp16_resolution,
                                       **(block_kwargs or {}), **common)
            setattr(self, f'b{res}', block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
                                          **(mapping_kwargs or {}))
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, resolution=4, **(epilogue_kwargs or {}),
                                        **common)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None, update_emas: bool = False,
                **block_kwargs: Any) -> torch.Tensor:
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f'b{res}')(x, img, **block_kwargs)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)

    def extra_repr(self) -> str:
        return f'c_dim={self.c_dim}, img_resolution={self.img_resolution}, img_channels={self.img_channels}'
