"""Where to intervene: sets of hook points (`--at`) and, per hook point, the rows of a batch that change there.

  blocks          every synthesis block's output (x and the running RGB image); StyleGAN3: the input and layers
  layers          every modulated layer's output (conv0, conv1, torgb; StyleGAN3 layers)
  styles          every modulated layer's styles (its affine's output, the S space)
  channels:NAME   every channel of one hook point (`b16.conv1`, `b8.conv0.affine`, `b16`)
  NAME,NAME,...   those hook points (any module name `stylelens arch` lists)

A block's output is a tuple (x, img); intervening on a whole block changes both, on one of its channels only x.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from stylelens.errors import StylelensError
from stylelens.probes import resolve_name
from stylelens.stylespace import style_layers
from stylelens.summary import synthesis_parts

SETS = ('blocks', 'layers', 'styles')
AT_HINT = 'blocks, layers, styles, channels:NAME or hook names (NAME,NAME)'


@dataclass(frozen=True)
class Point:
    """One intervention site: a hook name, and a channel of it (None: the whole output)."""

    name: str
    channel: int | None = None

    @property
    def label(self) -> str:
        """`b8.conv1`, `b8.conv1[12]` (without `synthesis.`)."""
        short = self.name.removeprefix('synthesis.')
        return short if self.channel is None else f'{short}[{self.channel}]'


@dataclass
class PointSpec:
    """A parsed `--at`: hook names, and whether each is to be split into its channels."""

    spec: str
    names: list[str]
    per_channel: bool = False

    def points(self, channel_counts: dict[str, int]) -> list[Point]:
        """The points, channels expanded from the recorded outputs' channel counts."""
        if not self.per_channel:
            return [Point(name) for name in self.names]
        return [Point(name, c) for name in self.names for c in range(channel_counts[name])]


def parse_at(G: torch.nn.Module, spec: str) -> PointSpec:
    """A `--at` value as hook names of G; unknown sets or names are one-line errors."""
    text = spec.strip()
    if text == 'blocks':
        return PointSpec(text, [f'synthesis.{name}' for name in synthesis_parts(G)])
    if text == 'layers':
        return PointSpec(text, [layer.name for layer in style_layers(G)])
    if text == 'styles':
        return PointSpec(text, [layer.affine for layer in style_layers(G)])
    if text.startswith('channels:'):
        return PointSpec(text, [resolve_name(G, text[len('channels:'):])], per_channel=True)
    names = [part.strip() for part in text.split(',') if part.strip()]
    if not names:
        raise StylelensError(f"bad --at '{spec}': expected {AT_HINT}")
    return PointSpec(text, list(dict.fromkeys(resolve_name(G, name) for name in names)))


def part_tensors(value: torch.Tensor | dict) -> dict[str, torch.Tensor]:
    """A recorded output as named tensors: {'x': ...} for tensors, {'x', 'img'} for blocks (img when present)."""
    if isinstance(value, dict):
        return {part: tensor for part, tensor in value.items() if isinstance(tensor, torch.Tensor)}
    return {'x': value}


def row_masks(rows: Sequence[Sequence[Point]], name: str, shapes: dict[str, torch.Size]
              ) -> dict[str, torch.Tensor]:
    """Per part of hook `name`: a bool mask [B, channels] of what each row changes there (all channels for a whole
    point, one for a channel point; a channel point changes only x)."""
    masks = {part: torch.zeros(len(rows), shape[1], dtype=torch.bool) for part, shape in shapes.items()}
    for r, row in enumerate(rows):
        for point in row:
            if point.name != name:
                continue
            if point.channel is None:
                for mask in masks.values():
                    mask[r] = True
            else:
                if point.channel >= masks['x'].shape[1]:
                    raise StylelensError(f'{point.label}: {point.name} has {masks["x"].shape[1]} channels')
                masks['x'][r, point.channel] = True
    return masks


def masked_edit(mask: torch.Tensor, replacement: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
    """An edit (for stylelens.probes.edit) that takes `replacement(x)` where mask [B, C] is set and keeps x
    elsewhere; the mask broadcasts over any spatial dims."""
    def fn(x: torch.Tensor) -> torch.Tensor:
        where = mask.to(x.device).reshape(*mask.shape, *[1] * (x.ndim - 2))
        return torch.where(where, replacement(x).to(x.dtype), x)
    return fn


def keep_outputs(store: dict[str, torch.Tensor]) -> Callable[[str], Callable]:
    """For stylelens.probes.edit: identity edits that keep each hook's output, graph and all, in `store[name]`, so
    gradients with respect to it can be taken after the forward pass."""
    def for_name(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        def fn(x: torch.Tensor) -> torch.Tensor:
            store[name] = x
            return x
        return fn
    return for_name
