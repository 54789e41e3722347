"""The style space of a generator: every modulated layer, the ws index it reads and its affine (w -> styles).

StyleGAN2 (official, rosinality, TF, safetensors: all rebuilt in the official layout) has `synthesis.b{R}.conv0`,
`conv1` and `torgb`; StyleGAN3 has the layers `synthesis.L{k}_{size}_{channels}`, the last of which is ToRGB. Each
owns an `affine` fully connected layer from w to one style per input channel: its output is the S space of
StyleSpace (Wu et al. 2021), its weight what SeFa factorises. The Fourier input of StyleGAN3 also has an affine
(4 numbers: rotation and translation), which is not a channel style and is left out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from stylelens.errors import StylelensError
from stylelens.mixing import parse_layers
from stylelens.summary import is_alias_free

KINDS = ('conv', 'torgb')


@dataclass(frozen=True)
class StyleLayer:
    """One modulated layer: its hook name (`synthesis.b8.conv0`), the ws index it reads, conv or torgb, and the
    number of styles (its input channels)."""

    name: str
    ws_index: int
    kind: str
    channels: int

    @property
    def short(self) -> str:
        """The name without `synthesis.` (`b8.conv0`), as figures and tables show it."""
        return self.name.removeprefix('synthesis.')

    @property
    def affine(self) -> str:
        """The hook name of its affine layer, whose output is the layer's styles."""
        return f'{self.name}.affine'


def style_layers(G: torch.nn.Module) -> list[StyleLayer]:
    """Every modulated layer of G in forward order; a generator without style affines is a one-line error."""
    synthesis = getattr(G, 'synthesis', None)
    if is_alias_free(G):
        layers = [_layer(G, f'synthesis.{name}', index, 'torgb' if getattr(synthesis, name).is_torgb else 'conv')
                  for name, index in synthesis.layer_ws_indices().items() if name != 'input']
    elif hasattr(synthesis, 'block_ws_ranges'):
        layers = []
        for block, indices in synthesis.block_ws_ranges().items():
            module = getattr(synthesis, block)
            convs = [name for name in ('conv0', 'conv1') if hasattr(module, name)]
            layers += [_layer(G, f'synthesis.{block}.{name}', indices[k], 'conv') for k, name in enumerate(convs)]
            if hasattr(module, 'torgb'):
                layers.append(_layer(G, f'synthesis.{block}.torgb', indices[len(convs)], 'torgb'))
    else:
        layers = []
    if not layers or any(layer is None for layer in layers):
        raise StylelensError(f'{type(G).__name__} has no style affine layers: style directions and channels need a '
                             f'StyleGAN2 or StyleGAN3 generator')
    return layers


def _layer(G: torch.nn.Module, name: str, index: int, kind: str) -> StyleLayer | None:
    """The StyleLayer of module `name`, or None when it has no affine with a 2-D weight from w."""
    affine = getattr(G.get_submodule(name), 'affine', None)
    weight = getattr(affine, 'weight', None)
    if weight is None or weight.ndim != 2 or weight.shape[1] != G.w_dim:
        return None
    return StyleLayer(name, index, kind, int(weight.shape[0]))


def select_layers(G: torch.nn.Module, spec: str | None = None, *, torgb: bool = False) -> list[StyleLayer]:
    """The modulated layers that read the ws chosen by `spec` (ws indices, blocks, presets as in `mix`; StyleGAN3
    layer names; None = every ws), without the toRGB layers unless `torgb`."""
    layers = [layer for layer in style_layers(G) if torgb or layer.kind == 'conv']
    if spec is None:
        return layers
    try:
        indices = set(parse_layers(G, spec))
    except StylelensError as err:
        raise StylelensError(f"bad --layers '{spec}': {err}") from None
    chosen = [layer for layer in layers if layer.ws_index in indices]
    if not chosen:
        kinds = 'modulated layers' if torgb else 'convolution layers (toRGB layers are left out)'
        raise StylelensError(f"--layers '{spec}' selects ws {sorted(indices)}, which no {kinds} read")
    return chosen


def affine_matrix(G: torch.nn.Module, layers: Sequence[StyleLayer]) -> torch.Tensor:
    """The effective affine weights of `layers` stacked [sum of channels, w_dim] in float64 (weight x weight_gain,
    as the forward pass applies them)."""
    parts = []
    for layer in layers:
        affine = G.get_submodule(layer.affine)
        parts.append(affine.weight.detach().double().cpu() * float(getattr(affine, 'weight_gain', 1.0)))
    return torch.cat(parts)


def styles_of(G: torch.nn.Module, ws: torch.Tensor, layers: Sequence[StyleLayer] | None = None
              ) -> dict[str, torch.Tensor]:
    """{layer name: styles [N, channels]} of ws [N, num_ws, w_dim]: each affine applied to its own w, without
    running the synthesis network."""
    chosen = style_layers(G) if layers is None else layers
    with torch.no_grad():
        return {layer.name: G.get_submodule(layer.affine)(ws[:, layer.ws_index].float()).cpu() for layer in chosen}
