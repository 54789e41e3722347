"""The name map between rosinality/stylegan2-pytorch state_dicts and the official StyleGAN2-ADA layout, both ways.

rosinality's networks are official StyleGAN2 with G architecture `skip`, D architecture `resnet`, no classes, no fp16
and no clamp; every tensor has an official counterpart, stored the same way up to a reshape. The one change of value:
rosinality keeps the 2x upsampling gain (4) inside its FIR kernels, the official layout keeps normalised filters.
A plan lists (rosinality key, official key, transform) in rosinality's state_dict order; both directions read it.
"""
from __future__ import annotations

import re
from typing import Callable, Mapping, NamedTuple

import torch

from stylelens.errors import StylelensError

UP_GAIN = 4  # rosinality's upsampling kernels are the official normalised filter times up**2; exact in float32
MAX_BLOCKS = 12  # 16384x16384: far above rosinality's table (1024), low enough that hostile keys cost nothing
STOCK_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512}  # rosinality's table; above 32: 16384 * channel_multiplier / res

# transform: (rosinality -> official, official -> rosinality, rosinality shape for an official shape)
_Transform = tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor],
                   Callable[[tuple], tuple]]
TRANSFORMS: dict[str, _Transform] = {
    'same': (lambda t: t, lambda t: t, lambda s: s),
    'lead': (lambda t: t[0], lambda t: t[None], lambda s: (1, *s)),  # const input and modulated conv weights
    'noise': (lambda t: t[0, 0], lambda t: t[None, None], lambda s: (1, 1, *s)),  # per-layer constant noise
    'scalar': (lambda t: t.reshape(()), lambda t: t.reshape(1), lambda s: (1,)),  # noise strength
    'rgb_bias': (lambda t: t.reshape(-1), lambda t: t.reshape(1, -1, 1, 1), lambda s: (1, *s, 1, 1)),
    'up_filter': (lambda t: t / UP_GAIN, lambda t: t * UP_GAIN, lambda s: s),
}
UNUSED = 'unused'  # an official filter buffer that the forward pass never reads; rosinality has no counterpart


class Entry(NamedTuple):
    """One tensor: its rosinality key (None for official-only buffers), official key and transform name."""

    ros: str | None
    official: str
    kind: str


def _resolutions(size: int) -> list[int]:
    """The block resolutions above 4: 8, 16, ..., size."""
    return [2 ** i for i in range(3, size.bit_length())]


def _styled_conv(ros: str, official: str, up: bool) -> list[Entry]:
    """A StyledConv (modulated 3x3 conv + noise strength + bias) as an official SynthesisLayer."""
    blur = [Entry(f'{ros}.conv.blur.kernel', f'{official}.resample_filter', 'up_filter')] if up else []
    return [Entry(f'{ros}.conv.weight', f'{official}.weight', 'lead'), *blur,
            Entry(f'{ros}.conv.modulation.weight', f'{official}.affine.weight', 'same'),
            Entry(f'{ros}.conv.modulation.bias', f'{official}.affine.bias', 'same'),
            Entry(f'{ros}.noise.weight', f'{official}.noise_strength', 'scalar'),
            Entry(f'{ros}.activate.bias', f'{official}.bias', 'same')]


def _to_rgb(ros: str, block: str, up: bool) -> list[Entry]:
    """A ToRGB (bias, skip upsampling kernel, modulated 1x1 conv) as an official torgb plus the block's filter."""
    upsample = [Entry(f'{ros}.upsample.kernel', f'{block}.resample_filter', 'up_filter')] if up else []
    return [Entry(f'{ros}.bias', f'{block}.torgb.bias', 'rgb_bias'), *upsample,
            Entry(f'{ros}.conv.weight', f'{block}.torgb.weight', 'lead'),
            Entry(f'{ros}.conv.modulation.weight', f'{block}.torgb.affine.weight', 'same'),
            Entry(f'{ros}.conv.modulation.bias', f'{block}.torgb.affine.bias', 'same')]


def generator_plan(size: int, n_mlp: int) -> list[Entry]:
    """Every tensor of a rosinality Generator(size, n_mlp=n_mlp) and of the official G it becomes (but w_avg)."""
    plan = [Entry(f'style.{i + 1}.{p}', f'mapping.fc{i}.{p}', 'same') for i in range(n_mlp) for p in ('weight', 'bias')]
    plan += [Entry('input.input', 'synthesis.b4.const', 'lead'), *_styled_conv('conv1', 'synthesis.b4.conv1', False),
             *_to_rgb('to_rgb1', 'synthesis.b4', False)]
    noise_layers = ['synthesis.b4.conv1']
    for k, res in enumerate(_resolutions(size)):
        block = f'synthesis.b{res}'
        plan += _styled_conv(f'convs.{2 * k}', f'{block}.conv0', True)
        plan += _styled_conv(f'convs.{2 * k + 1}', f'{block}.conv1', False)
        noise_layers += [f'{block}.conv0', f'{block}.conv1']
    plan += [e for k, res in enumerate(_resolutions(size)) for e in _to_rgb(f'to_rgbs.{k}', f'synthesis.b{res}', True)]
    plan += [Entry(f'noises.noise_{i}', f'{layer}.noise_const', 'noise') for i, layer in enumerate(noise_layers)]
    unused = ['synthesis.b4.resample_filter', 'synthesis.b4.conv1.resample_filter']
    unused += [f'synthesis.b{res}.conv1.resample_filter' for res in _resolutions(size)]
    return plan + [Entry(None, name, UNUSED) for name in unused]


def discriminator_plan(size: int) -> list[Entry]:
    """Every tensor of a rosinality Discriminator(size) and of the official resnet D it becomes."""
    plan = [Entry('convs.0.0.weight', f'b{size}.fromrgb.weight', 'same'),
            Entry('convs.0.1.bias', f'b{size}.fromrgb.bias', 'same')]
    for j, res in enumerate(reversed(_resolutions(size)), start=1):
        ros, block = f'convs.{j}', f'b{res}'
        plan += [Entry(f'{ros}.conv1.0.weight', f'{block}.conv0.weight', 'same'),
                 Entry(f'{ros}.conv1.1.bias', f'{block}.conv0.bias', 'same'),
                 Entry(f'{ros}.conv2.0.kernel', f'{block}.conv1.resample_filter', 'same'),
                 Entry(f'{ros}.conv2.1.weight', f'{block}.conv1.weight', 'same'),
                 Entry(f'{ros}.conv2.2.bias', f'{block}.conv1.bias', 'same'),
                 Entry(f'{ros}.skip.0.kernel', f'{block}.skip.resample_filter', 'same'),
                 Entry(f'{ros}.skip.1.weight', f'{block}.skip.weight', 'same')]
    plan += [Entry('final_conv.0.weight', 'b4.conv.weight', 'same'), Entry('final_conv.1.bias', 'b4.conv.bias', 'same'),
             Entry('final_linear.0.weight', 'b4.fc.weight', 'same'), Entry('final_linear.0.bias', 'b4.fc.bias', 'same'),
             Entry('final_linear.1.weight', 'b4.out.weight', 'same'), Entry('final_linear.1.bias', 'b4.out.bias', 'same')]
    unused = [f'b{size}.fromrgb.resample_filter', 'b4.conv.resample_filter']
    unused += [f'b{res}.{name}' for res in reversed(_resolutions(size)) for name in ('resample_filter',
                                                                                    'conv0.resample_filter')]
    return plan + [Entry(None, name, UNUSED) for name in unused]


def _count(state: Mapping[str, object], pattern: str) -> int:
    """1 + the largest index matched by `pattern` (one group) among the keys, or 0."""
    found = [int(m.group(1)) for key in state if isinstance(key, str) and (m := re.fullmatch(pattern, key))]
    return max(found) + 1 if found else 0


def _dim(state: Mapping[str, torch.Tensor], key: str, axis: int, what: str) -> int:
    """The size of one axis of a tensor the structure is read from; a one-line error if it is missing."""
    tensor = state.get(key)
    if not isinstance(tensor, torch.Tensor) or tensor.ndim <= axis:
        raise StylelensError(f'{what} has no usable {key}: not a rosinality stylegan2 state_dict')
    return int(tensor.shape[axis])


def _size(blocks: int, what: str) -> int:
    """The resolution of a network with `blocks` blocks above 4x4; absurd counts (hostile keys) are refused."""
    if blocks > MAX_BLOCKS:
        raise StylelensError(f'{what} names {blocks} blocks above 4x4; no StyleGAN2 has more than {MAX_BLOCKS}')
    return 4 * 2 ** blocks


def generator_structure(state: Mapping[str, torch.Tensor], what: str) -> dict:
    """size, style_dim, n_mlp and the channel table of a rosinality Generator, read from its tensor shapes."""
    size = _size(_count(state, r'to_rgbs\.(\d+)\.conv\.weight'), what)
    channels = {4: _dim(state, 'input.input', 1, what)}
    channels.update({res: _dim(state, f'convs.{2 * k}.conv.weight', 1, what) for k, res in enumerate(_resolutions(size))})
    return dict(size=size, style_dim=_dim(state, 'conv1.conv.modulation.weight', 1, what),
                n_mlp=max(_count(state, r'style\.(\d+)\.weight') - 1, 1), channels=channels)


def discriminator_structure(state: Mapping[str, torch.Tensor], what: str) -> dict:
    """size and the channel table of a rosinality Discriminator, read from its tensor shapes."""
    size = _size(max(_count(state, r'convs\.(\d+)\.conv1\.0\.weight') - 1, 0), what)
    channels = {size: _dim(state, 'convs.0.0.weight', 0, what), 4: _dim(state, 'final_conv.0.weight', 0, what)}
    channels.update({res // 2: _dim(state, f'convs.{j}.conv2.1.weight', 0, what)
                     for j, res in enumerate(reversed(_resolutions(size)), start=1)})
    return dict(size=size, channels=channels)


def channel_options(channels: Mapping[int, int], what: str) -> dict[str, int]:
    """The official channel_base and channel_max whose table min(base // res, max) equals `channels`.

    rosinality's table is channel_base = 16384 * channel_multiplier with channel_max 512 (or both divided alike), so
    the bases of multipliers 2 (train.py's default) and 1 are preferred; several bases give the same table when no
    resolution of the network tells them apart. Otherwise the smallest base that fits.
    """
    channel_max = max(channels.values())
    candidates = (64 * channel_max, 32 * channel_max, max(c * res for res, c in channels.items()))
    for channel_base in candidates:
        if all(min(channel_base // res, channel_max) == c for res, c in channels.items()):
            return dict(channel_base=channel_base, channel_max=channel_max)
    table = ', '.join(f'{res}: {c}' for res, c in sorted(channels.items()))
    raise StylelensError(f'{what}: its channel table ({table}) is not min(channel_base // res, channel_max) for any '
                         f'channel_base, so the official networks cannot hold it')


def stock_table(channels: Mapping[int, int]) -> tuple[int, int] | None:
    """(channel_multiplier, divisor) for which rosinality's hard-coded table divided by `divisor` gives `channels`,
    or None if none does; the multiplier is train.py's default 2 when no resolution above 32 tells it."""
    if channels[4] <= 0 or 512 % channels[4]:
        return None
    divisor = 512 // channels[4]
    multipliers = {c * res * divisor // 16384 for res, c in channels.items() if res > 32} or {2}
    for cm in multipliers:
        if cm > 0 and all(c * divisor == STOCK_CHANNELS.get(res, 16384 * cm // res) for res, c in channels.items()):
            return cm, divisor
    return None


def _check_keys(state: Mapping[str, object], plan: list[Entry], what: str) -> None:
    """One line naming the missing and unexpected rosinality keys, if the state_dict does not fit the plan."""
    wanted = [e.ros for e in plan if e.ros is not None]
    missing = [k for k in wanted if k not in state]
    unexpected = sorted(set(state) - set(wanted))
    if missing or unexpected:
        raise StylelensError(f"{what} is not the rosinality network its shapes describe (missing: "
                             f"{', '.join(missing[:5]) or 'none'}{' ...' if len(missing) > 5 else ''}; unexpected: "
                             f"{', '.join(unexpected[:5]) or 'none'}{' ...' if len(unexpected) > 5 else ''})")


def to_official(state: Mapping[str, torch.Tensor], plan: list[Entry], unused_filter: torch.Tensor,
                what: str) -> dict[str, torch.Tensor]:
    """The official-layout tensors of a rosinality state_dict (float32); official-only filters get `unused_filter`."""
    _check_keys(state, plan, what)
    tensors = {}
    for entry in plan:
        if entry.ros is None:
            tensors[entry.official] = unused_filter.clone()
            continue
        tensor = state[entry.ros]
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise StylelensError(f'{what}.{entry.ros} is a {getattr(tensor, "dtype", type(tensor).__name__)}, '
                                 f'not a floating-point tensor')
        forward, _, ros_shape = TRANSFORMS[entry.kind]
        try:
            mapped = forward(tensor.detach().to(torch.float32))
        except (IndexError, RuntimeError):
            mapped = None
        if mapped is None or ros_shape(tuple(mapped.shape)) != tuple(tensor.shape):
            raise StylelensError(f'{what}.{entry.ros} has shape {list(tensor.shape)}, which no rosinality network '
                                 f'has there')
        tensors[entry.official] = mapped
    return tensors


def to_rosinality(official: Mapping[str, torch.Tensor], plan: list[Entry]) -> dict[str, torch.Tensor]:
    """The rosinality state_dict (in rosinality's key order) of an official-layout state_dict."""
    return {e.ros: TRANSFORMS[e.kind][1](official[e.official].detach().cpu()).contiguous()
            for e in plan if e.ros is not None}
