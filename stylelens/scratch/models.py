"""From-scratch GAN models: DCGAN, a DCGAN with a mapping network and AdaIN, the WGAN-GP critic, ACGAN, cGAN.

Every generator is called as `G(z, c)` with `c` one-hot [N, num_classes] (or [N, 0] / None when unconditional)
and returns NCHW images in [-1, 1]; every discriminator is called as `D(img, c)` and returns
`(logits [N], class_logits [N, K] or None)`, so one training loop serves them all.

`MappingDCGANGenerator` has the StyleGAN2 surface (`mapping`, `synthesis`, `num_ws`, blocks `b4`, `b8`, ...), so
the analysis verbs (probes, mixing, traversal) run on it unchanged. Each block has one styled layer `conv1` that
reads one w, and the last block's toRGB reads one more, so block k owns ws[k] and the last block also owns the
final index: num_ws = number of blocks + 1.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from stylelens.choices import NOISE_MODES, check_choice
from stylelens.errors import StylelensError
from stylelens.scratch.stylegan2 import build_stylegan2

MODELS = ('dcgan', 'mapping-dcgan', 'wgan-gp', 'acgan', 'cgan', 'acgan-cifar10-classic', 'stylegan2-small')
D_NORMS = ('batch', 'layer', 'instance', 'spectral', 'none')
_DEFAULT_D_NORM = {'wgan-gp': 'layer'}


# ------------------------------------------------------------------------------------------------ shared pieces

def block_resolutions(img_resolution: int) -> list[int]:
    """Feature resolutions from the start (4, or 7 for 28, 56, ...) doubling up to `img_resolution`."""
    for start in (4, 7):
        factor = img_resolution // start
        if img_resolution % start == 0 and factor >= 2 and factor & (factor - 1) == 0:
            return [start << i for i in range(factor.bit_length())]
    raise StylelensError(f'resolution {img_resolution} is not supported: use 4 or 7 times a power of two '
                         f'(e.g. 28, 32, 64)')


def dcgan_channels(resolution: int, img_resolution: int, base: int, cap: int) -> int:
    """DCGAN widths: `base` at half the image resolution, doubling at every halving, at most `cap`."""
    return max(1, min(base * img_resolution // (2 * resolution), cap))


def dcgan_init(module: nn.Module) -> None:
    """DCGAN initialization (use with `.apply`): conv/linear weights N(0, 0.02), norm scales N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm)):
        if module.weight is None:
            return
        nn.init.normal_(module.weight, 1.0, 0.02)
    else:
        return
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def _labels(c: torch.Tensor | None, c_dim: int, what: str) -> torch.Tensor:
    """The one-hot labels c as float32, checking their width (a conditional network needs them)."""
    if c is None or c.ndim != 2 or c.shape[1] != c_dim:
        raise StylelensError(f'this {what} is conditional: pass one-hot labels c of shape [N, {c_dim}]')
    return c.to(torch.float32)


def _with_labels(z: torch.Tensor, c: torch.Tensor | None, c_dim: int) -> torch.Tensor:
    """z as float32 with the one-hot label appended when the generator is conditional."""
    x = z.to(torch.float32)
    return torch.cat([x, _labels(c, c_dim, 'generator')], dim=1) if c_dim else x


def _up_layers(in_channels: int, out_channels: int, extra_layers: int, kernel: int = 4, stride: int = 2,
               padding: int = 1) -> list[nn.Module]:
    """Transposed convolution, BatchNorm, ReLU, then `extra_layers` 3x3 convolutions with BatchNorm and ReLU."""
    layers = [nn.ConvTranspose2d(in_channels, out_channels, kernel, stride, padding, bias=False),
              nn.BatchNorm2d(out_channels), nn.ReLU()]
    for _ in range(extra_layers):
        layers += [nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU()]
    return layers


def _norm(kind: str, channels: int) -> nn.Module:
    """The D normalization layer for `kind` (spectral normalization wraps the convolutions instead)."""
    if kind == 'batch':
        return nn.BatchNorm2d(channels)
    if kind == 'layer':
        return nn.GroupNorm(1, channels)
    if kind == 'instance':
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


def _check_norm(norm: str) -> str:
    """`norm` if it is one of D_NORMS, else a one-line error listing them."""
    if norm not in D_NORMS:
        raise StylelensError(f"unknown D normalization {norm!r}: choose one of {', '.join(D_NORMS)}")
    return norm


# ------------------------------------------------------------------------------------------------ DCGAN

class DCGANGenerator(nn.Module):
    """z (+ one-hot c) -> image: a transposed convolution to start x start, then 4x4 stride-2 transposed
    convolutions with BatchNorm and ReLU, tanh at the end. Blocks are named by their output resolution."""

    def __init__(self, z_dim: int = 100, c_dim: int = 0, img_resolution: int = 32, img_channels: int = 3,
                 base_channels: int = 64, max_channels: int = 512, extra_layers: int = 0):
        super().__init__()
        self.z_dim, self.c_dim = z_dim, c_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.block_resolutions = block_resolutions(img_resolution)
        start = self.block_resolutions[0]
        ch = {r: dcgan_channels(r, img_resolution, base_channels, max_channels) for r in self.block_resolutions}
        setattr(self, f'b{start}', nn.Sequential(*_up_layers(z_dim + c_dim, ch[start], extra_layers, start, 1, 0)))
        for res in self.block_resolutions[1:-1]:
            setattr(self, f'b{res}', nn.Sequential(*_up_layers(ch[res // 2], ch[res], extra_layers)))
        setattr(self, f'b{img_resolution}', nn.Sequential(
            nn.ConvTranspose2d(ch[img_resolution // 2], img_channels, 4, 2, 1), nn.Tanh()))
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = _with_labels(z, c, self.c_dim)[:, :, None, None]
        for res in self.block_resolutions:
            x = getattr(self, f'b{res}')(x)
        return x


class DCGANDiscriminator(nn.Module):
    """image (+ label maps) -> (logit [N], class logits [N, K] or None): 4x4 stride-2 convolutions with LeakyReLU
    0.2 (no normalization on the first), then a start x start convolution per head. No sigmoid: losses take logits.

    `c_dim > 0` appends the one-hot label as constant planes to the input (conditional GAN); `num_classes > 0`
    adds the auxiliary class head (ACGAN). Blocks are named by their input resolution.
    """

    def __init__(self, img_resolution: int = 32, img_channels: int = 3, base_channels: int = 64,
                 max_channels: int = 512, norm: str = 'batch', c_dim: int = 0, num_classes: int = 0,
                 extra_layers: int = 0):
        super().__init__()
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.c_dim, self.num_classes, self.norm = c_dim, num_classes, _check_norm(norm)
        resolutions = block_resolutions(img_resolution)
        self.block_resolutions = resolutions[:0:-1]
        bias = norm in ('spectral', 'none')
        in_channels = img_channels + c_dim
        for res in self.block_resolutions:
            out_channels = dcgan_channels(res // 2, img_resolution, base_channels, max_channels)
            first = res == img_resolution
            layers = [nn.Conv2d(in_channels, out_channels, 4, 2, 1, bias=first or bias),
                      nn.Identity() if first else _norm(norm, out_channels), nn.LeakyReLU(0.2)]
            for _ in range(extra_layers):
                layers += [nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=bias), _norm(norm, out_channels),
                           nn.LeakyReLU(0.2)]
            setattr(self, f'b{res}', nn.Sequential(*layers))
            in_channels = out_channels
        self.head = nn.Conv2d(in_channels, 1, resolutions[0])
        self.class_head = nn.Conv2d(in_channels, num_classes, resolutions[0]) if num_classes else None
        self.apply(dcgan_init)
        if norm == 'spectral':
            for conv in [m for m in self.modules() if isinstance(m, nn.Conv2d)]:
                spectral_norm(conv)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = img
        if self.c_dim:
            maps = _labels(c, self.c_dim, 'discriminator').to(x)[:, :, None, None]
            x = torch.cat([x, maps.expand(-1, -1, *x.shape[2:])], dim=1)
        for res in self.block_resolutions:
            x = getattr(self, f'b{res}')(x)
        class_logits = self.class_head(x).flatten(1) if self.class_head is not None else None
        return self.head(x).flatten(), class_logits


class WGANCritic(DCGANDiscriminator):
    """The DCGAN discriminator as a WGAN-GP critic: per-sample normalization only, because the gradient penalty
    is a per-sample constraint that batch norm breaks by mixing the samples of a batch."""

    def __init__(self, *args: Any, norm: str = 'layer', **kwargs: Any):
        if norm == 'batch':
            raise StylelensError("a WGAN-GP critic cannot use batch norm: use norm 'layer' or 'none'")
        super().__init__(*args, norm=norm, **kwargs)


# ------------------------------------------------------------------------------------------------ mapping + AdaIN

def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row to unit mean square, as StyleGAN's mapping network does with its inputs."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate: weights stored N(0, 1/lr_mul²) and scaled at run time, so
    `lr_multiplier` slows this layer's effective learning rate; optional LeakyReLU 0.2 with gain sqrt(2)."""

    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0, lr_multiplier: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init) / lr_multiplier))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.lr_multiplier = lr_multiplier
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_multiplier)
        return F.leaky_relu(x, 0.2) * math.sqrt(2) if self.activation else x

    def extra_repr(self) -> str:
        out_features, in_features = self.weight.shape
        return f'in_features={in_features}, out_features={out_features}, lr_multiplier={self.lr_multiplier}'


class MappingNetwork(nn.Module):
    """z (+ embedded one-hot c) -> w, broadcast to `num_ws` copies; `w_avg` tracks the mean w for truncation."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, num_layers: int = 4,
                 lr_multiplier: float = 0.01, w_avg_beta: float = 0.995):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        if c_dim:
            self.embed = EqualLinear(c_dim, w_dim)
        features = [z_dim + (w_dim if c_dim else 0)] + [w_dim] * num_layers
        for idx in range(num_layers):
            setattr(self, f'fc{idx}', EqualLinear(features[idx], features[idx + 1], lr_multiplier=lr_multiplier,
                                                  activation=True))
        self.register_buffer('w_avg', torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, update_emas: bool = False) -> torch.Tensor:
        """ws [N, num_ws, w_dim]; `update_emas=True` (in training) moves `w_avg` toward this batch's mean w."""
        x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim:
            x = torch.cat([x, normalize_2nd_moment(self.embed(_labels(c, self.c_dim, 'generator')))], dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f'fc{idx}')(x)
        if update_emas:  # in w_avg's float32: under bf16/fp16 autocast the layers return half-precision w
            self.w_avg.copy_(x.detach().to(self.w_avg.dtype).mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x[:, :cutoff] = self.w_avg.to(x.dtype).lerp(x[:, :cutoff], truncation_psi)
        return x


class AdaIN(nn.Module):
    """Instance-normalize each channel, then scale and shift it by affine maps of w (scale starts at 1)."""

    def __init__(self, channels: int, w_dim: int):
        super().__init__()
        self.scale = EqualLinear(w_dim, channels, bias_init=1.0)
        self.shift = EqualLinear(w_dim, channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x) * self.scale(w)[:, :, None, None] + self.shift(w)[:, :, None, None]


class SynthesisLayer(nn.Module):
    """One DCGAN layer styled by w: convolution (4x4 stride-2 transposed, or 3x3), per-pixel noise, AdaIN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool,
                 use_noise: bool = True):
        super().__init__()
        self.in_channels, self.out_channels, self.resolution = in_channels, out_channels, resolution
        self.conv = (nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=False) if up
                     else nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False))
        self.use_noise = use_noise
        if use_noise:
            self.register_buffer('noise_const', torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.adain = AdaIN(out_channels, w_dim)

    def noise(self, x: torch.Tensor, noise_mode: str) -> torch.Tensor | None:
        """Fresh noise (`random`), the stored buffer (`const`), or none, times the learned strength."""
        check_choice(noise_mode, NOISE_MODES, 'noise mode')
        if not self.use_noise or noise_mode == 'none':
            return None
        if noise_mode == 'const':
            return self.noise_const.to(x) * self.noise_strength
        return torch.randn([x.shape[0], 1, *x.shape[2:]], device=x.device, dtype=x.dtype) * self.noise_strength

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = 'random') -> torch.Tensor:
        x = self.conv(x)
        noise = self.noise(x, noise_mode)
        if noise is not None:
            x = x + noise
        return F.relu(self.adain(x, w))


class ToRGB(nn.Module):
    """1x1 convolution to image channels, its input scaled per channel by an affine map of w, then tanh."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.conv = nn.Conv2d(in_channels, img_channels, 1)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x * self.affine(w)[:, :, None, None]))


class SynthesisBlock(nn.Module):
    """One resolution: (learned constant, or the previous features) -> styled layers conv1, conv2, ... -> toRGB on
    the last block only. Returns `(x, img)`, img None before the last block (StyleGAN2's `orig` architecture)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, extra_layers: int = 0, use_noise: bool = True):
        super().__init__()
        self.in_channels, self.resolution, self.is_last = in_channels, resolution, is_last
        self.architecture = 'orig'
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        self.num_conv = 1 + extra_layers
        for idx in range(1, self.num_conv + 1):
            up = idx == 1 and in_channels > 0
            setattr(self, f'conv{idx}', SynthesisLayer(in_channels if up else out_channels, out_channels, w_dim,
                                                       resolution, up, use_noise))
        self.num_torgb = int(is_last)
        if is_last:
            self.torgb = ToRGB(out_channels, img_channels, w_dim)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
                noise_mode: str = 'random') -> tuple[torch.Tensor, torch.Tensor | None]:
        """`ws` [N, num_conv + num_torgb, w_dim]: one per styled layer, then the toRGB's."""
        if self.in_channels == 0:
            x = self.const.to(ws.dtype).unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        for idx in range(self.num_conv):
            x = getattr(self, f'conv{idx + 1}')(x, ws[:, idx], noise_mode=noise_mode)
        return x, self.rgb(x, img, ws)

    def rgb(self, x: torch.Tensor, img: torch.Tensor | None, ws: torch.Tensor) -> torch.Tensor | None:
        """The image: the last block's toRGB of `x` (reads its final w); earlier blocks pass `img` through."""
        return self.torgb(x, ws[:, self.num_conv]) if self.is_last else img


class SynthesisNetwork(nn.Module):
    """ws -> image through blocks b4, b8, ... (b7, b14, b28 for 28x28); block k reads ws[k] (the last also the
    final toRGB's index)."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, base_channels: int = 64,
                 max_channels: int = 512, extra_layers: int = 0, use_noise: bool = True):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = block_resolutions(img_resolution)
        self.num_ws = 0
        in_channels = 0
        for res in self.block_resolutions:
            out_channels = dcgan_channels(res, img_resolution, base_channels, max_channels)
            block = SynthesisBlock(in_channels, out_channels, w_dim, res, img_channels, res == img_resolution,
                                   extra_layers, use_noise)
            setattr(self, f'b{res}', block)
            self.num_ws += block.num_conv + block.num_torgb
            in_channels = out_channels
        self.apply(dcgan_init)

    def block_ws_ranges(self) -> dict[str, range]:
        """The ws indices each block reads, e.g. {'b4': range(0, 1), ..., 'b32': range(3, 5)}."""
        ranges, start = {}, 0
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            ranges[f'b{res}'] = range(start, start + block.num_conv + block.num_torgb)
            start += block.num_conv
        return ranges

    def forward(self, ws: torch.Tensor, noise_mode: str = 'random') -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R] in [-1, 1]."""
        x = img = None
        for name, idx in self.block_ws_ranges().items():
            x, img = getattr(self, name)(x, img, ws.narrow(1, idx.start, len(idx)), noise_mode=noise_mode)
        return img


class MappingDCGANGenerator(nn.Module):
    """The DCGAN synthesis driven by a mapping network z -> w through AdaIN, with StyleGAN2's attributes and call
    signatures (`G.mapping`, `G.synthesis`, `G(z, c, truncation_psi, truncation_cutoff, noise_mode)`)."""

    def __init__(self, z_dim: int = 100, c_dim: int = 0, w_dim: int = 256, img_resolution: int = 32,
                 img_channels: int = 3, base_channels: int = 64, max_channels: int = 512, extra_layers: int = 0,
                 map_depth: int = 4, map_lr_multiplier: float = 0.01, w_avg_beta: float = 0.995,
                 use_noise: bool = True):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, base_channels, max_channels,
                                          extra_layers, use_noise)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, map_depth, map_lr_multiplier, w_avg_beta)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, noise_mode: str = 'random',
                update_emas: bool = False) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode)


# ------------------------------------------------------------------------------------------------ classic ACGAN

class ClassicACGANGenerator(nn.Module):
    """The classic CIFAR-10 ACGAN generator: linear to 196x4x4 with BatchNorm, three 4x4 stride-2 transposed
    convolutions (196 channels, BatchNorm, ReLU) to 32x32, a 3x3 convolution to RGB and tanh."""

    def __init__(self, z_dim: int = 100, c_dim: int = 10, width: int = 196):
        super().__init__()
        self.z_dim, self.c_dim, self.img_resolution, self.img_channels = z_dim, c_dim, 32, 3
        self.width = width
        self.fc1 = nn.Linear(z_dim + c_dim, width * 16)
        self.bn0 = nn.BatchNorm1d(width * 16)
        self.up = nn.Sequential(*[layer for _ in range(3) for layer in _up_layers(width, width, 0)])
        self.conv = nn.Conv2d(width, 3, 3, 1, 1)
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = F.relu(self.bn0(self.fc1(_with_labels(z, c, self.c_dim))))
        return torch.tanh(self.conv(self.up(x.reshape(-1, self.width, 4, 4))))


class ClassicACGANDiscriminator(nn.Module):
    """The classic CIFAR-10 ACGAN discriminator: eight 3x3 convolutions (196 channels, LayerNorm over C, H, W,
    LeakyReLU 0.01; strides 1 2 1 2 1 1 1 2), a 4x4 max-pool, heads `fc1` (real/fake) and `fc10` (class)."""

    STRIDES = (1, 2, 1, 2, 1, 1, 1, 2)

    def __init__(self, num_classes: int = 10, width: int = 196):
        super().__init__()
        self.img_resolution, self.img_channels, self.c_dim, self.num_classes = 32, 3, 0, num_classes
        res, in_channels = 32, 3
        for idx, stride in enumerate(self.STRIDES, 1):
            res //= stride
            setattr(self, f'conv{idx}', nn.Conv2d(in_channels, width, 3, stride, 1))
            setattr(self, f'ln{idx}', nn.LayerNorm([width, res, res]))
            in_channels = width
        self.pool = nn.MaxPool2d(4, 4)
        self.fc1 = nn.Linear(width, 1)
        self.fc10 = nn.Linear(width, num_classes)
        self.apply(dcgan_init)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = img
        for idx in range(1, len(self.STRIDES) + 1):
            x = F.leaky_relu(getattr(self, f'ln{idx}')(getattr(self, f'conv{idx}')(x)), 0.01)
        x = self.pool(x).flatten(1)
        return self.fc1(x).flatten(), self.fc10(x)


# ------------------------------------------------------------------------------------------------ building

def build_models(model: str, *, resolution: int = 32, channels: int = 3, num_classes: int = 10, z_dim: int = 100,
                 g_channels: int = 64, d_channels: int = 64, max_channels: int = 512, g_extra_layers: int = 0,
                 d_extra_layers: int = 0, d_norm: str | None = None, g_mapping: bool = False, w_dim: int = 256,
                 map_depth: int = 4, map_lr_multiplier: float = 0.01, use_noise: bool = True
                 ) -> tuple[nn.Module, nn.Module]:
    """(G, D) for a model name in MODELS. `acgan` and `cgan` are conditional on `num_classes` classes, the others
    ignore it; `g_mapping=True` swaps in the mapping-network generator (always used by `mapping-dcgan`);
    `d_norm=None` means batch norm, or layer norm for the WGAN-GP critic."""
    if model not in MODELS:
        raise StylelensError(f"unknown model {model!r}: choose one of {', '.join(MODELS)}")
    if model == 'stylegan2-small':
        return build_stylegan2(resolution, channels, g_channels, d_channels, map_depth)
    if model == 'acgan-cifar10-classic':
        if (resolution, channels) != (32, 3):
            raise StylelensError(f'{model} is for 32x32 RGB images (got {resolution}x{resolution}, '
                                 f'{channels} channels)')
        return ClassicACGANGenerator(z_dim, num_classes), ClassicACGANDiscriminator(num_classes)
    c_dim = num_classes if model in ('acgan', 'cgan') else 0
    if g_mapping or model == 'mapping-dcgan':
        G: nn.Module = MappingDCGANGenerator(z_dim, c_dim, w_dim, resolution, channels, g_channels, max_channels,
                                             g_extra_layers, map_depth, map_lr_multiplier, use_noise=use_noise)
    else:
        G = DCGANGenerator(z_dim, c_dim, resolution, channels, g_channels, max_channels, g_extra_layers)
    d_kwargs = dict(img_resolution=resolution, img_channels=channels, base_channels=d_channels,
                    max_channels=max_channels, norm=_check_norm(d_norm or _DEFAULT_D_NORM.get(model, 'batch')),
                    c_dim=c_dim if model == 'cgan' else 0, num_classes=c_dim if model == 'acgan' else 0,
                    extra_layers=d_extra_layers)
    return G, (WGANCritic(**d_kwargs) if model == 'wgan-gp' else DCGANDiscriminator(**d_kwargs))
