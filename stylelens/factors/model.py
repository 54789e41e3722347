"""A regressor of the shapes data set's known factors, and what it reads off any image.

Factors (see stylelens.datasets.shapes): the shape's kind (categorical), position x and y, size, saturation and
value, the background's value (linear), and four angles (circular): the turn (as the phase of the shape's k-fold
symmetry: k = 4 for squares, 3 for triangles, undefined for circles), the shape's hue, the background's hue and
the light direction. The network sees images in [-1, 1] at 32x32 and predicts kind logits, the linear factors
scaled to [-1, 1] and (cos, sin) of every angle. Its file holds tensors and plain data only and is read with
`torch.load(weights_only=True)` into this module.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stylelens.datasets.shapes import SHAPES
from stylelens.errors import StylelensError
from stylelens.outputs import atomic_path

FORMAT = 'stylelens-factor-regressor'
VERSION = 1
RESOLUTION = 32
SHIPPED = 'factor-regressor.pt'

# Linear factors and the range shapes.sample_factors draws them from (the network predicts them scaled to [-1, 1]).
LINEAR = {'x': (0.3, 0.7), 'y': (0.3, 0.7), 'size': (0.16, 0.3), 'saturation': (0.6, 1.0), 'value': (0.75, 1.0),
          'bg_value': (0.15, 0.45)}
CIRCULAR = ('rotation', 'hue', 'bg_hue', 'light')
SYMMETRY = {'circle': 0, 'square': 4, 'triangle': 3}   # k-fold symmetry of each kind (0: turn undefined)
FACTORS = ('kind', *LINEAR, *CIRCULAR)
KIND_OF = {'kind': 'categorical', **{name: 'linear' for name in LINEAR}, **{name: 'circular' for name in CIRCULAR}}
OUTPUTS = len(SHAPES) + len(LINEAR) + 2 * len(CIRCULAR)


class FactorNet(nn.Module):
    """Five 3x3 convolutions (three of stride 2: 32 -> 4), a hidden layer and one output per factor component."""

    def __init__(self, width: int = 32):
        super().__init__()
        widths = (width, 2 * width, 2 * width, 4 * width, 4 * width)
        layers, channels = [], 3
        for k, out in enumerate(widths):
            layers += [nn.Conv2d(channels, out, 3, stride=2 if k % 2 else 1, padding=1), nn.ReLU()]
            channels = out
        layers += [nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.hidden = nn.Linear(channels * (RESOLUTION // 8) ** 2, 128)
        self.out = nn.Linear(128, OUTPUTS)
        self.width = width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [N, 3, 32, 32] in [-1, 1] -> raw outputs [N, OUTPUTS]."""
        return self.out(F.relu(self.hidden(self.body(images))))


@dataclass
class Readout:
    """What the regressor reads off a batch: kind probabilities [N, 3], linear factors [N] in natural units, and
    angles [N] in radians (the turn as its symmetry phase)."""

    kind: torch.Tensor
    linear: dict[str, torch.Tensor]
    angles: dict[str, torch.Tensor]

    def features(self, name: str) -> torch.Tensor:
        """One factor as a vector per image, for metrics: kind -> probabilities [N, 3], a linear factor -> [N, 1], an
        angle -> its unit (cos, sin) [N, 2]."""
        if name == 'kind':
            return self.kind
        if name in self.linear:
            return self.linear[name][:, None]
        return torch.stack([self.angles[name].cos(), self.angles[name].sin()], dim=1)

    def columns(self) -> dict[str, torch.Tensor]:
        """Every factor as named scalar columns: kind probabilities by shape name, linear factors, cos/sin of angles."""
        cols = {shape: self.kind[:, k] for k, shape in enumerate(SHAPES)}
        cols.update(self.linear)
        for name, angle in self.angles.items():
            cols[f'{name}_cos'], cols[f'{name}_sin'] = angle.cos(), angle.sin()
        return cols


class FactorRegressor:
    """The trained network with its readout; differentiable, so metrics can be attributed through it."""

    def __init__(self, net: FactorNet, metrics: dict[str, Any] | None = None):
        self.net = net.eval().requires_grad_(False)
        self.metrics = metrics or {}

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Float RGB images in [-1, 1] of any size, resized (antialiased bilinear) to 32x32."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise StylelensError(f'the factor regressor reads RGB images [N, 3, H, W] (got {list(images.shape)})')
        x = images.float().clamp(-1, 1)
        if x.shape[-1] != RESOLUTION or x.shape[-2] != RESOLUTION:
            x = F.interpolate(x, size=(RESOLUTION, RESOLUTION), mode='bilinear', align_corners=False, antialias=True)
        return x

    def read(self, images: torch.Tensor) -> Readout:
        """The factors of images [N, 3, H, W] in [-1, 1]."""
        raw = self.net(self.prepare(images))
        kinds = len(SHAPES)
        linear = {name: lo + (raw[:, kinds + k] + 1) * (hi - lo) / 2
                  for k, (name, (lo, hi)) in enumerate(LINEAR.items())}
        base = kinds + len(LINEAR)
        angles = {name: torch.atan2(raw[:, base + 2 * k + 1], raw[:, base + 2 * k]) for k, name in enumerate(CIRCULAR)}
        return Readout(raw[:, :kinds].softmax(dim=1), linear, angles)


def true_linear(factors: dict[str, np.ndarray], name: str) -> np.ndarray:
    """A linear factor of shapes.sample_factors output (the centre is drawn as cx, cy)."""
    return factors[f'c{name}' if name in ('x', 'y') else name]


def true_angles(factors: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The four angles of shapes.sample_factors output in radians (the turn as the symmetry phase k * angle), and
    each image's k (0 for circles, whose turn is undefined)."""
    symmetry = np.array([SYMMETRY[shape] for shape in SHAPES])[factors['shape']]
    return dict(rotation=symmetry * factors['angle'], hue=2 * math.pi * factors['hue'],
                bg_hue=2 * math.pi * factors['bg_hue'], light=factors['light']), symmetry


def targets(factors: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training targets of shapes.sample_factors output: (kind [N], regression targets [N, OUTPUTS - 3], mask of
    the regression targets that are defined [N, OUTPUTS - 3] (a circle's turn is not))."""
    columns, masks = [], []
    for name, (lo, hi) in LINEAR.items():
        columns.append((true_linear(factors, name) - lo) / (hi - lo) * 2 - 1)
        masks.append(np.ones(len(columns[-1])))
    angles, symmetry = true_angles(factors)
    for name in CIRCULAR:
        defined = (symmetry > 0) if name == 'rotation' else np.ones(len(symmetry), bool)
        columns += [np.cos(angles[name]), np.sin(angles[name])]
        masks += [defined, defined]
    stack = np.stack(columns, axis=1).astype(np.float32)
    return factors['shape'].astype(np.int64), stack, np.stack(masks, axis=1).astype(np.float32)


def save_regressor(regressor: FactorRegressor, path: str | Path) -> Path:
    """Write the regressor as tensors and plain data, atomically."""
    state = dict(format=FORMAT, version=VERSION, width=regressor.net.width, metrics=regressor.metrics,
                 state_dict={k: v.detach().cpu().contiguous() for k, v in regressor.net.state_dict().items()})
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def regressor_from_state(state: dict[str, Any], source: str) -> FactorRegressor:
    """Our FactorNet filled from a weights-only checkpoint dict; a wrong layout is a one-line error."""
    if state.get('format') != FORMAT or int(state.get('version', 0)) > VERSION:
        raise StylelensError(f'{source} is not a stylelens factor regressor (version {VERSION} or older)')
    net = FactorNet(int(state['width']))
    try:
        net.load_state_dict(state['state_dict'])
    except (RuntimeError, KeyError, TypeError) as err:
        raise StylelensError(f'{source}: its tensors do not fit the factor regressor: {str(err).splitlines()[0]}'
                             ) from None
    return FactorRegressor(net, dict(state.get('metrics') or {}))


def load_regressor(path: str | Path | None = None) -> FactorRegressor:
    """The shipped regressor (checkpoints/factor-regressor.pt), or the one at `path`, read weights-only."""
    if path is None:
        data, source = (resources.files('stylelens.checkpoints') / SHIPPED).read_bytes(), f'checkpoints/{SHIPPED}'
    else:
        if not Path(path).is_file():
            raise StylelensError(f"factor regressor '{path}' not found: omit it to use checkpoints/{SHIPPED}")
        data, source = Path(path).read_bytes(), str(path)
    try:
        state = torch.load(io.BytesIO(data), map_location='cpu', weights_only=True)
    except Exception as err:  # torch raises many types for foreign, damaged or code-carrying files
        raise StylelensError(f'cannot read {source} weights-only: {str(err).splitlines()[0]}') from None
    if not isinstance(state, dict):
        raise StylelensError(f'{source} is not a stylelens factor regressor')
    return regressor_from_state(state, source)
