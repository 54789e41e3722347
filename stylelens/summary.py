"""What a loaded network is: dims, blocks with their resolutions, channels and ws indices, parameter counts."""
from __future__ import annotations

from typing import Any

import torch


def count_parameters(module: torch.nn.Module | None) -> int | None:
    """Number of parameter elements (None for a missing network)."""
    return None if module is None else sum(p.numel() for p in module.parameters())


def synthesis_blocks(G: torch.nn.Module) -> list[dict[str, Any]]:
    """One row per synthesis block: name, resolution, in/out channels, layers, ws indices, architecture."""
    rows = []
    for name, idx in G.synthesis.block_ws_ranges().items():
        block = getattr(G.synthesis, name)
        layers = [n for n in ('conv0', 'conv1', 'torgb') if hasattr(block, n)]
        rows.append(dict(name=name, resolution=block.resolution, in_channels=block.in_channels,
                         out_channels=block.conv1.out_channels, layers=layers, ws_indices=list(idx),
                         architecture=block.architecture))
    return rows


def network_summary(G: torch.nn.Module, D: torch.nn.Module | None = None) -> dict[str, Any]:
    """A JSON-able description of a generator (and its discriminator when given)."""
    mapping = G.mapping
    return dict(
        kind='stylegan2',
        img_resolution=G.img_resolution, img_channels=G.img_channels,
        z_dim=G.z_dim, w_dim=G.w_dim, c_dim=G.c_dim, num_ws=G.num_ws,
        mapping_layers=mapping.num_layers,
        architecture=getattr(G.synthesis, f'b{G.img_resolution}').architecture,
        blocks=synthesis_blocks(G),
        parameters=dict(G=count_parameters(G), mapping=count_parameters(mapping),
                        synthesis=count_parameters(G.synthesis), D=count_parameters(D)),
        discriminator_architecture=getattr(D, 'b4').architecture if D is not None else None,
    )
