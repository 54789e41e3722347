"""Official-layout StyleGAN2 networks as a rosinality/stylegan2-pytorch checkpoint, in convert_weight.py's layout.

The checkpoint is {'g_ema', 'latent_avg', 'g', 'd'} (g and d where the source has them): state_dicts that
rosinality's Generator and Discriminator take with `load_state_dict`, and w_avg as latent_avg for
`truncation_latent`. Networks rosinality cannot express (classes, other architectures or image channels, a mapping
with another width, learning-rate multiplier or activation, other minibatch-std groups) are refused in one line.
"""
from __future__ import annotations

import collections
import math
from typing import Any

import torch

from stylelens.errors import StylelensError
from stylelens.loading import rosinality_map as names
from stylelens.vendor.stylegan2_ada import networks


class LossyConversionError(StylelensError):
    """The network has something the target format cannot hold."""


def describe(net: Any) -> str:
    """What a network is, for refusals: StyleGAN3 and from-scratch models are named as such."""
    module = type(net).__module__
    if 'stylegan3' in module:
        return f'a StyleGAN3 (alias-free) {type(net).__name__}'
    if module.startswith('stylelens.scratch'):
        return f'a from-scratch {type(net).__name__} (stylelens train)'
    return f'a {type(net).__name__}'


def _refuse(what: str, problem: str) -> None:
    raise LossyConversionError(f'cannot convert {what} to rosinality without loss: {problem}')


def _filters_are_4_tap(net: torch.nn.Module, what: str) -> None:
    """rosinality builds its FIR kernels from a 4-tap blur_kernel: other filter sizes would not load."""
    for name, buffer in net.named_buffers():
        if name.endswith('resample_filter') and tuple(buffer.shape) != (4, 4):
            _refuse(what, f'{name} is a {list(buffer.shape)} filter; rosinality builds 4x4 kernels')


def check_generator(G: Any, what: str) -> None:
    """Refuse, in one line, a generator that rosinality's Generator cannot reproduce."""
    if not isinstance(G, networks.Generator):
        _refuse(what, f'it is {describe(G)}; rosinality has StyleGAN2 generators only')
    fcs = [getattr(G.mapping, f'fc{i}') for i in range(G.mapping.num_layers)]
    layers = [m for m in G.synthesis.modules() if isinstance(m, networks.SynthesisLayer)]
    blocks = [getattr(G.synthesis, f'b{res}') for res in G.synthesis.block_resolutions]
    problems = [
        (G.c_dim > 0, f'it is conditional (c_dim {G.c_dim}) and rosinality networks have no classes'),
        (G.img_channels != 3, f'it makes {G.img_channels}-channel images; rosinality makes RGB'),
        (getattr(G.mapping, 'w_avg', None) is None, 'it tracks no w_avg to write as latent_avg'),
        (any((fc.in_features, fc.out_features) != (G.w_dim, G.w_dim) for fc in fcs) or G.z_dim != G.w_dim,
         'its z or mapping layers are not all w_dim wide; rosinality uses style_dim for all of them'),
        (any(not math.isclose(fc.bias_gain, 0.01) or fc.activation != 'lrelu' for fc in fcs),
         'its mapping is not lrelu with lr_multiplier 0.01, which rosinality checkpoints assume'),
        (any(b.architecture != 'skip' for b in blocks),
         f"its synthesis architecture is {blocks[-1].architecture}; rosinality's Generator is skip"),
        (any(m.activation != 'lrelu' or not m.use_noise or m.weight.shape[-1] != 3 for m in layers),
         'its synthesis layers are not 3x3 lrelu convolutions with noise'),
    ]
    for failed, problem in problems:
        if failed:
            _refuse(what, problem)
    _filters_are_4_tap(G, what)


def check_discriminator(D: Any, what: str) -> None:
    """Refuse, in one line, a discriminator that rosinality's Discriminator cannot reproduce."""
    if not isinstance(D, networks.Discriminator):
        _refuse(what, f'it is {describe(D)}; rosinality has StyleGAN2 discriminators only')
    blocks = [getattr(D, f'b{res}') for res in D.block_resolutions]
    mbstd = D.b4.mbstd
    problems = [
        (D.c_dim > 0, f'it is conditional (c_dim {D.c_dim}) and rosinality networks have no classes'),
        (D.img_channels != 3, f'it reads {D.img_channels}-channel images; rosinality reads RGB'),
        (any(b.architecture != 'resnet' for b in blocks) or D.b4.architecture != 'resnet',
         f"its architecture is {D.b4.architecture}; rosinality's Discriminator is resnet"),
        (mbstd is None or (mbstd.group_size, mbstd.num_channels) != (4, 1),
         "its minibatch-std layer is not group 4 with 1 channel, as rosinality's is"),
        (any(m.activation != 'lrelu' for m in D.modules() if isinstance(m, networks.Conv2dLayer) and m.bias is not None),
         'its convolutions are not lrelu'),
    ]
    for failed, problem in problems:
        if failed:
            _refuse(what, problem)
    _filters_are_4_tap(D, what)


def _clamps(net: torch.nn.Module) -> set[float]:
    """The conv_clamp values a network uses (rosinality has none)."""
    return {m.conv_clamp for m in net.modules() if getattr(m, 'conv_clamp', None) is not None}


def _channels_note(kind: str, channels: dict[int, int]) -> str:
    """How to build rosinality's network for this channel table."""
    stock = names.stock_table(channels)
    if stock is not None and stock[1] == 1:
        return f'channel_multiplier={stock[0]}'
    if stock is not None:
        return f'channel_multiplier={stock[0]}, its channel table divided by {stock[1]}'
    table = ', '.join(f'{res}: {c}' for res, c in sorted(channels.items()))
    return f'channels {{{table}}} (not a stock table: set {kind}.channels to it)'


def _mapped(net: torch.nn.Module, plan: list[names.Entry], what: str) -> dict[str, torch.Tensor]:
    """The rosinality state_dict of a checked network; anything the plan has no place for is refused."""
    state = net.state_dict()
    extra = sorted(set(state) - {e.official for e in plan} - {'mapping.w_avg'})
    if extra:
        _refuse(what, f"rosinality has no place for {', '.join(extra[:5])}")
    return names.to_rosinality(state, plan)


def rosinality_checkpoint(nets: dict[str, Any]) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """(checkpoint, report lines, name maps for the manifest) for networks as load_network returns them.

    g_ema is G_ema (or G when there is none); g is G when it is a different network; d is D when present.
    """
    G_ema = nets.get('G_ema') if nets.get('G_ema') is not None else nets.get('G')
    if G_ema is None:
        raise StylelensError('the network has no generator to convert')
    sources = [('g_ema', 'G_ema', G_ema)]
    if nets.get('G') is not None and nets['G'] is not G_ema:
        sources.append(('g', 'G', nets['G']))
    if nets.get('D') is not None:
        sources.append(('d', 'D', nets['D']))
    for _, key, net in sources:
        (check_discriminator if key == 'D' else check_generator)(net, key)
    checkpoint: dict[str, Any] = {}
    lines, maps = [], {}
    for ros_key, key, net in sources:
        if key == 'D':
            plan = names.discriminator_plan(net.img_resolution)
            channels = {res: getattr(net, f'b{res}').conv0.in_channels for res in net.block_resolutions}
            channels[4] = net.b4.conv.out_channels
            built = f'Discriminator(size={net.img_resolution}, {_channels_note("Discriminator", channels)})'
        else:
            plan = names.generator_plan(net.img_resolution, net.mapping.num_layers)
            channels = {res: getattr(net.synthesis, f'b{res}').out_channels for res in net.synthesis.block_resolutions}
            built = (f'Generator(size={net.img_resolution}, style_dim={net.w_dim}, n_mlp={net.mapping.num_layers}, '
                     f'{_channels_note("Generator", channels)})')
        checkpoint[ros_key] = _mapped(net, plan, key)
        if ros_key == 'g_ema':
            checkpoint['latent_avg'] = net.mapping.w_avg.detach().cpu().clone()
        maps[ros_key] = [[e.official, e.ros, e.kind] for e in plan]
        lines.append(f'{ros_key} <- {key}: {len(checkpoint[ros_key])} tensors, for rosinality {built}')
    lines.append('latent_avg <- G_ema.mapping.w_avg (pass it as truncation_latent)')
    lines += _rule_lines(maps, nets)
    return checkpoint, lines, maps


def _rule_lines(maps: dict[str, list], nets: dict[str, Any]) -> list[str]:
    """What the conversion did, rule by rule, with counts."""
    count = collections.Counter(kind for plan in maps.values() for _, _, kind in plan)
    lines = [f"renamed {count['same']} tensors as they are (mapping.fcI -> style.I+1, bR.conv0/conv1/torgb -> "
             f"convs/to_rgbs, D bR -> convs.J, b4 -> final_conv/final_linear; the full map is in the manifest)",
             f"reshaped: {count['lead']} const/conv weights [..] -> [1, ..], {count['scalar']} noise strengths "
             f"-> [1], {count['noise']} noise_const [R, R] -> noises.noise_I [1, 1, R, R], {count['rgb_bias']} "
             f"torgb biases -> [1, 3, 1, 1]",
             f"{count['up_filter']} upsampling filters x4 (rosinality keeps the 2x upsampling gain in its kernels)",
             f'left out: {count[names.UNUSED]} filter buffers that no forward pass reads']
    clamps = set().union(*(_clamps(n) for n in (nets.get('G_ema'), nets.get('G'), nets.get('D')) if n is not None))
    if clamps:
        lines.append(f"note: conv_clamp {', '.join(f'{c:g}' for c in sorted(clamps))} dropped (rosinality has no "
                     f"clamp): outputs are the same while no activation reaches it")
    return lines
