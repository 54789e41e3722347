"""A procedural data set of one shape per image, with known coarse and fine factors.

Coarse factors (shape, position, size, rotation) decide the layout; fine factors (the shape's colour, the
background's colour and its light direction) decide the appearance. A generator trained on it should put the
first in its low-resolution blocks and the second in its high-resolution ones, which is what style mixing
shows. Images are drawn with 4x4 supersampling, deterministically from a seed, so nothing is downloaded.
"""
from __future__ import annotations

import math

import numpy as np

SHAPES = ('circle', 'square', 'triangle')
SPLIT_SEEDS = {'train': 0, 'test': 1}
SUPERSAMPLE = 4
_CHUNK = 512


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB for arrays of equal shape, all in [0, 1]; returns [..., 3]."""
    k = (np.stack([5.0, 3.0, 1.0]) + h[..., None] * 6) % 6
    return v[..., None] - v[..., None] * s[..., None] * np.clip(np.minimum(k, 4 - k), 0, 1)


def sample_factors(count: int, seed: int) -> dict[str, np.ndarray]:
    """The generating factors of `count` images: shape index, centre, size, rotation, colours, light direction."""
    rng = np.random.default_rng(seed)
    return dict(
        shape=rng.integers(0, len(SHAPES), count),
        cx=rng.uniform(0.3, 0.7, count), cy=rng.uniform(0.3, 0.7, count),
        size=rng.uniform(0.16, 0.3, count), angle=rng.uniform(0, 2 * math.pi, count),
        hue=rng.uniform(0, 1, count), saturation=rng.uniform(0.6, 1, count), value=rng.uniform(0.75, 1, count),
        bg_hue=rng.uniform(0, 1, count), bg_value=rng.uniform(0.15, 0.45, count),
        light=rng.uniform(0, 2 * math.pi, count),
    )


def _signed_distance(kind: int, x: np.ndarray, y: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Per-pixel signed distance (negative inside) of one shape kind, in rotated, centred coordinates."""
    if SHAPES[kind] == 'circle':
        return np.hypot(x, y) - size
    if SHAPES[kind] == 'square':
        return np.maximum(np.abs(x), np.abs(y)) - 0.8 * size
    distance = None
    for angle in (math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3):
        edge = math.cos(angle) * x + math.sin(angle) * y
        distance = edge if distance is None else np.maximum(distance, edge)
    return distance - 0.55 * size


def _coverage(part: dict[str, np.ndarray], grid: np.ndarray, resolution: int) -> np.ndarray:
    """Fraction of each output pixel inside the image's shape, from the supersampled grid."""
    dx, dy = grid[None, None, :] - part['cx'], grid[None, :, None] - part['cy']
    cos, sin = np.cos(part['angle']), np.sin(part['angle'])
    x, y = cos * dx + sin * dy, -sin * dx + cos * dy
    inside = np.empty(x.shape, bool)
    for kind in range(len(SHAPES)):
        pick = part['shape'][:, 0, 0] == kind
        inside[pick] = _signed_distance(kind, x[pick], y[pick], part['size'][pick]) < 0
    n = len(inside)
    return inside.reshape(n, resolution, SUPERSAMPLE, resolution, SUPERSAMPLE).mean(axis=(2, 4))


def render(factors: dict[str, np.ndarray], resolution: int) -> np.ndarray:
    """Draw the images of `factors` as uint8 NHWC at `resolution`, anti-aliased by supersampling."""
    count = len(factors['shape'])
    out = np.empty((count, resolution, resolution, 3), np.uint8)
    fine = resolution * SUPERSAMPLE
    grid = (np.arange(fine) + 0.5) / fine
    for start in range(0, count, _CHUNK):
        part = {k: v[start:start + _CHUNK, None, None] for k, v in factors.items()}
        coverage = _coverage(part, grid, resolution)
        n = len(coverage)
        ramp = np.cos(part['light']) * (grid[None, None, ::SUPERSAMPLE] - 0.5) + \
            np.sin(part['light']) * (grid[None, ::SUPERSAMPLE, None] - 0.5)
        shade = np.clip(part['bg_value'] * (1 + 0.9 * ramp), 0, 1)
        background = _hsv_to_rgb(np.broadcast_to(part['bg_hue'], shade.shape), np.full(shade.shape, 0.5), shade)
        colour = _hsv_to_rgb(part['hue'], part['saturation'], part['value'])
        image = background + coverage[..., None] * (colour - background)
        out[start:start + n] = np.round(image * 255).astype(np.uint8)
    return out


def make_shapes(count: int, resolution: int = 32, split: str = 'train') -> tuple[np.ndarray, np.ndarray]:
    """`count` images of the split (train and test draw from different seeds) and their shape labels."""
    factors = sample_factors(count, SPLIT_SEEDS[split])
    return render(factors, resolution), factors['shape'].astype(np.int64)
