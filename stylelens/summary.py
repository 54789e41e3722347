"""What a loaded network is: dims, blocks (StyleGAN2) or layers (StyleGAN3) with their ws indices, parameter counts."""
from __future__ import annotations

from typing import Any

import torch


def count_parameters(module: torch.nn.Module | None) -> int | None:
    """Number of parameter elements (None for a missing network)."""
    return None if module is None else sum(p.numel() for p in module.parameters())


def is_alias_free(G: torch.nn.Module) -> bool:
    """True for an alias-free StyleGAN3 generator: Fourier-feature input, then named layers reading one w each."""
    synthesis = getattr(G, 'synthesis', None)
    return hasattr(synthesis, 'input') and hasattr(synthesis, 'layer_names')


def synthesis_parts(G: torch.nn.Module) -> list[str]:
    """The units a generator's synthesis is taken apart by, in forward order: StyleGAN2 blocks `b4, b8, ...`;
    StyleGAN3 `input` (the Fourier features) and the layers `L0_36_512, ...`."""
    if is_alias_free(G):
        return ['input', *G.synthesis.layer_names]
    return list(G.synthesis.block_ws_ranges())


def resolve_part(names: list[str], name: str) -> str | None:
    """`name` as listed in `names`, also from a StyleGAN3 short layer name (`L3` for `L3_36_512`); None if
    unknown."""
    if name in names:
        return name
    matches = [n for n in names if n.split('_')[0] == name]
    return matches[0] if len(matches) == 1 else None


def stylegan3_config(G: torch.nn.Module) -> str:
    """'R' for a StyleGAN3 generator with radially symmetric downsampling filters (rotation equivariant), else 'T'."""
    layers = [getattr(G.synthesis, name) for name in G.synthesis.layer_names]
    return 'R' if any(layer.down_radial for layer in layers) else 'T'


def synthesis_blocks(G: torch.nn.Module) -> list[dict[str, Any]]:
    """One row per StyleGAN2 synthesis block: name, resolution, in/out channels, layers, ws indices, architecture."""
    rows = []
    for name, idx in G.synthesis.block_ws_ranges().items():
        block = getattr(G.synthesis, name)
        layers = [n for n in ('conv0', 'conv1', 'torgb') if hasattr(block, n)]
        rows.append(dict(name=name, resolution=block.resolution, in_channels=block.in_channels,
                         out_channels=block.conv1.out_channels, layers=layers, ws_indices=list(idx),
                         architecture=block.architecture))
    return rows


def synthesis_layers(G: torch.nn.Module) -> list[dict[str, Any]]:
    """One row per StyleGAN3 part, the Fourier input first: name, ws index, output size, sampling rate, cutoff,
    transition half width, channels, resampling factors and kind (input, layer, critically sampled, torgb)."""
    source = G.synthesis.input
    rows = [dict(name='input', ws_index=0, size=int(source.size[0]), sampling_rate=float(source.sampling_rate),
                 cutoff=float(source.bandwidth), half_width=None, in_channels=None, out_channels=source.channels,
                 up=None, down=None, kind='fourier')]
    for idx, name in enumerate(G.synthesis.layer_names, start=1):
        layer = getattr(G.synthesis, name)
        kind = 'torgb' if layer.is_torgb else 'critical' if layer.is_critically_sampled else 'layer'
        rows.append(dict(name=name, ws_index=idx, size=int(layer.out_size[0]),
                         sampling_rate=float(layer.out_sampling_rate), cutoff=float(layer.out_cutoff),
                         half_width=float(layer.out_half_width), in_channels=layer.in_channels,
                         out_channels=layer.out_channels, up=layer.up_factor, down=layer.down_factor, kind=kind))
    return rows


def network_summary(G: torch.nn.Module, D: torch.nn.Module | None = None) -> dict[str, Any]:
    """A JSON-able description of a generator (and its discriminator when given): StyleGAN2 networks list their
    blocks, StyleGAN3 networks (kind 'stylegan3', architecture 'StyleGAN3-T' or '-R') their layers."""
    mapping = G.mapping
    if is_alias_free(G):
        structure = dict(architecture=f'StyleGAN3-{stylegan3_config(G)}', layers=synthesis_layers(G),
                         output_scale=G.synthesis.output_scale)
    else:
        structure = dict(architecture=getattr(G.synthesis, f'b{G.img_resolution}').architecture,
                         blocks=synthesis_blocks(G))
    return dict(
        kind='stylegan3' if is_alias_free(G) else 'stylegan2',
        img_resolution=G.img_resolution, img_channels=G.img_channels,
        z_dim=G.z_dim, w_dim=G.w_dim, c_dim=G.c_dim, num_ws=G.num_ws,
        mapping_layers=mapping.num_layers,
        **structure,
        parameters=dict(G=count_parameters(G), mapping=count_parameters(mapping),
                        synthesis=count_parameters(G.synthesis), D=count_parameters(D)),
        discriminator_architecture=getattr(D, 'b4').architecture if D is not None else None,
    )
