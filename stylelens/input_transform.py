"""StyleGAN3's image-space translation and rotation (`gen_images.py --translate --rotate`), on a copy of G.

An alias-free generator samples its Fourier-feature input through `synthesis.input.transform`, the inverse of the
transform wanted for the image; changing that 3x3 buffer moves and turns the whole image continuously.
"""
from __future__ import annotations

import copy
import math
from typing import Sequence

import numpy as np
import torch

from stylelens.errors import StylelensError
from stylelens.summary import is_alias_free


def make_transform(translate: Sequence[float], angle: float) -> np.ndarray:
    """The 3x3 (float64) image transform of gen_images.py: rotate by `angle` degrees, then translate by
    (x, y) in units of the image's half width."""
    radians = angle / 360.0 * math.pi * 2  # this rounding order reproduces the official matrix bit for bit
    s, c = math.sin(radians), math.cos(radians)
    return np.array([[c, s, float(translate[0])], [-s, c, float(translate[1])], [0.0, 0.0, 1.0]])


def with_input_transform(G: torch.nn.Module, translate: Sequence[float] = (0.0, 0.0),
                         rotate: float = 0.0) -> torch.nn.Module:
    """A copy of G whose input transform is the inverse of `make_transform(translate, rotate)`, replacing the
    stored one as gen_images.py does; all other parameters and buffers are shared with G, which is unchanged."""
    if not is_alias_free(G):
        raise StylelensError('translate/rotate need an alias-free StyleGAN3 generator (T or R), whose synthesis '
                             'starts from Fourier features; this network has no such input (StyleGAN2, rosinality '
                             'and from-scratch generators cannot be moved)')
    old = G.synthesis.input.transform
    shared = {id(t): t for t in [*G.parameters(), *G.buffers()] if t is not old}
    moved = copy.deepcopy(G, shared)
    inverse = torch.from_numpy(np.linalg.inv(make_transform(translate, rotate)))
    moved.synthesis.input.transform = inverse.to(dtype=old.dtype, device=old.device)
    return moved
